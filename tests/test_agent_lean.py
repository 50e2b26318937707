"""A signalling call's turn (SessionTask.release) does only the work its change needs: counted, never timed.

With thousands of agents per process (bench/scale.py) each call of the turn is paid three times per agent
(parameters, a candidate, end-of-candidates). A call that makes nothing due and changes nothing the agent's
supervisor must see (end-of-candidates after the checks went out) takes no pump; one that changes the agent's
state (the parameters: CHECKING) pumps for the supervisor without asking the generation for timers and
packets it cannot have. These tests count those calls on real loopback sockets and check that the skipped
work was not needed: the supervisor still times the check list out (RFC 8445 8.1.2, failed_timeout), and a
timer made earlier by the call still moves the session task's. A task waiting in connect() keeps only
connect's own frame (no RouteState or Notifier frame, no Notifier made for the wait).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from test_agent_signal_turn import candidates, queued, raw_socket

from iceagent import Agent, Candidate, IceConfig, IceState, open_agent
from iceagent.agent._notify import Notifier
from iceagent.agent._runner import SessionRunner
from iceagent.ice.generation import IceGeneration
from iceagent.stun.message import MessageClass

LO = ["127.0.0.1"]


@asynccontextmanager
async def two(config: IceConfig) -> AsyncIterator[tuple[Agent, Agent]]:
    async with open_agent(controlling=True, host_addresses=LO, config=config) as a, open_agent(
        controlling=False, host_addresses=LO, config=config
    ) as b:
        yield a, b


@asynccontextmanager
async def gathered(config: IceConfig) -> AsyncIterator[tuple[Agent, Agent, list[Candidate], list[Candidate]]]:
    """`two(config)` with both agents' candidates gathered and every task blocked, within 10 s."""
    with trio.fail_after(10):
        async with two(config) as (a, b):
            cand_a, cand_b = await candidates(a), await candidates(b)
            await trio.testing.wait_all_tasks_blocked()
            yield a, b, cand_a, cand_b


def counting(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> list[object]:
    """Record each call of `cls.name` (its first argument) from now on."""
    calls: list[object] = []
    original = getattr(cls, name)

    def counted(self: object, *args: object, **kwargs: object) -> object:
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, counted)
    return calls


async def test_end_of_candidates_with_nothing_due_takes_no_pump(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the parameters and the candidate (a's check is on the wire) end-of-candidates makes nothing
    due and changes no state: that call pumps no more (before: a pump that found nothing to do), and it
    leaves the session task's timer where it was; the agents then connect and complete as usual."""
    async with gathered(IceConfig(global_pacing=False)) as (a, b, cand_a, cand_b):
        a.set_remote_parameters(b.local_parameters)
        for c in cand_b:
            a.add_remote_candidate(c)
        runner = a._current
        assert runner is not None and runner._sleep is not None
        deadline = runner._sleep.deadline
        assert deadline < math.inf  # the check's retransmission
        pumps = counting(monkeypatch, SessionRunner, "pump")
        a.add_remote_candidate(None)
        assert pumps == []
        assert runner._sleep.deadline == deadline
        monkeypatch.undo()
        b.set_remote_parameters(a.local_parameters)
        for c in cand_a:
            b.add_remote_candidate(c)
        b.add_remote_candidate(None)
        await a.connect()
        await b.connect()
        await a.state.wait_value(IceState.COMPLETED)
        await b.state.wait_value(IceState.COMPLETED)


async def test_parameters_pump_for_the_supervisor_without_asking_the_generation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parameters without candidates make nothing due in the generation but move the agent to CHECKING:
    that call pumps once, for the supervisor, and asks the generation for no timer work and no packets
    (before: handle_timer and datagrams_to_send, which found none). The supervisor saw the change: the
    session task's timer is now its failed_timeout (RFC 8445 8.1.2)."""
    config = IceConfig(global_pacing=False, failed_timeout=7.0)
    with trio.fail_after(10):
        async with two(config) as (a, b):
            await candidates(a)
            await trio.testing.wait_all_tasks_blocked()
            runner = a._current
            assert runner is not None and runner._sleep is not None
            pumps = counting(monkeypatch, SessionRunner, "pump")
            timers = counting(monkeypatch, IceGeneration, "handle_timer")
            sends = counting(monkeypatch, IceGeneration, "datagrams_to_send")
            before = trio.current_time()
            a.set_remote_parameters(b.local_parameters)
            assert a.state.value is IceState.CHECKING
            assert (len(pumps), timers, sends) == (1, [], [])
            assert before + 7.0 <= runner._sleep.deadline <= trio.current_time() + 7.0


async def test_parameters_alone_still_fail_after_failed_timeout() -> None:
    """No candidate from the peer, only its parameters: the call sends nothing and asks the generation for
    nothing, and still the agent FAILs once failed_timeout has passed (the supervisor's deadline, armed by the
    call's pump, wakes the session task; RFC 8445 8.1.2)."""
    config = IceConfig(global_pacing=False, failed_timeout=0.3)
    with trio.fail_after(10):
        async with two(config) as (a, b):
            await candidates(a)
            await trio.testing.wait_all_tasks_blocked()
            a.set_remote_parameters(b.local_parameters)
            assert a.state.value is IceState.CHECKING
            await a.state.wait_value(IceState.FAILED)


async def test_a_candidate_that_makes_a_check_due_still_reads_and_pumps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The skip is only for calls with nothing due: a candidate that forms a pair (its check due at once) is
    checked within the call, after the peer's check that came first is answered (RFC 8445 7.3.1.4)."""
    async with gathered(IceConfig(global_pacing=False)) as (a, b, cand_a, cand_b):
        b.set_remote_parameters(a.local_parameters)
        for c in cand_a:
            b.add_remote_candidate(c)  # b's check is now on a's socket
        a.set_remote_parameters(b.local_parameters)  # nothing due yet: b's check stays queued
        pumps = counting(monkeypatch, SessionRunner, "pump")
        for c in cand_b:
            a.add_remote_candidate(c)
        assert pumps  # (the answer's pump)
        msgs = queued(raw_socket(b))
        assert [m.message_class for m in msgs] == [MessageClass.SUCCESS, MessageClass.REQUEST]


def peer_candidate(sock: trio.socket.SocketType, priority: int) -> Candidate:
    """A remote host candidate at `sock`'s address (a socket the test reads in place of a peer)."""
    host, port = sock.getsockname()
    return Candidate(foundation=str(priority), component=1, transport="udp", priority=priority, address=host,
                     port=port, type="host")


async def test_a_candidate_whose_check_waits_for_ta_moves_the_timer_earlier(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second candidate after the first check went out forms a pair whose check waits for Ta (RFC 8445
    6.1.4.2, 14.2): nothing is due now and no state changes, so the call takes no pump, but the session task's
    timer moves from the first check's retransmission to that paced slot, and the check leaves there (the
    peers are two sockets of the test's that answer nothing)."""
    config = IceConfig(global_pacing=False, ta=1.0, rto=10.0)
    with trio.fail_after(10):
        async with two(config) as (a, b):
            await candidates(a)
            await trio.testing.wait_all_tasks_blocked()
            first = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            second = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with first, second:
                await first.bind(("127.0.0.1", 0))
                await second.bind(("127.0.0.1", 0))
                a.set_remote_parameters(b.local_parameters)
                a.add_remote_candidate(peer_candidate(first, 2000))  # checked at once; retransmitted in 10 s
                runner = a._current
                assert runner is not None and runner._sleep is not None
                retransmit_at = runner._sleep.deadline
                pumps = counting(monkeypatch, SessionRunner, "pump")
                a.add_remote_candidate(peer_candidate(second, 1000))
                assert pumps == []
                slot = runner._sleep.deadline
                assert slot < retransmit_at and slot == runner.gen.get_timer()
                data, _ = await second.recvfrom(2048)  # the paced check, sent when the task's timer fired
                assert data[:2] == b"\x00\x01"


def awaiting(coro: Any) -> list[str]:
    """The qualified names of the coroutines and generators a task's coroutine awaits, outermost first."""
    names = []
    while coro is not None:
        names.append(coro.__qualname__)
        coro = getattr(coro, "cr_await", None) if hasattr(coro, "cr_await") else getattr(coro, "gi_yieldfrom", None)
    return names


async def test_a_task_waiting_in_connect_keeps_only_connects_frame() -> None:
    """A task parked in connect() (one per agent while thousands connect, bench/scale.py) keeps connect's own
    coroutine and Trio's wait, no frame of RouteState or Notifier, and no Notifier is made for it (the
    RouteState is its own): three objects fewer per waiting agent for the collector. It still wakes when
    a pair becomes valid and returns the stream."""
    async with gathered(IceConfig(global_pacing=False)) as (a, b, cand_a, cand_b):
        streams = []

        async def connect() -> None:
            streams.append(await a.connect())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(connect)
            await trio.testing.wait_all_tasks_blocked()
            (task,) = nursery.child_tasks
            chain = awaiting(task.coro)
            assert chain[1] == "Agent.connect"
            assert not [n for n in chain if n.startswith(("RouteState.", "Notifier."))], chain
            assert isinstance(a._routes, Notifier)
            a.set_remote_parameters(b.local_parameters)
            for c in cand_b:
                a.add_remote_candidate(c)
            b.set_remote_parameters(a.local_parameters)
            for c in cand_a:
                b.add_remote_candidate(c)
        assert streams and a.state.value in (IceState.CONNECTED, IceState.COMPLETED)


async def test_a_late_candidate_with_nothing_due_keeps_the_earlier_consent_timer() -> None:
    """Once COMPLETED the session task's timer is the supervisor's (consent, RFC 7675 5.1), earlier than the
    generation's. A trickled candidate after that makes no check due (RFC 8445 8.1.2) and takes no pump: the
    task's timer must not move later to the generation's, or consent would lapse."""
    config = IceConfig(global_pacing=False)
    with trio.fail_after(10):
        async with two(config) as (a, b):
            ca, cb = await candidates(a), await candidates(b)
            a.set_remote_parameters(b.local_parameters)
            b.set_remote_parameters(a.local_parameters)
            for c in cb:
                a.add_remote_candidate(c)
            for c in ca:
                b.add_remote_candidate(c)
            await a.state.wait_value(IceState.COMPLETED)
            await b.state.wait_value(IceState.COMPLETED)
            await trio.testing.wait_all_tasks_blocked()
            runner: Any = a._current
            before = runner._sleep.deadline
            assert before < math.inf
            a.add_remote_candidate(None)
            a.add_remote_candidate(Candidate(foundation="9", component=1, transport="udp", priority=1,
                                             address="127.0.0.1", port=9, type="host"))
            assert runner._sleep.deadline <= before
