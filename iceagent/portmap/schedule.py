"""Sans-IO retransmission schedules of PCP (RFC 6887 8.1.1) and NAT-PMP (RFC 6886 3.1).

A `Retransmit` is started when its request is first sent (at `now`); `get_timer()` says when to send it
again, `handle_timer(now)` says whether to (True) or that the schedule is over (False). It never reads a
clock: the caller passes `now`. The jitter source is a parameter so tests can fix it.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

import attrs

__all__ = ["Retransmit", "natpmp_schedule", "pcp_schedule"]


@attrs.define
class Retransmit:
    """RT doubles from `initial` up to `maximum`, each multiplied by (1 + RAND), RAND in [-jitter, +jitter]
    (RFC 6887 8.1.1, after RFC 3315 14); after `count` transmissions (0 = no limit) have each waited their
    interval, or `duration` seconds after the first (0 = none), it is `over`: the request timed out."""

    started: float
    initial: float
    maximum: float
    count: int = 0
    duration: float = 0.0
    jitter: float = 0.0
    random: Callable[[], float] = _random.random
    sent: int = 1
    interval: float = 0.0
    next_at: float | None = None

    def __attrs_post_init__(self) -> None:
        self.interval = self._jittered(self.initial)
        self.next_at = self.started + self.interval

    def _jittered(self, rt: float) -> float:
        return rt * (1 + self.jitter * (2 * self.random() - 1))

    @property
    def over(self) -> bool:
        """The schedule ended without an answer."""
        return self.next_at is None

    def get_timer(self) -> float | None:
        """When to act next (send again, or give up); None once the schedule is over."""
        if self.next_at is None:
            return None
        if self.duration:
            return min(self.next_at, self.started + self.duration)
        return self.next_at

    def handle_timer(self, now: float) -> bool:
        """True: send the request again now. False: not yet, or the schedule just ended (see `over`)."""
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return False
        if (self.duration and now >= self.started + self.duration) or (self.count and self.sent >= self.count):
            self.next_at = None
            return False
        self.sent += 1
        self.interval = self._jittered(min(2 * self.interval, self.maximum))
        self.next_at = now + self.interval
        return True


def pcp_schedule(now: float, *, duration: float = 0.0, random: Callable[[], float] = _random.random) -> Retransmit:
    """RFC 6887 8.1.1: IRT 3 s, MRT 1024 s, MRC 0 and MRD 0 (no limits; the caller bounds it by `duration`),
    RAND in [-0.1, +0.1]."""
    return Retransmit(now, 3.0, 1024.0, count=0, duration=duration, jitter=0.1, random=random)


def natpmp_schedule(now: float, *, duration: float = 0.0, random: Callable[[], float] = _random.random) -> Retransmit:
    """RFC 6886 3.1: 250 ms, doubling, 9 transmissions at most, giving up 64 s after the first; no jitter."""
    return Retransmit(now, 0.25, 64.0, count=9, duration=min(duration or 64.0, 64.0), random=random)
