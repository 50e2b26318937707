"""The session task's timer wake-ups (agent/_session_task.py `_drive`): a scope's deadline ends its wait on the
socket by Cancelled, and the next scope starts with the deadline of the pump before it (no deadline move for
it); an error of the wait on its own socket still ends only that socket's service. Real loopback sockets
under the real clock (`trio.fail_after`), as the session task waits on an OS socket only there."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from test_agent_signal_turn import candidates, hand_over

from iceagent import Agent, IceConfig, IceState, open_agent
from iceagent.agent import _route as agent_route

LO = ["127.0.0.1"]
CONFIG = IceConfig(global_pacing=False)


@asynccontextmanager
async def handed_over() -> AsyncIterator[tuple[Agent, Agent]]:
    """A controlling and a controlled agent on 127.0.0.1, each given the other's parameters and candidates."""
    async with (
        open_agent(controlling=True, host_addresses=LO, config=CONFIG) as a,
        open_agent(controlling=False, host_addresses=LO, config=CONFIG) as b,
    ):
        cand_a, cand_b = await candidates(a), await candidates(b)
        hand_over(a, b, cand_b)
        hand_over(b, a, cand_a)
        yield a, b


async def tapped(a: Agent, b: Agent) -> tuple[Any, Any]:
    """Both connected, `a` COMPLETED, and b's data delivered by a's session task, which opens a Tap on its
    socket: (a's runner, the Tap), the task polling its socket and the stream's reader asking for it."""
    await a.connect()
    sb = await b.connect()
    await a.state.wait_value(IceState.COMPLETED)
    runner: Any = a._current
    await sb.send(b"data")
    await trio.testing.wait_all_tasks_blocked()
    tap = runner._served.tap
    assert tap is not None and tap.polling and runner._polling
    assert not tap.reader_may_poll()  # a reader now: the task polls, so it asks for the socket (want)
    return runner, tap


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
        async with handed_over() as (a, b):
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


async def test_connect_on_a_connected_agent_takes_no_scheduling_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """`connect()` on an agent connected already returns without letting other tasks run (a task awaiting its
    agents in turn takes no step more for one that connected meanwhile), and is still a cancel point."""
    monkeypatch.setattr(agent_route, "_connected_calls", 0)  # (a round once per CONNECTED_SCHEDULE_EVERY calls)
    with trio.fail_after(10):
        async with handed_over() as (a, b):
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


# Review of the restructured wait (each failed on 2d0a37a): a wake-up from another task clears `_polling`
# while the session task still waits, so the wait itself is what tells whether its socket's error is handled.


async def test_wake_then_socket_closed_under_the_waiting_session_task() -> None:
    """A wake-up from another task (`_alert`: a gatherer's candidate, the agent's state) and a close of the
    socket the session task waits on, before the task runs again: the task stops serving that socket, as
    with the close alone; no ClosedResourceError escapes the agent."""
    with trio.fail_after(10):
        async with open_agent(controlling=True, host_addresses=LO, config=CONFIG) as a:
            await candidates(a)
            await trio.testing.wait_all_tasks_blocked()
            runner: Any = a._current
            assert runner._polling and runner._served is not None
            runner.wake()  # what emit()/look()/_gathering_complete do from other tasks
            trio.lowlevel.notify_closing(runner._served._raw)
            await trio.testing.wait_all_tasks_blocked()
            assert runner._served is None and not runner._polling and not runner.closed


async def test_close_then_wake_under_the_waiting_session_task() -> None:
    """The same, the other order: the socket's close first (the task is rescheduled with ClosedResourceError),
    then a wake-up in the same tick."""
    with trio.fail_after(10):
        async with open_agent(controlling=True, host_addresses=LO, config=CONFIG) as a:
            await candidates(a)
            await trio.testing.wait_all_tasks_blocked()
            runner: Any = a._current
            trio.lowlevel.notify_closing(runner._served._raw)
            runner.wake()
            await trio.testing.wait_all_tasks_blocked()
            assert runner._served is None and not runner._polling and not runner.closed


async def test_a_wake_by_cancel_leaves_no_tap_polling_behind() -> None:
    """A session task that wakes by a cancel (`_self_wake` False: a wildcard or link-local socket, or once a
    wake-up datagram was lost) and serves a Tap: after the wake-up ends its wait, the Tap must not say the
    task polls (`tap.polling`), or the stream's reader is refused the socket while no task waits on it."""
    with trio.fail_after(10):
        async with handed_over() as (a, b):
            runner, tap = await tapped(a, b)
            assert tap.want
            runner._self_wake = False
            runner.wake()  # another task's wake-up: by a cancel
            await trio.testing.wait_all_tasks_blocked()
            # the task handed the socket over (want, and its last batch delivered): it parks in task_turn
            assert tap.park is not None and not runner._polling
            assert not tap.polling
            assert tap.reader_may_poll()  # the reader may wait on the socket now


async def test_a_loop_on_connect_lets_other_tasks_run() -> None:
    """A task whose loop's only await is `connect()` on a connected agent (waiting for a flag another task
    sets): under Trio's checkpoint convention the other task runs. Bounded here so the new code fails instead
    of hanging (under it not even trio.fail_after fires: the run loop never gets control)."""
    with trio.fail_after(10):
        async with handed_over() as (a, b):
            await a.connect()
            await b.connect()
            done = False

            async def other() -> None:
                nonlocal done
                done = True

            async with trio.open_nursery() as nursery:
                nursery.start_soon(other)
                for _ in range(100_000):
                    if done:
                        break
                    await a.connect()
                assert done


async def test_a_wake_as_the_timer_fires_leaves_no_tap_polling_behind() -> None:
    """Default set-up (wake-ups by datagram): a wake-up from another task that comes when the session task's
    timer is due already sends nothing (`_alert`: the timer wakes it) but clears `_polling`; the timer's
    Cancelled must still reset the Tap's `polling`."""
    with trio.fail_after(10):
        async with handed_over() as (a, b):
            runner, tap = await tapped(a, b)
            assert runner._self_wake
            runner._sleep.deadline = trio.current_time()  # its timer is due (a retransmission, consent, Ta)
            runner.wake()  # and a wake-up in the same tick
            await trio.testing.wait_all_tasks_blocked()
            assert tap.park is not None and not runner._polling
            assert not tap.polling
            assert tap.reader_may_poll()
