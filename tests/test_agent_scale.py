"""The work one agent costs its Trio run (issue 14 item 5, issue 15 item 3: thousands of agents per process).

Counted, never timed: cancel scopes per wake-up of the session task, and task steps per connect. With
thousands of agents every extra step and every Cancelled raised lengthens the scheduling round that all of
them share, and a round longer than the checks' RTO makes every check retransmit (bench/mux.py).
"""

from __future__ import annotations

import collections
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from agent_helpers import signal

from iceagent import Agent, IceConfig, IceState, open_agent
from iceagent.agent._runner import SessionRunner

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


@asynccontextmanager
async def completed(config: IceConfig = CONFIG) -> AsyncIterator[tuple[Agent, Agent]]:
    """Two agents on loopback, signalled to each other, both COMPLETED, all their tasks blocked."""
    async with open_agent(controlling=True, host_addresses=LO, config=config) as a, open_agent(
        controlling=False, host_addresses=LO, config=config
    ) as b:
        await signal(a, b)
        await signal(b, a)
        await a.state.wait_value(IceState.COMPLETED)
        await b.state.wait_value(IceState.COMPLETED)
        await trio.testing.wait_all_tasks_blocked()
        yield a, b


@asynccontextmanager
async def gathered() -> AsyncIterator[tuple[Agent, Agent]]:
    """Two agents on loopback that have gathered, not signalled yet, all their tasks blocked."""
    async with open_agent(controlling=True, host_addresses=LO, config=CONFIG) as a, open_agent(
        controlling=False, host_addresses=LO, config=CONFIG
    ) as b:
        async for _ in a.gather():
            pass
        async for _ in b.gather():
            pass
        await trio.testing.wait_all_tasks_blocked()
        yield a, b


async def connect_both(a: Agent, b: Agent) -> None:
    """Signal `a` and `b` to each other and wait until both are COMPLETED and all tasks are blocked."""
    await signal(a, b)
    await signal(b, a)
    await a.state.wait_value(IceState.COMPLETED)
    await b.state.wait_value(IceState.COMPLETED)
    await trio.testing.wait_all_tasks_blocked()


def count_pumps(monkeypatch: pytest.MonkeyPatch, runner: SessionRunner) -> tuple[list[float], trio.Event]:
    """Record the time of each pump of `runner`; the Event is set by the first."""
    pumps: list[float] = []
    first = trio.Event()
    pump = SessionRunner.pump

    def counted(self: SessionRunner, now: float, due: bool = True) -> float:
        if self is runner:
            pumps.append(now)
            first.set()
        return pump(self, now, due)

    monkeypatch.setattr(SessionRunner, "pump", counted)
    return pumps, first


async def test_session_task_keeps_one_cancel_scope_across_input_and_wake_ups(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session task of a connected agent waits on its socket itself: a consent check arriving there is
    answered in its step under the same cancel scope (no scope made, no Cancelled raised per input, only per
    timer that fires); wake-ups from other tasks end that wait by an empty datagram to the socket, not a
    cancel: 20 in a row make one pump, under the same scope."""
    with trio.fail_after(10):
        async with completed() as (a, b):
            runner = b._current
            assert runner is not None
            scope = runner._sleep
            assert scope is not None and runner._polling
            pair = b.selected_pair
            sender = a._current
            assert pair is not None and sender is not None and a.selected_pair is not None
            received = pair.requests_received
            for _ in range(5):  # consent checks from the peer (RFC 7675), answered by b's session task
                sender.send_consent(a.selected_pair, trio.current_time())
                await trio.testing.wait_all_tasks_blocked()
                assert runner._sleep is scope and runner._polling
            assert pair.requests_received == received + 5
            pumps, _ = count_pumps(monkeypatch, runner)
            for _ in range(20):
                runner.wake()
            await trio.testing.wait_all_tasks_blocked()
            assert len(pumps) == 1
            assert runner._sleep is scope and not scope.cancel_called and runner._polling and runner._self_wake
            assert b.stats()["dropped_datagrams"] == 0


async def test_a_lost_wake_up_datagram_is_made_up_for_by_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the datagram a wake-up sends the session task's socket be lost (a firewall that drops it), the
    wake-up still happens, SELF_WAKE_TIMEOUT later, and that runner wakes by cancelling from then on."""
    from iceagent.net.os import OSUdpSocket

    with trio.fail_after(10):
        async with completed() as (_a, b):
            runner = b._current
            assert runner is not None and runner._polling
            pumps, pumped = count_pumps(monkeypatch, runner)
            sendto = OSUdpSocket.sync_sendto.fget  # type: ignore[attr-defined]

            def lossy(self: OSUdpSocket) -> object:  # the wake-up datagram "sent" and lost, the rest as usual
                return lambda data, to: None if not data else sendto(self)(data, to)

            monkeypatch.setattr(OSUdpSocket, "sync_sendto", property(lossy))
            runner.wake()
            await trio.testing.wait_all_tasks_blocked()
            assert not pumps and runner._woke_self  # nothing came
            await pumped.wait()  # SELF_WAKE_TIMEOUT later
            assert not runner._self_wake
            await trio.testing.wait_all_tasks_blocked()
            before = len(pumps)
            runner.wake()  # by a cancel now
            await trio.testing.wait_all_tasks_blocked()
            assert len(pumps) == before + 1 and runner._polling


async def test_connect_takes_few_session_steps_per_agent_after_signaling() -> None:
    """From the hand-over of parameters and candidates until both agents are COMPLETED, each agent's only
    task, the session task, runs for the hand-over's wake-up (the first check), its next paced check one
    Ta later (the controlled side's triggered check, the controlling side's nomination: RFC 8445 14.2),
    and each batch its socket brings (check; response + check; response + nomination; response).
    Answers, valid pairs, nomination and the states happen in the step that read the input; none is put
    off to another round. (Before, a receive task per socket took the input's steps: 4 + 5 in all.)"""
    steps = TaskSteps()
    with trio.fail_after(10):
        async with gathered() as (a, b):
            trio.lowlevel.add_instrument(steps)
            try:
                steps.on = True
                await connect_both(a, b)
                steps.on = False
            finally:
                trio.lowlevel.remove_instrument(steps)
    assert steps.steps["receive"] == 0, steps.steps  # the session task serves its socket
    assert steps.steps["session"] <= 8, steps.steps  # 7 here; before, 4 session and 5 receive steps


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


#: The idle window whose task steps are counted, in seconds of the real clock.
IDLE_WINDOW = 0.3
#: Idle means no timer of either session task due within this many seconds: far past the window, so that
#: however late a loaded machine runs the test after the window, no timer falls inside it.
IDLE_HORIZON = 10.0
#: The timers left over from connecting that `until_idle` waits out, at most (each a real-clock wait).
IDLE_ROUNDS = 10


async def until_idle(*agents: Agent) -> None:
    """Wait until every session task of `agents` waits on its socket with no timer due within IDLE_HORIZON,
    letting timers left over from connecting fire first: a check's retransmission or a triggered check
    paced by Ta that is still queued after COMPLETED (RFC 8445 7.3.1.4: the answer to the check it
    cancelled made the pair Succeeded meanwhile; its Ta wake-up then sends nothing). Fails when they stay
    busy for IDLE_ROUNDS timers: a tick would."""
    runners = [agent._current for agent in agents]
    soonest = math.inf
    for _ in range(IDLE_ROUNDS):
        await trio.testing.wait_all_tasks_blocked()
        soonest = min(r._sleep.deadline if r is not None and r._polling and r._sleep else -math.inf for r in runners)
        if soonest > trio.current_time() + IDLE_HORIZON:
            return
        await trio.sleep_until(max(soonest, trio.current_time()) + 0.001)  # the timer's own time, not a guess
    raise AssertionError(f"still a timer within {IDLE_HORIZON} s after {IDLE_ROUNDS} rounds (next at {soonest})")


async def test_an_idle_agent_on_real_sockets_wakes_no_task() -> None:
    """Two connected agents on loopback, idle between consent checks (RFC 7675 5.1, here every 600 s):
    over the interval no task of theirs takes a step. The session task waits on its socket and on its
    next timer in one wait, with no tick and no second task to wake. The interval starts once no timer
    left over from connecting is due (`until_idle`); the supervisor's own timers are far off (silence
    after 60 s, keepalive 15 s)."""
    quiet = IceConfig(global_pacing=False, consent_interval=600.0, disconnected_timeout=60.0)
    steps = TaskSteps()
    with trio.fail_after(10 + IDLE_ROUNDS * 2):
        async with completed(quiet) as (a, b):
            await until_idle(a, b)
            trio.lowlevel.add_instrument(steps)
            try:
                steps.on = True
                await trio.sleep(IDLE_WINDOW)  # the interval whose steps are counted, not a synchronization
                steps.on = False
            finally:
                trio.lowlevel.remove_instrument(steps)
            assert a._current is not None and a._current._polling
    assert steps.steps["session"] == 0 and steps.steps["receive"] == 0, steps.steps


async def test_a_timer_and_a_wake_up_in_one_batch_keep_the_self_wake() -> None:
    """A timer that fires while another task wakes the runner in the same scheduling batch: the session
    task wakes by its deadline, the wake-up sends no datagram, and waking by a datagram stays on (it was
    switched off as if a datagram had been lost)."""
    with trio.fail_after(20):
        async with completed() as (_a, b):
            runner = b._current
            assert runner is not None
            tried = 0
            for _ in range(40):
                await trio.testing.wait_all_tasks_blocked()
                if not runner._polling:
                    continue
                assert runner._sleep is not None
                runner._sleep.deadline = trio.current_time()  # a timer due now (a retransmission, consent)
                await trio.lowlevel.checkpoint()  # the session task's Cancelled is scheduled, not run yet
                if runner._polling:
                    runner.wake()
                    tried += 1
                await trio.testing.wait_all_tasks_blocked()
                assert runner._self_wake and not runner._woke_self
            assert tried > 0


async def test_a_batch_with_stun_and_a_pending_wake_up_makes_one_pump(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check on the session task's own socket and a wake-up from another task, read in one batch: the
    pump that answers the check (in the step that read it) answers the wake-up too, so the step pumps once,
    not a second time for the Wakeup the first pump already served."""
    with trio.fail_after(10):
        async with completed() as (a, b):
            runner, sender, pair = b._current, a._current, a.selected_pair
            assert runner is not None and sender is not None and pair is not None and runner._polling
            received = b.selected_pair.requests_received if b.selected_pair is not None else -1
            pumps, _ = count_pumps(monkeypatch, runner)
            sender.send_consent(pair, trio.current_time())  # a check queued on b's socket (RFC 7675)
            runner.wake()  # and a wake-up, by the datagram queued behind it
            await trio.testing.wait_all_tasks_blocked()
            assert b.selected_pair is not None and b.selected_pair.requests_received == received + 1
            assert len(pumps) == 1, pumps
            assert runner._polling and not runner._wakeup.is_set


async def test_an_outbox_waiting_before_a_batch_with_stun_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """A packet queued for a transport that must be awaited (TCP, TURN, plugins) wakes the session task; when
    that step's batch holds STUN, its pump answers the wake-up, and the packet is still sent at once (not at
    the next timer)."""
    sent: list[bytes] = []

    class Awaited:  # a transport with no synchronous send
        local_address = ("127.0.0.1", 9)

        async def send(self, data: bytes, remote: object) -> None:
            sent.append(data)

    with trio.fail_after(10):
        async with completed() as (a, b):
            runner, sender, pair = b._current, a._current, a.selected_pair
            assert runner is not None and sender is not None and pair is not None and runner._polling
            pumps, _ = count_pumps(monkeypatch, runner)
            sender.send_consent(pair, trio.current_time())  # a check queued on b's socket
            runner.send_soon(Awaited(), b"queued", ("127.0.0.1", 9))  # type: ignore[arg-type]
            await trio.testing.wait_all_tasks_blocked()
            assert sent == [b"queued"] and not runner._outbox
            assert runner._polling and len(pumps) >= 1


async def test_a_state_change_in_a_pump_takes_no_second_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """While two agents connect, every pump of either runs one round (events, timers, sends, supervisor):
    a valid pair, the selected pair and the states it changes are looked at by that round's supervisor
    call, which comes after them, so the notification (Agent._notify) asks for no round more."""
    rounds: collections.Counter[str] = collections.Counter()
    pump, supervise = SessionRunner.pump, Agent.supervise

    def counted_pump(self: SessionRunner, now: float, due: bool = True) -> float:
        rounds["pumps"] += 1
        return pump(self, now, due)

    def counted_supervise(self: Agent, runner: SessionRunner, now: float) -> float:
        rounds["rounds"] += 1
        return supervise(self, runner, now)

    with trio.fail_after(10):
        async with gathered() as (a, b):
            monkeypatch.setattr(SessionRunner, "pump", counted_pump)
            monkeypatch.setattr(Agent, "supervise", counted_supervise)
            await connect_both(a, b)
    assert rounds["pumps"] >= 4 and rounds["rounds"] == rounds["pumps"], rounds


async def test_a_wake_up_during_a_pump_still_takes_another_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the notification's shortcut leaves alone: a change of the generation during a pump (`wake()`,
    e.g. gathering completed, a renomination) and a change made by the supervisor's own actions (a SetState
    or RouteLost calls Agent._notify) still make the pump look again, in the same call."""
    supervise = Agent.supervise
    calls: list[str] = []
    change: list[str] = []

    def changing(self: Agent, runner: SessionRunner, now: float) -> float:
        calls.append("supervise")
        if len(calls) == 1:
            if change == ["wake"]:
                runner.wake()  # as gen.gathering_done() or a renomination would
            else:
                self._notify()  # as a SetState or RouteLost the supervisor applies would
        return supervise(self, runner, now)

    with trio.fail_after(10):
        async with completed() as (a, _b):
            runner = a._current
            assert runner is not None
            monkeypatch.setattr(Agent, "supervise", changing)
            for kind in ("wake", "notify"):
                change[:], calls[:] = [kind], []
                runner.pump(trio.current_time())
                assert calls == ["supervise", "supervise"], kind
            monkeypatch.undo()


async def test_a_wake_up_whose_datagram_is_queued_sets_no_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wake-up datagram is on the socket when sendto returns (loopback): epoll will end the wait, so no
    fallback deadline is set (moving a Trio deadline leaves a heap entry until it passes); the task wakes by
    the datagram and pumps once. Were it not queued yet, the fallback stands in (as when it is lost)."""
    from iceagent.agent._session_task import SELF_WAKE_TIMEOUT

    with trio.fail_after(10):
        async with completed() as (_a, b):
            runner = b._current
            assert runner is not None and runner._polling and runner._sleep is not None
            scope = runner._sleep
            deadline = scope.deadline
            assert deadline > trio.current_time() + SELF_WAKE_TIMEOUT  # consent's (RFC 7675): a fallback would move it
            pumps, _ = count_pumps(monkeypatch, runner)
            runner.wake()
            assert runner._woke_self and scope.deadline == deadline
            await trio.testing.wait_all_tasks_blocked()
            assert len(pumps) == 1 and runner._polling and not runner._woke_self and runner._sleep is scope

            monkeypatch.setattr(type(runner._served), "queued", lambda self: False)  # not there yet
            now = trio.current_time()
            runner.wake()
            assert runner._woke_self and scope.deadline == runner._fallback_at >= now + SELF_WAKE_TIMEOUT
            await trio.testing.wait_all_tasks_blocked()
            assert len(pumps) == 2 and runner._polling and not runner._woke_self


async def test_a_wake_up_of_a_session_task_with_a_timer_reads_the_clock_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wake-up of a session task that waits under a deadline (consent's, RFC 7675) compares that deadline
    with the clock once: whether its timer fired already is read from the deadline (and `closed`), not from
    the scope's `cancel_called`, which reads the clock again."""
    with trio.fail_after(10):
        async with completed() as (_a, b):
            runner = b._current
            assert runner is not None and runner._polling and runner._sleep is not None
            assert runner._sleep.deadline != math.inf
            clock = type(trio.lowlevel.current_clock())
            reads: list[float] = []
            read = clock.current_time

            def counted(self: object) -> float:
                reads.append(0.0)
                return read(self)  # type: ignore[arg-type]

            monkeypatch.setattr(clock, "current_time", counted)
            runner.wake()
            monkeypatch.undo()
            assert len(reads) == 1 and runner._woke_self
            await trio.testing.wait_all_tasks_blocked()
            assert runner._polling and not runner._woke_self


async def test_a_wake_up_under_a_nearer_timer_sets_no_deadline_and_peeks_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the session task's own deadline comes before SELF_WAKE_TIMEOUT would, a wake-up sets no fallback
    deadline and so needs not look whether its datagram is queued (no MSG_PEEK syscall); the task wakes by
    the datagram as always."""
    from iceagent.agent._session_task import SELF_WAKE_TIMEOUT

    with trio.fail_after(10):
        async with completed() as (_a, b):
            runner = b._current
            assert runner is not None and runner._polling and runner._sleep is not None
            scope = runner._sleep
            near = scope.deadline = trio.current_time() + SELF_WAKE_TIMEOUT / 2  # as a retransmission's
            peeks: list[object] = []
            queued = type(runner._served).queued  # type: ignore[attr-defined]

            def counted(self: object) -> bool:
                peeks.append(self)
                return queued(self)  # type: ignore[no-any-return]

            monkeypatch.setattr(type(runner._served), "queued", counted)
            pumps, _ = count_pumps(monkeypatch, runner)
            runner.wake()
            assert runner._woke_self and scope.deadline == near and peeks == []
            await trio.testing.wait_all_tasks_blocked()
            assert len(pumps) == 1 and runner._polling and not runner._woke_self


async def test_os_udp_socket_queued_peeks_without_taking() -> None:
    """OSUdpSocket.queued(): whether a datagram waits on the socket, without taking it off (MSG_PEEK); an
    empty datagram counts; a closed socket has none."""
    import socket

    from iceagent.net.os import OSUdpSocket

    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.setblocking(False)
    raw.bind(("127.0.0.1", 0))
    sock = OSUdpSocket(raw)
    try:
        assert not sock.queued()
        raw.sendto(b"", sock.local_address)
        with trio.fail_after(5):
            await trio.lowlevel.wait_readable(raw)
        assert sock.queued() and sock.queued()
        assert sock.receive_now() == [(b"", sock.local_address)]
        assert not sock.queued()
    finally:
        sock.close()
    assert not sock.queued()
