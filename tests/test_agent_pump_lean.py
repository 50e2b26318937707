"""The work a pump does around the sans-IO core (issue 15 item 3, issue 14 item 5): counted, never timed.

SessionRunner.pump sends what the generation has to send and applies its events; the agent turns events
into its state and selected pair, and polls its supervisor (consent, RFC 7675 5.1). With thousands of agents
per process each call there is paid per agent: these tests count notifications, Python calls and the
transport methods a connect goes through, and check the paths those counts skip still work.
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
import trio
from test_agent_scale import connect_both, gathered

from iceagent import Agent
from iceagent.net.os import OSUdpSocket

#: The functions of the pump and of the agent's reaction to it (agent/_runner.py, agent/_states.py,
#: ice/supervisor.py, agent/_route.py) whose calls per connect are counted.
PUMP_FUNCTIONS = frozenset({
    "pump", "flush", "_transmit", "send_soon", "_confirm", "_apply_events", "_prune_connections", "route_for",
    "transport_for", "make_route", "session_event", "_pair_valid", "_select", "_set_state", "supervise", "poll",
    "_consent_due", "_keepalive", "_follow", "nominated",
})
PUMP_FILES = ("agent/_runner.py", "agent/_states.py", "ice/supervisor.py", "agent/_route.py")


async def connected_pair(run: Callable[[Agent, Agent], Any]) -> None:
    """Two agents on loopback, gathered: `run(a, b)` while they are signalled to each other and connect."""
    with trio.fail_after(10):
        async with gathered() as (a, b):
            await run(a, b)


async def test_each_change_of_a_connect_notifies_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """From the hand-over to COMPLETED an agent changes three times: CHECKING, CONNECTED on its first valid
    pair (selected with it), COMPLETED when that pair is nominated. Each is one `_notify` (connect() waiters,
    the supervisor); selecting the pair is told with the state change, and the nomination of the pair
    already selected changes no route (before: 5 per agent, the selection and its nomination twice)."""
    counts: collections.Counter[str] = collections.Counter()
    notify = Agent._notify

    def counting(self: Agent) -> None:
        counts[self.name] += 1
        notify(self)

    async def run(a: Agent, b: Agent) -> None:
        monkeypatch.setattr(Agent, "_notify", counting)
        await connect_both(a, b)
        assert counts == {a.name: 3, b.name: 3}
        assert a.selected_pair is not None and a.selected_pair.nominated

    await connected_pair(run)


async def test_stun_on_the_session_tasks_socket_goes_out_by_its_sendto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks and their answers on the session task's own OS UDP socket are sent by the socket's `sendto`
    itself, not through the transport's try_send / send_nowait (a Python call less per packet)."""
    calls: collections.Counter[str] = collections.Counter()
    for name in ("try_send", "send_nowait"):
        method = getattr(OSUdpSocket, name)

        def counted(self: OSUdpSocket, data: bytes, remote: Any, _m: Any = method, _n: str = name) -> Any:
            calls[_n] += 1
            return _m(self, data, remote)

        monkeypatch.setattr(OSUdpSocket, name, counted)

    async def run(a: Agent, b: Agent) -> None:
        await connect_both(a, b)
        pair = a.selected_pair
        assert pair is not None and pair.requests_sent >= 2 and pair.responses_sent >= 1  # checks and answers went

    await connected_pair(run)
    assert calls == {}


async def test_a_check_the_full_socket_refuses_waits_in_the_outbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check the socket's buffer cannot take now (BlockingIOError) is sent by the session task when it can
    (the outbox, in order), not lost; an answer it cannot take is dropped (the peer retransmits its check)."""
    sent: list[bytes] = []
    send = OSUdpSocket.send

    async def counting_send(self: OSUdpSocket, data: bytes, remote: Any) -> None:
        sent.append(data)
        await send(self, data, remote)

    monkeypatch.setattr(OSUdpSocket, "send", counting_send)

    async def run(a: Agent, b: Agent) -> None:
        for agent in (a, b):
            runner: Any = agent._current
            sendto = runner._own_sendto
            assert sendto is not None
            refused = [0]

            def full_once(data: bytes, remote: Any, _sendto: Any = sendto, _refused: list[int] = refused) -> Any:
                if not _refused[0]:
                    _refused[0] = 1
                    raise BlockingIOError
                return _sendto(data, remote)

            runner._own_sendto = full_once
        await connect_both(a, b)

    await connected_pair(run)
    assert len(sent) >= 1  # a's first check (and b's first packet, if a check) went through the outbox


async def test_a_connect_costs_few_calls_around_the_core() -> None:
    """The calls of the pump and of the agent's reaction to it, from the hand-over until both agents are
    COMPLETED on loopback: per agent 3-4 pumps, 3 packets, 2 events, three supervisor polls (CHECKING,
    CONNECTED, COMPLETED). Counted with a profile hook, never timed (50 for the pair; before, 86: `flush`
    and `send_soon` calls per pump and per check, the selection made and told twice, helpers per poll)."""
    counts: collections.Counter[str] = collections.Counter()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            code = frame.f_code
            if code.co_name in PUMP_FUNCTIONS and code.co_filename.replace("\\", "/").endswith(PUMP_FILES):
                counts[code.co_name] += 1

    async def run(a: Agent, b: Agent) -> None:
        sys.setprofile(profile)
        try:
            await connect_both(a, b)
        finally:
            sys.setprofile(None)

    await connected_pair(run)
    assert sum(counts.values()) <= 56, counts  # (a retransmission on a slow machine costs a pump or two more)
