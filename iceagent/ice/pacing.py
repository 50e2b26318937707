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

__all__ = ["DEFAULT_TA", "GLOBAL_INTERVAL", "CheckScheduler", "GlobalPacer", "Pacer", "effective_ta"]

#: RFC 8445 14.2: "...no more than one new transaction every 5 ms" for all agents of one host together.
GLOBAL_INTERVAL = 0.005


class Pacer(Protocol):
    """A shared source of send slots (the process-wide pacer), injected into each scheduler."""

    def reserve(self, now: float) -> float:
        """Take the next free slot from `now` on and return its time (`now` or later)."""
        ...

    def not_before(self, slot: float) -> float:
        """When a transaction holding `slot` may really leave: the slot, or later when the one before it
        left late."""
        ...

    def sent(self, now: float) -> None:
        """A transaction that took a slot really left at `now` (which may be later than its slot)."""
        ...


class GlobalPacer:
    """Hands out send slots spaced `interval` apart, to every agent that shares it (RFC 8445 14.2), and keeps
    the transactions themselves `interval` apart on the wire: a slot whose transaction left late pushes the
    ones after it (`not_before`)."""

    __slots__ = ("_last", "_next", "interval")

    def __init__(self, interval: float = GLOBAL_INTERVAL) -> None:
        self.interval = interval
        self._next = -math.inf  # the next free slot
        self._last = -math.inf  # when the latest transaction really left

    def reserve(self, now: float) -> float:
        """Take the next free slot from `now` on and return its time: `now` when the pacer is idle, else a
        later time the caller must wait for (and then check `not_before`) before it sends."""
        at = max(now, self._next, self._last + self.interval)
        self._next = at + self.interval
        return at

    def not_before(self, slot: float) -> float:
        """When a transaction holding `slot` may leave: `interval` after the latest one really left, if that
        left late (a busy event loop), so no two leave closer than `interval` (RFC 8445 14.2)."""
        return max(slot, self._last + self.interval)

    def sent(self, now: float) -> None:
        """A transaction that took a slot left at `now`."""
        if now > self._last:
            self._last = now


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

    The first check goes at once; then one per Ta (RFC 8445 6.1.4.2), counted from when the previous one
    really left, so the event loop's late wake-ups (epoll rounds its timeout up to whole milliseconds) make
    the gaps slightly longer, never shorter. With a process-wide pacer, each new check first takes a slot of
    it: when the slot is later than now, the check is built only when the slot comes (and the transaction
    before it has been gone `interval`), so its retransmission timer starts when it is really sent (RFC 8489
    6.2.1).
    """

    __slots__ = ("_next", "_pacer", "_slot")

    def __init__(self, pacer: Pacer | None = None) -> None:
        self._pacer = pacer
        self._next = -math.inf  # when Ta allows the next new check
        self._slot: float | None = None  # a reserved slot of the process-wide pacer, not yet used

    def may_send(self, now: float, wanted: bool) -> bool:
        """True when a new check may be sent at `now`; `wanted`: the session has one to send. A True
        answer is used: call `sent(now, ta)` (or nothing happens until the next Ta anyway)."""
        slot = self._slot
        if slot is not None:
            assert self._pacer is not None
            slot = self._pacer.not_before(slot)
            if now < slot:
                self._slot = slot
                return False
            self._slot = None
            return wanted
        if not wanted or now < self._next:
            return False
        if self._pacer is not None:
            at = self._pacer.reserve(now)
            if at > now:
                self._slot = at
                return False
        return True

    def sent(self, now: float, ta: float) -> None:
        """A new check went out at `now`: the next one waits Ta."""
        self._next = now + ta
        if self._pacer is not None:
            self._pacer.sent(now)

    def deadline(self, wanted: bool) -> float:
        """When `may_send` may next say yes (a past time: now; math.inf: only once there is a check to send)."""
        if self._slot is not None:
            return self._slot
        return self._next if wanted else math.inf
