"""The session task's timer wake-ups (agent/_session_task.py `_drive`): a scope's deadline ends its wait on the
socket by Cancelled, and the next scope starts with the deadline of the pump before it (no deadline move for
it); an error of the wait on its own socket still ends only that socket's service. Real loopback sockets
under the real clock (`trio.fail_after`), as the session task waits on an OS socket only there."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import trio
import trio.testing

from iceagent import Agent, Candidate, IceConfig, IceState, open_agent

LO = ["127.0.0.1"]
CONFIG = IceConfig(global_pacing=False)


async def candidates(agent: Agent) -> list[Candidate]:
    return [Candidate.from_sdp(c.to_sdp()) async for c in agent.gather()]


def hand_over(dst: Agent, src: Agent, cands: list[Candidate]) -> None:
    dst.set_remote_parameters(src.local_parameters)
    for c in cands:
        dst.add_remote_candidate(c)
    dst.add_remote_candidate(None)


def count_drive_moves(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every deadline set by the session task's loop itself (`_drive`), from now on."""
    moves: list[float] = []
    prop: Any = trio.CancelScope.deadline

    def setter(scope: trio.CancelScope, value: float) -> None:
        if sys._getframe(1).f_code.co_name == "_drive":
            moves.append(value)
        prop.fset(scope, value)

    monkeypatch.setattr(trio.CancelScope, "deadline", property(prop.fget, setter))
    return moves


async def test_the_nomination_timer_wakes_the_session_task_without_a_deadline_move(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between both `connect()` returning and COMPLETED the controlling agent's nomination waits for Ta (RFC
    8445 8.1.1, 14.2) and leaves from its timer's wake-up: its session task then opens its next scope with its
    deadline, and moves none itself (the answer's pump moves it, from the receive path)."""
    with trio.fail_after(10):
        async with (
            open_agent(controlling=True, host_addresses=LO, config=CONFIG) as a,
            open_agent(controlling=False, host_addresses=LO, config=CONFIG) as b,
        ):
            cand_a, cand_b = await candidates(a), await candidates(b)
            hand_over(a, b, cand_b)
            hand_over(b, a, cand_a)
            await a.connect()
            await b.connect()
            assert a.state.value is not IceState.COMPLETED  # the nomination waits for Ta (50 ms)
            moves = count_drive_moves(monkeypatch)
            await a.state.wait_value(IceState.COMPLETED)
            await b.state.wait_value(IceState.COMPLETED)
            assert moves == []


async def test_a_closed_socket_ends_the_session_tasks_wait_and_its_service_only() -> None:
    """`notify_closing` on the socket the session task waits on ends that wait with ClosedResourceError: the
    task stops serving the socket and goes on (the agent stays open, no error escapes)."""
    with trio.fail_after(10):
        async with open_agent(controlling=True, host_addresses=LO, config=CONFIG) as a:
            await candidates(a)
            await trio.testing.wait_all_tasks_blocked()
            runner: Any = a._current
            assert runner._polling and runner._served is not None
            trio.lowlevel.notify_closing(runner._served._raw)
            await trio.testing.wait_all_tasks_blocked()
            assert runner._served is None and not runner._polling and not runner.closed
            assert a.state.value is IceState.NEW


async def test_connect_on_a_connected_agent_takes_no_scheduling_round() -> None:
    """`connect()` on an agent connected already returns without letting other tasks run (a task awaiting its
    agents in turn takes no step more for one that connected meanwhile), and is still a cancel point."""
    with trio.fail_after(10):
        async with (
            open_agent(controlling=True, host_addresses=LO, config=CONFIG) as a,
            open_agent(controlling=False, host_addresses=LO, config=CONFIG) as b,
        ):
            cand_a, cand_b = await candidates(a), await candidates(b)
            hand_over(a, b, cand_b)
            hand_over(b, a, cand_a)
            stream = await a.connect()
            await b.connect()
            ran: list[bool] = []

            async def other() -> None:
                ran.append(True)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(other)  # runnable from here on
                assert await a.connect() is stream
                assert ran == []
                with trio.CancelScope() as scope:
                    scope.cancel()
                    await a.connect()
                    ran.append(False)  # (not reached: connect() raised Cancelled)
                assert scope.cancelled_caught
