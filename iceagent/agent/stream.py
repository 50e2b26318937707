"""IceStream: the application's datagram channel over the selected candidate pair (RFC 8445 12)."""

from __future__ import annotations

from collections import deque

import trio

from ..errors import IceFailed
from ._notify import Notifier
from ._route import RouteState


class Inbox:
    """Received datagrams waiting for the application: a bounded FIFO where the newest is dropped when it
    is full (as a socket buffer does); after `close()` receivers get what is left, then trio.EndOfChannel;
    after `close_reader()` (the application closed its end) they get trio.ClosedResourceError and
    nothing more is queued. Lighter than a trio memory channel, which matters with thousands of agents
    (bench/scale.py)."""

    __slots__ = ("_closed", "_items", "_limit", "_reader_closed", "_readers")

    def __init__(self, limit: int) -> None:
        self._items: deque[bytes] | None = None  # made by the first datagram
        self._limit = limit
        self._closed = False
        self._reader_closed = False
        self._readers = Notifier()

    def put(self, data: bytes) -> bool:
        """Queue one datagram; False when it was dropped (full). Ignored once either end is closed."""
        if self._closed or self._reader_closed:
            return True
        items = self._items
        if items is None:
            items = self._items = deque()
        elif len(items) >= self._limit:
            return False
        items.append(data)
        self._readers.notify()
        return True

    def close(self) -> None:
        self._closed = True
        self._readers.notify()

    def close_reader(self) -> None:
        """The reading end is closed: drop what is queued and wake every waiting reader."""
        self._reader_closed = True
        self._items = None
        self._readers.notify()

    def get_nowait(self) -> bytes:
        """The oldest datagram; trio.WouldBlock if none, trio.EndOfChannel if none and closed,
        trio.ClosedResourceError once the reading end is closed."""
        if self._reader_closed:
            raise trio.ClosedResourceError("the IceStream is closed")
        items = self._items
        if items:
            return items.popleft()
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def get(self) -> bytes:
        """The oldest datagram, waiting for one; always a checkpoint (as trio channels are)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            data = self.get_nowait()
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        while True:
            await self._readers.wait()
            try:
                return self.get_nowait()
            except trio.WouldBlock:
                continue


class IceStream(trio.abc.Channel[bytes]):
    """One datagram per message, in both directions, over whatever pair the agent has selected.

    `send` waits until a pair is selected, raises IceFailed while the agent is FAILED, and
    trio.ClosedResourceError once the agent (or this stream) is closed. `receive` returns datagrams
    from any known remote candidate; when the application does not read, at most
    `IceConfig.receive_buffer` datagrams are queued and newer ones are dropped (as a UDP socket's
    buffer would), counted in `agent.stats()["dropped_datagrams"]`. The stream outlives restarts.

    Scheduling: `send` and `receive` check for cancellation on every call, but when they can complete
    at once (socket writable, datagram queued) they let other tasks run only every
    `SCHEDULE_EVERY` calls: a scheduling round per datagram would cost a third of the throughput.
    """

    #: A successful send/receive that did not have to wait yields to the scheduler every this many calls.
    SCHEDULE_EVERY = 16

    def __init__(self, routes: RouteState, inbox: Inbox) -> None:
        self._routes = routes
        self._receive = inbox
        self._closed = False
        self._sends = 0
        self._receives = 0

    async def send(self, data: bytes) -> None:
        """Send one datagram to the peer on the selected pair."""
        if self._closed:
            raise trio.ClosedResourceError("the IceStream is closed")
        route = self._routes.route
        if route is None:
            route = await self._routes.wait(self._is_closed)
        transport, remote, pair, try_send, _ = route
        self._sends += 1
        if try_send is not None and self._sends % self.SCHEDULE_EVERY:
            await trio.lowlevel.checkpoint_if_cancelled()
            if not try_send(data, remote):
                await transport.send(data, remote)  # the socket buffer is full: wait for it
        else:
            await transport.send(data, remote)
        pair.count_sent(len(data))

    def send_nowait(self, data: bytes) -> None:
        """Send one datagram without a checkpoint, for tight loops; trio.WouldBlock when no pair is selected
        yet or the transport cannot send synchronously (use `send` then). Dropped if the socket buffer
        is full, as UDP may."""
        if self._closed:
            raise trio.ClosedResourceError("the IceStream is closed")
        route = self._routes.route
        if route is None:
            self._routes.raise_if_unusable()
            raise trio.WouldBlock
        _, remote, pair, _, send_nowait = route
        if send_nowait is None:
            raise trio.WouldBlock
        send_nowait(data, remote)
        pair.count_sent(len(data))

    def receive_nowait(self) -> bytes:
        """The next queued datagram without a checkpoint; trio.WouldBlock if none is queued."""
        if self._closed:
            raise trio.ClosedResourceError("the IceStream is closed")
        return self._receive.get_nowait()

    async def receive(self) -> bytes:
        """The next datagram from the peer; trio.EndOfChannel once the agent has closed,
        trio.ClosedResourceError once this stream is closed (also in a task blocked here)."""
        if self._closed:
            raise trio.ClosedResourceError("the IceStream is closed")
        self._receives += 1
        if self._receives % self.SCHEDULE_EVERY:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                return self._receive.get_nowait()
            except trio.WouldBlock:
                pass
        return await self._receive.get()

    def _is_closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close this stream (the agent stays open); further send/receive raise ClosedResourceError, and a
        task blocked in `receive`, or in `send` waiting for a pair, is woken with it (as a trio memory
        channel's is). A send blocked on a full socket buffer finishes that one datagram first."""
        self._closed = True
        self._receive.close_reader()
        self._routes.changed()
        await trio.lowlevel.checkpoint()


__all__ = ["IceFailed", "IceStream"]
