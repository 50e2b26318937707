"""Two small wake-up signals, cheaper than trio.Event and ParkingLot for the agent's hot paths.

Every agent holds several; with thousands of agents per process their size and the cost of a wake-up
show (bench/scale.py), so both allocate nothing until a task actually waits.
"""

from __future__ import annotations

from collections.abc import Coroutine
from functools import partial
from typing import Any

from trio.lowlevel import Abort, Task, checkpoint, current_task, reschedule, wait_task_rescheduled


class Notifier:
    """Wake every waiting task; a notify with nobody waiting is a no-op (waiters re-check state).

    The first waiter is kept in a slot of its own (most waits have one waiter: an agent's `connect()`, its
    stream's reader): its wait allocates a bound method only, no dict and no partial, fewer objects that
    live while it waits (the collector traverses them, bench/scale.py)."""

    __slots__ = ("_first", "_waiters")

    def __init__(self) -> None:
        self._first: Task | None = None  # the earliest waiter, while no other waits before it
        self._waiters: dict[Task, None] | None = None  # the others, insertion-ordered: they wake in FIFO order

    async def wait(self) -> None:
        """Wait for the next `notify()`."""
        await self.park()

    def park(self) -> Coroutine[Any, Any, object]:
        """`wait()` as a plain function, for a task that awaits what it returns at once (`await n.park()`): it
        enlists the calling task now and returns Trio's wait itself, so the waiting task keeps no coroutine
        frame of this class (with thousands of agents waiting in connect(), fewer objects for the collector,
        bench/scale.py). Not for `start_soon` or anything that calls it in one task and awaits in another."""
        task = current_task()
        waiters = self._waiters
        if self._first is None and not waiters:
            self._first = task
            return wait_task_rescheduled(self._forget_first)  # noqa: ASYNC105 (the caller awaits it)
        if waiters is None:
            waiters = self._waiters = {}
        waiters[task] = None
        return wait_task_rescheduled(partial(_forget, waiters, task))  # noqa: ASYNC105 (the caller awaits it)

    def notify(self) -> None:
        """Wake every task waiting now, in the order they came."""
        first = self._first
        if first is not None:
            self._first = None
            reschedule(first)
        waiters = self._waiters
        if waiters:
            self._waiters = None
            for task in waiters:
                reschedule(task)

    def _forget_first(self, _: object) -> Abort:
        """The first waiter was cancelled (only a task still waiting can be: `notify` cleared the slot of one
        it woke)."""
        self._first = None
        return Abort.SUCCEEDED


def _forget(waiters: dict[Task, None], task: Task, _: object) -> Abort:
    """A Notifier's waiter that was cancelled: it leaves the waiters (a partial of this is the abort function of
    its wait: two objects per waiting task where a closure takes four)."""
    waiters.pop(task, None)
    return Abort.SUCCEEDED


class Wakeup:
    """A flag one task waits on and others set: `wait()` returns once it is set and clears it.

    Unlike a trio.Event it is reused, so a loop that sleeps until "woken or deadline" allocates nothing
    per round. A single task may wait at a time (the loop that owns it).
    """

    __slots__ = ("_task", "flag")

    def __init__(self) -> None:
        #: the flag itself: the owning task reads and clears it between its waits (no call: its hot loop does
        #: this several times per step); others call `set()`, which also wakes it
        self.flag = False
        self._task: Task | None = None

    @property
    def is_set(self) -> bool:
        return self.flag

    def consume(self) -> bool:
        """Whether the flag was set, clearing it (no checkpoint: for the waiting task, between its waits)."""
        flag = self.flag
        self.flag = False
        return flag

    def set(self) -> None:
        """Set the flag, waking the waiting task if there is one."""
        self.flag = True
        task = self._task
        if task is not None:
            self._task = None
            reschedule(task)

    async def wait(self) -> None:
        """Wait until the flag is set (at once, after a scheduling round, if it already is), then clear it."""
        if self._task is not None:
            raise RuntimeError("another task is already waiting on this Wakeup")
        if self.flag:
            self.flag = False
            await checkpoint()
            return
        self._task = current_task()
        await wait_task_rescheduled(self._abort)
        self.flag = False

    def _abort(self, _: object) -> Abort:
        self._task = None  # only the waiting task can be cancelled out of wait()
        return Abort.SUCCEEDED
