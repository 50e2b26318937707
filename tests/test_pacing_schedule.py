"""The pacing schedule on the wire (RFC 8445 14.2, 6.1.4.2) when the event loop lets checks out late.

Trio waits in epoll, whose timeout is whole milliseconds rounded up, so a check that waits for its Ta or
its pacer slot leaves up to about 1 ms late, and a busy loop later still. These sans-IO tests drive
`CheckScheduler` and `GlobalPacer` with such late wake-ups and check when the checks really leave: one
agent's never closer than Ta, the process's never closer than 5 ms, whoever was late.
"""

from __future__ import annotations

from itertools import pairwise

import pytest

from iceagent.ice.pacing import GLOBAL_INTERVAL, CheckScheduler, GlobalPacer

TA = 0.005
CHECKS = 20


def run_late(schedulers: list[CheckScheduler], checks: int, lateness: list[float]) -> list[tuple[int, float]]:
    """Let out `checks` checks, each scheduler always wanting one, the loop waking after the earliest deadline
    by the next of `lateness` (cycled) every time; returns (scheduler index, time it left) per check."""
    sent: list[tuple[int, float]] = []
    now = 0.0
    k = 0
    while len(sent) < checks:
        for i, s in enumerate(schedulers):
            if s.may_send(now, True):
                s.sent(now, TA)
                sent.append((i, now))
        now = min(s.deadline(True) for s in schedulers) + lateness[k % len(lateness)]
        k += 1
    return sent


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in pairwise(times)]


@pytest.mark.parametrize("lateness", [[0.0], [0.0007], [0.0, 0.003, 0.0009, 0.0]])
def test_one_agents_checks_leave_at_least_ta_apart(lateness: list[float]) -> None:
    """One agent, no process-wide pacer: Ta counts from when a check really left, so late wake-ups make the
    gaps longer, never shorter."""
    sent = run_late([CheckScheduler()], CHECKS, lateness)
    assert min(gaps([t for _, t in sent])) >= TA - 1e-12


@pytest.mark.parametrize("lateness", [[0.0], [0.0007], [0.0, 0.003, 0.0009, 0.0], [0.003, 0.0]])
def test_the_process_transactions_leave_at_least_5ms_apart(lateness: list[float]) -> None:
    """Three agents share the process-wide pacer and the loop wakes them late by varying amounts: their new
    transactions leave at least 5 ms apart on the wire, every agent gets its turn."""
    pacer = GlobalPacer()
    schedulers = [CheckScheduler(pacer) for _ in range(3)]
    sent = run_late(schedulers, CHECKS, lateness)
    assert {i for i, _ in sent} == {0, 1, 2}
    assert min(gaps([t for _, t in sent])) >= GLOBAL_INTERVAL - 1e-12


def test_a_slot_let_out_late_pushes_the_slots_already_reserved() -> None:
    """A's slot was at 0 but it left at 3 ms (a busy loop); B had reserved the slot at 5 ms before that: B
    waits until 8 ms, 5 ms after A really left (on the old pacer B left at 5 ms, 2 ms after A)."""
    pacer = GlobalPacer()
    a, b = CheckScheduler(pacer), CheckScheduler(pacer)
    assert a.may_send(0.0, True)  # A's check, due at once
    assert not b.may_send(0.0, True)  # B takes the next slot
    assert b.deadline(True) == pytest.approx(GLOBAL_INTERVAL)
    a.sent(0.003, TA)  # A's check really left at 3 ms
    assert not b.may_send(GLOBAL_INTERVAL, True)
    assert b.deadline(True) == pytest.approx(0.003 + GLOBAL_INTERVAL)
    assert b.may_send(0.003 + GLOBAL_INTERVAL, True)
    b.sent(0.003 + GLOBAL_INTERVAL, TA)
    assert pacer.reserve(0.0081) == pytest.approx(0.003 + 2 * GLOBAL_INTERVAL)
