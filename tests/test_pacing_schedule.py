"""The pacing schedule on the wire (RFC 8445 14.2, 6.1.4.2) when the event loop lets checks out late.

Trio waits in epoll, whose timeout is whole milliseconds rounded up, so a check that waits for its Ta or
its pacer slot leaves up to about 1 ms late, and a busy loop later still. These sans-IO tests drive
`CheckScheduler` and `GlobalPacer` with such late wake-ups and check when the checks really leave: one
agent's never closer than Ta, the process's never closer than 5 ms, whoever was late.
"""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from iceagent.ice.pacing import GLOBAL_INTERVAL, MAX_RELEASED, CheckScheduler, GlobalPacer

TA = 0.005
CHECKS = 20


def run_late(
    schedulers: list[CheckScheduler], checks: int, lateness: list[float]
) -> tuple[list[tuple[int, float]], int]:
    """Let out `checks` checks, each scheduler always wanting one, the loop waking after the
    earliest deadline by the next of `lateness` (cycled) every time; returns (scheduler index, time it left)
    per check, and the wasted wake-ups (a scheduler whose deadline had passed that sent nothing)."""
    sent: list[tuple[int, float]] = []
    wasted = 0
    now = 0.0
    for k in range(100 * checks):  # bounded: a scheduler that never sends fails the test, not hangs it
        if len(sent) >= checks:
            break
        for i, s in enumerate(schedulers):
            woken = s.deadline(True) <= now
            if s.may_send(now, True):
                s.sent(now, TA)
                sent.append((i, now))
            elif woken:
                wasted += 1
        now = min(s.deadline(True) for s in schedulers) + lateness[k % len(lateness)]
    assert len(sent) >= checks, sent
    return sent, wasted


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in pairwise(times)]


@pytest.mark.parametrize("lateness", [[0.0], [0.0007], [0.0, 0.003, 0.0009, 0.0]])
def test_one_agents_checks_leave_at_least_ta_apart(lateness: list[float]) -> None:
    """One agent, no process-wide pacer: Ta counts from when a check really left, so late wake-ups make the
    gaps longer, never shorter."""
    sent, wasted = run_late([CheckScheduler()], CHECKS, lateness)
    assert min(gaps([t for _, t in sent])) >= TA - 1e-12
    assert wasted == 0


@pytest.mark.parametrize("lateness", [[0.0], [0.0007], [0.0, 0.003, 0.0009, 0.0], [0.003, 0.0]])
def test_the_process_transactions_leave_at_least_5ms_apart(lateness: list[float]) -> None:
    """Three agents share the process-wide pacer and the loop wakes them late by varying amounts: their new
    transactions leave at least 5 ms apart on the wire, every agent gets its turn."""
    pacer = GlobalPacer()
    schedulers = [CheckScheduler(pacer) for _ in range(3)]
    sent, _ = run_late(schedulers, CHECKS, lateness)
    assert {i for i, _ in sent} == {0, 1, 2}
    assert min(gaps([t for _, t in sent])) >= GLOBAL_INTERVAL - 1e-12


def test_a_slot_let_out_late_pushes_the_slots_already_reserved() -> None:
    """A's slot was at 0 but it left at 3 ms (a busy loop); B had reserved the slot at 5 ms and C the one at
    10 ms before that: B waits until 8 ms and C until 13 ms, 5 ms after the one before really left (on the
    old pacer B left at 5 ms, 2 ms after A)."""
    pacer = GlobalPacer()
    a, b, c = CheckScheduler(pacer), CheckScheduler(pacer), CheckScheduler(pacer)
    assert a.may_send(0.0, True)  # A's check, due at once
    assert not b.may_send(0.0, True)  # B and C take the next tickets
    assert not c.may_send(0.0, True)
    assert (b.deadline(True), c.deadline(True)) == pytest.approx((GLOBAL_INTERVAL, 2 * GLOBAL_INTERVAL))
    a.sent(0.003, TA)  # A's check really left at 3 ms
    assert not b.may_send(GLOBAL_INTERVAL, True)
    assert (b.deadline(True), c.deadline(True)) == pytest.approx((0.008, 0.013))
    assert b.may_send(0.008, True)
    b.sent(0.008, TA)
    assert not c.may_send(0.008, True)
    assert c.deadline(True) == pytest.approx(0.013)
    assert c.may_send(c.deadline(True), True)


def test_many_agents_behind_a_late_slot_wake_once_each() -> None:
    """200 agents, one check each, every wake-up 0-1 ms late (epoll's rounding): each agent is woken once,
    when it sends; none is woken for nothing (pushing every ticket behind a late one to the same time woke
    them all together, then all but one again: about 450 wasted wake-ups for 100 agents)."""
    rng = random.Random(7)
    pacer = GlobalPacer()
    schedulers = [CheckScheduler(pacer) for _ in range(200)]
    lateness = [rng.uniform(0.0, 0.001) for _ in range(97)]
    now = 0.0
    sent: list[float] = []
    wasted = 0
    for s in schedulers:  # all want a check at 0: the first sends, the others take their tickets
        if s.may_send(now, True):
            s.sent(now, 3600.0)  # one check each: the next waits an hour
            sent.append(now)
    for k in range(10_000):
        waiting = [s for s in schedulers if s.deadline(True) <= now]
        for s in waiting:
            if s.may_send(now, True):
                s.sent(now, 3600.0)  # one check each: the next waits an hour
                sent.append(now)
            else:
                wasted += 1
        if len(sent) == len(schedulers):
            break
        now = min(d for s in schedulers if (d := s.deadline(True)) < 3600.0) + lateness[k % len(lateness)]
    assert len(sent) == len(schedulers)
    assert wasted == 0
    assert min(gaps(sent)) >= GLOBAL_INTERVAL - 1e-12


def _taken(pacer: GlobalPacer, n: int, now: float = 0.0) -> list[float]:
    """`n` tickets reserved at `now`; the first (due at once) leaves then."""
    tickets = [pacer.reserve(now) for _ in range(n)]
    pacer.sent(tickets[0], now)
    return tickets


def test_the_last_ticket_given_back_is_the_next_one_reserved() -> None:
    """A ticket its holder gives back (cancelled) while it is the last one taken rewinds the schedule: the
    next transaction gets its slot instead of the one after it (which stayed empty)."""
    pacer = GlobalPacer()
    _, b, c = _taken(pacer, 3)
    assert (b, c) == pytest.approx((GLOBAL_INTERVAL, 2 * GLOBAL_INTERVAL))
    pacer.release(c)
    pacer.release(b)  # then the one before it: the schedule rewinds past both
    assert pacer.reserve(0.001) == b
    assert pacer.reserve(0.001) == c
    assert pacer.reserve(0.001) == pytest.approx(3 * GLOBAL_INTERVAL)


def test_a_ticket_given_back_between_others_is_reserved_next() -> None:
    """A ticket given back while later ones are held is the next one reserved (the earliest first); the
    holders after it keep theirs, and a new ticket comes after the last one taken."""
    pacer = GlobalPacer()
    _, b, c, d = _taken(pacer, 4)
    pacer.release(c)
    pacer.release(b)
    assert [pacer.reserve(0.001) for _ in range(3)] == [b, c, pytest.approx(d + GLOBAL_INTERVAL)]


def test_a_ticket_given_back_after_its_time_is_not_reserved_again() -> None:
    """A ticket given back once its slot has passed is not handed out again: a newcomer would leave before
    holders already due (the pacer's order), so it gets the next free ticket as before."""
    pacer = GlobalPacer()
    _, b, c = _taken(pacer, 3)
    pacer.release(b)
    assert pacer.reserve(b + 0.001) == pytest.approx(c + GLOBAL_INTERVAL)


def test_a_transaction_sent_at_its_bound_gives_its_slot_back_and_keeps_the_spacing() -> None:
    """B's transaction left at 2 ms, before its 5 ms slot (a TURN refresh at its bound, RFC 8656 8): its slot
    goes to the next newcomer, who still leaves 5 ms after B on the wire (RFC 8445 14.2); C keeps 10 ms."""
    pacer = GlobalPacer()
    _, b, c = _taken(pacer, 3)
    pacer.release(b, sent_at=0.002)
    d = pacer.reserve(0.003)
    assert d == b
    assert pacer.due(d) == pytest.approx(0.002 + GLOBAL_INTERVAL)
    assert pacer.due(c) == pytest.approx(2 * GLOBAL_INTERVAL)


def test_tickets_given_back_are_kept_up_to_a_bound() -> None:
    """The pacer keeps at most MAX_RELEASED tickets given back (the earliest): memory stays bounded however
    many holders give theirs back while later ones are held."""
    pacer = GlobalPacer()
    tickets = _taken(pacer, MAX_RELEASED + 12)
    for ticket in tickets[1:-1]:  # all but the first (sent) and the last (held)
        pacer.release(ticket)
    again = [pacer.reserve(0.0) for _ in range(MAX_RELEASED + 1)]
    assert again[:MAX_RELEASED] == tickets[1 : MAX_RELEASED + 1]
    assert again[MAX_RELEASED] == pytest.approx(tickets[-1] + GLOBAL_INTERVAL)
