"""Signalling does the session task's turn in the caller's task (SessionTask.hold/release).

Seen from outside, on real loopback sockets and a real mux: what the signalling calls make due (a check, an
answer to a check that came before them) is on the wire when the call returns, before any other task ran,
and a check that came first is answered before the agent's own first check (RFC 8445 7.3.1.4: the check it
triggers is then the agent's only one). No empty wake-up datagram is sent for signalling.
"""

from __future__ import annotations

import contextvars
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from agent_helpers import break_controlling_receive, leaves, plugin_manager_with

from iceagent import Agent, Candidate, IceConfig, IceState, open_agent
from iceagent.agent._session_task import SessionTask
from iceagent.hookspecs import hookimpl
from iceagent.ice.pair import PairState
from iceagent.net.mux import open_mux
from iceagent.stun.message import Message, MessageClass

LO = ["127.0.0.1"]
CONFIG = IceConfig(global_pacing=False)


async def candidates(agent: Agent) -> list[Candidate]:
    return [Candidate.from_sdp(c.to_sdp()) async for c in agent.gather()]


def hand_over(dst: Agent, src: Agent, cands: list[Candidate]) -> None:
    """`src`'s parameters, candidates and end-of-candidates to `dst`, synchronously (no checkpoint)."""
    dst.set_remote_parameters(src.local_parameters)
    for c in cands:
        dst.add_remote_candidate(c)
    dst.add_remote_candidate(None)


def raw_socket(agent: Agent) -> socket.socket:
    runner = agent._current
    assert runner is not None and runner.bases
    raw: socket.socket = runner.bases[0]._raw  # type: ignore[attr-defined]
    return raw


def queued(sock: socket.socket) -> list[Message]:
    """Every STUN message queued on `sock` now, taken off it (the test reads it in place of its agent)."""
    out = []
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return out
        assert data, "no empty wake-up datagram is sent for signalling"
        out.append(Message.decode(data))


@asynccontextmanager
async def two(mux: Any = None) -> AsyncIterator[tuple[Agent, Agent]]:
    async with open_agent(controlling=True, host_addresses=LO, config=CONFIG) as a, open_agent(
        controlling=False, host_addresses=LO, config=CONFIG, mux=mux
    ) as b:
        yield a, b


def count_self_wakes(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    sent: list[object] = []
    send_self = SessionTask._send_self

    def counted(self: SessionTask) -> bool:
        sent.append(self)
        return send_self(self)

    monkeypatch.setattr(SessionTask, "_send_self", counted)
    return sent


async def test_the_first_check_leaves_in_the_signalling_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """After `add_remote_candidate` returns, with no checkpoint in between, the peer's socket holds the check
    (the session task took no step for it) and no wake-up datagram was sent; the agents then connect."""
    with trio.fail_after(10):
        async with two() as (a, b):
            cand_a, cand_b = await candidates(a), await candidates(b)
            await trio.testing.wait_all_tasks_blocked()
            sent = count_self_wakes(monkeypatch)
            peer = raw_socket(b)
            a.set_remote_parameters(b.local_parameters)
            assert queued_peek(peer) is None  # no candidate yet: nothing to check
            a.add_remote_candidate(cand_b[0])
            msg = queued_peek(peer)
            assert msg is not None and msg.message_class == MessageClass.REQUEST
            a.add_remote_candidate(None)
            hand_over(b, a, cand_a)
            assert sent == []
            await a.connect()
            await b.connect()
            await a.state.wait_value(IceState.COMPLETED)
            await b.state.wait_value(IceState.COMPLETED)


def queued_peek(sock: socket.socket) -> Message | None:
    """The first datagram queued on `sock`, left there; None if none is."""
    try:
        data = sock.recv(2048, socket.MSG_PEEK)
    except BlockingIOError:
        return None
    return Message.decode(data)


async def test_a_check_that_came_first_is_answered_before_the_agents_own_first_check() -> None:
    """b's check is queued on a's socket when a's last signalling call (its peer's parameters, after the
    candidates) makes a's check due: that call answers b's check first and then sends one check, the one it
    triggered (RFC 8445 7.3.1.4); a pump before reading the socket would send a's ordinary check first and
    then, the pair being In-Progress, queue a second one."""
    with trio.fail_after(10):
        async with two() as (a, b):
            cand_a, cand_b = await candidates(a), await candidates(b)
            await trio.testing.wait_all_tasks_blocked()
            for c in cand_b:  # (trickled before the parameters: no check can be sent yet)
                a.add_remote_candidate(c)
            a.add_remote_candidate(None)
            hand_over(b, a, cand_a)  # b's check is now on a's socket (b's signalling sent it)
            a.set_remote_parameters(b.local_parameters)
            msgs = queued(raw_socket(b))
            assert [m.message_class for m in msgs] == [MessageClass.SUCCESS, MessageClass.REQUEST]


async def test_a_signalling_call_with_nothing_to_send_leaves_the_socket_to_the_session_task() -> None:
    """a's parameters without candidates make nothing due: that call does not read a's socket (no read that
    would find nothing, in the common case), so b's check stays queued there, unanswered; the call that makes
    a's check due (a candidate) then reads it first and answers it before a's own first check."""
    with trio.fail_after(10):
        async with two() as (a, b):
            cand_a, cand_b = await candidates(a), await candidates(b)
            await trio.testing.wait_all_tasks_blocked()
            hand_over(b, a, cand_a)  # b's check is now on a's socket
            a.set_remote_parameters(b.local_parameters)
            msg = queued_peek(raw_socket(a))
            assert msg is not None and msg.message_class == MessageClass.REQUEST
            assert queued_peek(raw_socket(b)) is None
            for c in cand_b:
                a.add_remote_candidate(c)
            msgs = queued(raw_socket(b))
            assert [m.message_class for m in msgs] == [MessageClass.SUCCESS, MessageClass.REQUEST]


async def test_a_server_agent_on_a_mux_answers_in_its_signalling_call() -> None:
    """The same for an agent on a mux (its inbox): the client's check waiting on the mux socket is routed and
    answered, and the server's own check sent, within the server's signalling call."""
    with trio.fail_after(10):
        async with open_mux(LO, 0) as mux, two(mux) as (a, b):
            cand_a, cand_b = await candidates(a), await candidates(b)
            await trio.testing.wait_all_tasks_blocked()
            hand_over(a, b, cand_b)  # a's check is now on the mux's socket
            hand_over(b, a, cand_a)
            msgs = queued(raw_socket(a))
            assert [m.message_class for m in msgs] == [MessageClass.SUCCESS, MessageClass.REQUEST]


# ---- a bug in the session's receive path ----


async def test_a_bug_handling_a_check_that_came_first_ends_the_agent_not_the_signalling_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """b's check waits on a's socket when a's signalling makes a's checks due. A bug in a's handling of that
    check is the session's: it ends a's `async with` (DESIGN.md: "a bug ends only that agent's async with"),
    as when the session task reads the check; it is not raised into the application's signalling call (which
    may be another task's: a signalling handler), and it leaves no wake-up held."""
    raised: list[BaseException] = []
    held: list[bool] = []
    ended: list[BaseException] = []
    with trio.fail_after(10):
        async with open_agent(controlling=False, host_addresses=LO, config=CONFIG) as b:
            try:
                async with open_agent(controlling=True, host_addresses=LO, config=CONFIG) as a:
                    cand_a, cand_b = await candidates(a), await candidates(b)
                    await trio.testing.wait_all_tasks_blocked()
                    bug = break_controlling_receive(monkeypatch)
                    hand_over(b, a, cand_a)  # b's check is now on a's socket
                    try:
                        hand_over(a, b, cand_b)  # the application's signalling call
                    except ZeroDivisionError as exc:
                        raised.append(exc)
                        runner: Any = a._current
                        held.append(runner._holding)
                    await trio.sleep_forever()  # until the session task meets the bug and ends the agent
            except BaseException as exc:  # (which one: checked below)
                ended.append(exc)
    assert raised == [], f"the session's bug was raised into the signalling call (and _holding={held})"
    assert ended and leaves(ended[0]) == [bug]


# ---- observer hooks run in the agent's tasks, with the opener's contextvars ----

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


class Records:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []

    @hookimpl
    def iceagent_pair_state_changed(self, agent: Any, pair: Any, old: Any, new: PairState) -> None:
        self.calls.append(("pair", trio.lowlevel.current_task().name, request_id.get(None)))

    @hookimpl
    def iceagent_check(self, agent: Any, pair: Any, direction: str, kind: str, **_: Any) -> None:
        self.calls.append((f"check-{direction}-{kind}", trio.lowlevel.current_task().name, request_id.get(None)))


async def test_hooks_run_in_the_agents_tasks_when_another_task_signals() -> None:
    """docs/agent.md: observer hooks run in the agent's tasks, "so they see the contextvars of the code that
    opened the agent"; docs/guide-plugins.md: "inside the agent's tasks". The application's signalling handler
    (a task of its own, with its own contextvars) signals the agent: the pair state changes and checks that
    signalling causes are reported from the agent's tasks, with the opener's contextvar, not the handler's."""
    rec = Records()
    with trio.fail_after(10):
        async with open_agent(controlling=False, host_addresses=LO, config=CONFIG) as b:
            token = request_id.set("opener")
            try:
                async with open_agent(
                    controlling=True, host_addresses=LO, config=CONFIG, plugin_manager=plugin_manager_with(rec)
                ) as a:
                    cand_a, cand_b = await candidates(a), await candidates(b)
                    await trio.testing.wait_all_tasks_blocked()

                    async def signalling_handler() -> None:
                        request_id.set("handler")
                        hand_over(a, b, cand_b)

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(signalling_handler, name="signalling-handler")
                    hand_over(b, a, cand_a)
                    await a.connect()
            finally:
                request_id.reset(token)
    assert rec.calls
    wrong = [call for call in rec.calls if call[1] == "signalling-handler" or call[2] != "opener"]
    assert wrong == [], wrong
