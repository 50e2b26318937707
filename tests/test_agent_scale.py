"""The work one agent costs its Trio run (issue 14 item 5, issue 15 item 3: thousands of agents per process).

Counted, never timed: cancel scopes per wake-up of the session task, and task steps per connect. With
thousands of agents every extra step and every Cancelled raised lengthens the scheduling round that all of
them share, and a round longer than the checks' RTO makes every check retransmit (bench/mux.py).
"""

from __future__ import annotations

import collections

import trio
import trio.testing
from agent_helpers import signal

from iceagent import IceConfig, IceState, open_agent

LO = ["127.0.0.1"]
CONFIG = IceConfig(global_pacing=False)


class TaskSteps(trio.abc.Instrument):
    """Steps taken by each kind of agent task (its name up to the first dash), while `on`."""

    def __init__(self) -> None:
        self.on = False
        self.steps: collections.Counter[str] = collections.Counter()
        #: (task name, Trio time) of each session-task step: the distinct moments it woke
        self.session_wakes: set[tuple[str, float]] = set()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.on:
            kind = task.name.split("-", 1)[0]
            self.steps[kind] += 1
            if kind == "session":
                self.session_wakes.add((task.name, trio.current_time()))


async def test_session_task_keeps_one_cancel_scope_across_wake_ups() -> None:
    """Waking the session task of a connected agent (what every input and state change does) reuses its
    cancel scope: no scope made and no Cancelled raised per wake-up, only per timer that fires."""
    with trio.fail_after(10):
        async with open_agent(controlling=True, host_addresses=LO, config=CONFIG) as a, open_agent(
            controlling=False, host_addresses=LO, config=CONFIG
        ) as b:
            await signal(a, b)
            await signal(b, a)
            await a.state.wait_value(IceState.COMPLETED)
            await b.state.wait_value(IceState.COMPLETED)
            await trio.testing.wait_all_tasks_blocked()
            runner = a._current
            assert runner is not None
            scope = runner._sleep
            assert scope is not None
            for _ in range(20):
                runner.wake()
                await trio.testing.wait_all_tasks_blocked()
                assert runner._sleep is scope
            assert not scope.cancel_called


async def test_connect_takes_two_session_steps_per_agent_after_signaling() -> None:
    """From the hand-over of parameters and candidates until both agents are COMPLETED, each session task
    runs twice: the hand-over's wake-up (the first check) and its next paced check one Ta later (the
    controlled side's triggered check, the controlling side's nomination: RFC 8445 14.2). Answers, valid
    pairs, nomination and the states happen in the receive task that brought the input; none is put off
    to another round of the session task."""
    steps = TaskSteps()
    with trio.fail_after(10):
        async with open_agent(controlling=True, host_addresses=LO, config=CONFIG) as a, open_agent(
            controlling=False, host_addresses=LO, config=CONFIG
        ) as b:
            async for _ in a.gather():
                pass
            async for _ in b.gather():
                pass
            await trio.testing.wait_all_tasks_blocked()
            trio.lowlevel.add_instrument(steps)
            try:
                steps.on = True
                await signal(a, b)
                await signal(b, a)
                await a.state.wait_value(IceState.COMPLETED)
                await b.state.wait_value(IceState.COMPLETED)
                await trio.testing.wait_all_tasks_blocked()
                steps.on = False
            finally:
                trio.lowlevel.remove_instrument(steps)
    assert steps.steps["session"] <= 4, steps.steps
    assert steps.steps["receive"] <= 5, steps.steps  # check; response + check; response + nomination; response


async def test_an_idle_agent_wakes_for_consent_not_on_a_tick(autojump_clock: object) -> None:
    """A connected, idle pair on the vnet for 60 s: each session task wakes when it sends a consent check
    (RFC 7675 5.1: every 4-6 s) and when it sends the answer to the peer's (the vnet has no synchronous
    send), not once a second to look at the DISCONNECTED timer (thousands of idle agents made that tick
    most of a process's work) nor when the answered check's retransmission time comes; the pair stays
    COMPLETED."""
    from iceagent_vnet import vnet
    from nat_matrix_tools import connect_pair, open_pair

    scenario = vnet("none", "none", rtt=0.02, seed=4)
    steps = TaskSteps()
    async with open_pair(scenario) as (a, b):
        await connect_pair(a, b)
        await a.state.wait_value(IceState.COMPLETED)
        await b.state.wait_value(IceState.COMPLETED)
        await trio.sleep(1)
        trio.lowlevel.add_instrument(steps)
        try:
            steps.on = True
            await trio.sleep(60)
            steps.on = False
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert a.state.value is IceState.COMPLETED and b.state.value is IceState.COMPLETED
        sent = sum(p.consent_requests_sent for agent in (a, b) for p in agent._current.ice.pairs)
    assert 2 * 10 <= sent <= 2 * 16  # 60 s / (4-6 s) per agent
    assert len(steps.session_wakes) <= 2 * sent + 4, (len(steps.session_wakes), sent)  # 180 for 25 with a 1 s tick
