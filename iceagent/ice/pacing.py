"""The pacing check scheduler (RFC 8445 14.2): when one generation's next new check may go out.

Two limits apply to new transactions (retransmissions are never paced): Ta between the checks of
one agent (ours, or the peer's a=ice-pacing when larger, RFC 8839 4.4), and the process-wide pacer
that every agent of one process shares (at most one new transaction per 5 ms). Both are sans-IO:
they take `now` and say when, the Trio layer sleeps.
"""

from __future__ import annotations

import math
from typing import Protocol

from .candidate import IceParameters

__all__ = [
    "DEFAULT_TA", "GLOBAL_INTERVAL", "TIMER_GRANULARITY", "CheckScheduler", "GlobalPacer", "Pacer", "effective_ta",
]

#: RFC 8445 14.2: "...no more than one new transaction every 5 ms" for all agents of one host together.
GLOBAL_INTERVAL = 0.005

#: How late the event loop may let a check out and still have it count as sent on time: Trio waits in epoll,
#: whose timeout CPython rounds up to whole milliseconds. A check that left at most this much after the time
#: it waited for keeps that time in the schedule (a later one moves the schedule on from when it left), so
#: the next is not pushed later by the loop's rounding, and no two leave more than this closer than Ta or 5 ms.
TIMER_GRANULARITY = 0.001


class Pacer(Protocol):
    """A shared source of send slots (the process-wide pacer), injected into each scheduler."""

    def reserve(self, now: float) -> float:
        """Take the next free slot from `now` on and return its time (`now` or later)."""
        ...

    def sent(self, now: float) -> None:
        """A transaction that took a slot really left at `now` (which may be later than its slot)."""
        ...


class GlobalPacer:
    """Hands out send slots spaced `interval` apart, to every agent that shares it (RFC 8445 14.2)."""

    __slots__ = ("_next", "interval")

    def __init__(self, interval: float = GLOBAL_INTERVAL) -> None:
        self.interval = interval
        self._next = -math.inf

    def reserve(self, now: float) -> float:
        """Take the next free slot from `now` on and return its time: `now` when the pacer is idle, else a
        later time the caller must wait for before it sends. Slots lie on a schedule: each is `interval`
        after the previous slot (not after when its check really left), so a late wake-up is not carried on."""
        at = max(now, self._next)
        self._next = at + self.interval
        return at

    def sent(self, now: float) -> None:
        """A transaction left at `now`: one the loop let out more than TIMER_GRANULARITY after its slot moves
        the next slot on, so two never leave much closer than `interval` (RFC 8445 14.2)."""
        earliest = now - TIMER_GRANULARITY + self.interval
        if earliest > self._next:
            self._next = earliest


#: The Ta a peer that signals no a=ice-pacing uses (RFC 8445 14.2 default; RFC 8839 4.4).
DEFAULT_TA = 0.05


def effective_ta(ta: float, remote: IceParameters | None) -> float:
    """Ta as both sides use it: the larger of ours and the peer's a=ice-pacing (RFC 8445 14.2). A peer that
    signals none paces at the default 50 ms (RFC 8839 4.4), so a lower Ta takes effect only when both
    sides signal it."""
    peer = remote.pacing / 1000 if remote is not None and remote.pacing else DEFAULT_TA
    return max(ta, peer)


class CheckScheduler:
    """Decides when the next new check (ordinary or triggered) of one generation goes out.

    The first check goes at once; then one per Ta (RFC 8445 6.1.4.2). With a process-wide pacer, each
    new check first takes a slot of it: when the slot is later than now, the check is built only when
    the slot comes, so its retransmission timer starts when it is really sent (RFC 8489 6.2.1).

    Each check has a time in the schedule: the pacer slot or the time Ta allowed it, when it left at most
    TIMER_GRANULARITY after that (else when it left: a busy loop, or it was not waiting). The next check
    waits Ta from that time, so the schedule keeps Ta (and the pacer's 5 ms) between checks without the
    event loop's timer lateness adding up over a check list, and two checks never leave more than
    TIMER_GRANULARITY closer than Ta.
    """

    __slots__ = ("_at", "_next", "_pacer", "_slot")

    def __init__(self, pacer: Pacer | None = None) -> None:
        self._pacer = pacer
        self._next = -math.inf  # when Ta allows the next new check
        self._slot: float | None = None  # a reserved slot of the process-wide pacer, not yet used
        self._at = -math.inf  # the schedule's time of the check `may_send` last let out

    def may_send(self, now: float, wanted: bool) -> bool:
        """True when a new check may be sent at `now`; `wanted`: the session has one to send. A True
        answer is used: call `sent(now, ta)` (or nothing happens until the next Ta anyway)."""
        slot = self._slot
        if slot is not None:
            if now < slot:
                return False
            self._slot = None
            self._at = slot if now - slot <= TIMER_GRANULARITY else now
            return wanted
        ready = self._next
        if not wanted or now < ready:
            return False
        at = ready if now - ready <= TIMER_GRANULARITY else now  # waited for Ta, let out late by the timer
        if self._pacer is not None:
            at = self._pacer.reserve(at)
            if at > now:
                self._slot = at
                return False
        self._at = at
        return True

    def sent(self, now: float, ta: float) -> None:
        """A new check went out at `now`: the next one waits Ta from its time in the schedule."""
        self._next = max(self._at, now - TIMER_GRANULARITY) + ta
        if self._pacer is not None:
            self._pacer.sent(now)

    def deadline(self, wanted: bool) -> float:
        """When `may_send` may next say yes (a past time: now; math.inf: only once there is a check to send)."""
        if self._slot is not None:
            return self._slot
        return self._next if wanted else math.inf
