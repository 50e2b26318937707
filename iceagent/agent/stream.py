"""IceStream: the application's datagram channel over the selected candidate pair (RFC 8445 12)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import cast

import trio

from ..errors import IceFailed
from ..net.base import Address
from ..stun.message import looks_like_stun
from ._notify import Notifier
from ._route import Route, RouteState
from ._tap import DRAIN_LIMIT, Tap


class Inbox:
    """Received datagrams waiting for the application: a bounded FIFO where the newest is dropped when it
    is full (as a socket buffer does); after `close()` receivers get what is left, then trio.EndOfChannel;
    after `close_reader()` (the application closed its end) they get trio.ClosedResourceError and
    nothing more is queued. Lighter than a trio memory channel, which matters with thousands of agents
    (bench/scale.py)."""

    __slots__ = ("_closed", "_items", "_limit", "_reader_closed", "_readers", "_socket_wait", "tap")

    def __init__(self, limit: int) -> None:
        self._items: deque[bytes] | None = None  # made by the first datagram
        self._limit = limit
        self._closed = False
        self._reader_closed = False
        self._readers = Notifier()
        self._socket_wait: Tap | None = None  # the tap whose socket a reader waits on
        #: the Tap of the selected pair's socket when the reader last looked (agent/_tap.py): its direct read;
        #: None once either end is closed (what is queued, then EndOfChannel: nothing read after the close)
        self.tap: Tap | None = None

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
        self._wake()
        return True

    def put_many(self, datas: list[bytes]) -> int:
        """Queue datagrams in order, waking the readers once (a receive task's batch); returns how many were
        dropped because the queue was full. Ignored once either end is closed."""
        if self._closed or self._reader_closed or not datas:
            return 0
        items = self._items
        if items is None:
            items = self._items = deque()
        room = self._limit - len(items)
        if room >= len(datas):
            items.extend(datas)
            dropped = 0
        else:
            room = max(room, 0)
            items.extend(datas[:room])
            dropped = len(datas) - room
        self._wake()
        return dropped

    def close(self) -> None:
        self._closed = True
        self.tap = None
        self._wake()

    def close_reader(self) -> None:
        """The reading end is closed: drop what is queued and wake every waiting reader."""
        self._reader_closed = True
        self._items = None
        self.tap = None
        self._wake()

    def _wake(self) -> None:
        """Something was queued or closed: wake the readers, the one waiting on a socket too."""
        self._readers.notify()
        tap = self._socket_wait
        if tap is not None:
            self._socket_wait = None
            tap.interrupt()

    async def wait(self, tap: Tap | None, empty: bool = False) -> bool:
        """Wait until something may have been queued: drain `tap`'s socket (unless the reader just found it
        `empty`) and wait on it where the reader may (agent/_tap.py), else wait for a receive task's delivery
        (or a close). True when it drained the socket instead, without a checkpoint."""
        if tap is None or self._socket_wait is not None or not tap.reader_may_poll():
            await self._readers.wait()
            return False
        if not empty and tap.drain():
            return True
        self._socket_wait = tap  # _wake interrupts the wait: a delivery from elsewhere, or a close
        tap.reader_waits()
        try:
            await tap.wait_readable()
        except trio.ClosedResourceError:
            tap.closed = True  # closed under its receive task, which ends soon: wait for deliveries
        finally:
            tap.reader_left()
            if self._socket_wait is tap:
                self._socket_wait = None
        return False

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


#: No route: never the selected one (`send` compares routes by identity).
_NO_ROUTE = cast("Route", ())

#: One lookup instead of three per call (trio.lowlevel's own function: the same check).
checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled


def _no_sendto(data: bytes, remote: Address) -> None:
    """No plain OS UDP socket's route yet: never called (`_sendto_route` is _NO_ROUTE)."""
    raise AssertionError("no route")


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
    A `receive` that finds nothing queued reads the selected pair's socket itself, a datagram at a time
    (a known source's data is returned at once), and waits on it, instead of being woken by that socket's
    receive task (agent/_tap.py).
    """

    #: A successful send/receive that did not have to wait yields to the scheduler every this many calls.
    SCHEDULE_EVERY = 16

    __slots__ = (
        "_closed",
        "_receive",
        "_receives_left",
        "_routes",
        "_sends_left",
        "_sendto",
        "_sendto_route",
    )

    def __init__(self, routes: RouteState, inbox: Inbox) -> None:
        self._routes = routes
        self._receive = inbox
        self._closed = False
        # countdowns to the next full scheduling round: they stay small ints, which Python does not allocate
        self._sends_left = self.SCHEDULE_EVERY
        self._receives_left = self.SCHEDULE_EVERY
        #: the last route whose transport is a plain OS UDP socket, and that socket's stdlib `sendto` (net/os.py
        #: `sync_sendto`), which `send` calls itself while the route stays selected; _NO_ROUTE before and once closed
        self._sendto_route: Route = _NO_ROUTE
        self._sendto: Callable[[bytes, Address], object] = _no_sendto

    async def send(self, data: bytes) -> None:
        """Send one datagram to the peer on the selected pair."""
        left = self._sends_left - 1
        route = self._sendto_route
        if left and self._routes.route is route:
            # still the selected pair's route (consent holds, RFC 7675: a route goes when it expires) over a plain
            # OS UDP socket, and no scheduling round due: its own sendto, at once
            self._sends_left = left
            await checkpoint_if_cancelled()
            try:
                self._sendto(data, route[1])
            except BlockingIOError:
                await route[0].send(data, route[1])  # the socket buffer is full: wait for it
            except OSError:
                pass  # lost, as UDP allows (transport.send and try_send do the same)
            route[2]._bytes_sent += len(data)  # count_sent, without a call per datagram
            return
        if self._closed:
            raise trio.ClosedResourceError("the IceStream is closed")
        selected = self._routes.route
        route = await self._routes.wait_route(self._is_closed) if selected is None else selected
        sendto = getattr(route[0], "sync_sendto", None)
        if sendto is not None:  # this send and the next take the path above
            self._sendto_route, self._sendto = route, sendto
            if left:
                return await self.send(data)
        else:  # not a plain OS socket (TURN, TCP, a plugin's): the path below, every time
            self._sendto_route, self._sendto = _NO_ROUTE, _no_sendto
        transport, remote, pair, try_send, _ = route
        if left > 0 and try_send is not None:
            self._sends_left = left
            await trio.lowlevel.checkpoint_if_cancelled()
            if not try_send(data, remote):
                await transport.send(data, remote)  # the socket buffer is full: wait for it
            pair._bytes_sent += len(data)
            return
        self._sends_left = self.SCHEDULE_EVERY
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
        """The next datagram without a checkpoint: what is queued, else, while this stream reads the selected
        pair's socket itself (agent/_tap.py), a known source's datagram off that socket; trio.WouldBlock if
        there is none."""
        if self._closed:
            raise trio.ClosedResourceError("the IceStream is closed")
        inbox = self._receive
        items = inbox._items
        if items:
            return items.popleft()
        tap = inbox.tap
        if tap is not None:
            for _ in range(DRAIN_LIMIT):  # what it reads and does not return: bounded, it does not yield
                source = tap.source
                if source is None:
                    break
                try:
                    data = self._read_socket(tap, source)
                except OSError:  # BlockingIOError: nothing there
                    break
                if data is not None:
                    return data
                items = inbox._items
                if items:
                    return items.popleft()
        return inbox.get_nowait()  # raises WouldBlock, EndOfChannel or ClosedResourceError

    async def receive(self) -> bytes:
        """The next datagram from the peer; trio.EndOfChannel once the agent has closed,
        trio.ClosedResourceError once this stream is closed (also in a task blocked here)."""
        left = self._receives_left - 1
        if left > 0:
            self._receives_left = left
            await checkpoint_if_cancelled()
        else:
            self._receives_left = self.SCHEDULE_EVERY
            await trio.lowlevel.checkpoint()
        inbox = self._receive
        items = inbox._items  # None once the reader closed (and `tap`): `_receive_more` says why
        if items:
            return items.popleft()
        tap = inbox.tap
        if tap is not None:
            source = tap.source
            if source is not None:  # the direct read (agent/_tap.py): a datagram at a time, as the fair limit
                try:
                    data, addr = tap.recvfrom(65536)
                except OSError:  # BlockingIOError: nothing queued; any other error: the waiting path finds out
                    return await self._receive_more(True)
                # a known source's application data (RFC 8445 12.2), not STUN (RFC 7983: first byte 0-3;
                # `data >= b"@"` is "not empty and the first byte at least 0x40", in one comparison)
                if addr == source and (data >= b"@" or not looks_like_stun(data)):
                    tap.pair._bytes_received += len(data)  # count_received, without a call
                    return data
                if addr is not None:  # None: a datagram read with nothing in it for the demultiplexer (_tap.py)
                    tap.process([(data, addr)], tap)  # queued, left to the receive task, or dropped
                return await self._receive_more(False, 1)
        return await self._receive_more(False)

    async def _receive_more(self, empty: bool, misses: int = 0) -> bytes:
        """`receive` when nothing is queued and the direct read returned nothing: read on, or wait on the socket
        (at once when it was `empty`: EAGAIN), or for a delivery. `misses`: datagrams `receive` read already."""
        inbox = self._receive
        # datagrams read and not returned (`misses`; a drain that queued nothing counts as DRAIN_LIMIT): a full
        # checkpoint after DRAIN_LIMIT of them, so that a flood from unknown sources cannot keep this task
        # from yielding
        while True:  # without trio.WouldBlock: an exception per empty queue costs as much as a datagram
            items = inbox._items
            if items:
                return items.popleft()
            if inbox._closed or inbox._reader_closed:
                return inbox.get_nowait()  # raises EndOfChannel or ClosedResourceError
            route = self._routes.route
            # the selected pair's socket, which this task may read and wait on itself (agent/_tap.py)
            tap: Tap | None = None if route is None else getattr(route[0], "tap", None)
            inbox.tap = tap
            if tap is None or empty or (source := tap.source) is None:
                if await inbox.wait(tap, empty) and not inbox._items:
                    misses = DRAIN_LIMIT  # drained, nothing queued: the check below
                empty = False
            else:
                try:
                    data = self._read_socket(tap, source)
                except OSError:
                    empty = True
                    continue
                if data is not None:
                    return data
                misses += 1
            if misses >= DRAIN_LIMIT:  # a flood from unknown sources: let others run
                misses = 0
                await trio.lowlevel.checkpoint()

    @staticmethod
    def _read_socket(tap: Tap, source: Address) -> bytes | None:
        """One datagram off `tap`'s socket: a known source's data is counted and returned (as in `receive`),
        anything else goes through the demultiplexer (None). BlockingIOError when there is none."""
        data, addr = tap.recvfrom(65536)
        if addr == source and (data >= b"@" or not looks_like_stun(data)):
            tap.pair._bytes_received += len(data)  # count_received, without a call
            return data
        if addr is not None:  # None: nothing in it for the demultiplexer (agent/_tap.py)
            tap.process([(data, addr)], tap)
        return None

    def _is_closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close this stream (the agent stays open); further send/receive raise ClosedResourceError, and a
        task blocked in `receive`, or in `send` waiting for a pair, is woken with it (as a trio memory
        channel's is). A send blocked on a full socket buffer finishes that one datagram first."""
        self._closed = True
        self._sendto_route = _NO_ROUTE  # `send` looks at `_closed` again
        self._receive.close_reader()
        self._routes.changed()
        await trio.lowlevel.checkpoint()


__all__ = ["IceFailed", "IceStream"]
