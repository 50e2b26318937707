"""Signalling does the session task's turn in the caller's task (SessionTask.hold/release).

Seen from outside, on real loopback sockets and a real mux: what the signalling calls make due (a check, an
answer to a check that came before them) is on the wire when the call returns, before any other task ran,
and a check that came first is answered before the agent's own first check (RFC 8445 7.3.1.4: the check it
triggers is then the agent's only one). No empty wake-up datagram is sent for signalling.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from iceagent import Agent, Candidate, IceConfig, IceState, open_agent
from iceagent.agent._session_task import SessionTask
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
