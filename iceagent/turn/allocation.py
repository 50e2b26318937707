"""The Trio driver of a TURN allocation: `open_allocation()` and the `Allocation` transport (RFC 8656).

`open_allocation` opens a connection to the server (a `TurnTransportFactory`: UDP, TCP, TLS), runs
the Allocate exchange of the sans-IO `TurnClient` (credentials, stale nonces, redirection), then keeps
the allocation alive in a background task of its own nursery (refreshes, permission and channel
refreshes, retransmissions) until the `async with` ends, when it releases it (Refresh with LIFETIME
0, shielded, bounded in time) and closes the connection.

The `Allocation` is the CandidateTransport of a relay candidate: `send(data, peer)` relays to a
peer and `receive()` returns what peers sent, while the allocation's own STUN traffic with the
server is consumed inside (who reads the connection, and the background task: `_allocation_driver.py`).
"""

from __future__ import annotations

import math
import ssl
import struct
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Literal

import trio

from .._groups import sole_exception
from ..config import IceConfig
from ..logs import get_logger
from ..net.base import Address, Network
from ..uri import IceUri, format_host_port, parse_uri
from ._allocation_driver import _CONSUMER, _NOBODY, Pace, _AllocationDriver
from .client import TurnClient
from .errors import (
    TurnAllocationMismatch,
    TurnConnectionError,
    TurnError,
    TurnRedirectError,
    TurnTimeout,
)
from .events import AllocationState
from .framing import CHANNEL_DATA_MAX
from .transports import (
    NowaitTurnConnection,
    OSUdpTurnConnection,
    TurnTransportFactory,
    WaitableTurnConnection,
    turn_transports,
)

__all__ = ["Allocation", "open_allocation"]

log = get_logger("iceagent.turn")

_HEADER = struct.Struct("!HH")
_PAD = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")


class Allocation(_AllocationDriver):
    """A TURN allocation kept alive on a server; the transport of a relay candidate (RFC 8656).

    Created by `open_allocation`. `send` never waits for the server: data to a peer without a
    permission yet is held until CreatePermission succeeds (RFC 8656 10), and goes in Send indications
    until the peer's channel is bound, in ChannelData after (RFC 8656 11, 12). Datagrams that cannot be
    relayed (allocation lost, permission refused, more data than a ChannelData message or a Send indication
    holds: RFC 8656 11.1, 12.4) are dropped, as UDP would, and counted in `dropped`.
    `receive` raises trio.BrokenResourceError once the allocation is lost and trio.ClosedResourceError
    once it is closed. Its attributes `uri`, `protocol` and `on_lost` are set up in `_AllocationDriver`.
    """

    # ---- what the allocation is ----

    @property
    def relayed_address(self) -> Address:
        """The relayed transport address peers send to (XOR-RELAYED-ADDRESS, RFC 8656 7.3)."""
        address = self._client.relayed_address
        assert address is not None
        return address

    @property
    def mapped_address(self) -> Address | None:
        """This client's address as the server saw it (XOR-MAPPED-ADDRESS of the Allocate response)."""
        return self._client.mapped_address

    @property
    def server(self) -> Address:
        """The server's IP address and port."""
        return self._conn.server

    @property
    def local_address(self) -> Address:
        """The local address of the connection to the server."""
        return self._conn.local_address

    @property
    def lifetime(self) -> int:
        """The lifetime the server granted at the last Allocate or Refresh (RFC 8656 7.3, 8)."""
        return self._client.lifetime

    @property
    def error(self) -> TurnError | None:
        """Why the allocation was lost, if it was."""
        return self._lost

    @property
    def dropped(self) -> int:
        """Datagrams that could not be relayed (see the class docstring)."""
        return self._client.dropped

    @property
    def requests_sent(self) -> dict[str, int]:
        """Requests sent to the server by name ("Allocate", "Refresh", "CreatePermission", "ChannelBind")."""
        return dict(self._client.requests_sent)

    def permissions(self) -> dict[str, str]:
        """{peer IP: "pending" | "active" | "failed"} (RFC 8656 9)."""
        return self._client.permissions()

    def channels(self) -> dict[Address, int]:
        """{peer address: channel number} of the bound channels (RFC 8656 12)."""
        return self._client.channels()

    # ---- data ----

    async def send(self, data: bytes, remote: Address) -> None:
        """Relay one datagram to the peer at `remote` (RFC 8656 11.1, 12.5); never waits for the server."""
        channel = self._channel_of.get(remote)
        if channel is not None:
            n = len(data)
            if n > CHANNEL_DATA_MAX:  # no ChannelData message holds it (RFC 8656 12.4): lost, as UDP loses it
                self._client.dropped += 1
                await trio.lowlevel.checkpoint()
                return
            if self._pad and n & 3:
                frame = _HEADER.pack(channel, n) + data + _PAD[n & 3]
            else:
                frame = _HEADER.pack(channel, n) + data
            try:
                await self._conn.send(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._connection_lost(exc)
            return
        # a cancelled send has no effect: nothing held, no CreatePermission or ChannelBind queued (checked here,
        # before the client takes the data: no checkpoint comes between this and the send below)
        await trio.lowlevel.checkpoint_if_cancelled()
        client = self._client
        held = client.held_count
        frame_or_none = client.send(data, remote, trio.current_time())
        if client.new_outgoing(held):
            self._kick()  # a CreatePermission or ChannelBind to send, and its timers: even if this send is cancelled
        if frame_or_none is None:  # held for a pending permission: taken, as a send that went out
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        try:
            await self._conn.send(frame_or_none)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._connection_lost(exc)

    async def receive(self) -> tuple[bytes, Address]:
        """The next datagram from a peer and its address (RFC 8656 11.4, 12.6)."""
        pending = self._pending
        while True:
            if pending:
                await trio.lowlevel.checkpoint()
                return pending.popleft()
            if self._closed:
                raise trio.ClosedResourceError("the TURN allocation is closed")
            if self._lost is not None:
                raise trio.BrokenResourceError(str(self._lost))
            if self._reader != _NOBODY:
                await self._wait_for_reader()
                continue
            self._reader = _CONSUMER
            try:
                receive = self._conn.receive
                peer_of_channel = self._peer_of_channel
                while True:
                    frame = await receive()
                    if frame and 0x40 <= frame[0] <= 0x4F:
                        if len(frame) >= 4:
                            channel, n = _HEADER.unpack_from(frame)
                            peer = peer_of_channel.get(channel)
                            if peer is not None and len(frame) >= 4 + n:
                                return frame[4 : 4 + n], peer
                        continue
                    out = self._client.receive(frame, trio.current_time())
                    if out is not None:
                        return out
                    self._kick()  # a response or an error: the background task looks at the new state
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                if self._closed:
                    raise trio.ClosedResourceError("the TURN allocation is closed") from exc
                self._connection_lost(exc)
                raise trio.BrokenResourceError(str(self._lost)) from exc
            finally:
                self._release_reader()

    async def receive_batch(self, limit: int = 64) -> list[tuple[bytes, Address]]:
        """Every peer datagram already queued (at most `limit`), waiting for the first one if none is
        (`SupportsReceiveBatch`; only an allocation over an operating system UDP socket drains more than one)."""
        return [await self.receive()]

    # ---- permissions and channels, on demand ----

    async def create_permission(self, ip: str) -> None:
        """Install a permission for `ip` and wait until the server confirms (RFC 8656 10); concurrent callers
        for the same IP share one request. Raises the TurnError of a refusal or a timeout."""
        client = self._client
        self._check_usable()
        state = client.permission_state(ip)
        if state == "active":
            await trio.lowlevel.checkpoint()
            return
        if state != "pending":
            client.create_permission(ip, trio.current_time())
            self._kick()
        event = self._permission_waiters.setdefault(ip, trio.Event())
        await event.wait()
        self._check_usable()
        if client.permission_state(ip) != "active":
            raise client.permission_error(ip) or TurnError(f"the permission for {ip} on {self.uri} failed")

    async def bind_channel(self, peer: Address) -> int:
        """Bind a channel to `peer` and wait until the server confirms (RFC 8656 12); returns its number."""
        client = self._client
        self._check_usable()
        number = self._channel_of.get(peer)
        if number is not None:
            await trio.lowlevel.checkpoint()
            return number
        number = client.bind_channel(peer, trio.current_time())
        self._kick()
        event = self._channel_waiters.setdefault(peer, trio.Event())
        await event.wait()
        self._check_usable()
        if client.channel_state(peer) != "bound":
            raise TurnError(f"ChannelBind to {format_host_port(peer)} on {self.uri} failed (see the log)")
        return number

    # ---- closing ----

    async def aclose(self) -> None:
        """Release the allocation (Refresh with LIFETIME 0, RFC 8656 8) and close the connection; shielded
        from cancellation and bounded by 2 seconds. `open_allocation` does it when its `async with` ends."""
        await self._release(2.0)

    close = aclose


class _DatagramAllocation(Allocation):
    """An allocation over a `NowaitTurnConnection` (an operating system UDP socket): it also sends
    synchronously (`SupportsSendNowait`) and drains what is queued in one `receive_batch`."""

    def __init__(
        self, conn: NowaitTurnConnection, client: TurnClient, *, uri: str, protocol: str, pace: Pace | None = None
    ) -> None:
        super().__init__(conn, client, uri=uri, protocol=protocol, pace=pace)
        self._nowait_conn = conn

    def send_nowait(self, data: bytes, remote: Address) -> None:
        """Relay one datagram at once, without a checkpoint; dropped when it cannot go now (as UDP may), or cannot
        go at all (too large: counted in `dropped`)."""
        channel = self._channel_of.get(remote)
        if channel is None:
            frame = self._unbound_frame(data, remote)
        elif len(data) > CHANNEL_DATA_MAX:  # RFC 8656 12.4
            self._client.dropped += 1
            return
        else:
            frame = _HEADER.pack(channel, len(data)) + data
        if frame is not None:
            self._nowait_conn.send_nowait(frame)

    def _unbound_frame(self, data: bytes, remote: Address) -> bytes | None:
        """What carries `data` to `remote` while no channel is bound to it: `TurnClient.send`'s Send indication, or
        None while the permission is pending (held) or when dropped (RFC 8656 10, 11.1); the background task is
        woken for a CreatePermission or ChannelBind it queued."""
        client = self._client
        held = client.held_count
        frame = client.send(data, remote, trio.current_time())
        if client.new_outgoing(held):
            self._kick()
        return frame

    async def receive_batch(self, limit: int = 64) -> list[tuple[bytes, Address]]:
        out = [await self.receive()]
        if self._reader != _NOBODY:
            return out
        self._drain(out, limit)
        if len(out) > 1:
            await trio.lowlevel.cancel_shielded_checkpoint()  # one yield per batch, as OSUdpSocket does
        return out

    def _peer_datagram(self, frame: bytes) -> tuple[bytes, Address] | None:
        """(data, peer) of a message from the server that carries a peer's datagram: ChannelData on a channel of
        the allocation (RFC 8656 12.6: an unknown channel or a truncated message is discarded) or a Data
        indication (11.4); None for anything else, the server's own messages handed to the TURN client (and the
        background task woken for them)."""
        if frame and 0x40 <= frame[0] <= 0x4F:
            if len(frame) >= 4:
                channel, n = _HEADER.unpack_from(frame)
                peer = self._peer_of_channel.get(channel)
                if peer is not None and len(frame) >= 4 + n:
                    return frame[4 : 4 + n], peer
            return None
        item = self._client.receive(frame, trio.current_time())
        if item is None:
            self._kick()
        return item

    def _drain(self, out: list[tuple[bytes, Address]], limit: int) -> None:
        """Append the peer datagrams queued on the socket to `out` (up to `limit` in all), without waiting
        (`_peer_datagram`)."""
        nowait = self._nowait_conn.receive_nowait
        peer_datagram = self._peer_datagram
        for _ in range(limit - len(out)):  # every frame read counts, kept or not: bounded work per call
            try:
                frame = nowait()
            except trio.WouldBlock:
                break
            except trio.ClosedResourceError:
                break  # the next receive() says why
            item = peer_datagram(frame)
            if item is not None:
                out.append(item)


class _WaitableAllocation(_DatagramAllocation):
    """An allocation over a `WaitableTurnConnection` (an operating system UDP socket) that the stream's reader
    of a relayed pair can drain itself (agent/_tap.py: `receive_now`, `wait_readable`, `interrupt`, `tap`),
    as it does a host socket: no task step of the agent's receive task per batch of relayed data."""

    def __init__(
        self, conn: WaitableTurnConnection, client: TurnClient, *, uri: str, protocol: str, pace: Pace | None = None
    ) -> None:
        super().__init__(conn, client, uri=uri, protocol=protocol, pace=pace)
        self._waitable_conn = conn
        self.tap: object = None  # the agent's Tap on this allocation, while its stream's reader may drain it

    def receive_now(self, limit: int = 64) -> list[tuple[bytes, Address]]:
        """The peer datagrams queued now (at most `limit`), without waiting or a checkpoint: what the background
        task read first, then what the socket holds (`_drain`)."""
        pending = self._pending
        out = [pending.popleft() for _ in range(min(limit, len(pending)))]
        self._drain(out, limit)
        return out

    async def wait_readable(self) -> None:
        """Wait until the TURN socket has a datagram, or `interrupt()`; at once when the background task left
        peer data. trio.ClosedResourceError once the allocation is closed or lost."""
        if self._pending:
            await trio.lowlevel.checkpoint()
            return
        if self._closed or self._lost is not None:
            raise trio.ClosedResourceError("the TURN allocation is closed")
        await self._waitable_conn.wait_readable()

    def interrupt(self) -> None:
        """Wake the task in `wait_readable`, if there is one."""
        self._waitable_conn.interrupt()

    async def _read_as_driver(self) -> None:
        await super()._read_as_driver()
        if self._pending and self.tap is not None:
            self.interrupt()  # peer data the background task read: a reader waiting on the socket takes it


def _as_uri(server: str | IceUri) -> IceUri:
    uri = parse_uri(server) if isinstance(server, str) else server
    if not uri.is_turn:
        raise ValueError(f"open_allocation needs a turn: or turns: URI, not {uri}")
    return uri


@asynccontextmanager
async def open_allocation(
    server: str | IceUri,
    username: str,
    password: str,
    *,
    network: Network | None = None,
    ssl_context: ssl.SSLContext | None = None,
    local_address: str | None = None,
    family: Literal["ipv4", "ipv6"] = "ipv4",
    lifetime: int | None = None,
    config: IceConfig | None = None,
    transports: Mapping[str, TurnTransportFactory] | None = None,
    max_redirects: int = 2,
    deadline: float = math.inf,
    pace: Pace | None = None,
    allocate_rto: float | None = None,
) -> AsyncIterator[Allocation]:
    """Allocate a relayed address on a TURN server and keep it until the `async with` ends (RFC 8656).

    `server` is a `turn:`/`turns:` URI (RFC 7065), e.g. "turn:127.0.0.1:3478?transport=tcp"; a host name
    is resolved through `network`. Timers come from `config` (STUN rto/rc/rm, `permission_refresh`,
    `channel_refresh`). The Allocate phase (connecting, credentials, redirections) ends by `deadline`
    (in `trio.current_time()`). Raises a TurnError subclass (TurnAuthenticationError, TurnTimeout,
    TurnConnectionError, TurnQuotaReached, ...) when no allocation can be made.

    `pace` (None: nothing waits) is awaited as `pace(latest)` before each new request goes out, retries
    after 401/438, refreshes and the release included, never before a retransmission: an agent passes its
    process-wide pacer this way (RFC 8445 14.2, `GatherContext.pace`); it must return by `latest`.
    `allocate_rto` (None: `config.rto`): the initial RTO of the Allocate requests, part of gathering (RFC 8445
    14.3: the relay gatherer passes max(rto, Ta x Num-Of-Cands)); later requests start from `config.rto`.
    """
    from ..net.os import OSNetwork

    uri = _as_uri(server)
    network = network or OSNetwork()
    config = config or IceConfig()
    factories = transports if transports is not None else turn_transports()
    factory = factories.get(uri.protocol)
    if factory is None:
        raise TurnConnectionError(
            f"no TURN transport {uri.protocol!r} for {uri} (known: {', '.join(sorted(factories))}); "
            "a plugin can add one with the iceagent_turn_transports hook"
        )
    try:
        addresses = await network.resolve(uri.host, uri.port)
    except OSError as exc:
        raise TurnConnectionError(f"cannot resolve the TURN server {uri.host!r} of {uri}: {exc}") from exc
    if not addresses:
        raise TurnConnectionError(f"the TURN server name {uri.host!r} of {uri} has no address")
    allowed = deadline - trio.current_time()
    allocation: Allocation | None = None
    with trio.move_on_at(deadline):
        allocation = await _allocate(
            uri, addresses[0], factory, network, username, password, ssl_context, local_address, family,
            lifetime, config, max_redirects, pace, allocate_rto,
        )  # fmt: skip
    if allocation is None:
        raise TurnTimeout(
            f"no allocation on {uri} within {allowed:.2g} s: the server did not answer in time; "
            "check that it runs at that address and port and that nothing blocks the way"
        )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(allocation._serve, name=f"turn-{uri}")
            try:
                yield allocation
            finally:
                nursery.cancel_scope.cancel()
    except BaseException as error:
        sole = sole_exception(error)  # an exception from the body comes out as itself, not in a group
        if sole is None:
            raise
        raise sole from None
    finally:
        await allocation._release(2.0)


async def _allocate(
    uri: IceUri,
    address: Address,
    factory: TurnTransportFactory,
    network: Network,
    username: str,
    password: str,
    ssl_context: ssl.SSLContext | None,
    local_address: str | None,
    family: Literal["ipv4", "ipv6"],
    lifetime: int | None,
    config: IceConfig,
    max_redirects: int,
    pace: Pace | None,
    allocate_rto: float | None = None,
) -> Allocation:
    """Connect and run Allocate, following 300 redirections and retrying a 437 once from a new port."""
    server_name = uri.host
    tried: list[Address] = []
    mismatch_retried = False
    while True:
        tried.append(address)
        conn = await factory(
            network, address, server_name=server_name, ssl_context=ssl_context, local_address=local_address
        )
        name = str(uri) if address == tried[0] else f"{uri} (redirected to {format_host_port(address)})"
        client = TurnClient(
            username,
            password,
            server_name=name,
            reliable=conn.reliable,
            family=family,
            lifetime=lifetime,
            permission_refresh=config.permission_refresh,
            channel_refresh=config.channel_refresh,
            rto=config.rto,
            rc=config.rc,
            rm=config.rm,
            reliable_timeout=config.reliable_timeout,
            keepalive=config.keepalive_interval,
            paced=pace is not None,
            allocate_rto=allocate_rto,
        )
        # once per allocation: the Protocol checks' cost is fine
        if isinstance(conn, OSUdpTurnConnection):
            from ._os_allocation import OSUdpAllocation  # (it builds on this module's classes)

            allocation: Allocation = OSUdpAllocation(conn, client, uri=name, protocol=uri.protocol, pace=pace)
        elif isinstance(conn, WaitableTurnConnection):
            allocation = _WaitableAllocation(conn, client, uri=name, protocol=uri.protocol, pace=pace)
        elif isinstance(conn, NowaitTurnConnection):
            allocation = _DatagramAllocation(conn, client, uri=name, protocol=uri.protocol, pace=pace)
        else:
            allocation = Allocation(conn, client, uri=name, protocol=uri.protocol, pace=pace)
        try:
            client.allocate(trio.current_time())
            await allocation._serve(allocation._allocating_done)
        except BaseException:
            with trio.CancelScope(shield=True):
                await conn.aclose()
            raise
        if client.state is AllocationState.ALLOCATED:
            return allocation
        with trio.CancelScope(shield=True):
            await conn.aclose()
        redirect = allocation._redirect
        if redirect is not None:
            if len(tried) > max_redirects or redirect.server in tried:
                raise TurnRedirectError(
                    f"{uri}: too many redirections (300 Try Alternate): {', '.join(map(format_host_port, tried))} "
                    f"then {format_host_port(redirect.server)}"
                )
            log.info("TURN %s: redirected to %s", uri, format_host_port(redirect.server))
            address = redirect.server
            if redirect.domain:
                server_name = redirect.domain
            continue
        error = client.error or allocation.error
        if error is None:
            error = TurnConnectionError(f"the connection to {name} was lost during Allocate")
        if isinstance(client.error, TurnAllocationMismatch) and not mismatch_retried:
            mismatch_retried = True  # a stale allocation for our 5-tuple: a new local port gets a fresh one
            tried.pop()
            continue
        raise error
