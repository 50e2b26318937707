"""Interface changes, watched once per Network for every agent on it (DESIGN.md "Continual gathering").

A `Network` makes one `InterfaceWatcher` (one rtnetlink socket, or one poll timer) however many agents
and applications subscribe: `Network.watch_interfaces()` gives each an `InterfaceChanges`. What changed
is always found by comparing two `interfaces()` snapshots, so the wake-up source needs no parsing and
a burst of changes, or an overrun of the netlink buffer, loses nothing: it only coalesces.

Who reads: no system task. A subscriber that `follow()`s with a callback lends its nursery: one reader
task runs there and calls every callback; when that nursery closes, the task hands itself over to
another follower's nursery. A subscriber that iterates reads in its own `__anext__` while nobody else
does. The source closes with the last subscriber.
"""

from __future__ import annotations

import errno
import socket as _stdsocket
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

import trio

from ..logs import get_logger
from .base import Interface, InterfaceChange

__all__ = [
    "INTERFACE_POLL_INTERVAL",
    "ChangeSource",
    "InterfaceChanges",
    "InterfaceWatcher",
    "NetlinkSource",
    "PollSource",
    "diff_interfaces",
    "os_change_source",
]

log = get_logger("iceagent.net")

#: Seconds between two `interfaces()` snapshots where there is no rtnetlink (not Linux, or refused).
INTERFACE_POLL_INTERVAL = 2.0

#: The rtnetlink multicast groups that say an address came or went (linux/rtnetlink.h, RFC 3549 3.1.1).
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100

#: Netlink messages read per wake-up at most: the snapshot after them is what counts (bounded work).
MAX_NETLINK_READS = 64

Callback = Callable[[Sequence[InterfaceChange]], None]


def diff_interfaces(old: Sequence[Interface], new: Sequence[Interface]) -> list[InterfaceChange]:
    """The addresses removed from `old` then those added in `new`, each with its interface."""
    before = {(i.name, a): i for i in old for a in i.addresses}
    after = {(i.name, a): i for i in new for a in i.addresses}
    removed = [InterfaceChange("removed", a, i) for (_, a), i in before.items() if (i.name, a) not in after]
    added = [InterfaceChange("added", a, i) for (_, a), i in after.items() if (i.name, a) not in before]
    return removed + added


class ChangeSource(Protocol):
    """What wakes the watcher: `wait()` returns when the interfaces may have changed."""

    async def wait(self) -> None: ...

    def close(self) -> None: ...


class PollSource:
    """Wakes every `interval` seconds (bounded to 0.1-60 s): where nothing tells of a change."""

    def __init__(self, interval: float = INTERFACE_POLL_INTERVAL) -> None:
        self.interval = min(60.0, max(0.1, interval))

    async def wait(self) -> None:
        await trio.sleep(self.interval)

    def close(self) -> None:
        pass


class NetlinkSource:
    """An AF_NETLINK/NETLINK_ROUTE socket subscribed to the IPv4 and IPv6 address groups (Linux,
    rtnetlink(7)): readable when an address is added or removed. Its messages are not parsed: they
    only say "take a snapshot now"."""

    def __init__(self) -> None:
        sock = _stdsocket.socket(_stdsocket.AF_NETLINK, _stdsocket.SOCK_RAW, _stdsocket.NETLINK_ROUTE)
        try:
            sock.setblocking(False)
            sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    async def wait(self) -> None:
        sock = self._sock
        while True:
            got = False
            for _ in range(MAX_NETLINK_READS):
                try:
                    sock.recv(65536)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    # the kernel dropped messages (our buffer overran): a snapshot finds what they said
                got = True
            if got:
                await trio.lowlevel.checkpoint()
                return
            await trio.lowlevel.wait_readable(sock)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            try:
                trio.lowlevel.notify_closing(self._sock)
            except RuntimeError:
                pass  # not inside trio.run: nobody waits on it
            self._sock.close()


def os_change_source() -> ChangeSource:
    """rtnetlink on Linux; elsewhere (or when the socket is refused, e.g. by a sandbox) a poll timer."""
    if sys.platform.startswith("linux"):
        try:
            return NetlinkSource()
        except OSError as exc:
            log.info("no rtnetlink socket (%s): polling the interfaces every %g s", exc, INTERFACE_POLL_INTERVAL)
    return PollSource()


class InterfaceWatcher:
    """The one watcher of a Network: a snapshot of its interfaces and a source of wake-ups, opened with
    the first subscriber and closed with the last (see the module docstring for who reads)."""

    def __init__(self, snapshot: Callable[[], Sequence[Interface]], open_source: Callable[[], ChangeSource]) -> None:
        self._snapshot = snapshot
        self._open_source = open_source
        self._source: ChangeSource | None = None
        self._subscribers: dict[InterfaceChanges, None] = {}  # an ordered set: O(1) unsubscribe
        self.current: Sequence[Interface] = ()
        self._reader: str | None = None  # None, "task" or "inline"
        self._task_scope: trio.CancelScope | None = None
        #: snapshots taken after a wake-up (for tests: bounded work per change, and one watcher per Network)
        self.snapshots = 0

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    @property
    def watching(self) -> bool:
        """True while the source (the netlink socket, the poll timer) is open."""
        return self._source is not None

    def subscribe(self) -> InterfaceChanges:
        """A new subscription: changes from now on."""
        if self._source is None:
            self._source = self._open_source()
            self.current = tuple(self._snapshot())
        sub = InterfaceChanges(self)
        self._subscribers[sub] = None
        return sub

    def _unsubscribe(self, sub: InterfaceChanges) -> None:
        self._subscribers.pop(sub, None)
        if self._subscribers:
            return
        source, self._source = self._source, None
        if self._task_scope is not None:
            self._task_scope.cancel()
        if source is not None:
            source.close()

    def _ensure_reader(self, leaving: trio.Nursery | None = None) -> None:
        """Have someone read: a task in a follower's open nursery (not `leaving`, the one a reader task
        just left), else wake the iterators (one of them reads)."""
        if self._reader is not None or self._source is None:
            return
        for sub in self._subscribers:
            nursery = sub.nursery
            if nursery is None or nursery is leaving or nursery.cancel_scope.cancel_called:
                continue
            try:
                nursery.start_soon(self._run_reader, nursery, name="iceagent-interface-watcher")
            except RuntimeError:
                continue  # that nursery is closing
            self._reader = "task"
            return
        for sub in self._subscribers:
            sub._wake()

    async def _run_reader(self, nursery: trio.Nursery) -> None:
        try:
            with trio.CancelScope() as scope:
                self._task_scope = scope
                while self._source is not None:
                    await self._read_once()
        finally:
            self._task_scope = None
            self._reader = None
            self._ensure_reader(nursery)  # this nursery is closing: another follower's takes over

    async def _read_once(self) -> None:
        """Wait for the source, take a snapshot, tell every subscriber what changed."""
        source = self._source
        if source is None:
            return
        try:
            await source.wait()
        except (trio.ClosedResourceError, OSError) as exc:
            if self._source is not source:
                return  # closed under us: the last subscriber left
            log.warning("interface watcher: %s; polling every %g s instead", exc, INTERFACE_POLL_INTERVAL)
            source.close()
            self._source = PollSource()
            return
        self.snapshots += 1
        try:
            new = tuple(self._snapshot())
        except Exception:
            log.exception("interface watcher: listing the interfaces failed; trying again at the next change")
            return
        old = self.current
        changes = diff_interfaces(old, new)
        if not changes:
            return
        self.current = new
        for sub in list(self._subscribers):
            sub._changed(changes)


class InterfaceChanges:
    """One subscription to a Network's interface changes (`Network.watch_interfaces()`).

    Iterate it (`async with network.watch_interfaces() as changes: async for change in changes:`), or
    `follow(callback, nursery)` to have `callback(changes)` called from the shared reader task. Close it
    (`close()`, `aclose()`, or the `async with`) to unsubscribe.
    """

    __slots__ = ("_callback", "_closed", "_event", "_pending", "_seen", "nursery", "watcher")

    def __init__(self, watcher: InterfaceWatcher) -> None:
        self.watcher = watcher
        self.nursery: trio.Nursery | None = None
        self._callback: Callback | None = None
        self._seen: Sequence[Interface] = watcher.current
        self._pending: list[InterfaceChange] = []
        self._event: trio.Event | None = None
        self._closed = False

    def follow(self, callback: Callback, nursery: trio.Nursery) -> None:
        """Call `callback(changes)` on every change, from a reader task that may live in `nursery`
        (one task for all followers of the Network; it moves to another follower's nursery when this
        one closes). A callback must not block; one that raises is logged."""
        self._callback = callback
        self.nursery = nursery
        self.watcher._ensure_reader()

    def _changed(self, changes: Sequence[InterfaceChange]) -> None:
        callback = self._callback
        if callback is not None:
            try:
                callback(changes)
            except Exception:
                log.exception("interface watcher: a subscriber's callback raised")
            self._seen = self.watcher.current
        else:
            self._wake()

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()

    def __aiter__(self) -> InterfaceChanges:
        return self

    async def __anext__(self) -> InterfaceChange:
        watcher = self.watcher
        while True:
            if self._pending:
                return self._pending.pop(0)
            if self._closed:
                raise StopAsyncIteration
            if self._seen is not watcher.current:  # changes since this subscriber last looked
                self._pending = diff_interfaces(self._seen, watcher.current)
                self._seen = watcher.current
                continue
            if watcher._reader is None:
                watcher._reader = "inline"
                try:
                    await watcher._read_once()
                finally:
                    watcher._reader = None
                    watcher._ensure_reader()
                continue
            self._event = trio.Event()
            try:
                await self._event.wait()
            finally:
                self._event = None

    def close(self) -> None:
        """Unsubscribe (the last subscriber closes the Network's watcher source)."""
        if self._closed:
            return
        self._closed = True
        self._wake()
        self.watcher._unsubscribe(self)

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> InterfaceChanges:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
