"""A virtual host: interfaces on segments, a loopback, source address selection, UDP and TCP port tables."""

from __future__ import annotations

import collections
import errno
import random
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from iceagent.net.base import Interface

from .addresses import (
    LOOPBACK_V4,
    LOOPBACK_V6,
    Address,
    addr_in_use,
    addr_not_avail,
    is_ipv6,
    is_multicast,
    is_wildcard,
    normalize_ip,
    os_error,
    same_family,
    wildcard_for,
)
from .packet import Packet
from .router import Router
from .scheduler import current_scheduler
from .segment import Attachment, Segment
from .tcp import TcpStack
from .udp import VirtualUdpSocket

if TYPE_CHECKING:
    from .network import VirtualNetwork

EPHEMERAL_PORTS = (32768, 60999)
"""Linux's default ip_local_port_range."""

MAX_UDP_PAYLOAD = {False: 65507, True: 65527}


class Host:
    """A host with interfaces on segments (and a loopback); `network` is its iceagent `Network`.

    `Host("a", lan)` takes the next free address of each of the LAN's subnets;
    `Host("a", lan, "192.168.1.10", "fd00::10")` uses those. `attach()` adds more interfaces.
    """

    receives_multicast = True

    def __init__(
        self,
        name: str,
        segment: Segment | None = None,
        *addresses: str,
        tcp_connect_timeout: float = 127.0,
        seed: int | str = 0,
    ) -> None:
        self.name = name
        self.tcp_connect_timeout = tcp_connect_timeout
        """Seconds an unanswered connect_tcp waits (Linux: 127 s with 6 SYN retries), then TimeoutError."""
        self.drops: collections.Counter[str] = collections.Counter()
        """Packets dropped at this host, by reason: no_listener, no_route, mtu (too big to send)."""
        self.counters: collections.Counter[str] = collections.Counter()
        """Datagrams sent and received by this host's UDP sockets."""
        self.names: dict[str, list[str]] = {}
        self.attachments: list[Attachment] = []
        self._local: dict[str, Attachment | None] = {LOOPBACK_V4: None, LOOPBACK_V6: None}
        self._udp: dict[int, list[VirtualUdpSocket]] = {}
        self._rng = random.Random(f"host|{name}|{seed}")
        self.tcp = TcpStack(self)
        self._network: VirtualNetwork | None = None
        self._interface_listeners: list[Callable[[], None]] = []
        if segment is not None:
            self.attach(segment, *addresses)
        elif addresses:
            raise ValueError("addresses need a segment to live on")

    # -- configuration --------------------------------------------------------------------------

    def attach(self, segment: Segment, *addresses: str, name: str | None = None) -> Attachment:
        """Add an interface on `segment` with `addresses` (or one free address per subnet of the segment)."""
        ips = [normalize_ip(a) for a in addresses]
        if not ips:
            for ipv6 in (False, True):
                allocated = segment._allocate(ipv6)
                if allocated is not None:
                    ips.append(allocated)
        if not ips:
            raise ValueError(f"{segment.name} has no address pool: give {self.name} an address")
        for ip in ips:
            if ip in self._local:
                raise ValueError(f"host {self.name} already has address {ip}")
            segment._check_address(ip)
            owner = segment.owner(ip)
            if owner is not None:
                raise ValueError(f"{ip} is already used on {segment.name} by {owner.node.name}/{owner.name}")
        if len(set(ips)) != len(ips):
            raise ValueError(f"duplicate addresses for {self.name}: {ips}")
        attachment = segment._attach(self, name or self._free_name())
        for ip in ips:
            segment._add_address(attachment, ip)
            self._local[ip] = attachment
        self.attachments.append(attachment)
        self._interfaces_changed()
        return attachment

    def _free_name(self) -> str:
        taken = {att.name for att in self.attachments}
        return next(f"eth{i}" for i in range(len(taken) + 1) if f"eth{i}" not in taken)

    def add_address(self, attachment: Attachment, address: str) -> str:
        """Add `address` to an interface of this host at run time (`ip addr add`); returns it normalized."""
        if attachment not in self.attachments:
            raise ValueError(f"{attachment!r} is not an interface of host {self.name}")
        ip = normalize_ip(address)
        if ip in self._local:
            raise ValueError(f"host {self.name} already has address {ip}")
        attachment.segment._add_address(attachment, ip)
        self._local[ip] = attachment
        self._interfaces_changed()
        return ip

    def remove_address(self, address: str) -> None:
        """Remove an address at run time (`ip addr del`). As on Linux, sockets bound to it stay open but
        receive nothing more, and what they send is lost (Linux's sendto fails with ENETUNREACH, which
        iceagent's OS sockets count as a lost datagram: here it is counted in `drops["no_route"]`)."""
        ip = normalize_ip(address)
        attachment = self._local.get(ip)
        if attachment is None:
            raise ValueError(f"host {self.name} has no address {ip} (or it is a loopback address)")
        attachment.segment._remove_address(attachment, ip)
        del self._local[ip]
        self._interfaces_changed()

    def detach(self, attachment: Attachment) -> None:
        """Unplug an interface at run time: its addresses go (see `remove_address`), then the interface."""
        if attachment not in self.attachments:
            raise ValueError(f"{attachment!r} is not an interface of host {self.name}")
        for ip in list(attachment.addresses):
            attachment.segment._remove_address(attachment, ip)
            self._local.pop(ip, None)
        attachment.segment._detach(attachment)
        self.attachments.remove(attachment)
        self._interfaces_changed()

    def on_interfaces_changed(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` after every interface or address change; returns the function that stops it."""
        self._interface_listeners.append(listener)

        def stop() -> None:
            if listener in self._interface_listeners:
                self._interface_listeners.remove(listener)

        return stop

    def _interfaces_changed(self) -> None:
        for listener in list(self._interface_listeners):
            listener()

    def register_name(self, name: str, *addresses: str) -> None:
        """Make `name` resolve to `addresses` on this host only (like /etc/hosts)."""
        if not addresses:
            raise ValueError("register_name needs at least one address")
        self.names[name.lower().rstrip(".")] = sorted((normalize_ip(a) for a in addresses), key=is_ipv6)

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every non-loopback address of this host."""
        return tuple(a for att in self.attachments for a in att.addresses)

    @property
    def address(self) -> str:
        """The first (IPv4 if any) non-loopback address."""
        return sorted(self.addresses, key=is_ipv6)[0]

    @property
    def network(self) -> VirtualNetwork:
        """This host's iceagent `Network` (always the same object)."""
        from .network import VirtualNetwork

        if self._network is None:
            self._network = VirtualNetwork(self)
        return self._network

    def interfaces(self) -> list[Interface]:
        """The loopback and one Interface per attachment, as `Network.interfaces()` reports them; an
        interface's networks are its segment's subnets that hold its addresses."""
        out = [Interface(name="lo", addresses=(LOOPBACK_V4, LOOPBACK_V6), loopback=True,
                         networks=("127.0.0.0/8", "::1/128"))]
        for att in self.attachments:
            networks = tuple(str(p.network) for p in att.segment.pools if any(a in p for a in att.addresses))
            out.append(Interface(name=att.name, addresses=tuple(att.addresses), networks=networks))
        return out

    def has_address(self, ip: str) -> bool:
        """True if `ip` (normalized) is one of this host's addresses, loopback included."""
        return ip in self._local

    def attachment_of(self, ip: str) -> Attachment | None:
        """The interface that has `ip` (None for loopback addresses); KeyError if the host lacks it."""
        return self._local[ip]

    def resolve_name(self, name: str) -> list[str]:
        """Addresses of `name`: this host's names, then each segment's reachable through gateways."""
        key = name.lower().rstrip(".")
        if key == "localhost":
            return [LOOPBACK_V4, LOOPBACK_V6]
        if key in self.names:
            return list(self.names[key])
        seen: set[int] = set()
        queue = collections.deque(att.segment for att in self.attachments)
        while queue:
            segment = queue.popleft()
            if id(segment) in seen:
                continue
            seen.add(id(segment))
            if key in segment.names:
                return list(segment.names[key])
            gateway = segment.gateway
            if gateway is not None and isinstance(gateway.node, Router):
                queue.append(gateway.node.upstream)
        return []

    # -- ports ----------------------------------------------------------------------------------

    def _check_local_ip(self, ip: str, *, allow_multicast: bool = False) -> None:
        if is_wildcard(ip) or ip in self._local or (allow_multicast and is_multicast(ip)):
            return
        raise addr_not_avail(ip, self.name)

    def ephemeral_port(self, in_use: Iterable[int] | None = None) -> int:
        """A free port from the ephemeral range (chosen by this host's seeded generator)."""
        used = set(in_use) if in_use is not None else set(self._udp)
        low, high = EPHEMERAL_PORTS
        for _ in range(64):
            port = self._rng.randint(low, high)
            if port not in used:
                return port
        for port in range(low, high + 1):
            if port not in used:
                return port
        raise os_error(errno.EADDRINUSE, f"no free ephemeral port on host {self.name!r}")

    def _bind_udp(self, ip: str, port: int, reuse: bool) -> VirtualUdpSocket:
        self._check_local_ip(ip, allow_multicast=True)
        if port == 0:
            port = self.ephemeral_port()
        for other in self._udp.get(port, ()):
            overlap = other.ip == ip or is_wildcard(other.ip) or is_wildcard(ip)
            if same_family(other.ip, ip) and overlap and not (reuse and other.reuse):
                raise addr_in_use((ip, port), self.name)
        sock = VirtualUdpSocket(self, ip, port, reuse)
        self._udp.setdefault(port, []).append(sock)
        return sock

    def _unbind_udp(self, sock: VirtualUdpSocket) -> None:
        socks = self._udp.get(sock.port)
        if socks and sock in socks:
            socks.remove(sock)
            if not socks:
                del self._udp[sock.port]

    # -- sending --------------------------------------------------------------------------------

    def route(self, source: str, destination: str) -> tuple[Attachment | None, str] | None:
        """The interface and source address for a packet to `destination` from a socket bound to `source`.

        A destination of this host's own comes back with the interface that has it (None for the
        loopback); None means no route (a loopback-bound socket reaches only this host).
        """
        if destination in self._local:
            if is_wildcard(source) or is_multicast(source):
                return self._local[destination], destination
            return self._local[destination], source
        if not is_wildcard(source) and not is_multicast(source):
            attachment = self._local.get(source)
            if attachment is None:
                return None  # a loopback-bound socket reaches only this host
            return attachment, source
        ipv6 = is_ipv6(destination)
        fallback: tuple[Attachment | None, str] | None = None
        for attachment in self.attachments:
            address = attachment.address_for(ipv6)
            if address is None:
                continue
            hop = attachment.segment.next_hop(destination)
            if hop is None:
                continue
            if hop is not attachment.segment.gateway:
                return attachment, address
            if fallback is None:
                fallback = (attachment, address)
        return fallback

    def _emit(self, packet: Packet, attachment: Attachment | None, local: bool) -> None:
        """Deliver `packet` to this host (local) or put it on `attachment`'s segment."""
        if local:
            scheduler = current_scheduler()
            scheduler.call_at(scheduler.now(), self._receive, packet, attachment)
        elif attachment is not None:
            attachment.segment.transmit(packet, attachment)
        else:
            self.drops["no_route"] += 1

    def send_packet(self, packet: Packet) -> None:
        """Send a packet whose source is one of this host's addresses (TCP uses this)."""
        dst = packet.dst[0]
        if dst in self._local:
            self._emit(packet, self._local[dst], True)
        else:
            self._emit(packet, self._local.get(packet.src[0]), False)

    def _send_udp(self, sock: VirtualUdpSocket, data: bytes, remote: Address) -> None:
        host, port = remote
        try:
            dst = normalize_ip(host)
        except ValueError:
            names = [ip for ip in self.resolve_name(host) if same_family(ip, sock.ip)]
            if not names:
                self.drops["no_route"] += 1
                return
            dst = names[0]
        if not same_family(dst, sock.ip) or not 0 < port <= 65535:
            self.drops["no_route"] += 1
            return
        if len(data) > MAX_UDP_PAYLOAD[is_ipv6(dst)]:
            self.drops["mtu"] += 1
            return
        self.counters["sent"] += 1
        current_scheduler().run_now(self._output_udp, sock, data, dst, port)

    def _output_udp(self, sock: VirtualUdpSocket, data: bytes, dst: str, port: int) -> None:
        if is_multicast(dst):
            self._send_multicast(sock, data, dst, port)
            return
        route = self.route(sock.ip, dst)
        if route is None:
            self.drops["no_route"] += 1
            return
        attachment, source = route
        self._emit(Packet("udp", (source, sock.port), (dst, port), data), attachment, dst in self._local)

    def _send_multicast(self, sock: VirtualUdpSocket, data: bytes, group: str, port: int) -> None:
        ipv6 = is_ipv6(group)
        attachment: Attachment | None = None
        if not is_wildcard(sock.ip) and not is_multicast(sock.ip):
            attachment = self._local.get(sock.ip)
        else:
            joined = [att for att in self.attachments if (group, att) in sock.groups]
            candidates = joined or [att for att in self.attachments if att.address_for(ipv6) is not None]
            attachment = candidates[0] if candidates else None
        source = attachment.address_for(ipv6) if attachment is not None else None
        if attachment is None or source is None:
            self.drops["no_route"] += 1
            return
        packet = Packet("udp", (source, sock.port), (group, port), data)
        attachment.segment.transmit(packet, attachment)
        self._emit(packet, attachment, True)  # IP_MULTICAST_LOOP is on by default, as on Linux

    def default_attachment(self, ipv6: bool) -> Attachment | None:
        """The first interface with an address of the family."""
        for attachment in self.attachments:
            if attachment.address_for(ipv6) is not None:
                return attachment
        return None

    # -- receiving ------------------------------------------------------------------------------

    def _receive(self, packet: Packet, attachment: Attachment | None) -> None:
        if packet.proto == "udp":
            self._receive_udp(packet, attachment)
        else:
            self.tcp.receive(packet)

    def _receive_udp(self, packet: Packet, attachment: Attachment | None) -> None:
        ip, port = packet.dst
        socks = self._udp.get(port)
        if is_multicast(ip):
            membership = (ip, attachment)
            for sock in socks or ():
                if (sock.ip == ip or sock.ip == wildcard_for(ip)) and membership in sock.groups:
                    self.counters["received"] += 1
                    sock._deliver(packet.payload, packet.src)
            return
        target = None
        if socks:
            wildcard = wildcard_for(ip)
            exact = None
            for sock in socks:  # the last one bound wins, as with SO_REUSEADDR on Linux
                if sock.ip == ip:
                    exact = sock
                elif sock.ip == wildcard:
                    target = sock
            target = exact or target
        if target is None:
            self.drops["no_listener"] += 1
            return
        self.counters["received"] += 1
        target._deliver(packet.payload, packet.src)

    def __repr__(self) -> str:
        return f"<Host {self.name} {list(self.addresses)}>"
