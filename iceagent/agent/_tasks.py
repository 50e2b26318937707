"""The tasks of one ICE generation, in the agent's nursery (DESIGN.md "Concurrency: the nursery tree").

A generation needs no nursery of its own: its tasks (the session task, gatherers, receive tasks of
further transports, remote-name resolutions) are children of the agent's nursery, which the application
owns through `open_agent`, and each runs under a cancel scope of its own that `cancel()` cancels (a
restart's old generation, or `close()`). An exception in any of them ends the agent's nursery, and so
its `async with`, as itself. A nursery per generation cost an idle agent a Nursery, a CancelScope and
a CancelStatus for nothing but this grouping.

Like a nursery's end, `done` runs once the generation is cancelled and its last task has ended: the
generation's sockets are closed only then, after every task that might still use them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio


class TaskStarter(Protocol):
    """What starts a generation's task: `GenerationTasks` (or a trio.Nursery, in tests)."""

    def start_soon(self, async_fn: Callable[..., Awaitable[object]], *args: Any, name: object = None) -> None: ...


class GenerationTasks:
    """Start tasks in the agent's nursery, each in a cancel scope of its own; `cancel()` ends them all."""

    __slots__ = ("_done", "_live", "_nursery", "_scopes", "closed")

    def __init__(self, nursery: trio.Nursery, done: Callable[[], None]) -> None:
        self._nursery = nursery
        #: called once, when the generation is cancelled and its last task ended (None once called)
        self._done: Callable[[], None] | None = done
        self._live = 0  # tasks started and not yet ended (the session task included: `enter`)
        self._scopes: set[trio.CancelScope] | None = None  # the running tasks' scopes, made by the first
        self.closed = False

    def start_soon(self, async_fn: Callable[..., Awaitable[object]], *args: Any, name: object = None) -> None:
        """Run `async_fn(*args)` as a task of this generation (nothing once it is cancelled)."""
        if self.closed:
            return
        self._nursery.start_soon(self._run, async_fn, args, name=name)
        self._live += 1  # after start_soon: a closed nursery raises and no task will end

    async def _run(self, async_fn: Callable[..., Awaitable[object]], args: tuple[Any, ...]) -> None:
        try:
            if self.closed:  # cancelled before it started
                return
            with trio.CancelScope() as scope:
                scopes = self._scopes
                if scopes is None:
                    scopes = self._scopes = set()
                scopes.add(scope)
                try:
                    await async_fn(*args)
                finally:
                    scopes.discard(scope)
                    if not scopes:
                        self._scopes = None  # an idle generation (its gatherers done) keeps no empty set
        finally:
            self.leave()

    def enter(self) -> None:
        """A task that manages its own cancel scope (the session task) counts as one of this generation's."""
        self._live += 1

    def leave(self) -> None:
        """A task of this generation ended."""
        self._live -= 1
        self._settle()

    def cancel(self) -> None:
        """Cancel every task of this generation and start no more."""
        self.closed = True
        if self._scopes:
            for scope in self._scopes:
                scope.cancel()
        self._settle()

    def _settle(self) -> None:
        done = self._done
        if done is not None and self.closed and self._live == 0:
            self._done = None
            done()
