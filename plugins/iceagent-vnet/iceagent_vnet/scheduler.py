"""The event scheduler of the virtual network: one heap of timed events per Trio run, on Trio time.

Every hop of every packet is an event `(time, seq, callback, args)`. Events run in time order (ties in
the order they were scheduled), so what happens in the network does not depend on how Trio orders
tasks. Two things run them:

* every operation of the virtual network API (send, bind, close, reboot, statistics) first runs
  all events that are due (`advance()`), so what a caller sees is always up to date;
* one driver task per Trio run sleeps until the next event is due and runs it, so a receiver
  blocked in `receive()` wakes at the exact virtual time its datagram arrives.

The driver is a Trio system task: the `Network` seam has no nursery to own it, and it holds no
resources (it only sleeps and calls synchronous callbacks). Under
`trio.testing.MockClock(autojump_threshold=0)` its deadline is what the clock jumps to.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import trio

log = logging.getLogger("iceagent_vnet")

_CURRENT: trio.lowlevel.RunVar[Scheduler] = trio.lowlevel.RunVar("iceagent_vnet_scheduler")


class _Active(threading.local):
    scheduler: Scheduler | None = None


_ACTIVE = _Active()  # the scheduler running events in this thread right now (a fast path)


def current_scheduler() -> Scheduler:
    """The scheduler of the current Trio run (created on first use)."""
    active = _ACTIVE.scheduler
    if active is not None:
        return active
    try:
        return _CURRENT.get()
    except LookupError:
        scheduler = Scheduler()
        _CURRENT.set(scheduler)
        return scheduler


def advance_if_running() -> None:
    """Run due events if called inside a Trio run; outside one there is nothing in flight."""
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return
    current_scheduler().advance()


def now_or_zero() -> float:
    """The scheduler's notion of now inside a Trio run, 0.0 outside one (nothing expires then)."""
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return 0.0
    return current_scheduler().now()


class Scheduler:
    """A time-ordered heap of callbacks run on Trio time, by callers and by one driver task."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._running = False
        self._event_time = 0.0
        self._driver_started = False
        self._deadline = math.inf
        self._wake: trio.Event | None = None
        self._in_driver = False
        self._horizon = 0.0
        self.events_run = 0

    def now(self) -> float:
        """Virtual time: the due time of the event being run, else Trio's current time."""
        if self._running:
            return self._event_time
        return trio.current_time()

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        """Run `callback(*args)` at virtual time `when`."""
        heapq.heappush(self._heap, (when, next(self._seq), callback, args))
        if self._running and (self._in_driver or when <= self._horizon):
            return  # the loop running now gets to it (the driver recomputes its deadline after)
        # otherwise make sure the driver wakes in time (at once for an event already due)
        if not self._driver_started:
            self._driver_started = True
            trio.lowlevel.spawn_system_task(self._drive, name="iceagent_vnet.scheduler")
        if when < self._deadline and self._wake is not None:
            self._wake.set()

    def pending(self) -> int:
        """How many events are waiting."""
        return len(self._heap)

    def next_time(self) -> float:
        """When the next event is due (inf if none)."""
        return self._heap[0][0] if self._heap else math.inf

    def advance(self) -> None:
        """Run every event due at or before now, in time order (re-entrant calls do nothing)."""
        if self._running or not self._heap:
            return
        now = trio.current_time()
        if self._heap[0][0] > now:
            return
        self._running = True
        self._horizon = now
        _ACTIVE.scheduler = self
        try:
            self._run_due(now)
        finally:
            self._running = False
            _ACTIVE.scheduler = None

    def run_now(self, callback: Callable[..., None], *args: Any) -> None:
        """Run due events, then `callback(*args)` at the current time, then what it caused that is due now."""
        if self._running:
            callback(*args)
            return
        now = trio.current_time()
        self._running = True
        self._horizon = now
        _ACTIVE.scheduler = self
        try:
            self._run_due(now)
            self._event_time = now
            callback(*args)
            self._run_due(now)
        finally:
            self._running = False
            _ACTIVE.scheduler = None

    def _run_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _seq, callback, args = heapq.heappop(heap)
            self._event_time = when
            self.events_run += 1
            callback(*args)

    async def _drive(self) -> None:
        while True:
            self._in_driver = True
            try:
                self.advance()
            except Exception:  # a bug in an event must not take the whole Trio run down
                log.exception("iceagent_vnet: an event raised; the packet it carried is lost")
                continue
            finally:
                self._in_driver = False
            self._deadline = self.next_time()
            self._wake = trio.Event()
            with trio.move_on_at(self._deadline):
                await self._wake.wait()
            self._deadline = math.inf
