"""The machinery under a TURN `Allocation` (RFC 8656): who reads the connection to the server, and the
background task that sends the sans-IO `TurnClient`'s requests, runs its timers (refreshes, permission
and channel refreshes, retransmissions) and dispatches its events.

Whoever waits on the connection reads it: the task in `Allocation.receive()` when there is one (the
fast path, no hand-off between tasks), or over an OS UDP socket the stream's reader draining it with
`receive_now` (turn/allocation.py `_WaitableAllocation`, agent/_tap.py), else the background task when it
waits for a response; data that the background task reads is kept for the next read, and the server's
messages a reader drains go to the TURN client, the background task woken for them. `Allocation`
(iceagent.turn.allocation) inherits `_AllocationDriver` and adds the public transport: data, permissions
and channels on demand.

Pacing (RFC 8445 14.2): an allocation opened with a `pace` hook (the relay gatherer passes the agent's,
`GatherContext.pace`, when `IceConfig.global_pacing` is on) has a `TurnClient(paced=True)`: each new request
(Allocate and its retries after 401/438, CreatePermission, ChannelBind, Refresh, each refresh of a
permission or channel, the releasing Refresh) waits in a small task of `_serve` for `await pace(latest)`,
then leaves; retransmissions go out from the serve loop on their RFC 8489 6.2.1 schedule, never waiting
for a slot. Without a hook nothing waits (the client used outside an agent).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import trio

from .._groups import sole_exception
from ..logs import get_logger
from ..net.base import Address
from .client import TurnClient
from .errors import TurnAllocationLost, TurnError
from .events import (
    AllocateFailed,
    AllocationLost,
    AllocationState,
    ChannelBindFailed,
    ChannelBound,
    PermissionFailed,
    PermissionInstalled,
    Redirected,
    Released,
)
from .transports import TurnConnection

log = get_logger("iceagent.turn")

#: Who reads the connection now: nobody, a task in `receive()`, or the background task.
_NOBODY, _CONSUMER, _DRIVER = 0, 1, 2
#: Peer datagrams the background task read and keeps for `receive()`; more are dropped.
_MAX_PENDING = 256

#: `await pace(latest)`: wait for a slot of a pacer before a new transaction leaves (RFC 8445 14.2), returning
#: by `latest` (trio time) at the latest; the request is sent right after, with no checkpoint in between.
Pace = Callable[[float], Awaitable[None]]


class _AllocationDriver:
    """The state of one allocation's connection and its background task (see the module docstring)."""

    def __init__(
        self, conn: TurnConnection, client: TurnClient, *, uri: str, protocol: str, pace: Pace | None = None
    ) -> None:
        self._conn = conn
        self._client = client
        self._pace = pace
        self._paced_wakeup = trio.Event()  # set when held requests wait for the pacing task
        #: The server URI this allocation is on, as given (for messages and stats).
        self.uri = uri
        #: How the server is reached: "udp", "tcp" or "tls" (or a plugin's name).
        self.protocol = protocol
        self._channel_of = client.channel_of  # the same dicts: the data fast paths read them directly
        self._peer_of_channel = client.peer_of_channel
        self._pad = conn.reliable
        self._reader = _NOBODY
        self._driver_scope: trio.CancelScope | None = None
        self._want_reader = 0
        self._reader_free = trio.Event()
        self._wakeup = trio.Event()
        self._pending: deque[tuple[bytes, Address]] = deque()
        self._permission_waiters: dict[str, trio.Event] = {}
        self._channel_waiters: dict[Address, trio.Event] = {}
        self._redirect: Redirected | None = None
        self._closed = False
        self._lost: TurnError | None = None
        self._released = False
        self._conn_closed = False
        #: Called (from the background task) when the allocation is lost after it was made.
        self.on_lost: Callable[[TurnError], None] | None = None

    # ---- releasing ----

    async def _release(self, within: float) -> None:
        """Deallocate (Refresh with LIFETIME 0, RFC 8656 8) within `within` seconds, shielded, then close."""
        if self._released:
            await trio.lowlevel.checkpoint()
            return
        self._released = True
        client = self._client
        with trio.CancelScope(shield=True):
            if client.is_allocated and self._lost is None:
                client.deallocate(trio.current_time())
                with trio.move_on_after(within):
                    await self._serve(lambda: client.state is not AllocationState.DEALLOCATING)
            self._closed = True
            self._wake_waiters()
            await self._close_connection()

    # ---- internals: who reads ----

    def _allocating_done(self) -> bool:
        return self._client.state is not AllocationState.ALLOCATING

    def _check_usable(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the TURN allocation is closed")
        if self._lost is not None:
            raise self._lost

    def _kick(self) -> None:
        """Wake the background task: something to send, or a new state to look at."""
        self._wakeup.set()
        scope = self._driver_scope
        if scope is not None:
            scope.cancel()

    async def _wait_for_reader(self) -> None:
        """Another task reads the connection: ask the background task to stop, wait until it is free."""
        self._want_reader += 1
        try:
            scope = self._driver_scope
            if scope is not None:
                scope.cancel()
            await self._reader_free.wait()
        finally:
            self._want_reader -= 1

    def _release_reader(self) -> None:
        self._reader = _NOBODY
        if self._want_reader:
            event, self._reader_free = self._reader_free, trio.Event()
            event.set()
        elif self._client.expects_response and self._driver_scope is None:
            self._wakeup.set()  # a response is awaited: the background task reads if nobody else does

    async def _read_as_driver(self) -> None:
        """Read one message for the background task (interrupted by `_kick` or a `receive()` caller)."""
        self._reader = _DRIVER
        try:
            with trio.CancelScope() as scope:
                self._driver_scope = scope
                frame = await self._conn.receive()
            self._driver_scope = None
            if scope.cancelled_caught:
                return
            out = self._client.receive(frame, trio.current_time())
            if out is not None and len(self._pending) < _MAX_PENDING:
                self._pending.append(out)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._connection_lost(exc)
        finally:
            self._driver_scope = None
            self._release_reader()

    # ---- internals: the background task ----

    async def _serve(self, until: Callable[[], bool] | None = None) -> None:
        """Send, read, time and dispatch until `until()` is true (forever when None) or the allocation ends;
        with a `pace` hook, a task beside the loop lets the held new requests out (`_pace_held`)."""
        pace = self._pace
        if pace is None:
            await self._serve_loop(until)
            return
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pace_held, pace)
                await self._serve_loop(until)
                nursery.cancel_scope.cancel()
        except BaseException as error:
            sole = sole_exception(error)  # as without the pacing task: not in a group
            if sole is None:
                raise
            raise sole from None

    async def _pace_held(self, pace: Pace) -> None:
        """Let the client's held new requests out one at a time, each when `pace` gives it a slot (or by its
        latest time: a refresh must not wait past it, RFC 8656 8), and wake the loop for its timers."""
        client = self._client
        while True:
            latest = client.pace_deadline()
            if latest is None:
                await self._paced_wakeup.wait()
                self._paced_wakeup = trio.Event()
                continue
            await pace(latest)  # keeps its place in the pacer: a request held later is sent by its bound
            now = trio.current_time()  # by the serve loop (start_overdue), not by ending this wait
            # a slot: the oldest held request; the bound reached first: only what is overdue (no slot to use)
            if client.start_paced(now) if now < latest else client.start_overdue(now):
                await self._send_frames(client.datagrams_to_send())
                self._kick()

    async def _send_frames(self, frames: Sequence[bytes]) -> None:
        """Send what was taken from the client's queue, in order; what a cancellation leaves unsent goes back to
        the front of the queue (a cancelled send sent nothing), for the next loop of `_serve`."""
        sent = 0
        try:
            for frame in frames:
                await self._conn.send(frame)
                sent += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._connection_lost(exc)
        except BaseException:
            self._client.unsent(frames[sent:])
            raise

    async def _serve_loop(self, until: Callable[[], bool] | None) -> None:
        client = self._client
        while True:
            await self._send_frames(client.datagrams_to_send())
            held_until = None if self._pace is None else client.pace_deadline()
            if held_until is not None:
                self._paced_wakeup.set()
            self._dispatch()
            if until is not None and until():
                return
            if self._lost is not None or self._closed:
                if until is None and self._lost is not None:
                    await self._close_connection()  # wakes a task blocked in receive(): it raises
                await trio.lowlevel.checkpoint()
                return
            now = trio.current_time()
            if held_until is not None and held_until <= now and client.start_overdue(now):
                continue  # a held refresh or release whose bound came before its slot (RFC 8656 8)
            timer = client.get_timer()
            if timer is not None and timer <= now:
                client.handle_timer(now)
                continue
            if held_until is not None and held_until != math.inf and (timer is None or held_until < timer):
                timer = held_until
            wakeup = self._wakeup
            if wakeup.is_set():
                self._wakeup = trio.Event()
                continue
            with trio.move_on_at(math.inf if timer is None else timer):
                if client.expects_response and self._reader == _NOBODY and not self._want_reader:
                    await self._read_as_driver()
                else:
                    await wakeup.wait()

    def _dispatch(self) -> None:
        client = self._client
        while (event := client.next_event()) is not None:
            if isinstance(event, PermissionInstalled | PermissionFailed):
                if isinstance(event, PermissionFailed):
                    log.warning("TURN %s: %s", self.uri, event.error)
                waiter = self._permission_waiters.pop(event.ip, None)
                if waiter is not None:
                    waiter.set()
            elif isinstance(event, ChannelBound | ChannelBindFailed):
                if isinstance(event, ChannelBindFailed):
                    log.info("TURN %s: %s (Send indications go on)", self.uri, event.error)
                channel_waiter = self._channel_waiters.pop(event.peer, None)
                if channel_waiter is not None:
                    channel_waiter.set()
            elif isinstance(event, AllocationLost):
                self._lose(event.error)
            elif isinstance(event, Redirected):
                self._redirect = event
            elif isinstance(event, AllocateFailed):
                pass  # open_allocation raises client.error
            elif isinstance(event, Released):
                if event.error is not None:
                    log.info("TURN %s: releasing the allocation: %s", self.uri, event.error)
            else:
                log.debug("TURN %s: %s", self.uri, event)

    def _connection_lost(self, exc: BaseException) -> None:
        if self._closed or self._lost is not None:
            return
        detail = str(exc) or type(exc).__name__
        error = TurnAllocationLost(f"the connection to {self.uri} was lost: {detail}")
        self._client.connection_lost(error, trio.current_time())
        self._lose(error)

    async def _close_connection(self) -> None:
        if self._conn_closed:
            await trio.lowlevel.checkpoint()
            return
        self._conn_closed = True
        try:
            await self._conn.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    def _lose(self, error: TurnError) -> None:
        if self._lost is not None:
            return
        self._lost = error
        log.warning("TURN %s: %s", self.uri, error)
        self._wake_waiters()
        self._kick()
        if self.on_lost is not None:
            self.on_lost(error)

    def _wake_waiters(self) -> None:
        for event in [*self._permission_waiters.values(), *self._channel_waiters.values()]:
            event.set()
        self._permission_waiters.clear()
        self._channel_waiters.clear()
