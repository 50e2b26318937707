"""The Trio side of port mapping: ask the default gateway over the Network seam, keep the lease, delete it.

`PcpMapper` speaks PCP MAP (RFC 6887) and falls back to NAT-PMP (RFC 6886) when the server answers with
an older version (RFC 6887 9); `UpnpMapper` speaks UPnP-IGD. Each maps one internal UDP port of one
address (a base of the agent) and offers the same three calls: `map()` (first request, or a refresh:
the same request again, RFC 6887 11.2.1, RFC 6886 3.3), `delete()` (lifetime 0) and `aclose()`.
Answers are accepted only from the gateway's address and server port (RFC 6887 8.3, RFC 6886 3.1);
anything else is dropped after a bounded look.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol, TypeVar

import attrs
import trio

from ..net.base import Address, Network, UdpSocket
from ..stun.message import random_bytes
from . import natpmp, pcp, upnp
from ._checks import external_address
from .errors import PortMapDecodeError, PortMapError, PortMapRefused, PortMapTimeout, UnsupportedVersion
from .schedule import Retransmit, natpmp_schedule, pcp_schedule

__all__ = ["Lease", "Mapper", "PcpMapper", "UpnpMapper"]

T = TypeVar("T")
#: Datagrams from elsewhere (or malformed) looked at per request before giving up on it: bounded work.
MAX_IGNORED = 64
#: Seconds a first PCP request waits before NAT-PMP is asked instead: some NAT-PMP-only gateways drop a
#: version 2 request rather than answer UNSUPP_VERSION (RFC 6887 9 covers only the answer).
PCP_ALONE = 1.0
#: How many external ports UPnP tries when the one asked for is taken (error 718).
UPNP_PORT_TRIES = 3


@attrs.define
class Drops:
    """Datagrams an exchange dropped (stray source or not an answer), and why the last one was."""

    count: int = 0
    last: str = ""

    def describe(self) -> str:
        """" (N dropped, the last: why)" for an error message, or "" when none was."""
        return f" ({self.count} answers dropped, the last: {self.last})" if self.count else ""


@attrs.frozen
class Lease:
    """A mapping the gateway granted: by which protocol, the external address, for how long (0 = until deleted)."""

    protocol: str
    external: Address
    lifetime: float


class Mapper(Protocol):
    """One protocol's mapping of one internal port on one gateway."""

    @property
    def protocol(self) -> str:
        """Which protocol got (or is asking for) the mapping: "pcp", "natpmp" or "upnp"."""
        ...

    @property
    def drops(self) -> Drops:
        """Datagrams dropped as stray or malformed so far, and why the last one was."""
        ...

    async def map(self, lifetime: int) -> Lease: ...

    async def delete(self) -> None: ...

    def aclose(self) -> None: ...


async def _exchange(
    sock: UdpSocket,
    server: Address,
    request: bytes,
    schedule: Retransmit,
    decode: Callable[[bytes], T],
    drops: Drops,
) -> T:
    """Send `request` to `server` on `schedule` until `decode` accepts an answer from exactly `server`.

    Answers from any other address or port, and answers `decode` rejects as malformed or for another
    request, are dropped (counted in `drops`); after MAX_IGNORED of them the exchange gives up."""
    await sock.send(request, server)
    ignored = 0
    while (deadline := schedule.get_timer()) is not None:
        with trio.move_on_at(deadline):
            while True:
                data, source = await sock.receive()
                if source != server:
                    drops.last = f"from {source[0]}:{source[1]}, not the server"
                else:
                    try:
                        return decode(data)
                    except PortMapDecodeError as exc:
                        drops.last = str(exc)
                ignored += 1
                drops.count += 1
                if ignored >= MAX_IGNORED:
                    raise PortMapError(f"{ignored} stray or malformed datagrams while asking {server[0]}: gave up")
        if schedule.handle_timer(trio.current_time()):
            await sock.send(request, server)
    raise PortMapTimeout(f"no answer from {server[0]}:{server[1]} after {schedule.sent} requests{drops.describe()}")


class PcpMapper:
    """PCP MAP for (address, port), falling back to NAT-PMP when the server speaks version 0 (RFC 6887 9)."""

    def __init__(self, network: Network, gateway: str, address: str, port: int, *, timeout: float) -> None:
        self.network = network
        self.server: Address = (gateway, natpmp.NATPMP_PORT)
        self.address = address
        self.port = port
        self.timeout = timeout
        self.protocol = "pcp"
        self.nonce = random_bytes(12)
        self.epoch = pcp.EpochTracker()
        #: times the server's epoch showed it had lost its mappings (RFC 6887 8.5)
        self.restarts = 0
        self.external: Address | None = None
        self._sock: UdpSocket | None = None
        self.drops = Drops()
        #: protocols whose map request went out and got no answer: the gateway may hold a mapping we never
        #: heard of (the answer was lost, or the request cancelled by a timeout or the session's end)
        self.unanswered: set[str] = set()

    async def _socket(self) -> UdpSocket:
        if self._sock is None:
            # its own port on the base's address: the base socket's datagrams belong to the agent's receive task
            self._sock = await self.network.bind_udp(self.address, 0)
        return self._sock

    async def map(self, lifetime: int) -> Lease:
        """Ask for (or refresh) the mapping; raises PortMapRefused, PortMapTimeout or PortMapError."""
        sock = await self._socket()
        now = trio.current_time()
        if self.protocol == "pcp":
            suggested = self.external[1] if self.external else self.port
            request = pcp.encode_map_request(self.nonce, self.address, self.port, lifetime, suggested_port=suggested)
            # A first request waits PCP_ALONE for an answer, later ones (the protocol settled) the whole timeout.
            duration = self.timeout if self.external else min(self.timeout, PCP_ALONE)
            self.unanswered.add("pcp")
            try:
                granted = await _exchange(
                    sock, self.server, request, pcp_schedule(now, duration=duration),
                    lambda d: pcp.decode_map_response(d, self.nonce, self.port), self.drops,
                )  # fmt: skip
            except UnsupportedVersion as exc:
                self.unanswered.discard("pcp")  # answered: no mapping made
                if exc.version != 0:
                    raise
                self.protocol = "natpmp"  # RFC 6887 9: the server speaks NAT-PMP only
                return await self.map(lifetime)
            except PortMapTimeout:
                if self.external:
                    raise
                self.protocol = "natpmp"  # silent to PCP: a NAT-PMP server that drops version 2 instead
                return await self.map(lifetime)
            except PortMapRefused:
                self.unanswered.discard("pcp")
                raise
            self.unanswered.discard("pcp")
            if not self.epoch.check(trio.current_time(), granted.epoch):
                self.restarts += 1  # the server lost its state (8.5): this very request made the mapping anew
            self.external = (external_address(granted.external_address), granted.external_port)
            return Lease("pcp", self.external, granted.lifetime)
        schedule = natpmp_schedule(now, duration=self.timeout)
        if self.external is None:
            answer = await _exchange(
                sock, self.server, natpmp.encode_address_request(), schedule, natpmp.decode_address, self.drops
            )
            address = external_address(answer.address)
        else:
            address = self.external[0]
        suggested = self.external[1] if self.external else self.port
        self.unanswered.add("natpmp")
        try:
            mapped = await _exchange(
                sock, self.server, natpmp.encode_map_request(self.port, suggested, lifetime),
                natpmp_schedule(trio.current_time(), duration=self.timeout),
                lambda d: natpmp.decode_mapping(d, self.port), self.drops,
            )  # fmt: skip
        except PortMapRefused:
            self.unanswered.discard("natpmp")
            raise
        self.unanswered.discard("natpmp")
        self.external = (address, mapped.external_port)
        return Lease("natpmp", self.external, mapped.lifetime)

    async def delete(self) -> None:
        """Lifetime 0 (RFC 6887 15, RFC 6886 3.4), one schedule bounded by the timeout. Without a known
        mapping, a request that got no answer may still have made one: one lifetime-0 request per such
        protocol is sent, without waiting (RFC 6887 15 and RFC 6886 3.4 identify the mapping by the
        internal port, and the PCP nonce, not by the external port)."""
        if self.external is None:
            if self.unanswered and self._sock is not None:
                for protocol in sorted(self.unanswered):
                    if protocol == "pcp":
                        request = pcp.encode_map_request(self.nonce, self.address, self.port, 0)
                    else:
                        request = natpmp.encode_map_request(self.port, 0, 0)
                    await self._sock.send(request, self.server)
                self.unanswered.clear()
            return
        sock = await self._socket()
        now = trio.current_time()
        if self.protocol == "pcp":
            request = pcp.encode_map_request(self.nonce, self.address, self.port, 0, suggested_port=self.external[1])
            await _exchange(sock, self.server, request, pcp_schedule(now, duration=self.timeout),
                            lambda d: pcp.decode_map_response(d, self.nonce, self.port), self.drops)  # fmt: skip
        else:
            await _exchange(sock, self.server, natpmp.encode_map_request(self.port, 0, 0),
                            natpmp_schedule(now, duration=self.timeout),
                            lambda d: natpmp.decode_mapping(d, self.port), self.drops)  # fmt: skip
        self.external = None

    def aclose(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class UpnpMapper:
    """UPnP-IGD: SSDP M-SEARCH by unicast to the gateway, its description, then SOAP on its connection service."""

    protocol = "upnp"

    def __init__(self, network: Network, gateway: str, address: str, port: int, *, timeout: float) -> None:
        self.network = network
        self.gateway = gateway
        self.address = address
        self.port = port
        self.timeout = timeout
        self.service: upnp.Service | None = None
        self.external: Address | None = None
        self.lifetime = 0
        self.drops = Drops()
        #: the external port of an AddPortMapping that got no answer (cancelled, or the gateway timed out)
        self.unanswered: int | None = None

    async def _discover(self) -> upnp.Service:
        sock = await self.network.bind_udp(self.address, 0)
        try:
            server = (self.gateway, upnp.SSDP_PORT)
            schedule = Retransmit(trio.current_time(), 0.5, 2.0, count=4, duration=self.timeout)
            # the answer comes from the gateway's address; its source port is not fixed (UDA 1.1 1.3.3)
            location = await _exchange(
                _AnyPort(sock, self.gateway), server, upnp.encode_msearch(self.gateway), schedule,
                lambda d: upnp.parse_location(d, self.gateway), self.drops,
            )  # fmt: skip
        finally:
            sock.close()
        host, port, path = location
        response = await self._http((host, port), upnp.encode_get(host, port, path))
        if response.status != 200:
            raise PortMapError(f"UPnP description at {host}:{port}{path}: HTTP status {response.status}")
        return upnp.find_service(response.body, self.gateway, (host, port))

    async def _http(self, remote: Address, request: bytes) -> upnp.HttpResponse:
        """One HTTP exchange with the gateway, at most MAX_DOCUMENT bytes read, within the timeout."""
        with trio.fail_after(self.timeout):
            stream, _ = await self.network.connect_tcp(remote, local=(self.address, 0))
            async with stream:
                await stream.send_all(request)
                data = bytearray()
                total: int | None = None  # by Content-Length, once the headers are in: stop there
                headers = False
                while len(data) <= upnp.MAX_DOCUMENT and (total is None or len(data) < total):
                    chunk = await stream.receive_some(16384)
                    if not chunk:
                        break
                    tail = max(0, len(data) - 3)  # the end of the headers may straddle two chunks
                    data += chunk
                    if not headers and data.find(b"\r\n\r\n", tail) >= 0:
                        headers = True  # looked at once: linear in what the device sends
                        total = upnp.http_length(bytes(data))
        if len(data) > upnp.MAX_DOCUMENT:
            raise PortMapDecodeError(f"UPnP answer from {remote[0]} longer than {upnp.MAX_DOCUMENT} bytes")
        return upnp.decode_http(bytes(data))

    async def _soap(self, action: str, arguments: dict[str, str | int]) -> upnp.HttpResponse:
        assert self.service is not None
        service = self.service
        response = await self._http((service.host, service.port), upnp.encode_soap(service, action, arguments))
        return upnp.soap_result(response, action)

    async def map(self, lifetime: int) -> Lease:
        """Discover the service (once), learn the external address, AddPortMapping (again, to refresh)."""
        try:
            return await self._map(lifetime)
        except (OSError, trio.TooSlowError) as exc:
            raise PortMapTimeout(f"UPnP gateway {self.gateway}: {exc or type(exc).__name__}") from None

    async def _map(self, lifetime: int) -> Lease:
        if self.service is None:
            self.service = await self._discover()
        answer = await self._soap("GetExternalIPAddress", {})
        address = upnp.soap_field(answer.body, "NewExternalIPAddress")
        if not address:
            raise PortMapDecodeError("UPnP GetExternalIPAddress gave no address")
        address = external_address(address)
        ports = [self.external[1]] if self.external else [self.port]
        ports += [random.randint(1024, 65535) for _ in range(UPNP_PORT_TRIES - 1)]
        lease = lifetime
        for external_port in ports:
            arguments: dict[str, str | int] = {
                "NewRemoteHost": "", "NewExternalPort": external_port, "NewProtocol": "UDP",
                "NewInternalPort": self.port, "NewInternalClient": self.address, "NewEnabled": 1,
                "NewPortMappingDescription": "iceagent", "NewLeaseDuration": lease,
            }  # fmt: skip
            self.unanswered = external_port
            try:
                await self._soap("AddPortMapping", arguments)
            except PortMapRefused as exc:
                if exc.code == upnp.ONLY_PERMANENT_LEASES and lease:
                    lease = 0  # deleted on close instead (WANIPConnection:1 errata)
                    arguments["NewLeaseDuration"] = 0
                    await self._soap("AddPortMapping", arguments)
                elif exc.code == upnp.CONFLICT:
                    self.unanswered = None
                    continue
                else:
                    self.unanswered = None
                    raise
            self.unanswered = None
            self.external = (address, external_port)
            self.lifetime = lease
            return Lease("upnp", self.external, lease)
        raise PortMapRefused("UPnP", upnp.CONFLICT, "ConflictInMappingEntry", f"tried ports {ports}")

    async def delete(self) -> None:
        """DeletePortMapping of the mapping we hold, or of one an unanswered AddPortMapping may have made."""
        if self.service is None:
            return
        if self.external is not None:
            external_port = self.external[1]
        elif self.unanswered is not None:
            external_port = self.unanswered
        else:
            return
        self.external = self.unanswered = None
        try:
            await self._soap("DeletePortMapping",
                             {"NewRemoteHost": "", "NewExternalPort": external_port, "NewProtocol": "UDP"})  # fmt: skip
        except (OSError, trio.TooSlowError) as exc:
            raise PortMapTimeout(f"UPnP gateway {self.gateway}: {exc or type(exc).__name__}") from None

    def aclose(self) -> None:
        pass


class _AnyPort:
    """A UDP socket whose answers count as from `server` when they come from the gateway's address, any port."""

    def __init__(self, sock: UdpSocket, gateway: str) -> None:
        self._sock = sock
        self._gateway = gateway

    async def send(self, data: bytes, remote: Address) -> None:
        self._server = remote
        await self._sock.send(data, remote)

    async def receive(self) -> tuple[bytes, Address]:
        data, source = await self._sock.receive()
        return data, (self._server if source[0] == self._gateway else source)

    @property
    def local_address(self) -> Address:
        return self._sock.local_address

    def close(self) -> None:
        self._sock.close()
