"""The mux's ICE-TCP passive side (RFC 6544): one listener per mux address, each connection claimed by the
agent whose ufrag is in its first framed check (RFC 4571 framing), then owned by that agent alone.

A connection that sends anything else first, or no check within `tcp_check_timeout`, or data before its
agent confirmed a check on it (RFC 6544 7.2), is closed. Connections run in the mux's nursery; an agent
sees its own through a `MuxTcpTransport` (the shape of an ICE-TCP passive transport: `connections`,
`watch`, `confirm`, `close_connection`, `send`, `send_nowait`, `try_send`, `receive`, `receive_batch`).
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ..ice.tcp_framing import Deframer, FramingError, encode_frame
from ..stun.message import looks_like_stun
from ._mux_inbox import InboxTransport
from ._mux_routes import MuxLimits, MuxRoutes
from .base import Address, TcpListener

if TYPE_CHECKING:
    from .mux import MuxEndpoint

log = logging.getLogger("iceagent.mux")

#: The largest first frame of an unclaimed connection: a check (USERNAME is under 513 bytes, RFC 8489
#: 14.3) fits many times over; a stranger cannot make the mux buffer 64 KiB per connection.
FIRST_FRAME_MAX = 2048
#: Frames waiting to be written on one connection; `send` waits for room, `send_nowait` drops.
SEND_QUEUE = 128
#: Bytes asked of the stream per read.
READ_SIZE = 65536


class _Conn:
    """One accepted connection: its addresses, outgoing queue, cancel scope, owner and check state."""

    __slots__ = ("closing", "confirmed", "local", "outbox", "outbox_reader", "owner", "remote", "scope")

    def __init__(self, local: Address, remote: Address, deadline: float) -> None:
        self.local = local
        self.remote = remote
        self.outbox, self.outbox_reader = trio.open_memory_channel[bytes](SEND_QUEUE)
        self.scope = trio.CancelScope(deadline=deadline)
        self.owner: MuxTcpTransport | None = None
        self.confirmed = False
        self.closing = False  # closed on request: not reported to `watch`

    def close(self) -> None:
        self.closing = True
        self.scope.cancel()


class MuxTcpTransport(InboxTransport):
    """One mux ICE-TCP address as one agent sees it: the connections claimed by its checks."""

    __slots__ = ("_conns", "_limits", "_on_closed")

    def __init__(self, endpoint: MuxEndpoint, local: Address, limits: MuxLimits) -> None:
        super().__init__(endpoint, local)
        self._limits = limits
        self._conns: dict[Address, _Conn] = {}
        self._on_closed: Callable[[Address], None] | None = None

    @property
    def connections(self) -> list[Address]:
        """The remote addresses of this agent's open connections on this address."""
        return list(self._conns)

    def watch(self, on_closed: Callable[[Address], None]) -> None:
        """Call `on_closed(remote)` when a connection ends by itself (RFC 6544 7.1). It runs in the mux's
        connection task: an exception from it is logged and closes this endpoint, never the mux."""
        self._on_closed = on_closed

    def confirm(self, remote: Address) -> None:
        """A check on `remote`'s connection passed its integrity check: no check timeout, data may pass."""
        conn = self._conns.get(remote)
        if conn is not None and not conn.confirmed:
            conn.confirmed = True
            conn.scope.deadline = math.inf

    def close_connection(self, remote: Address) -> None:
        """Close the connection from `remote` (a pair that lost); not reported to `watch`."""
        conn = self._conns.pop(remote, None)
        if conn is not None:
            conn.close()

    async def send(self, data: bytes, remote: Address) -> None:
        """Send one packet as an RFC 4571 frame on `remote`'s connection; waits while its queue is full. Lost
        (counted "tcp_no_connection") if there is none: a passive candidate opens nothing (RFC 6544 4.5)."""
        self._check_open()
        conn = self._conns.get(remote)
        if conn is None:
            self._endpoint._mux._routes.drop("tcp_no_connection")
            await trio.lowlevel.checkpoint()
            return
        try:
            await conn.outbox.send(encode_frame(data, self._limits.tcp_max_frame))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._endpoint._mux._routes.drop("tcp_no_connection")

    def try_send(self, data: bytes, remote: Address) -> bool:
        """Queue one frame now; False when the connection's queue is full or there is no connection."""
        self._check_open()
        conn = self._conns.get(remote)
        if conn is None:
            return False
        try:
            conn.outbox.send_nowait(encode_frame(data, self._limits.tcp_max_frame))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def send_nowait(self, data: bytes, remote: Address) -> None:
        """`try_send`, the packet dropped (counted "send_full") when it cannot go now."""
        if not self.try_send(data, remote):
            self._endpoint._mux._routes.drop("send_full")

    def _admit(self, conn: _Conn) -> bool:
        """Take a claimed connection: the same remote again replaces the old one; at the per-agent cap the
        oldest unconfirmed one makes room, else the new one is refused."""
        old = self._conns.pop(conn.remote, None)
        if old is not None:
            old.close()
        if len(self._conns) >= self._limits.tcp_max_per_agent:
            victim = next((c for c in self._conns.values() if not c.confirmed), None)
            if victim is None:
                return False
            del self._conns[victim.remote]
            victim.close()
        self._conns[conn.remote] = conn
        conn.owner = self
        return True

    def _ended(self, conn: _Conn) -> None:
        """A connection of this transport ended: forget it and tell the agent if it ended by itself."""
        if self._conns.get(conn.remote) is conn:
            del self._conns[conn.remote]
        if conn.closing or self._closed or self._on_closed is None:
            return
        try:
            self._on_closed(conn.remote)
        except Exception:  # the agent's bug: it ends this agent's registration, not the mux
            log.exception("mux endpoint %r: its ICE-TCP watch callback failed; closing the endpoint",
                          self._endpoint.name)
            self._endpoint.close()

    def _close(self) -> None:
        super()._close()
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


class TcpAcceptor:
    """The accept task of one ICE-TCP listener and the connection tasks it starts (in the mux's nursery)."""

    def __init__(self, listener: TcpListener, locals_: list[Address], routes: MuxRoutes[MuxEndpoint],
                 limits: MuxLimits, counts: collections.Counter[str]) -> None:
        self.listener = listener
        self.locals = locals_
        self._routes = routes
        self._limits = limits
        self._unclaimed: dict[_Conn, None] = {}
        self._counts = counts  # "tcp_open": connections open on all listeners of the mux
        self._wildcard = listener.local_address[0] in ("0.0.0.0", "::")

    async def run(self, nursery: trio.Nursery) -> None:
        """Accept until the listener closes; each connection gets a task in `nursery`."""
        while True:
            try:
                stream, remote = await self.listener.accept()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            except OSError as exc:  # EMFILE and the like: back off, keep listening
                log.warning("mux ICE-TCP accept on %s failed: %s", self.listener.local_address, exc)
                await trio.sleep(0.1)
                continue
            local = self._local_of(stream)
            if local not in self.locals or not self._make_room():
                self._routes.drop("tcp_refused" if local in self.locals else "unknown_local")
                await trio.aclose_forcefully(stream)
                continue
            conn = _Conn(local, remote, trio.current_time() + self._limits.tcp_check_timeout)
            self._unclaimed[conn] = None
            self._counts["tcp_open"] += 1
            nursery.start_soon(self._serve, conn, stream, name=f"iceagent.mux tcp {remote[0]}:{remote[1]}")

    def _local_of(self, stream: trio.abc.Stream) -> Address:
        if not self._wildcard:
            return self.listener.local_address
        sock = getattr(stream, "socket", None)  # a wildcard is OS-only: a trio.SocketStream
        if sock is None:
            return ("", 0)
        host, port = sock.getsockname()[:2]
        return str(host).split("%", 1)[0], int(port)

    def _make_room(self) -> bool:
        limits = self._limits
        if len(self._unclaimed) >= limits.tcp_max_unclaimed or self._counts["tcp_open"] >= limits.tcp_max_connections:
            if not self._unclaimed:
                return False
            oldest = next(iter(self._unclaimed))
            del self._unclaimed[oldest]
            oldest.close()
            self._routes.drop("tcp_evicted")
        return True

    async def _serve(self, conn: _Conn, stream: trio.abc.Stream) -> None:
        reason = ""
        try:
            with conn.scope:
                try:
                    reason = await self._pump(conn, stream)
                finally:
                    await trio.aclose_forcefully(stream)
            if conn.scope.cancelled_caught and not conn.closing:
                reason = "tcp_timeout"  # no confirmed check in time (RFC 6544 7.2)
        finally:
            self._counts["tcp_open"] -= 1
            self._unclaimed.pop(conn, None)
            if reason:
                self._routes.drop(reason)
            if conn.owner is not None:
                conn.owner._ended(conn)

    async def _pump(self, conn: _Conn, stream: trio.abc.Stream) -> str:
        """Read (and, once claimed, write) until either side ends; returns a drop reason or ""."""
        reason = ""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer, conn, stream, nursery.cancel_scope)
            reason = await self._reader(conn, stream)
            nursery.cancel_scope.cancel()
        return reason

    async def _writer(self, conn: _Conn, stream: trio.abc.Stream, done: trio.CancelScope) -> None:
        try:
            async for frame in conn.outbox_reader:
                await stream.send_all(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        done.cancel()

    async def _reader(self, conn: _Conn, stream: trio.abc.Stream) -> str:
        deframer = Deframer(FIRST_FRAME_MAX)
        limits = self._limits
        while True:
            try:
                data = await stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return ""
            if not data:
                return ""
            try:
                frames = deframer.feed_frames(data)
            except FramingError:
                return "tcp_framing"
            for frame in frames:
                owner = conn.owner
                if owner is None:
                    reason = self._claim(conn, frame)
                    if reason:
                        return reason
                    deframer.max_frame = limits.tcp_max_frame
                    owner = conn.owner
                    assert owner is not None
                elif not conn.confirmed and not looks_like_stun(frame):
                    return "tcp_data_before_check"  # RFC 6544 7.2
                if owner._closed:
                    return ""
                if not owner._deliver(frame, conn.remote, limits):
                    self._routes.drop("inbox_full")
                else:
                    self._routes.routed += 1

    def _claim(self, conn: _Conn, frame: bytes) -> str:
        """Hand an unclaimed connection to the agent whose ufrag its first check names; "" or why not."""
        endpoint, reason = self._routes.check_owner(frame)
        if endpoint is None:
            return f"tcp_{reason}"
        self._unclaimed.pop(conn, None)
        if not endpoint.tcp_transport(conn.local)._admit(conn):
            return "tcp_refused"
        return ""
