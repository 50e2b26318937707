"""ICE-TCP transports (RFC 6544 7): one TCP connection per remote address, RFC 4571 frames on each.

`TcpPassiveEndpoint` is the transport of a passive candidate: it accepts connections and answers on the
one a check came in on. `TcpActiveEndpoint` is the transport of an active candidate (port 9): the first
`send` to a remote opens a connection from the candidate's address and keeps it. Both hand every frame of
every connection to `receive()` as `(packet, remote)`, so the agent's receive loop treats them like a UDP
socket. Each endpoint runs in a nursery of its own (`await nursery.start(endpoint.run)`); when `run` ends,
every connection and the listener are closed.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable

import trio

from ..config import IceConfig
from ..ice.tcp_framing import Deframer, FramingError, encode_frame
from ..logs import get_logger
from ..net.base import Address, Network, TcpListener
from ..stun.message import looks_like_stun
from ._ports import bind_in_range

__all__ = ["TcpActiveEndpoint", "TcpPassiveEndpoint"]

log = get_logger("iceagent.tcp")

#: Frames waiting to be written on one connection; `send` waits for room, `send_nowait` drops.
SEND_QUEUE = 128
#: Frames received on all connections of an endpoint that the agent has not taken yet.
RECEIVE_QUEUE = 256
#: Bytes asked of the stream per read.
READ_SIZE = 65536


class _Connection:
    """One TCP connection of an endpoint: its peer, outgoing queue, cancel scope and check state."""

    __slots__ = ("closing", "confirmed", "inbound", "outbox", "outbox_reader", "remote", "scope")

    def __init__(self, remote: Address, *, inbound: bool) -> None:
        self.remote = remote
        self.inbound = inbound
        self.outbox, self.outbox_reader = trio.open_memory_channel[bytes](SEND_QUEUE)
        self.scope = trio.CancelScope()
        #: A valid check arrived on it (inbound), or we opened it (outbound).
        self.confirmed = not inbound
        #: Closed on our request: not reported as broken.
        self.closing = False


class _TcpEndpoint:
    """What both endpoints share: connections by remote address, framing, the receive queue, limits."""

    def __init__(self, local_address: Address, config: IceConfig) -> None:
        self._local = local_address
        self.config = config
        self._connections: dict[Address, _Connection] = {}
        self._frames_in, self._frames_out = trio.open_memory_channel[tuple[bytes, Address]](RECEIVE_QUEUE)
        self._nursery: trio.Nursery | None = None
        self._on_closed: Callable[[Address], None] | None = None
        self._stopped = False
        #: Counters for tests and logs: opened, accepted, refused, evicted, timed_out, garbage, oversize,
        #: broken (closed by the peer or the network), closed (by us), dropped (send queue full).
        self.counters: collections.Counter[str] = collections.Counter()

    @property
    def local_address(self) -> Address:
        """The candidate's transport address (port 9 for an active candidate, RFC 6544 4.5)."""
        return self._local

    @property
    def connections(self) -> list[Address]:
        """The remote addresses of the open (or opening) connections."""
        return list(self._connections)

    # ---- lifetime ----

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve connections until cancelled; on the way out every connection is closed."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._start(nursery)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._stopped = True
            self._nursery = None
            self._stop()
            self._frames_in.close()

    def _start(self, nursery: trio.Nursery) -> None:
        """Start the endpoint's own tasks (the passive one's accept loop)."""

    def _stop(self) -> None:
        """Release what `_start` opened."""

    # ---- the CandidateTransport / ConnectionTransport API ----

    async def send(self, data: bytes, remote: Address) -> None:
        """Send one packet to `remote` as an RFC 4571 frame on its connection (RFC 6544 3); waits while the
        connection's queue is full. Lost if there is no connection and none can be opened."""
        frame = encode_frame(data, self.config.tcp_max_frame)
        conn = self._connections.get(remote) or self._open(remote)
        if conn is None:
            self.counters["dropped"] += 1
            await trio.lowlevel.checkpoint()
            return
        try:
            await conn.outbox.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.counters["dropped"] += 1  # it closed meanwhile (reported by its task)

    def send_nowait(self, data: bytes, remote: Address) -> None:
        """`send` without waiting: dropped when the connection's queue is full (as UDP may)."""
        frame = encode_frame(data, self.config.tcp_max_frame)
        conn = self._connections.get(remote) or self._open(remote)
        if conn is None:
            self.counters["dropped"] += 1
            return
        try:
            conn.outbox.send_nowait(frame)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.counters["dropped"] += 1

    async def receive(self) -> tuple[bytes, Address]:
        """The next packet from any connection and the remote it came from; ClosedResourceError once stopped."""
        try:
            return await self._frames_out.receive()
        except trio.EndOfChannel:
            raise trio.ClosedResourceError("the ICE-TCP endpoint was closed") from None

    def watch(self, on_closed: Callable[[Address], None]) -> None:
        """Call `on_closed(remote)` when a connection ends by itself (peer, network, limits: RFC 6544 7.1)."""
        self._on_closed = on_closed

    def confirm(self, remote: Address) -> None:
        """A valid check arrived on `remote`'s connection: no more check timeout, data may pass."""
        conn = self._connections.get(remote)
        if conn is not None and not conn.confirmed:
            conn.confirmed = True
            conn.scope.deadline = math.inf

    def close_connection(self, remote: Address) -> None:
        """Close the connection to `remote` (a pair that lost or failed); not reported to `watch`."""
        conn = self._connections.get(remote)
        if conn is not None:
            conn.closing = True
            conn.scope.cancel()

    # ---- connections ----

    def _open(self, remote: Address) -> _Connection | None:
        """A connection for a first send to `remote`: the active endpoint opens one, the passive one cannot."""
        return None

    def _serve(self, conn: _Connection, stream: trio.abc.Stream | None) -> None:
        assert self._nursery is not None
        self._connections[conn.remote] = conn
        self._nursery.start_soon(self._connection_task, conn, stream, name=f"ice-tcp-{conn.remote[0]}:{conn.remote[1]}")

    async def _connect(self, remote: Address) -> trio.abc.Stream:
        raise NotImplementedError

    async def _connection_task(self, conn: _Connection, stream: trio.abc.Stream | None) -> None:
        reason = "closed"
        try:
            with conn.scope:
                if stream is None:
                    try:
                        stream = await self._connect(conn.remote)
                    except OSError as exc:
                        reason = f"connect failed: {exc.strerror or exc}"
                        stream = None
                if stream is not None:
                    try:
                        reason = await self._pump(conn, stream)
                    finally:
                        await trio.aclose_forcefully(stream)
            if conn.scope.cancelled_caught and not conn.closing:
                if conn.confirmed:
                    reason = "connect timed out"
                else:
                    self.counters["timed_out"] += 1
                    reason = f"no valid check within tcp_check_timeout={self.config.tcp_check_timeout:g} s"
        finally:
            if self._connections.get(conn.remote) is conn:
                del self._connections[conn.remote]
            conn.outbox_reader.close()
        # reached only when the connection ended by itself or on request, not when the endpoint stops
        if conn.closing:
            self.counters["closed"] += 1
            return
        self.counters["broken"] += 1
        log.debug("ICE-TCP connection %s -> %s:%d ended: %s", self._local, conn.remote[0], conn.remote[1], reason)
        if self._on_closed is not None and not self._stopped:
            self._on_closed(conn.remote)

    async def _pump(self, conn: _Connection, stream: trio.abc.Stream) -> str:
        """Read and write until either side ends; returns why the connection ended."""
        result = ["closed"]

        async def writer(cancel: trio.CancelScope) -> None:
            reader = conn.outbox_reader
            try:
                while True:
                    frame = await reader.receive()
                    batch = [frame]
                    size = len(frame)
                    while size < READ_SIZE:
                        try:
                            frame = reader.receive_nowait()
                        except trio.WouldBlock:
                            break
                        batch.append(frame)
                        size += len(frame)
                    await stream.send_all(b"".join(batch) if len(batch) > 1 else batch[0])
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                result[0] = f"send failed: {exc}"
            except trio.EndOfChannel:
                pass
            cancel.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, nursery.cancel_scope)
            result[0] = await self._reader(conn, stream)
            nursery.cancel_scope.cancel()
        return result[0]

    async def _reader(self, conn: _Connection, stream: trio.abc.Stream) -> str:
        deframer = Deframer(self.config.tcp_max_frame)
        deliver = self._frames_in.send
        remote = conn.remote
        while True:
            try:
                data = await stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                return f"receive failed: {exc}"
            if not data:
                return "closed by the peer" if not deframer.buffered else "closed by the peer inside a frame"
            try:
                frames = deframer.feed_frames(data)
            except FramingError as exc:
                self.counters["oversize"] += 1
                return str(exc)
            for frame in frames:
                if not conn.confirmed and not looks_like_stun(frame):
                    # RFC 6544 7.2: a connection starts with a check; anything else before one is not ICE
                    self.counters["garbage"] += 1
                    return "data before a valid check"
                try:
                    await deliver((frame, remote))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return "endpoint closed"


class TcpPassiveEndpoint(_TcpEndpoint):
    """The transport of a passive candidate: accepts connections (at most `IceConfig.tcp_max_inbound`),
    closes those that send no valid check within `tcp_check_timeout` (RFC 6544 7.2)."""

    def __init__(self, listener: TcpListener, config: IceConfig) -> None:
        super().__init__(listener.local_address, config)
        self._listener = listener

    def _start(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._accept_loop, name=f"ice-tcp-accept-{self._local[0]}:{self._local[1]}")

    def _stop(self) -> None:
        self._listener.close()

    async def _accept_loop(self) -> None:
        while True:
            try:
                stream, peer = await self._listener.accept()
            except trio.ClosedResourceError:
                return
            except OSError as exc:  # EMFILE and the like: back off, keep listening
                log.warning("ICE-TCP accept on %s failed: %s", self._local, exc)
                await trio.sleep(0.1)
                continue
            if not self._admit(peer):
                self.counters["refused"] += 1
                await trio.aclose_forcefully(stream)
                continue
            self.counters["accepted"] += 1
            conn = _Connection(peer, inbound=True)
            conn.scope.deadline = trio.current_time() + self.config.tcp_check_timeout
            self._serve(conn, stream)

    def _admit(self, peer: Address) -> bool:
        """Room for one more inbound connection: at the cap the oldest unchecked one makes room, else no."""
        old = self._connections.get(peer)
        if old is not None:  # the same 4-tuple again: the old one is gone, whatever we thought
            old.closing = True
            old.scope.cancel()
            del self._connections[peer]
        if len(self._connections) < self.config.tcp_max_inbound:
            return True
        for conn in self._connections.values():  # oldest first (dicts keep insertion order)
            if not conn.confirmed:
                self.counters["evicted"] += 1
                conn.closing = True
                conn.scope.cancel()
                del self._connections[conn.remote]
                return True
        return False


class TcpActiveEndpoint(_TcpEndpoint):
    """The transport of an active candidate: a first send to a remote opens a connection from the
    candidate's IP (ephemeral port, RFC 6544 4.5) and keeps it for that pair (RFC 6544 7.1)."""

    def __init__(
        self, network: Network, address: str, config: IceConfig, *, port_range: tuple[int, int] | None = None
    ) -> None:
        super().__init__((address, 9), config)
        self._network = network
        #: `open_agent(port_range=...)`: the connections' local ports come from it (else ephemeral)
        self._port_range = port_range

    def _open(self, remote: Address) -> _Connection | None:
        if self._nursery is None or self._stopped:
            return None
        self.counters["opened"] += 1
        conn = _Connection(remote, inbound=False)
        # a connection that is not up when the check would time out fails its pair anyway (RFC 8489 6.2.2)
        conn.scope.deadline = trio.current_time() + self.config.reliable_timeout
        self._serve(conn, None)
        return conn

    async def _connect(self, remote: Address) -> trio.abc.Stream:
        conn = self._connections.get(remote)
        address = self._local[0]
        stream, _local = await bind_in_range(
            lambda port: self._network.connect_tcp(remote, local=(address, port)),
            self._port_range,
            address,
            "TCP connection",
        )
        if conn is not None:
            conn.scope.deadline = math.inf
        return stream
