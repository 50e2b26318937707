"""The pacing check scheduler (RFC 8445 14.2): when one generation's next new check may go out.

Two limits apply to new transactions (retransmissions are never paced): Ta between the checks of
one agent (ours, or the peer's a=ice-pacing when larger, RFC 8839 4.4), and the process-wide pacer
that every agent of one process shares (at most one new transaction per 5 ms). Both are sans-IO:
they take `now` and say when, the Trio layer sleeps.
"""

from __future__ import annotations

import bisect
import math
from typing import Protocol

from .candidate import IceParameters

__all__ = ["DEFAULT_TA", "GLOBAL_INTERVAL", "MAX_RELEASED", "CheckScheduler", "GlobalPacer", "Pacer", "effective_ta"]

#: RFC 8445 14.2: "...no more than one new transaction every 5 ms" for all agents of one host together.
GLOBAL_INTERVAL = 0.005


class Pacer(Protocol):
    """A shared source of send slots (the process-wide pacer), injected into each scheduler."""

    def reserve(self, now: float) -> float:
        """Take the next free slot from `now` on and return its ticket (for `due` and `sent`)."""
        ...

    def due(self, ticket: float) -> float:
        """When the transaction holding `ticket` may leave (`now` or earlier: at once)."""
        ...

    def sent(self, ticket: float, now: float) -> None:
        """The transaction holding `ticket` really left at `now`."""
        ...

    def release(self, ticket: float, sent_at: float | None = None) -> None:
        """`ticket` will not be used: its slot goes back to the others."""
        ...


#: At most this many tickets given back and not reserved again that a GlobalPacer keeps (`release`); past it
#: the latest is forgotten: its slot goes unused, the schedule stays right.
MAX_RELEASED = 256


class GlobalPacer:
    """One new transaction per `interval` for every agent that shares it (RFC 8445 14.2), on the wire.

    Slots are tickets spaced `interval` apart, in the order they were taken. A transaction the event loop lets
    out late (a busy loop) delays every ticket after it by as much, so they stay `interval` apart behind it
    and in their order, each waking once (pushing them all to one time would wake them all together). A
    ticket its holder does not use goes back (`release`), so its slot is not lost to the others."""

    __slots__ = ("_delay", "_last", "_next", "_released", "interval")

    def __init__(self, interval: float = GLOBAL_INTERVAL) -> None:
        self.interval = interval
        self._next = -math.inf  # the next free ticket
        self._delay = 0.0  # how late the schedule runs: the most any transaction left after its ticket
        self._last = -math.inf  # when the latest transaction really left
        self._released: list[float] = []  # tickets given back before `_next`, ascending (`release`)

    def reserve(self, now: float) -> float:
        """Take the next free ticket: the earliest one given back that is not past yet, else due at once when
        the pacer is idle, else `interval` after the last one taken (see `due`)."""
        floor = now - self._delay
        released = self._released
        while released:
            ticket = released.pop(0)
            if ticket >= floor:  # a past one would jump ahead of holders already due: forgotten
                return ticket
        ticket = max(floor, self._next)
        self._next = ticket + self.interval
        return ticket

    def due(self, ticket: float) -> float:
        """When `ticket`'s transaction may leave: its place in the schedule, delayed as late as the schedule
        runs, and never sooner than `interval` after the latest transaction really left."""
        return max(ticket + self._delay, self._last + self.interval)

    def sent(self, ticket: float, now: float) -> None:
        """`ticket`'s transaction left at `now`: if late, the tickets after it move by as much."""
        if now - ticket > self._delay:
            self._delay = now - ticket
        if now > self._last:
            self._last = now

    def release(self, ticket: float, sent_at: float | None = None) -> None:
        """`ticket` will not be used (its holder was cancelled, or left before its slot): the slot goes back.
        The last ticket taken rewinds the schedule (with the tickets given back just before it); another one
        is kept for the next `reserve` (at most MAX_RELEASED). `sent_at`: the holder's transaction left
        anyway then, outside the schedule (a TURN refresh at its bound, RFC 8656 8): the next one still
        leaves `interval` after it on the wire."""
        if sent_at is not None and sent_at > self._last:
            self._last = sent_at
        released = self._released
        if ticket + self.interval == self._next:
            self._next = ticket
            while released and released[-1] + self.interval == self._next:
                self._next = released.pop()
        elif ticket < self._next and ticket not in released:
            bisect.insort(released, ticket)
            if len(released) > MAX_RELEASED:
                released.pop()


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
    the gaps slightly longer, never shorter. With a process-wide pacer, each new check first takes a ticket
    of it: when that is not due yet, the check is built only when it is, so its retransmission timer starts
    when it is really sent (RFC 8489 6.2.1).
    """

    __slots__ = ("_next", "_pacer", "_sending", "_slot")

    def __init__(self, pacer: Pacer | None = None) -> None:
        self._pacer = pacer
        self._next = -math.inf  # when Ta allows the next new check
        self._slot: float | None = None  # a ticket of the process-wide pacer, not due yet
        self._sending: float | None = None  # the ticket of the check `may_send` just let out

    def may_send(self, now: float, wanted: bool) -> bool:
        """True when a new check may be sent at `now`; `wanted`: the session has one to send. A True
        answer is used: call `sent(now, ta)` (or nothing happens until the next Ta anyway)."""
        pacer = self._pacer
        ticket = self._slot
        if ticket is not None:
            assert pacer is not None
            if now < pacer.due(ticket):
                return False
            self._slot = None  # used, or given back when nothing is to be sent any more
            if wanted:
                self._sending = ticket
            else:
                pacer.release(ticket)
            return wanted
        if not wanted or now < self._next:
            return False
        if pacer is not None:
            ticket = pacer.reserve(now)
            if pacer.due(ticket) > now:
                self._slot = ticket
                return False
            self._sending = ticket
        return True

    def unused(self) -> None:
        """`may_send` said yes but no check went out after all (the one queued became moot): the process-wide
        pacer's ticket goes back instead of leaving a 5 ms gap for every agent (Ta is not restarted)."""
        ticket = self._sending
        if ticket is not None:
            self._sending = None
            assert self._pacer is not None
            self._pacer.release(ticket)

    def sent(self, now: float, ta: float) -> None:
        """A new check went out at `now`: the next one waits Ta."""
        self._next = now + ta
        ticket = self._sending
        if ticket is not None:
            self._sending = None
            assert self._pacer is not None
            self._pacer.sent(ticket, now)

    def deadline(self, wanted: bool) -> float:
        """When `may_send` may next say yes (a past time: now; math.inf: only once there is a check to send)."""
        if self._slot is not None:
            assert self._pacer is not None
            return self._pacer.due(self._slot)
        return self._next if wanted else math.inf
