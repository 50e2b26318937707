"""How a TURN client reaches its server: UDP, TCP and TLS connections (RFC 8656 3.1), as plugin factories.

A `TurnTransportFactory` opens a `TurnConnection` to the server: a message pipe that sends and
receives whole STUN or ChannelData messages. Over UDP a message is a datagram (datagrams from any
other address are dropped); over TCP and TLS the messages are framed on the stream (RFC 8656 12.5,
see `framing.StreamDeframer`). The built-in factories are registered through the
`iceagent_turn_transports` hook under the names "udp", "tcp" and "tls" (`IceUri.protocol`); a plugin
may add more (e.g. "dtls").
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import trio

from ..hookspecs import hookimpl
from ..net.base import Address, Network, UdpSocket
from .errors import TurnConnectionError
from .framing import StreamDeframer

if TYPE_CHECKING:
    import pluggy

__all__ = [
    "BUILTIN_TRANSPORTS",
    "NowaitTurnConnection",
    "OSUdpTurnConnection",
    "StreamTurnConnection",
    "TurnConnection",
    "TurnTransportFactory",
    "UdpTurnConnection",
    "WaitableTurnConnection",
    "open_tcp",
    "open_tls",
    "open_udp",
    "turn_transports",
]


@runtime_checkable
class TurnConnection(Protocol):
    """A message pipe to one TURN server: whole STUN / ChannelData messages in and out (RFC 8656 3.1).

    A cancelled `send` sends nothing and a cancelled `receive` takes nothing off the connection (check for
    cancellation before the system call, as Trio's sockets do): a message read and then dropped is lost. A
    stream whose write was cancelled part way raises trio.BrokenResourceError from then on."""

    #: True over TCP/TLS: no retransmissions (RFC 8489 6.2.2), ChannelData padded (RFC 8656 12.5).
    reliable: bool

    @property
    def local_address(self) -> Address: ...

    @property
    def server(self) -> Address: ...

    async def send(self, frame: bytes) -> None: ...

    async def receive(self) -> bytes: ...

    async def aclose(self) -> None: ...


class TurnTransportFactory(Protocol):
    """Opens a TurnConnection to `server` (an IP address and port) over one transport protocol.

    `server_name` is the name to check the server's TLS certificate against (the host of the
    `turns:` URI); `ssl_context` None means `ssl.create_default_context()`. `local_address` is the
    local IP to send from (None: any). Raises TurnConnectionError with a message a user can act on.
    """

    async def __call__(
        self,
        network: Network,
        server: Address,
        *,
        server_name: str,
        ssl_context: ssl.SSLContext | None,
        local_address: str | None,
    ) -> TurnConnection: ...


def _wildcard(server: Address) -> str:
    return "::" if ":" in server[0] else "0.0.0.0"


def _where(scheme: str, server: Address) -> str:
    host, port = server
    return f"{scheme} server [{host}]:{port}" if ":" in host else f"{scheme} server {host}:{port}"


_YIELD_EVERY = 16
"""The UDP fast path yields to other tasks once every this many sends or receives that did not block."""

_STRAY_READS = 64
"""Datagrams `receive_nowait` reads at most per call: anyone may send to the socket whose address a relay
candidate names (its related address), and what is not from the server is dropped, so a flood of those ends
a call with trio.WouldBlock (the caller waits, other tasks run) instead of looping."""


def _nonblocking_twin(sock: UdpSocket) -> socket.socket | None:
    """A second handle on the OS socket under `sock` (a dup'd descriptor), for system calls that do not go
    through Trio's scheduler; None for sockets that are not the operating system's (vnet)."""
    raw = getattr(sock, "raw", None)
    fileno = getattr(raw, "fileno", None)
    if raw is None or fileno is None:
        return None
    try:
        twin = socket.socket(raw.family, raw.type, fileno=os.dup(fileno()))
    except (OSError, AttributeError, TypeError, ValueError):
        return None
    twin.setblocking(False)
    return twin


@runtime_checkable
class NowaitTurnConnection(TurnConnection, Protocol):
    """A TurnConnection that also sends and receives without waiting, for the allocation's synchronous
    data path (`Allocation.send_nowait`, batched `receive_batch`).

    Have it: `OSUdpTurnConnection` (TURN over an operating system UDP socket). Not TURN over TCP/TLS nor
    over the vnet plugin's sockets. A plugin's transport may add both methods to get the fast path.
    """

    def send_nowait(self, frame: bytes) -> None:
        """Send at once; dropped when the socket buffer is full, as UDP may."""

    def receive_nowait(self) -> bytes:
        """A message from the server already queued, or trio.WouldBlock; trio.ClosedResourceError once closed."""
        ...


@runtime_checkable
class WaitableTurnConnection(NowaitTurnConnection, Protocol):
    """A NowaitTurnConnection a reader can also wait on without reading (`OSUdpTurnConnection`): the stream's
    reader of a relayed pair drains the TURN socket in its own task (agent/_tap.py), as it does a host socket."""

    async def wait_readable(self) -> None:
        """Wait until a datagram is queued, or until `interrupt()`; one task at a time."""

    def interrupt(self) -> None:
        """Wake the task in `wait_readable` (it returns), if there is one."""


@runtime_checkable
class _Interruptible(Protocol):
    """A UdpSocket with `wait_readable` and `interrupt` (net/os.py's OSUdpSocket)."""

    async def wait_readable(self) -> None: ...

    def interrupt(self) -> None: ...


class UdpTurnConnection:
    """TURN over UDP (RFC 8656 3.1): one datagram per message, only the server's datagrams are read.

    Works on any `UdpSocket` (the vnet's too); `open_udp` gives an `OSUdpTurnConnection` on the
    operating system's sockets.
    """

    reliable = False

    def __init__(self, sock: UdpSocket, server: Address) -> None:
        self._sock = sock
        self._server = server
        self.socket = sock

    @property
    def local_address(self) -> Address:
        return self._sock.local_address

    @property
    def server(self) -> Address:
        return self._server

    async def send(self, frame: bytes) -> None:
        await self._sock.send(frame, self._server)

    async def receive(self) -> bytes:
        server_host, server_port = self._server
        while True:
            data, addr = await self._sock.receive()
            if addr[1] == server_port and addr[0] == server_host:
                return data

    async def aclose(self) -> None:
        self._sock.close()
        await trio.lowlevel.checkpoint()


class OSUdpTurnConnection(UdpTurnConnection):
    """TURN over an operating system UDP socket, with the synchronous data path (`NowaitTurnConnection`) and
    a wait without reading (`WaitableTurnConnection`).

    `send` and `receive` first try a non-blocking system call on `fast` (a second descriptor of the
    socket, `_nonblocking_twin`) and only wait through Trio when the socket is not ready; they still check
    for cancellation every time and yield to other tasks every 16 calls (a yield per datagram would halve
    the relayed rate). They check before the system call, never after it: a cancelled call has sent nothing
    and taken nothing off the socket (a response read and then dropped would cost a retransmission, RFC 8489
    6.2.1; a peer's datagram would be lost), and a cancellation that lands while `receive` yields ends it
    before its next read.
    """

    def __init__(self, sock: UdpSocket, server: Address, fast: socket.socket) -> None:
        super().__init__(sock, server)
        self._fast = fast
        self._ops = 0
        #: datagrams from anyone but the server, dropped by `receive_nowait`
        self.stray = 0
        if not isinstance(sock, _Interruptible):
            raise TypeError(f"OSUdpTurnConnection needs a socket with wait_readable/interrupt, got {sock!r}")
        self._waitable: _Interruptible = sock

    @property
    def twin(self) -> socket.socket:
        """The socket's non-blocking twin (a second descriptor): an allocation's synchronous data path calls its
        `sendto` and `recvfrom` itself (turn/_os_allocation.py `OSUdpAllocation`)."""
        return self._fast

    async def wait_readable(self) -> None:
        """Wait until the socket has a datagram (the server's, or one to drop), or until `interrupt()`; one
        task at a time (the socket's own `wait_readable`, on a duplicate of its descriptor: the background task
        reading for a response is not disturbed). trio.ClosedResourceError once closed."""
        await self._waitable.wait_readable()

    def interrupt(self) -> None:
        """Wake the task in `wait_readable` (it returns), if there is one."""
        self._waitable.interrupt()

    async def send(self, frame: bytes) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()  # before sending: a cancelled send sent nothing
        try:
            self._fast.sendto(frame, self._server)
        except BlockingIOError:
            await self._sock.send(frame, self._server)
            return
        except OSError:
            pass  # UDP: an unreachable destination is a lost datagram
        self._ops += 1
        if self._ops >= _YIELD_EVERY:
            self._ops = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def receive(self) -> bytes:
        server_host, server_port = self._server
        fast = self._fast
        while True:
            # Before the read, never after it: what was read is returned or, not from the server, dropped. The
            # task was last suspended (a cancellation can only have landed) at the yield below or in Trio's wait.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                data, addr = fast.recvfrom(65536)
            except BlockingIOError:
                self._ops = 0
                data, addr = await self._sock.receive()  # Trio's recvfrom: a cancelled wait reads nothing
            except (ConnectionError, InterruptedError):
                continue  # ICMP errors reported on a later recv: not an error for UDP
            except OSError as exc:
                if fast.fileno() < 0:
                    raise trio.ClosedResourceError("the TURN connection is closed") from exc
                raise
            else:
                self._ops += 1
                if self._ops >= _YIELD_EVERY:
                    self._ops = 0
                    await trio.lowlevel.cancel_shielded_checkpoint()
            if addr[1] == server_port and addr[0] == server_host:
                return data

    def send_nowait(self, frame: bytes) -> None:
        """Send without waiting; dropped when the socket buffer is full, as UDP may."""
        try:
            self._fast.sendto(frame, self._server)
        except OSError:
            pass

    def receive_nowait(self) -> bytes:
        """A message from the server already queued, or trio.WouldBlock (also after `_STRAY_READS` datagrams
        from elsewhere were dropped: bounded work per call, the caller waits and comes back)."""
        fast = self._fast
        server_host, server_port = self._server
        for _ in range(_STRAY_READS):
            try:
                data, addr = fast.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                raise trio.WouldBlock from None
            except ConnectionError:
                continue
            except OSError as exc:
                raise trio.ClosedResourceError("the TURN connection is closed") from exc
            if addr[1] == server_port and addr[0] == server_host:
                return data
            self.stray += 1
        raise trio.WouldBlock

    async def aclose(self) -> None:
        self._fast.close()
        await super().aclose()


class StreamTurnConnection:
    """TURN over TCP or TLS (RFC 8656 3.1): STUN and padded ChannelData messages framed on the stream."""

    reliable = True

    def __init__(self, stream: trio.abc.Stream, server: Address, local: Address, *, what: str) -> None:
        self._stream = stream
        self._server = server
        self._local = local
        self._what = what
        self._deframer = StreamDeframer()
        self._send_lock = trio.StrictFIFOLock()
        self._broken = False  # a write was cancelled part way (see `send`)

    @property
    def local_address(self) -> Address:
        return self._local

    @property
    def server(self) -> Address:
        return self._server

    @property
    def discarded(self) -> int:
        """Bytes of the stream skipped because no message could start there."""
        return self._deframer.discarded

    async def send(self, frame: bytes) -> None:
        """Write one frame. A cancelled send writes nothing; a write cancelled once it started may have left part
        of the frame on the stream, so the connection is broken from then on (every later send raises
        trio.BrokenResourceError: the server could no longer find where the next frame starts)."""
        async with self._send_lock:
            if self._broken:
                raise trio.BrokenResourceError("a cancelled write left part of a frame on the TURN stream")
            await trio.lowlevel.checkpoint_if_cancelled()  # (the lock's acquire does not raise Cancelled)
            try:
                await self._stream.send_all(frame)
            except trio.Cancelled:
                self._broken = True
                raise

    async def receive(self) -> bytes:
        deframer = self._deframer
        while True:
            frame = deframer.next_frame()
            if frame is not None:
                return frame
            data = await self._stream.receive_some(65536)
            if not data:
                raise trio.BrokenResourceError(f"the {self._what} closed the connection")
            deframer.feed(data)

    async def aclose(self) -> None:
        await self._stream.aclose()


async def open_udp(
    network: Network,
    server: Address,
    *,
    server_name: str,
    ssl_context: ssl.SSLContext | None,
    local_address: str | None,
) -> TurnConnection:
    """A UDP socket of its own for TURN over UDP (RFC 8656 3.1)."""
    try:
        sock = await network.bind_udp(local_address or _wildcard(server), 0)
    except OSError as exc:
        raise TurnConnectionError(
            f"cannot open a UDP socket on {local_address or 'any address'} to reach {_where('TURN', server)}: "
            f"{exc.strerror or exc}"
        ) from exc
    fast = _nonblocking_twin(sock) if isinstance(sock, _Interruptible) else None
    return UdpTurnConnection(sock, server) if fast is None else OSUdpTurnConnection(sock, server, fast)


async def _connect(
    network: Network, server: Address, local_address: str | None, what: str
) -> tuple[trio.abc.Stream, Address]:
    local = (local_address, 0) if local_address else None
    try:
        return await network.connect_tcp(server, local=local)
    except OSError as exc:
        raise TurnConnectionError(
            f"cannot connect to the {what}: {exc.strerror or exc} (is the server running and listening on TCP there?)"
        ) from exc


async def open_tcp(
    network: Network,
    server: Address,
    *,
    server_name: str,
    ssl_context: ssl.SSLContext | None,
    local_address: str | None,
) -> TurnConnection:
    """A TCP connection for TURN over TCP (RFC 8656 3.1)."""
    what = _where("TURN", server)
    stream, local = await _connect(network, server, local_address, what)
    return StreamTurnConnection(stream, server, local, what=what)


async def open_tls(
    network: Network,
    server: Address,
    *,
    server_name: str,
    ssl_context: ssl.SSLContext | None,
    local_address: str | None,
) -> TurnConnection:
    """TLS over TCP for `turns:` (RFC 8656 3.1), the certificate checked against `server_name` (RFC 7065 3)."""
    what = _where("TURNS", server)
    stream, local = await _connect(network, server, local_address, what)
    context = ssl_context if ssl_context is not None else ssl.create_default_context()
    tls = trio.SSLStream(stream, context, server_hostname=server_name, https_compatible=False)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(stream)
        cause = exc.__cause__
        detail = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or cause or exc
        hint = (
            f"the certificate does not match {server_name!r} or is not trusted: pass IceServer(ssl_context=...) "
            "with the server's CA loaded, or set SSL_CERT_FILE"
            if isinstance(cause, ssl.SSLCertVerificationError)
            else "is it a TLS port (coturn: --tls-listening-port) and does it speak TLS 1.2 or later?"
        )
        raise TurnConnectionError(f"TLS handshake with the {what} ({server_name}) failed: {detail}; {hint}") from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return StreamTurnConnection(tls, server, local, what=what)


BUILTIN_TRANSPORTS: Mapping[str, TurnTransportFactory] = {"udp": open_udp, "tcp": open_tcp, "tls": open_tls}
"""The built-in ways to reach a TURN server, by `IceUri.protocol`."""


@hookimpl
def iceagent_turn_transports() -> dict[str, TurnTransportFactory]:
    """UDP, TCP and TLS to the TURN server (RFC 8656 3.1, RFC 7065)."""
    return dict(BUILTIN_TRANSPORTS)


def turn_transports(plugin_manager: pluggy.PluginManager | None = None) -> dict[str, TurnTransportFactory]:
    """Every registered TURN transport: the built-ins, then those of plugins (a plugin may replace one)."""
    if plugin_manager is None:
        from ..plugins import get_plugin_manager

        plugin_manager = get_plugin_manager()
    out: dict[str, TurnTransportFactory] = dict(BUILTIN_TRANSPORTS)
    for result in reversed(plugin_manager.hook.iceagent_turn_transports()):
        out.update(result or {})
    return out
