"""LazyAsyncValue: a trio_util.AsyncValue that builds its waiter tables only when a task first waits.

An AsyncValue holds three ref-counted tables (about 1.6 KiB and seven garbage-collected objects) from
birth. An agent has three AsyncValues (state, gathering_state, generation) and most are never waited
on, so with thousands of agents per process the tables dominate (bench/scale.py). Until a task waits,
setting the value just stores it: there is nobody to wake. It is still an AsyncValue (the contract).
"""

from __future__ import annotations

from typing import Any, TypeVar

from trio_util import AsyncValue

T = TypeVar("T")

#: The attributes trio_util.AsyncValue.__init__ creates besides `_value` (trio-util 0.7/0.8).
_TABLES = frozenset({"_level_results", "_edge_results", "_transforms"})


class LazyAsyncValue(AsyncValue[T]):  # type: ignore[misc]  # trio_util ships no type information
    """An AsyncValue whose waiter tables appear on first use (any wait, iterator or transform)."""

    def __init__(self, value: T) -> None:  # AsyncValue.__init__ runs on first use (__getattr__)
        self._value = value

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: a table is needed for the first time
        if name in _TABLES:
            AsyncValue.__init__(self, self._value)
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def value(self) -> T:
        """The wrapped value."""
        return self._value

    @value.setter
    def value(self, x: T) -> None:
        if "_level_results" in self.__dict__:
            AsyncValue.value.fset(self, x)  # waiters may need waking
        else:
            self._value = x
