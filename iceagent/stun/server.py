"""The embedded STUN server: Binding over UDP and TCP (RFC 8489), NAT behaviour discovery (RFC 5780).

With one primary and one alternate IP it listens on both IPs times two ports, and honours
CHANGE-REQUEST, RESPONSE-PORT and PADDING and reports OTHER-ADDRESS and RESPONSE-ORIGIN (RFC 5780 6.1).
It reaches the network only through the `Network` seam, so it runs on the OS and on a virtual network.

`answer()` is the sans-IO core (bytes in, reply out, never much larger than what came in); `serve_stun` /
`open_stun_server` are the Trio layer that moves datagrams and TCP streams, within `ServerLimits` (requests
per source and in total, TCP connections, read and write deadlines).
"""

from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import attrs
import trio

from .._groups import serving
from ..logs import get_logger
from ..net.base import Address, Network, TcpListener, UdpSocket
from ..uri import format_host_port, parse_host_port
from ._serving import ReadDeadline, wait_for_rate
from .attributes import COOKIE_BYTES, Attr
from .limits import ConnectionCounter, RequestLimiter, ServerLimits, is_request
from .message import Message, MessageClass, Method, StunDecodeError

__all__ = [
    "DEFAULT_SOFTWARE",
    "Reply",
    "ServerStats",
    "StunServer",
    "answer",
    "bind_stun_server",
    "open_stun_server",
    "serve_stun",
]

log = get_logger(__name__)

DEFAULT_SOFTWARE = "iceagent embedded STUN server"
"""The SOFTWARE attribute (RFC 8489 14.14) of answers over TCP (never over UDP: no amplification)."""

MIN_RESPONSE_PORT = 1024
"""RESPONSE-PORT below this gets 400 (RFC 5780 7.5): no answers aimed at privileged ports."""

_HEADER_SIZE = 20
_BIND_ATTEMPTS = 20  # port 0 with an alternate IP: retries when the chosen port is taken on the other IP

Role = tuple[int, int]
"""Which socket of a site: (IP index, port index); (0, 0) is the primary address (RFC 5780 6.1)."""


@attrs.frozen
class Reply:
    """What to send for one request: the bytes, from which socket (relative change) and to whom."""

    data: bytes
    destination: Address
    change_ip: bool = False
    change_port: bool = False
    success: bool = True


def answer(
    data: bytes,
    remote: Address,
    local: Address,
    *,
    other: Address | None = None,
    transport: Literal["udp", "tcp"] = "udp",
    software: str | None = DEFAULT_SOFTWARE,
) -> Reply | None:
    """The reply to one request received at `local` from `remote` (RFC 8489 6.3, RFC 5780 6.1).

    `other` is the address differing from `local` in both IP and port (RFC 5780 OTHER-ADDRESS), or None when
    the server has no alternate address. Returns None for anything to drop silently: bytes that are not STUN,
    a bad FINGERPRINT, indications and responses (RFC 8489 6.3).

    Over UDP the source can be forged, so an answer carries only what the request asks for or an RFC requires
    and stays within a few times its size (no amplification; RFC 5780 9, RFC 8489 16): at most 124 bytes and
    4.6x. XOR-MAPPED-ADDRESS always; RESPONSE-ORIGIN and OTHER-ADDRESS whenever there is an alternate (RFC 5780
    6.1 requires both in every answer: a discovery client learns the alternate, and spots a second NAT, from a
    plain request); MAPPED-ADDRESS (and RESPONSE-ORIGIN without an alternate) when the request uses RFC 5780
    (CHANGE-REQUEST, RESPONSE-PORT or PADDING); FINGERPRINT when the request has one; SOFTWARE over TCP only
    (optional, RFC 8489 14.14; over UDP it would only grow a reflected answer). PADDING pads the answer to
    the request's size; a PADDING request whose answer would be larger than it gets none (server policy).
    Error reason phrases are short. RESPONSE-PORT below 1024 gets 400: RFC 5780 7.5 lets a server refuse a
    port, and a privileged port (DNS, NTP, ...) is a reflection target, never a NAT mapping under test.
    """
    try:
        request = Message.decode(data)
    except StunDecodeError:
        return None
    if request.message_class is not MessageClass.REQUEST:
        return None  # indications need no answer; stray responses are not ours (RFC 8489 6.3.2, 6.3.3)
    fingerprint = Attr.FINGERPRINT in request
    if fingerprint and not request.verify_fingerprint():
        return None  # RFC 8489 7.3: a wrong FINGERPRINT means this is not STUN
    tail: list[tuple[Attr | int, Any]] = []
    if software and transport == "tcp":  # over UDP it would only grow a reflected answer (RFC 8489 14.14: MAY)
        tail.append((Attr.SOFTWARE, software))

    def error(code: int, reason: str, extra: Iterable[tuple[Attr | int, Any]] = ()) -> Reply:
        response = request.error_response(code, reason, [*extra, *tail])
        return Reply(response.encode(fingerprint=fingerprint), remote, success=False)

    if request.method is not Method.BINDING:
        return error(400, "Binding only")
    unknown = request.unknown_required
    change = request.get(Attr.CHANGE_REQUEST)
    if change is not None and other is None:
        # RFC 5780 6: a server without an alternate address treats CHANGE-REQUEST as unknown.
        unknown.append(int(Attr.CHANGE_REQUEST))
    if unknown:
        return error(420, "Unknown Attribute", [(Attr.UNKNOWN_ATTRIBUTES, unknown)])
    change_ip, change_port = change if change is not None else (False, False)
    response_port = request.get(Attr.RESPONSE_PORT)
    padding = Attr.PADDING in request
    if transport == "tcp" and (change_ip or change_port):
        return error(400, "CHANGE-REQUEST over TCP")  # RFC 5780 6.1
    if transport == "tcp" and response_port is not None:
        return error(400, "RESPONSE-PORT over TCP")  # RFC 5780 7.5
    if padding and response_port is not None:
        return error(400, "PADDING with RESPONSE-PORT")  # RFC 5780 6.1
    if response_port is not None and response_port < MIN_RESPONSE_PORT:
        return error(400, "Privileged RESPONSE-PORT")  # RFC 5780 7.5: the server may refuse; 0 is no port

    origin = local
    if other is not None:
        origin = (other[0] if change_ip else local[0], other[1] if change_port else local[1])
    rfc5780 = change is not None or response_port is not None or padding
    attributes: list[tuple[Attr | int, Any]] = [(Attr.XOR_MAPPED_ADDRESS, remote)]
    if rfc5780:
        attributes.append((Attr.MAPPED_ADDRESS, remote))  # RFC 5780 6.1 asks for both address attributes
    if (rfc5780 or other is not None) and not ipaddress.ip_address(origin[0]).is_unspecified:
        attributes.append((Attr.RESPONSE_ORIGIN, origin))  # 6.1: MUST (not known on a wildcard: no alternate)
    if other is not None:
        attributes.append((Attr.OTHER_ADDRESS, other))
    if padding:  # 6.1: PADDING MUST come back; sized in `_pad`
        attributes.append((Attr.PADDING, b""))
    response = request.success_response([*attributes, *tail])
    encoded = response.encode(fingerprint=fingerprint)
    if padding:
        encoded = _pad(response, len(data), len(encoded), fingerprint)
        if transport == "udp" and len(encoded) > len(data):
            return None  # server policy: a PADDING request is never answered with more bytes than it had
    destination = remote if response_port is None else (remote[0], response_port)
    return Reply(encoded, destination, change_ip=change_ip, change_port=change_port)


@attrs.define
class ServerStats:
    """Counters of one embedded STUN server."""

    requests: int = 0  # STUN requests answered (success or error)
    errors: int = 0  # of those, error responses
    dropped: int = 0  # datagrams and TCP messages dropped (not STUN, indications, bad FINGERPRINT)
    tcp_connections: int = 0  # TCP connections accepted so far
    limited: dict[str, int] = attrs.Factory(dict)
    """By reason (`ServerLimits`): "rate_source"/"rate_total" requests dropped (UDP) or held back (TCP);
    "connections"/"connections_per_ip" connections refused; "read_timeout"/"write_timeout" connections closed."""

    def count(self, reason: str) -> None:
        self.limited[reason] = self.limited.get(reason, 0) + 1


@attrs.define(eq=False)
class _Site:
    """One primary address and, for RFC 5780, the alternate IP and port: up to four sockets."""

    ips: list[str]
    ports: list[int]
    udp: dict[Role, UdpSocket] = attrs.Factory(dict)
    tcp: dict[Role, TcpListener] = attrs.Factory(dict)

    def address(self, role: Role) -> Address:
        return self.ips[role[0]], self.ports[role[1]]

    def other(self, role: Role) -> Address | None:
        """The address differing in IP and port from `role`'s (RFC 5780 7.4 OTHER-ADDRESS)."""
        if len(self.ips) < 2:
            return None
        return self.address((1 - role[0], 1 - role[1]))

    def close(self) -> None:
        for sock in self.udp.values():
            sock.close()
        for listener in self.tcp.values():
            listener.close()


class StunServer:
    """A running embedded STUN server; made by `open_stun_server` or `serve_stun` (RFC 8489, RFC 5780)."""

    def __init__(
        self, sites: list[_Site], *, software: str | None, tcp_idle_timeout: float, limits: ServerLimits
    ) -> None:
        self._sites = sites
        self.software = software
        self.tcp_idle_timeout = tcp_idle_timeout
        self.limits = limits
        self.stats = ServerStats()
        self._limiter = RequestLimiter(limits, trio.current_time())
        self._connections = ConnectionCounter(limits)

    async def serve(self, *, task_status: trio.TaskStatus[StunServer] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer on every socket until cancelled; the sockets stay open (`close()` closes them)."""
        async with trio.open_nursery() as nursery:
            for site in self._sites:
                for role in site.udp:
                    nursery.start_soon(self._serve_udp, site, role)
                for role in site.tcp:
                    nursery.start_soon(self._serve_tcp, nursery, site, role)
            log.info("STUN server listening on %s", ", ".join(format_host_port(a) for a in self.udp_addresses))
            task_status.started(self)

    def close(self) -> None:
        """Close every socket and listener (idempotent)."""
        for site in self._sites:
            site.close()

    @property
    def addresses(self) -> list[Address]:
        """The primary UDP address of each site, as bound (port 0 resolved)."""
        return [site.address((0, 0)) for site in self._sites]

    @property
    def address(self) -> Address:
        """The first primary UDP address (the one to put in a `stun:` URI)."""
        return self.addresses[0]

    @property
    def other_address(self) -> Address | None:
        """The first site's alternate IP and port (what OTHER-ADDRESS says to a client of `address`)."""
        return self._sites[0].other((0, 0))

    @property
    def udp_addresses(self) -> list[Address]:
        """Every UDP address listened on: primary, then (with an alternate) the other three per site."""
        return [site.address(role) for site in self._sites for role in site.udp]

    @property
    def tcp_addresses(self) -> list[Address]:
        """Every TCP address listened on (empty without `tcp=True`)."""
        return [site.address(role) for site in self._sites for role in site.tcp]

    async def _serve_udp(self, site: _Site, role: Role) -> None:
        sock = site.udp[role]
        local = site.address(role)
        other = site.other(role)
        while True:
            data, remote = await sock.receive()
            if is_request(data):
                limited = self._limiter.check(remote[0], trio.current_time())
                if limited is not None:
                    self.stats.count(limited)  # dropped unanswered: a flood, maybe from forged sources
                    continue
            reply = self._answer(data, remote, local, other, "udp")
            if reply is None:
                continue
            out = site.udp[(role[0] ^ reply.change_ip, role[1] ^ reply.change_port)]
            await out.send(reply.data, reply.destination)

    def _answer(
        self,
        data: bytes,
        remote: Address,
        local: Address,
        other: Address | None,
        transport: Literal["udp", "tcp"],
    ) -> Reply | None:
        try:
            reply = answer(data, remote, local, other=other, transport=transport, software=self.software)
        except Exception:  # a bug here must not take the server down; it is logged and counted
            log.exception("STUN server: failed to answer %d bytes from %s", len(data), remote)
            reply = None
        if reply is None:
            self.stats.dropped += 1
            return None
        self.stats.requests += 1
        self.stats.errors += not reply.success
        return reply

    async def _serve_tcp(self, nursery: trio.Nursery, site: _Site, role: Role) -> None:
        listener = site.tcp[role]
        while True:
            try:
                stream, remote = await listener.accept()
            except OSError as e:
                if e.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                log.warning("STUN server: cannot accept on %s: %s", site.address(role), e)
                await trio.sleep(0.1)  # out of descriptors: back off instead of spinning
                continue
            refused = self._connections.open(remote[0])
            if refused is not None:
                self.stats.count(refused)
                await trio.aclose_forcefully(stream)
                continue
            self.stats.tcp_connections += 1
            nursery.start_soon(self._serve_connection, stream, remote, site.address(role), site.other(role))

    async def _serve_connection(
        self, stream: trio.abc.Stream, remote: Address, local: Address, other: Address | None
    ) -> None:
        """STUN over TCP: messages back to back, each framed by its own header (RFC 8489 6.2.2).

        Each message must arrive whole within `read_timeout` of its first byte, each answer must be taken
        within `write_timeout`, and requests wait for the rate limit's tokens (`ServerLimits`).
        """
        buffer = bytearray()
        reader = ReadDeadline(stream, self.limits.read_timeout, self.tcp_idle_timeout)
        try:
            async with stream:
                while True:
                    chunk = await reader.receive()
                    if not chunk:
                        if chunk is None and reader.deadline is not None:
                            self.stats.count("read_timeout")
                        return
                    fresh = not buffer
                    buffer += chunk
                    while len(buffer) >= _HEADER_SIZE:
                        if buffer[0] & 0xC0 or buffer[4:8] != COOKIE_BYTES or buffer[3] & 3:
                            self.stats.dropped += 1
                            return  # not STUN: a byte stream cannot be resynchronised
                        size = _HEADER_SIZE + int.from_bytes(buffer[2:4], "big")
                        if len(buffer) < size:
                            break
                        data = bytes(buffer[:size])
                        del buffer[:size]
                        fresh = True  # what is left began in this chunk
                        if is_request(data) and not await wait_for_rate(self._limiter, remote[0], self.stats.count):
                            return  # its turn would come after the read deadline: too far behind
                        reply = self._answer(data, remote, local, other, "tcp")
                        if reply is not None and not await self._send(stream, reply.data):
                            return
                    reader.handled(len(buffer), fresh)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            self._connections.close(remote[0])

    async def _send(self, stream: trio.abc.Stream, data: bytes) -> bool:
        """Send, or give up after `write_timeout` (a client that does not read); False: close."""
        with trio.move_on_after(self.limits.write_timeout):
            await stream.send_all(data)
            return True
        self.stats.count("write_timeout")
        return False



def _pad(response: Message, request_size: int, size: int, fingerprint: bool) -> bytes:
    """`response` with its PADDING grown so the answer is as large as the request (or left empty when the answer
    is already as large). RFC 5780 6.1 suggests padding to the MTU; the request's size tests the same path
    (a client sends PADDING to make its request MTU-sized) and never makes the answer the larger one."""
    grow = max(0, request_size - size) & ~3
    response.attributes = [(a, bytes(grow)) if a == Attr.PADDING else (a, v) for a, v in response.attributes]
    return response.encode(fingerprint=fingerprint)


def _check_ip(host: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"the STUN server's {what} must be an IP address, not {host!r}") from None


def _family(host: str) -> int:
    return ipaddress.ip_address(host).version


async def _bind_site(network: Network, ips: list[str], ports: list[int], tcp: bool) -> _Site:
    """Bind every socket of one site; ports given as 0 are chosen by the first bind on that port index."""
    site = _Site(ips=list(ips), ports=list(ports))
    try:
        for port_index in range(len(ports)):
            for ip_index in range(len(ips)):
                role = (ip_index, port_index)
                sock = await network.bind_udp(ips[ip_index], site.ports[port_index])
                site.udp[role] = sock
                site.ports[port_index] = sock.local_address[1]
                if tcp:
                    site.tcp[role] = await network.listen_tcp(ips[ip_index], site.ports[port_index])
    except BaseException:
        site.close()
        raise
    return site


async def _open_site(
    network: Network, ip: str, port: int, alternate: str | None, alternate_port: int | None, tcp: bool
) -> _Site:
    if alternate is None:
        ips, ports = [ip], [port]
    else:
        if alternate_port is None:
            alternate_port = 0 if not port else port + 1 if port < 65535 else port - 1
        if port and port == alternate_port:
            raise ValueError(f"the alternate port must differ from the primary port {port} (RFC 5780 6.1)")
        ips, ports = [ip, alternate], [port, alternate_port]
    attempts = _BIND_ATTEMPTS if 0 in ports and (len(ips) > 1 or tcp) else 1
    for attempt in range(attempts):
        try:
            return await _bind_site(network, ips, ports, tcp)
        except OSError as e:
            if e.errno != errno.EADDRINUSE or attempt == attempts - 1:
                where = ", ".join(f"{h}:{p}" for h in ips for p in ports)
                reason = os.strerror(e.errno) if e.errno else str(e)
                raise OSError(e.errno, f"cannot open the STUN server on {where}: {reason}") from e
    raise AssertionError("unreachable")


def _parse_address(address: str | Address) -> Address:
    if isinstance(address, str):
        return parse_host_port(address, 3478)
    host, port = address
    return str(host), int(port)


async def bind_stun_server(
    network: Network,
    addresses: Sequence[str | Address] = ("127.0.0.1:0",),
    *,
    alternate: str | None = None,
    alternate_port: int | None = None,
    tcp: bool = False,
    software: str | None = DEFAULT_SOFTWARE,
    tcp_idle_timeout: float = 60.0,
    limits: ServerLimits | None = None,
) -> StunServer:
    """Open the sockets of a STUN server without serving yet; `serve_stun` and `open_stun_server` use it.

    Raises ValueError for bad options and OSError when an address cannot be bound.
    """
    if not addresses:
        raise ValueError("the STUN server needs at least one address to listen on")
    parsed = [_parse_address(a) for a in addresses]
    parsed = [(_check_ip(h, "address"), p) for h, p in parsed]
    if alternate is not None:
        alternate = _check_ip(alternate, "alternate address")
        if len(parsed) != 1:
            raise ValueError("an alternate address (RFC 5780) needs exactly one primary address")
        primary = parsed[0][0]
        if _family(alternate) != _family(primary) or alternate == primary:
            raise ValueError(f"the alternate address {alternate} must be another IP of the same family as {primary}")
        if ipaddress.ip_address(primary).is_unspecified or ipaddress.ip_address(alternate).is_unspecified:
            raise ValueError("RFC 5780 needs specific IPs, not a wildcard: OTHER-ADDRESS must name them")
    if alternate_port is not None and not 0 <= alternate_port <= 65535:
        raise ValueError(f"alternate port {alternate_port} is not in 0..65535")
    sites: list[_Site] = []
    try:
        for host, port in parsed:
            sites.append(await _open_site(network, host, port, alternate, alternate_port, tcp))
    except BaseException:
        for site in sites:
            site.close()
        raise
    return StunServer(sites, software=software, tcp_idle_timeout=tcp_idle_timeout, limits=limits or ServerLimits())


async def serve_stun(
    network: Network,
    addresses: Sequence[str | Address] = ("127.0.0.1:0",),
    *,
    alternate: str | None = None,
    alternate_port: int | None = None,
    tcp: bool = False,
    software: str | None = DEFAULT_SOFTWARE,
    tcp_idle_timeout: float = 60.0,
    limits: ServerLimits | None = None,
    task_status: trio.TaskStatus[StunServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run an embedded STUN server until cancelled (RFC 8489 Binding; RFC 5780 with `alternate`).

    `addresses` are the primary addresses, `"IP:PORT"`, `"[IPv6]:PORT"` or (ip, port); port 0 picks a
    free port. `alternate` is a second IP of the same family (one primary address only): the server
    then also listens on `alternate_port` (default: primary port + 1, or a free one with port 0) on both
    IPs. `tcp=True` adds TCP listeners on the same addresses. `limits` (default `ServerLimits()`) bounds the
    requests answered and the TCP connections. Reports the `StunServer` via `task_status`
    (`await nursery.start(serve_stun, network, ...)`).
    """
    server = await bind_stun_server(
        network,
        addresses,
        alternate=alternate,
        alternate_port=alternate_port,
        tcp=tcp,
        software=software,
        tcp_idle_timeout=tcp_idle_timeout,
        limits=limits,
    )
    try:
        await server.serve(task_status=task_status)
    finally:
        server.close()


@asynccontextmanager
async def open_stun_server(
    network: Network,
    addresses: Sequence[str | Address] = ("127.0.0.1:0",),
    *,
    alternate: str | None = None,
    alternate_port: int | None = None,
    tcp: bool = False,
    software: str | None = DEFAULT_SOFTWARE,
    tcp_idle_timeout: float = 60.0,
    limits: ServerLimits | None = None,
) -> AsyncIterator[StunServer]:
    """Run an embedded STUN server for the body of an `async with` (options as `serve_stun`).

    Everything it opened is closed on exit. Bad options and bind errors raise before the body runs;
    an exception from the body comes out as itself, not wrapped in an ExceptionGroup.
    """
    server = await bind_stun_server(
        network,
        addresses,
        alternate=alternate,
        alternate_port=alternate_port,
        tcp=tcp,
        software=software,
        tcp_idle_timeout=tcp_idle_timeout,
        limits=limits,
    )
    async with serving(server):
        yield server
