"""A simple TCP over the virtual network: handshake, reliable in-order byte stream, half-close, reset.

Segments travel like datagrams (through NATs, with link latency); a lost segment is delayed by
retransmission timeouts instead of lost (see Link), and the receiver puts segments back in order.
Flow control is a fixed window: at most WINDOW bytes sent and not yet read by the peer's
application (the peer's ACKs say how much it read); `send_all` waits for room. No congestion control.
Not modelled: simultaneous open (RFC 9293 3.5), TIME-WAIT, urgent data.
"""

from __future__ import annotations

import errno
import math
import operator
from typing import TYPE_CHECKING

import trio

from .addresses import Address, addr_in_use, is_wildcard, os_error, same_family, wildcard_for
from .packet import ACK, CLOSE, DATA, FIN, RST, SYN, SYNACK, Packet
from .scheduler import advance_if_running, current_scheduler

if TYPE_CHECKING:
    from .host import Host

MSS = 1400
"""Bytes of payload per segment."""

WINDOW = 256 * 1024
"""Bytes a sender may have sent that the receiving application has not read yet."""


class VirtualTcpStream(trio.abc.HalfCloseableStream):
    """One end of a virtual TCP connection (a `trio.abc.HalfCloseableStream`).

    `aclose()` closes both directions: the peer reads EOF, and its later sends raise
    `trio.BrokenResourceError`. `send_eof()` closes only ours.
    """

    def __init__(self, stack: TcpStack, local: Address, remote: Address, *, established: bool) -> None:
        self._stack = stack
        self.local_address = local
        self.remote_address = remote
        self._send_seq = 0
        self._recv_seq = 0
        self._out_of_order: dict[int, Packet] = {}
        self._buffer = bytearray()
        self._eof = False
        self._peer_closed = False
        self._reset = False
        self._refused = False
        self._closed = False
        self._eof_sent = False
        self._established = trio.Event()
        if established:
            self._established.set()
        self._lot = trio.lowlevel.ParkingLot()
        self._sending = False
        self._receiving = False
        self._sent_bytes = 0
        self._acked_bytes = 0
        self._consumed_bytes = 0

    # -- segments -------------------------------------------------------------------------------

    def _segment(self, kind: str, data: bytes = b"", seq: int = 0) -> None:
        if kind in (DATA, FIN, CLOSE):
            seq = self._send_seq
            self._send_seq += 1
        self._stack.host.send_packet(Packet("tcp", self.local_address, self.remote_address, data, kind=kind, seq=seq))

    def _on_segment(self, packet: Packet) -> None:
        kind = packet.kind
        if kind == ACK:
            self._acked_bytes = max(self._acked_bytes, packet.seq)
        elif kind == SYNACK:
            self._established.set()
        elif kind == RST:
            self._reset = True
            if not self._established.is_set():
                self._refused = True
                self._established.set()
            self._stack.forget(self)
        elif kind in (DATA, FIN, CLOSE):
            if packet.seq < self._recv_seq or packet.seq in self._out_of_order:
                return  # a duplicate
            self._out_of_order[packet.seq] = packet
            while self._recv_seq in self._out_of_order:
                segment = self._out_of_order.pop(self._recv_seq)
                self._recv_seq += 1
                if segment.kind == DATA:
                    self._buffer += segment.payload
                else:
                    self._eof = True
                    self._peer_closed = self._peer_closed or segment.kind == CLOSE
        self._lot.unpark_all()

    def _abort(self) -> None:
        """Reset the connection (a listener closed before accepting it)."""
        if not self._closed:
            self._closed = True
            self._segment(RST)
            self._stack.forget(self)

    # -- trio.abc.HalfCloseableStream -----------------------------------------------------------

    def _check_send(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the TCP stream was closed")
        if self._eof_sent:
            raise trio.ClosedResourceError("cannot send after send_eof()")
        if self._reset:
            raise trio.BrokenResourceError("connection reset by peer")
        if self._peer_closed:
            raise trio.BrokenResourceError("the peer closed the connection")

    def _window_room(self) -> int:
        return WINDOW - (self._sent_bytes - self._acked_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send `data` as segments of at most MSS bytes, waiting while the peer's window is full."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            scheduler = current_scheduler()
            scheduler.advance()
            view = memoryview(data).cast("B")
            offset = 0
            while True:
                self._check_send()
                if offset >= len(view):
                    break
                room = self._window_room()
                if room <= 0:
                    scheduler.advance()
                    await self._lot.park()
                    continue
                size = min(MSS, room, len(view) - offset)
                self._segment(DATA, bytes(view[offset : offset + size]))
                self._sent_bytes += size
                offset += size
            scheduler.advance()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        """Waits while the peer's window is full."""
        await trio.lowlevel.checkpoint()
        while True:
            self._check_send()
            if self._window_room() > 0:
                return
            await self._lot.park()

    async def send_eof(self) -> None:
        """Close our direction (FIN): the peer reads EOF after the data sent so far."""
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("the TCP stream was closed")
        if self._eof_sent:
            return
        self._eof_sent = True
        if not self._reset:
            self._segment(FIN)
            current_scheduler().advance()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to `max_bytes` bytes in order; b"" at EOF; BrokenResourceError after a reset."""
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)  # TypeError for a float, as trio's streams
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint()
            advance_if_running()
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("the TCP stream was closed")
                if self._buffer:
                    size = len(self._buffer) if max_bytes is None else max_bytes
                    chunk = bytes(self._buffer[:size])
                    del self._buffer[:size]
                    self._consumed_bytes += len(chunk)
                    self._segment(ACK, seq=self._consumed_bytes)  # opens the peer's window
                    current_scheduler().advance()
                    return chunk
                if self._eof:
                    return b""
                if self._reset:
                    raise trio.BrokenResourceError("connection reset by peer")
                await self._lot.park()
        finally:
            self._receiving = False

    async def aclose(self) -> None:
        """Close both directions; the peer reads EOF after the data sent so far."""
        if not self._closed:
            advance_if_running()
            self._closed = True
            if not self._reset and not self._peer_closed:
                self._segment(CLOSE)
            self._stack.forget(self)
            self._lot.unpark_all()
            current_scheduler().advance()
        await trio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"<VirtualTcpStream {self.local_address} -> {self.remote_address}>"


class VirtualTcpListener:
    """A listening TCP socket on a virtual host (the `TcpListener` of iceagent.net)."""

    def __init__(self, stack: TcpStack, ip: str, port: int) -> None:
        self._stack = stack
        self.ip = ip
        self.port = port
        self._send, self._queue = trio.open_memory_channel[VirtualTcpStream](math.inf)
        self._closed = False

    @property
    def local_address(self) -> Address:
        """(bound address, port)."""
        return (self.ip, self.port)

    async def accept(self) -> tuple[trio.abc.Stream, Address]:
        """The next connection and the peer's address (as seen here: after any NAT)."""
        if not self._closed:
            current_scheduler().advance()
        try:
            stream = await self._queue.receive()
        except trio.ClosedResourceError:
            raise trio.ClosedResourceError("the TCP listener was closed") from None
        return stream, stream.remote_address

    def close(self) -> None:
        """Stop listening; connections not yet accepted are reset."""
        if self._closed:
            return
        advance_if_running()
        self._closed = True
        self._stack.unlisten(self)
        while True:
            try:
                self._queue.receive_nowait()._abort()
            except trio.WouldBlock:
                break
        self._queue.close()
        self._send.close()

    def _offer(self, stream: VirtualTcpStream) -> None:
        self._send.send_nowait(stream)

    def __repr__(self) -> str:
        return f"<VirtualTcpListener {self.ip}:{self.port}>"


class TcpStack:
    """The TCP side of a host: listeners, connections, demultiplexing, resets."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.listeners: dict[int, list[VirtualTcpListener]] = {}
        self.connections: dict[tuple[Address, Address], VirtualTcpStream] = {}

    def _ports_in_use(self) -> set[int]:
        return set(self.listeners) | {local[1] for local, _remote in self.connections}

    def listen(self, ip: str, port: int) -> VirtualTcpListener:
        """A listener on (ip, port); EADDRNOTAVAIL / EADDRINUSE as the OS says."""
        self.host._check_local_ip(ip)
        if port == 0:
            port = self.host.ephemeral_port(self._ports_in_use())
        for other in self.listeners.get(port, ()):
            if same_family(other.ip, ip) and (other.ip == ip or is_wildcard(other.ip) or is_wildcard(ip)):
                raise addr_in_use((ip, port), self.host.name)
        listener = VirtualTcpListener(self, ip, port)
        self.listeners.setdefault(port, []).append(listener)
        return listener

    def unlisten(self, listener: VirtualTcpListener) -> None:
        """Forget a closed listener."""
        listeners = self.listeners.get(listener.port)
        if listeners and listener in listeners:
            listeners.remove(listener)
            if not listeners:
                del self.listeners[listener.port]

    def forget(self, stream: VirtualTcpStream) -> None:
        """Forget a closed or reset connection (later segments for it are answered with RST)."""
        key = (stream.local_address, stream.remote_address)
        if self.connections.get(key) is stream:
            del self.connections[key]

    async def connect(self, remote: Address, local: Address | None) -> tuple[VirtualTcpStream, Address]:
        """Open a connection (SYN, wait for SYN-ACK); ConnectionRefusedError on RST, TimeoutError if unanswered."""
        host = self.host
        dst, dst_port = remote
        source = local[0] if local is not None else wildcard_for(dst)
        if not same_family(source, dst):
            raise os_error(errno.EAFNOSUPPORT, f"cannot connect from {source} to {dst}")
        if not 0 < dst_port <= 65535:
            raise os_error(errno.EINVAL, f"bad port {dst_port}")
        host._check_local_ip(source)
        route = host.route(source, dst)
        if route is None:
            raise os_error(errno.ENETUNREACH, f"no route from host {host.name!r} to {dst}")
        _attachment, src_ip = route
        port = local[1] if local is not None and local[1] else host.ephemeral_port(self._ports_in_use())
        key = ((src_ip, port), (dst, dst_port))
        if key in self.connections:
            raise addr_in_use(key[0], host.name)
        stream = VirtualTcpStream(self, key[0], key[1], established=False)
        self.connections[key] = stream
        try:
            stream._segment(SYN)
            current_scheduler().advance()
            with trio.move_on_after(host.tcp_connect_timeout) as scope:
                await stream._established.wait()
        except BaseException:
            self.forget(stream)
            raise
        if scope.cancelled_caught:
            self.forget(stream)
            raise TimeoutError(errno.ETIMEDOUT, f"connecting to {dst}:{dst_port} timed out")
        if stream._refused:
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"{dst}:{dst_port} refused the connection")
        return stream, stream.local_address

    def _listener_for(self, address: Address) -> VirtualTcpListener | None:
        ip, port = address
        wildcard = None
        for listener in self.listeners.get(port, ()):
            if listener.ip == ip:
                return listener
            if listener.ip == wildcard_for(ip):
                wildcard = listener
        return wildcard

    def receive(self, packet: Packet) -> None:
        """Demultiplex a TCP segment that arrived at this host."""
        stream = self.connections.get((packet.dst, packet.src))
        if stream is not None:
            stream._on_segment(packet)
            return
        if packet.kind == SYN:
            listener = self._listener_for(packet.dst)
            if listener is None:
                self.host.drops["no_listener"] += 1
                self._reset(packet)
                return
            stream = VirtualTcpStream(self, packet.dst, packet.src, established=True)
            self.connections[(packet.dst, packet.src)] = stream
            listener._offer(stream)
            stream._segment(SYNACK)
        elif packet.kind not in (RST, ACK):
            self.host.drops["tcp_reset"] += 1
            self._reset(packet)

    def _reset(self, packet: Packet) -> None:
        self.host.send_packet(Packet("tcp", packet.dst, packet.src, b"", kind=RST))
