"""LazyAsyncValue: a trio_util.AsyncValue that is cheap until something unusual waits on it.

An AsyncValue holds three ref-counted tables (about 1.6 KiB and seven garbage-collected objects) from
birth, and its waits go through them. An agent has three AsyncValues (state, gathering_state,
generation); most are never waited on, and the usual wait is `wait_value(x)`. With thousands of agents
per process that showed (bench/scale.py), so here `wait_value` without `held_for` parks on a plain list,
and the tables are built only when another kind of wait (transitions, iterators, transforms, held_for)
first needs them. Semantics are AsyncValue's: a waiter gets the value that satisfied it, even if the
value changed again before it ran. It is still an AsyncValue (the contract).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import trio
from trio_util import AsyncValue

T = TypeVar("T")

#: The attributes trio_util.AsyncValue.__init__ creates besides `_value` (trio-util 0.7/0.8).
_TABLES = frozenset({"_level_results", "_edge_results", "_transforms"})
_PENDING = object()


class LazyAsyncValue(AsyncValue[T]):  # type: ignore[misc]  # trio_util ships no type information
    """An AsyncValue with a light `wait_value` and waiter tables that appear on first other use."""

    #: Set on the instance once AsyncValue's tables exist. A flag, not `"_level_results" in self.__dict__`:
    #: reading `__dict__` makes CPython build a real dict for the instance (about 250 bytes per value).
    _tables = False

    def __init__(self, value: T) -> None:  # AsyncValue.__init__ runs on first use (__getattr__)
        self._value = value
        self._waiters: list[list[Any]] | None = None  # [predicate, task, value or _PENDING]

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: a table is needed for the first time
        if name in _TABLES:
            AsyncValue.__init__(self, self._value)
            self._tables = True
            return object.__getattribute__(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def value(self) -> T:
        """The wrapped value."""
        return self._value

    @value.setter
    def value(self, x: T) -> None:
        if self._tables:
            AsyncValue.value.fset(self, x)  # sets it and wakes the tables' waiters
        elif self._value != x:
            self._value = x
        else:
            return
        waiters = self._waiters
        if waiters:
            keep = []
            for entry in waiters:
                if entry[0](x):
                    entry[2] = x
                    trio.lowlevel.reschedule(entry[1])
                else:
                    keep.append(entry)
            self._waiters = keep or None

    async def wait_value(self, value_or_predicate: Any, *, held_for: float = 0.0) -> T:
        """Wait until the value equals `value_or_predicate`, or satisfies it if callable (AsyncValue's)."""
        if held_for > 0:
            return await AsyncValue.wait_value(self, value_or_predicate, held_for=held_for)  # type: ignore[no-any-return]
        if callable(value_or_predicate):
            predicate: Callable[[Any], Any] = value_or_predicate
        else:
            target = value_or_predicate
            predicate = lambda v: v == target  # noqa: E731

        if predicate(self._value):
            await trio.lowlevel.checkpoint()
            return self._value
        entry = [predicate, trio.lowlevel.current_task(), _PENDING]
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(entry)

        def abort(_: object) -> trio.lowlevel.Abort:
            waiters = self._waiters or []
            for i, other in enumerate(waiters):
                if other is entry:
                    del waiters[i]
                    break
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        return entry[2]  # type: ignore[return-value]


def made_on_read(owner: Any, slot: str, value: T) -> LazyAsyncValue[T]:
    """The LazyAsyncValue in `owner`'s `slot`, made there with `value` if the slot is still None: an object
    whose AsyncValue attribute is rarely read keeps the plain value until it is (and then sets both)."""
    made: LazyAsyncValue[T] | None = getattr(owner, slot)
    if made is None:
        made = LazyAsyncValue(value)
        setattr(owner, slot, made)
    return made
