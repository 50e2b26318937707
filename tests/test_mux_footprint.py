"""What an agent on a mux costs (issue 14 item 5): its Trio tasks, the objects it keeps, the checks it sends.

Counted, never timed. A connected agent on a mux runs one task, its session task, which serves the mux
address's inbox itself (the mux reschedules it on a delivery); it used to run a receive task for the mux
endpoint besides, and its endpoint kept a deque, a ParkingLot and OrderedDicts while idle.
"""

from __future__ import annotations

import gc
import math
import socket
from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing
from agent_helpers import connect_both

import iceagent.net.mux as mux_module
from iceagent import Agent, Candidate, IceConfig, IceParameters, IceState, open_agent
from iceagent.net.mux import Mux, open_mux
from iceagent.net.os import OSUdpSocket
from iceagent.stun import Attr, Message, MessageClass, Method

LO = ["127.0.0.1"]
FAST = IceConfig(global_pacing=False)
#: Agent pairs per step of the object census (the second step doubles them).
PAIRS = 16


async def _open_pairs(stack: AsyncExitStack, n: int, mux: Mux | None, agents: list[Agent]) -> None:
    """n connected pairs on 127.0.0.1: a controlling agent on its own socket, a controlled one on `mux` (or
    on its own socket too, with mux=None)."""
    for _ in range(n):
        a = await stack.enter_async_context(open_agent(host_addresses=LO, config=FAST))
        b = await stack.enter_async_context(open_agent(controlling=False, host_addresses=LO, config=FAST, mux=mux))
        await connect_both(a, b)
        agents.extend((a, b))
    for agent in agents:
        await agent.state.wait_value(IceState.COMPLETED)
    await trio.testing.wait_all_tasks_blocked()


def _objects() -> int:
    gc.collect()
    return len(gc.get_objects())


async def test_a_connected_mux_agent_runs_one_task() -> None:
    """The agent's nursery holds its session task only, as with a socket of its own (agent/_session_task.py);
    no task waits on the mux endpoint."""
    with trio.fail_after(30):
        async with open_mux(LO, 0) as mux, AsyncExitStack() as stack:
            agents: list[Agent] = []
            await _open_pairs(stack, 3, mux, agents)
            for agent in agents:
                assert agent._nursery is not None
                # (one agent's nursery also hosts the interface watcher every agent of the process shares)
                names = [t.name for t in agent._nursery.child_tasks if t.name != "iceagent-interface-watcher"]
                assert len(names) == 1, names
                assert names[0].startswith("session-")


async def test_a_mux_agent_keeps_no_more_objects_than_one_with_its_own_socket() -> None:
    """Per connected pair, a controlled agent on the mux costs about as many garbage-collected objects as one
    with a socket of its own (K and 2K pairs, so the harness's objects cancel out; within 2 for noise). It
    kept about 44 more: its receive task's coroutines, scope and status, the endpoint's deque, ParkingLot
    and OrderedDicts."""
    per_pair: dict[str, float] = {}
    with trio.fail_after(60):
        for kind in ("own", "mux"):
            async with open_mux(LO, 0) as mux, AsyncExitStack() as stack:
                agents: list[Agent] = []
                target = mux if kind == "mux" else None
                await _open_pairs(stack, PAIRS, target, agents)
                before = _objects()
                await _open_pairs(stack, PAIRS, target, agents)
                per_pair[kind] = (_objects() - before) / PAIRS
    print(per_pair)
    assert per_pair["mux"] <= per_pair["own"] + 2  # about +0.5 now (its GatherOptions copy): +44 before


def _awaiting(coro: object) -> list[str]:
    """The names of the coroutines (and generators) a task's coroutine awaits, outermost first."""
    names = []
    while coro is not None:
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        if code is None:
            break
        names.append(code.co_name)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return names


async def test_an_idle_mux_agent_keeps_no_inbox_tables_or_frame_of_its_wait() -> None:
    """Once its agent connected and read everything, the mux endpoint's inbox holds no container and the
    routes keep no per-agent transaction table: an idle agent's endpoint is a few slotted objects. Its session
    task waits in Trio's `wait_task_rescheduled` directly: the generation's `wait_receivable` is a plain
    function that enlists the task and returns that wait, so no coroutine frame of it is kept per idle agent
    (216 bytes each; it was an `async def` awaiting the wait)."""
    with trio.fail_after(30):
        async with open_mux(LO, 0) as mux, AsyncExitStack() as stack:
            agents: list[Agent] = []
            await _open_pairs(stack, 2, mux, agents)
            for agent in agents[1::2]:
                assert agent._mux is not None and agent._nursery is not None
                transport = agent._mux.endpoint.transports[0]
                assert transport.pending() == 0
                referents = [r for r in gc.get_referents(transport) if gc.is_tracked(r)]
                assert [r for r in referents if isinstance(r, (list, set, dict))] == []
                assert agent._mux.endpoint.stats()["transactions"] == 0
                session = next(t for t in agent._nursery.child_tasks if t.name.startswith("session-"))
                names = _awaiting(session.coro)
                assert "_drive" in names and "wait_task_rescheduled" in names, names
                assert "wait_receivable" not in names, names


async def test_a_routed_datagram_is_queued_as_the_socket_gave_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routing makes no tuple per datagram for the inbox: the agent reads the very (data, source) tuple the OS
    socket returned, a check and application data alike (they were unpacked into (data, source, mux address)
    triples and packed again)."""
    given: list[tuple[bytes, tuple[str, int]]] = []
    receive_now = OSUdpSocket.receive_now

    def recording(self: OSUdpSocket, limit: int = 64) -> list[tuple[bytes, tuple[str, int]]]:
        items = receive_now(self, limit)
        given.extend(items)
        return items

    monkeypatch.setattr(OSUdpSocket, "receive_now", recording)
    with trio.fail_after(30):
        async with open_mux(LO, 0) as mux:
            with mux.register("a") as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                peer.bind(("127.0.0.1", 0))
                inbox = a.transports[0]
                a.add_ufrag("ufA")
                inbox.confirm(peer.getsockname())
                check = Message(Method.BINDING, MessageClass.REQUEST, attributes=[(Attr.USERNAME, "ufA:p")])
                for data in (check.encode(integrity_key=b"p" * 22, fingerprint=True), b"application data"):
                    peer.sendto(data, mux.local_addresses[0])
                    item = await inbox.receive()
                    assert item[0] == data
                    assert any(item is g for g in given)
                assert mux.stats()["routed"] == 2


def _check_for(agent: Agent, peer_ufrag: str) -> bytes:
    """A valid connectivity check to `agent` from a controlling peer with ufrag `peer_ufrag` (RFC 8445 7.2.2)."""
    params = agent.local_parameters
    msg = Message(Method.BINDING, MessageClass.REQUEST, attributes=[
        (Attr.USERNAME, f"{params.ufrag}:{peer_ufrag}"), (Attr.PRIORITY, 0x6E0001FF),
        (Attr.ICE_CONTROLLING, 1)])
    return msg.encode(integrity_key=params.pwd.encode(), fingerprint=True)


async def test_a_check_queued_before_the_wake_up_is_answered_first_one_check_per_agent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The peer's check waits in the mux socket when its candidates arrive: before it pumps for that wake-up a
    mux agent has the mux route what the socket holds, so the check is handled first and its triggered check
    is the agent's only one, as on a socket of its own (whose input comes before its wake-up datagram). It
    used to send its own check first, then cancel it for a triggered one (RFC 8445 7.3.1.4): two checks.
    The drainer between task steps is off (as when its interval has not passed), so only the mux's receive
    task, in the same scheduling batch as the agents, or the agents themselves, route the checks."""
    monkeypatch.setattr(mux_module, "DRAIN_INTERVAL", math.inf)
    with trio.fail_after(30):
        async with open_mux(LO, 0) as mux, AsyncExitStack() as stack:
            agents = []
            for _ in range(10):
                agent = await stack.enter_async_context(
                    open_agent(controlling=False, host_addresses=LO, config=FAST, mux=mux))
                agents.append((agent, [c async for c in agent.gather()]))
            peers = []
            for _ in agents:
                sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                sock.bind(("127.0.0.1", 0))
                peers.append(sock)
            await trio.testing.wait_all_tasks_blocked()
            for i, ((agent, _), sock) in enumerate(zip(agents, peers, strict=True)):
                sock.sendto(_check_for(agent, f"peer{i}"), mux.local_addresses[0])  # queued on the mux socket
                host, port = sock.getsockname()
                agent.set_remote_parameters(IceParameters(ufrag=f"peer{i}", pwd="p" * 22))
                agent.add_remote_candidate(Candidate(foundation="1", component=1, transport="udp",
                                                     priority=0x6E0001FF, address=host, port=port, type="host"))
                agent.add_remote_candidate(None)
            await trio.testing.wait_all_tasks_blocked()
            # its check in flight: not "waiting" as a check cancelled for a triggered one is until its turn (Ta)
            assert [p["state"] for agent, _ in agents for p in agent.stats()["pairs"]] == ["in-progress"] * len(agents)
            sent = [sum(p["requests_sent"] for p in agent.stats()["pairs"]) for agent, _ in agents]
            answered = [p["responses_sent"] for agent, _ in agents for p in agent.stats()["pairs"]]
            assert answered == [1] * len(agents)
            assert sent == [1] * len(agents)


async def test_a_second_mux_address_is_served_by_a_receive_task() -> None:
    """The session task serves the first mux address's inbox; a further one keeps a receive task on its view
    (`receive_batch`): a peer that knows only the second address connects through it and data flows."""
    with trio.fail_after(30):
        async with open_mux(["127.0.0.1", "127.0.0.2"], 0) as mux, AsyncExitStack() as stack:
            server = await stack.enter_async_context(open_agent(controlling=False, config=FAST, mux=mux))
            peer = await stack.enter_async_context(open_agent(host_addresses=LO, config=FAST))
            peer.set_remote_parameters(server.local_parameters)
            async for c in server.gather():
                if c.address == "127.0.0.2":
                    peer.add_remote_candidate(c)
            peer.add_remote_candidate(None)
            server.set_remote_parameters(peer.local_parameters)
            async for c in peer.gather():
                server.add_remote_candidate(c)
            server.add_remote_candidate(None)
            assert server._nursery is not None
            # (a gatherer that said done may not have returned yet: only the receiving tasks count here)
            kinds = sorted(t.name.split("-")[0] for t in server._nursery.child_tasks)
            assert [k for k in kinds if k in ("receive", "session")] == ["receive", "session"]
            s, p = await server.connect(), await peer.connect()
            await peer.state.wait_value(IceState.COMPLETED)
            selected = peer.selected_pair
            assert selected is not None and selected.remote_address[0] == "127.0.0.2"
            await p.send(b"to the second address")
            assert await s.receive() == b"to the second address"
            await s.send(b"back")
            assert await p.receive() == b"back"


async def test_a_routing_bug_outside_the_receive_task_ends_no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent about to pump has the mux route what its socket holds; should that routing raise (the mux's
    bug), it is logged and counted ("drain_failed"), the mux's receive task routes alone, and the agent,
    which only asked, connects."""

    def broken(self: Mux) -> None:
        raise RuntimeError("a routing bug")

    monkeypatch.setattr(Mux, "_drain", broken)
    # the drainer instrument never drains: the failure counted can only come from the agent's own call
    monkeypatch.setattr(mux_module, "DRAIN_INTERVAL", math.inf)
    with trio.fail_after(30):
        async with open_mux(LO, 0) as mux, AsyncExitStack() as stack:
            agents: list[Agent] = []
            await _open_pairs(stack, 2, mux, agents)
            assert mux.stats()["dropped"] == {"drain_failed": 1}
