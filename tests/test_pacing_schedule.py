"""The pacing schedule (RFC 8445 14.2, 6.1.4.2) when the event loop lets checks out late.

Trio waits in epoll, whose timeout is whole milliseconds rounded up, so a check that waits for its Ta or
its pacer slot is let out up to about 1 ms late. These sans-IO tests drive `CheckScheduler` and
`GlobalPacer` with such late wake-ups and check the schedule: slots never closer than Ta (one agent) or
5 ms (the process), and no drift (the n-th check's slot is n x Ta after the first, not n x Ta plus the
lateness of every wake-up before it).
"""

from __future__ import annotations

from itertools import pairwise

import pytest

from iceagent.ice.pacing import GLOBAL_INTERVAL, TIMER_GRANULARITY, CheckScheduler, GlobalPacer

TA = 0.005
LATE = 0.0007  # a wake-up late by epoll's rounding, within TIMER_GRANULARITY
CHECKS = 20


class RecordingPacer(GlobalPacer):
    """A process-wide pacer that records every slot it hands out."""

    def __init__(self) -> None:
        super().__init__()
        self.slots: list[float] = []

    def reserve(self, now: float) -> float:
        at = super().reserve(now)
        self.slots.append(at)
        return at


def run_late(schedulers: list[CheckScheduler], checks: int, late: float) -> list[tuple[int, float]]:
    """Let out `checks` checks, each scheduler always wanting one, the loop waking `late` after the earliest
    deadline every time; returns (scheduler index, time let out) per check."""
    sent: list[tuple[int, float]] = []
    now = 0.0
    while len(sent) < checks:
        for i, s in enumerate(schedulers):
            if s.may_send(now, True):
                s.sent(now, TA)
                sent.append((i, now))
        now = min(s.deadline(True) for s in schedulers) + late
    return sent


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in pairwise(times)]


def test_ta_schedule_does_not_drift_with_late_wakeups() -> None:
    """One agent, no process-wide pacer: every wake-up 0.7 ms late, yet the n-th check is due n x Ta after
    the first (the old scheduler counted Ta from each real send: 20 checks drifted by 13 ms). Lateness the
    timer cannot explain (3 ms, a busy loop) or an idle spell does move the schedule: no credit for time a
    check did not wait."""
    s = CheckScheduler()
    sent = run_late([s], CHECKS, LATE)
    due = [t - LATE if k else t for k, (_, t) in enumerate(sent)]  # when each was due: its send minus the lateness
    assert due == pytest.approx([k * TA for k in range(CHECKS)])
    assert s.deadline(True) == pytest.approx(CHECKS * TA)
    assert min(gaps([t for _, t in sent])) >= TA - TIMER_GRANULARITY  # never much closer than Ta on the wire
    late = s.deadline(True) + 0.003
    assert s.may_send(late, True)
    s.sent(late, TA)
    assert s.deadline(True) == pytest.approx(late + TA)
    assert s.may_send(1.0, True)
    s.sent(1.0, TA)
    assert s.deadline(True) == pytest.approx(1.0 + TA)


def test_pacer_slots_stay_5ms_apart_without_drift() -> None:
    """The process-wide pacer, late wake-ups: one agent's slots are exactly 5 ms apart (the old scheduler
    reserved at each late wake-up, so every slot carried the lateness of the ones before); two agents'
    slots interleave, never closer than 5 ms, and do not drift either."""
    pacer = RecordingPacer()
    run_late([CheckScheduler(pacer)], CHECKS, LATE)
    assert pacer.slots == pytest.approx([k * GLOBAL_INTERVAL for k in range(CHECKS)])
    pacer = RecordingPacer()
    sent = run_late([CheckScheduler(pacer), CheckScheduler(pacer)], CHECKS, LATE)
    assert {i for i, _ in sent} == {0, 1}
    assert min(gaps(pacer.slots)) >= GLOBAL_INTERVAL - 1e-12
    assert pacer.slots == pytest.approx([k * GLOBAL_INTERVAL for k in range(len(pacer.slots))])


def test_a_slot_let_out_late_pushes_the_process_pacer() -> None:
    """A transaction's slot was at 0 but it left at 3 ms (GlobalPacer.sent, a busy loop): the next slot is
    not at 5 ms but at 7 ms (5 ms after it, less the 1 ms a timer may be late), so two new transactions
    of the process never leave much closer than 5 ms (RFC 8445 14.2)."""
    pacer = GlobalPacer()
    assert pacer.reserve(0.0) == 0.0
    pacer.sent(0.003)
    assert pacer.reserve(0.001) == pytest.approx(0.003 + GLOBAL_INTERVAL - TIMER_GRANULARITY)
