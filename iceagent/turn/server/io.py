"""The embedded TURN server (RFC 8656) on Trio: UDP, TCP and TLS listeners, UDP relays, long-term credentials.

It exists for the demo and for tests (on real sockets and on the vnet plugin): it reaches the network only
through the `Network` seam. The protocol lives in the sans-IO `TurnServerState`; this layer moves bytes,
binds and closes relay sockets, and runs the expiry timer. Every task runs in the server's nursery; every
relay socket is closed when its allocation ends and when the server exits.
"""

from __future__ import annotations

import errno
import math
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

import attrs
import trio

from ..._groups import serving
from ...logs import get_logger
from ...net.base import Address, Network, TcpListener, UdpSocket
from ...stun._serving import ReadDeadline, wait_for_rate
from ...stun.limits import ConnectionCounter, RequestLimiter, is_request
from ...uri import format_host_port
from .binding import bind_listeners, bind_relay, parse_address, relay_ips
from .state import TurnServerState
from .types import (
    DEFAULT_SOFTWARE,
    CloseRelay,
    FiveTuple,
    OpenRelay,
    Output,
    SendToClient,
    SendToPeer,
    Transport,
    TurnServerConfig,
    TurnServerStats,
    split_stream,
)

__all__ = [
    "DEFAULT_REALM",
    "DEFAULT_SOFTWARE",
    "TurnServer",
    "TurnServerConfig",
    "TurnServerStats",
    "bind_turn_server",
    "open_turn_server",
    "serve_turn",
]

log = get_logger(__name__)

DEFAULT_REALM = "iceagent"
"""The realm when none is given (RFC 8489 14.9)."""

_TCP_QUEUE = 256  # datagrams queued per TCP/TLS client before relayed data is dropped
_RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


@attrs.define(eq=False)
class _Relay:
    """A relayed transport address: its socket and the cancel scope of its receive task."""

    five_tuple: FiveTuple
    sock: UdpSocket
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)


class TurnServer:
    """A running embedded TURN server; made by `open_turn_server` or `serve_turn` (RFC 8656)."""

    def __init__(
        self,
        network: Network,
        state: TurnServerState,
        *,
        udp: list[UdpSocket],
        tcp: list[TcpListener],
        tls: list[TcpListener],
        ssl_context: ssl.SSLContext | None,
        relay_addresses: dict[int, str],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.network = network
        self.state = state
        self._wall_clock = wall_clock
        self._udp = udp
        self._udp_by_address = {sock.local_address: sock for sock in udp}
        self._tcp = tcp
        self._tls = tls
        self._ssl_context = ssl_context
        self._relay_addresses = relay_addresses
        self._relays: dict[Address, _Relay] = {}
        self._connections: dict[FiveTuple, trio.MemorySendChannel[bytes]] = {}
        self._nursery: trio.Nursery | None = None
        self._deadline = math.inf
        self._timer_changed = trio.Event()
        self._closed = False
        self._limiter = RequestLimiter(state.config.limits, trio.current_time())
        self._open = ConnectionCounter(state.config.limits)
        self._limited: dict[str, int] = {}

    # ---- what a user reads ----

    @property
    def addresses(self) -> list[Address]:
        """The UDP addresses listened on, as bound (port 0 resolved): put them in `turn:` URIs."""
        return [sock.local_address for sock in self._udp]

    @property
    def address(self) -> Address:
        """The first UDP address."""
        return self.addresses[0]

    @property
    def tcp_addresses(self) -> list[Address]:
        """The TCP addresses listened on (`turn:...?transport=tcp`), empty without `tcp=True`."""
        return [listener.local_address for listener in self._tcp]

    @property
    def tls_addresses(self) -> list[Address]:
        """The TLS addresses listened on (`turns:`), empty without `tls`."""
        return [listener.local_address for listener in self._tls]

    @property
    def relay_addresses(self) -> dict[int, str]:
        """The IP that relays are bound on, per IP version (4, 6)."""
        return dict(self._relay_addresses)

    @property
    def realm(self) -> str:
        """The realm of the long-term credentials (RFC 8489 9.2)."""
        return self.state.auth.realm

    @property
    def stats(self) -> TurnServerStats:
        """Current allocations, permissions and channels, and counters since the start."""
        stats = self.state.stats
        stats.limited = dict(self._limited)
        return stats

    def uris(self) -> list[str]:
        """`turn:`/`turns:` URIs of every listener (RFC 7065), e.g. for an `IceServer`."""
        out = [f"turn:{format_host_port(a)}?transport=udp" for a in self.addresses]
        out += [f"turn:{format_host_port(a)}?transport=tcp" for a in self.tcp_addresses]
        out += [f"turns:{format_host_port(a)}?transport=tcp" for a in self.tls_addresses]
        return out

    def set_user(self, username: str, password: str) -> None:
        """Add a user or change a password; takes effect for the next request."""
        self.state.auth.set_user(username, password)

    def set_auth_secrets(self, secrets: Sequence[bytes]) -> None:
        """Replace the shared secrets of ephemeral credentials (rotation); takes effect for the next request."""
        self.state.auth.set_auth_secrets(secrets)

    # ---- running ----

    async def serve(self, *, task_status: trio.TaskStatus[TurnServer] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on every listener until cancelled; relays are closed on the way out, listeners by `close()`."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for sock in self._udp:
                    nursery.start_soon(self._serve_udp, sock)
                for listener in self._tcp:
                    nursery.start_soon(self._serve_stream_listener, nursery, listener, "tcp")
                for listener in self._tls:
                    nursery.start_soon(self._serve_stream_listener, nursery, listener, "tls")
                nursery.start_soon(self._run_timer)
                log.info("TURN server listening on %s", ", ".join(self.uris()))
                task_status.started(self)
        finally:
            self._nursery = None
            self._close_relays()

    def close(self) -> None:
        """Close every listener and relay socket (idempotent)."""
        self._closed = True
        for sock in self._udp:
            sock.close()
        for listener in [*self._tcp, *self._tls]:
            listener.close()
        self._close_relays()

    def _close_relays(self) -> None:
        for relay in list(self._relays.values()):
            relay.scope.cancel()
            relay.sock.close()
        self._relays.clear()

    # ---- moving bytes ----

    def _now(self) -> float:
        return trio.current_time()

    async def _serve_udp(self, sock: UdpSocket) -> None:
        local = sock.local_address
        while True:
            data, remote = await sock.receive()
            if is_request(data):
                limited = self._limiter.check(remote[0], self._now())
                if limited is not None:
                    self._count(limited)  # dropped unanswered: a flood, maybe from forged sources
                    continue
            await self._from_client(data, FiveTuple(remote, local, "udp"))

    def _count(self, reason: str) -> None:
        self._limited[reason] = self._limited.get(reason, 0) + 1

    async def _from_client(self, data: bytes, ft: FiveTuple) -> None:
        try:
            outputs = self.state.receive_from_client(data, ft, self._now(), self._wall_clock())
        except Exception:  # a bug here must not take the server down; it is logged and the input dropped
            log.exception("TURN server: failed to handle %d bytes from %s", len(data), ft)
            return
        if outputs:
            await self._dispatch(outputs)
            self._poke_timer()

    async def _dispatch(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, SendToClient):
                await self._to_client(out, reliable=True)
            elif isinstance(out, SendToPeer):
                relay = self._relays.get(out.relay)
                if relay is not None:
                    await relay.sock.send(out.data, out.peer)
            elif isinstance(out, OpenRelay):
                await self._dispatch(await self._open_relay(out))
            else:
                self._close_relay(out)

    async def _to_client(self, out: SendToClient, *, reliable: bool) -> None:
        ft = out.five_tuple
        if ft.transport == "udp":
            sock = self._udp_by_address.get(ft.server)
            if sock is not None:
                await sock.send(out.data, ft.client)
            return
        channel = self._connections.get(ft)
        if channel is None:
            return
        try:
            if reliable:
                await channel.send(out.data)  # a response: wait for room (TCP clients do not retransmit)
            else:
                channel.send_nowait(out.data)  # relayed data: dropped when the client cannot keep up
        except trio.WouldBlock:
            self.state.count_dropped()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _open_relay(self, request: OpenRelay) -> list[Output]:
        """Bind the relay socket of a new allocation and start relaying from it (RFC 8656 7.2)."""
        ft = request.five_tuple
        host = self._relay_addresses[request.family]
        nursery = self._nursery
        try:
            if nursery is None or self._closed:
                raise OSError(errno.ESHUTDOWN, "the server is shutting down")
            sock = await bind_relay(self.network, host, even=request.even_port)
        except OSError as e:
            reason = os.strerror(e.errno) if e.errno else str(e)
            log.warning("TURN server: cannot bind a relay on %s: %s", host, reason)
            return self.state.relay_failed(ft, f"{host}: {reason}", self._now())
        relay = _Relay(ft, sock)
        self._relays[sock.local_address] = relay
        nursery.start_soon(self._relay_loop, relay)
        outputs = self.state.relay_opened(ft, sock.local_address, self._now())
        log.debug("TURN server: allocation %s for %s", sock.local_address, ft)
        return outputs

    def _close_relay(self, out: CloseRelay) -> None:
        relay = self._relays.pop(out.relay, None)
        log.debug("TURN server: allocation %s closed: %s", out.relay, out.reason)
        if relay is not None:
            relay.scope.cancel()
            relay.sock.close()

    async def _relay_loop(self, relay: _Relay) -> None:
        """Datagrams from peers at one relayed address, to the client (RFC 8656 11.3, 12.6)."""
        state = self.state
        address = relay.sock.local_address
        with relay.scope:
            try:
                while True:
                    data, peer = await relay.sock.receive()
                    try:
                        out = state.receive_from_peer(address, data, peer, self._now())
                    except Exception:
                        log.exception("TURN server: failed to relay %d bytes from %s", len(data), peer)
                        continue
                    if out is not None:
                        await self._to_client(out, reliable=False)
            except (trio.ClosedResourceError, OSError):
                return  # the allocation ended and its socket was closed

    async def _run_timer(self) -> None:
        """Expire allocations, permissions and channels at `get_timer()` (RFC 8656 6, 9, 12)."""
        while True:
            deadline = self.state.get_timer()
            self._deadline = deadline if deadline is not None else math.inf
            self._timer_changed = trio.Event()
            with trio.move_on_at(self._deadline):
                await self._timer_changed.wait()
            if self._now() < self._deadline:
                continue  # woken because an earlier expiry was scheduled
            try:
                outputs = self.state.handle_timer(self._now())
            except Exception:
                log.exception("TURN server: expiry failed")
                continue
            for out in outputs:
                if isinstance(out, CloseRelay):
                    self._close_relay(out)

    def _poke_timer(self) -> None:
        """Wake the timer task when the next expiry moved earlier than it sleeps until."""
        deadline = self.state.get_timer()
        if deadline is not None and deadline < self._deadline:
            self._timer_changed.set()

    # ---- TCP and TLS ----

    async def _serve_stream_listener(self, nursery: trio.Nursery, listener: TcpListener, kind: Transport) -> None:
        local = listener.local_address
        while True:
            try:
                stream, remote = await listener.accept()
            except OSError as e:
                if e.errno not in _RESOURCE_ERRNOS:
                    raise
                log.warning("TURN server: cannot accept on %s: %s", format_host_port(local), e)
                await trio.sleep(0.1)  # out of descriptors: back off instead of spinning
                continue
            refused = self._open.open(remote[0])
            if refused is not None:
                self._count(refused)
                await trio.aclose_forcefully(stream)
                continue
            if kind == "tls":
                assert self._ssl_context is not None
                stream = trio.SSLStream(stream, self._ssl_context, server_side=True)
            nursery.start_soon(self._serve_connection, stream, FiveTuple(remote, local, kind))

    async def _serve_connection(self, stream: trio.abc.Stream, ft: FiveTuple) -> None:
        """One TCP/TLS client: STUN and ChannelData framed on the stream (RFC 8656 12.5); the allocation ends
        with the connection (RFC 8656 5). A TLS handshake must finish within `limits.read_timeout`."""
        send, receive = trio.open_memory_channel[bytes](_TCP_QUEUE)
        self._connections[ft] = send
        try:
            if isinstance(stream, trio.SSLStream) and not await self._handshake(stream):
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_connection, stream, receive, nursery.cancel_scope)
                await self._read_connection(stream, ft)
                nursery.cancel_scope.cancel()
        finally:
            self._open.close(ft.client[0])
            del self._connections[ft]
            send.close()
            for out in self.state.client_closed(ft, self._now()):
                if isinstance(out, CloseRelay):
                    self._close_relay(out)
            try:
                await trio.aclose_forcefully(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def _handshake(self, stream: trio.SSLStream[trio.abc.Stream]) -> bool:
        """The TLS handshake, within `limits.read_timeout` (a client that stalls it holds a socket)."""
        with trio.move_on_after(self.state.config.limits.read_timeout):
            try:
                await stream.do_handshake()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False  # not TLS, a bad certificate, a reset
            return True
        self._count("read_timeout")
        return False

    async def _read_connection(self, stream: trio.abc.Stream, ft: FiveTuple) -> None:
        """Frames off the stream until it ends; closed when idle without an allocation (`tcp_idle_timeout`) or
        when a message begun does not arrive whole within `limits.read_timeout` (a client trickling bytes)."""
        buffer = bytearray()
        config = self.state.config
        reader = ReadDeadline(stream, config.limits.read_timeout, config.tcp_idle_timeout)
        while True:
            try:
                chunk = await reader.receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # reset by the client
            if chunk is None:
                if reader.deadline is not None:
                    self._count("read_timeout")
                    return
                if self.state.allocation(ft, self._now()) is not None:
                    continue  # quiet, but its allocation is alive: the connection stays
                return  # idle without an allocation (or after it expired): close
            if not chunk:
                return  # closed by the client
            fresh = not buffer
            buffer += chunk
            try:
                frames = split_stream(buffer)
            except ValueError as e:
                log.info("TURN server: closing %s: %s", ft, e)
                return  # a byte stream cannot be resynchronised
            for frame in frames:
                if is_request(frame) and not await wait_for_rate(self._limiter, ft.client[0], self._count):
                    return  # its turn would come after the read deadline: too far behind
                await self._from_client(frame, ft)
            reader.handled(len(buffer), fresh or bool(frames))

    async def _write_connection(
        self, stream: trio.abc.Stream, receive: trio.MemoryReceiveChannel[bytes], scope: trio.CancelScope
    ) -> None:
        """Send what is queued for the client; a send blocked `limits.write_timeout` (the client does not read)
        closes the connection."""
        timeout = self.state.config.limits.write_timeout
        try:
            async for data in receive:
                with trio.move_on_after(timeout):
                    await stream.send_all(data)
                    continue
                self._count("write_timeout")
                scope.cancel()
                return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            scope.cancel()


# ---- opening ----


async def bind_turn_server(
    network: Network,
    listen: Sequence[str | Address] = ("127.0.0.1:0",),
    *,
    users: Mapping[str, str],
    realm: str = DEFAULT_REALM,
    relay_address: str | Sequence[str] | None = None,
    tcp: bool = False,
    tls_listen: Sequence[str | Address] = (),
    ssl_context: ssl.SSLContext | None = None,
    config: TurnServerConfig | None = None,
    secret: bytes | None = None,
    auth_secrets: Sequence[bytes] = (),
    wall_clock: Callable[[], float] = time.time,
) -> TurnServer:
    """Open the sockets of a TURN server without serving yet; `serve_turn` and `open_turn_server` use it.

    Raises ValueError for bad options and OSError (naming the address) when one cannot be bound.
    """
    if not listen:
        raise ValueError("the TURN server needs at least one address to listen on")
    if not users and not auth_secrets:
        raise ValueError(
            "the TURN server needs at least one user (username -> password) or auth secret (ephemeral credentials)"
        )
    if tls_listen and ssl_context is None:
        raise ValueError("tls_listen needs an ssl_context with the server's certificate (e.g. from trustme)")
    addresses = [parse_address(a) for a in listen]
    tls_addresses = [parse_address(a) for a in tls_listen]
    relays = relay_ips(addresses, relay_address)
    state = TurnServerState(
        realm=realm,
        users=users,
        relay_families=sorted(relays),
        config=config,
        secret=secret,
        auth_secrets=auth_secrets,
    )
    udp: list[UdpSocket] = []
    tcp_listeners: list[TcpListener] = []
    tls_listeners: list[TcpListener] = []
    where = ""
    try:
        for host, port in addresses:
            where = format_host_port((host, port))
            sock, listener = await bind_listeners(network, host, port, tcp)
            udp.append(sock)
            if listener is not None:
                tcp_listeners.append(listener)
        for host, port in tls_addresses:
            where = format_host_port((host, port)) + " (TLS)"
            tls_listeners.append(await network.listen_tcp(host, port))
    except BaseException as e:
        for s in udp:
            s.close()
        for listener in [*tcp_listeners, *tls_listeners]:
            listener.close()
        if isinstance(e, OSError):
            reason = os.strerror(e.errno) if e.errno else str(e)
            raise OSError(e.errno, f"cannot open the TURN server on {where}: {reason}") from e
        raise
    state.policy.add_own_addresses(sock.local_address for sock in udp)  # never relayed to (CVE-2020-26262)
    return TurnServer(
        network,
        state,
        udp=udp,
        tcp=tcp_listeners,
        tls=tls_listeners,
        ssl_context=ssl_context,
        relay_addresses=relays,
        wall_clock=wall_clock,
    )


async def serve_turn(
    network: Network,
    listen: Sequence[str | Address] = ("127.0.0.1:0",),
    *,
    users: Mapping[str, str],
    realm: str = DEFAULT_REALM,
    relay_address: str | Sequence[str] | None = None,
    tcp: bool = False,
    tls_listen: Sequence[str | Address] = (),
    ssl_context: ssl.SSLContext | None = None,
    config: TurnServerConfig | None = None,
    auth_secrets: Sequence[bytes] = (),
    wall_clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[TurnServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run an embedded TURN server until cancelled (RFC 8656); `await nursery.start(serve_turn, network, ...)`.

    `listen`: UDP addresses (`"IP:PORT"`, `"[IPv6]:PORT"` or (ip, port); port 0 picks a free one); `tcp=True`
    adds TCP listeners on the same addresses; `tls_listen` adds TLS listeners (with `ssl_context`).
    `relay_address`: the IP (or one IP per family) relays are bound on, default the listening IPs.
    `users`: username -> password of the long-term credentials in `realm`; `auth_secrets`: shared secrets of
    ephemeral credentials (TURN REST API: username "<expiry>:<user>", password base64(HMAC-SHA1(secret,
    username))), which expire by `wall_clock()` (unix seconds). Timers, quotas and the peer policy (loopback
    peers are refused unless `TurnServerConfig(allow_loopback_peers=True)`) are in `config`.
    """
    server = await bind_turn_server(
        network,
        listen,
        users=users,
        realm=realm,
        relay_address=relay_address,
        tcp=tcp,
        tls_listen=tls_listen,
        ssl_context=ssl_context,
        config=config,
        auth_secrets=auth_secrets,
        wall_clock=wall_clock,
    )
    try:
        await server.serve(task_status=task_status)
    finally:
        server.close()


@asynccontextmanager
async def open_turn_server(
    network: Network,
    listen: Sequence[str | Address] = ("127.0.0.1:0",),
    *,
    users: Mapping[str, str],
    realm: str = DEFAULT_REALM,
    relay_address: str | Sequence[str] | None = None,
    tcp: bool = False,
    tls_listen: Sequence[str | Address] = (),
    ssl_context: ssl.SSLContext | None = None,
    config: TurnServerConfig | None = None,
    auth_secrets: Sequence[bytes] = (),
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[TurnServer]:
    """Run an embedded TURN server for the body of an `async with` (options as `serve_turn`).

    Everything it opened is closed on exit. Bad options and bind errors raise before the body runs; an
    exception from the body comes out as itself, not wrapped in an ExceptionGroup.
    """
    server = await bind_turn_server(
        network,
        listen,
        users=users,
        realm=realm,
        relay_address=relay_address,
        tcp=tcp,
        tls_listen=tls_listen,
        ssl_context=ssl_context,
        config=config,
        auth_secrets=auth_secrets,
        wall_clock=wall_clock,
    )
    async with serving(server):
        yield server
