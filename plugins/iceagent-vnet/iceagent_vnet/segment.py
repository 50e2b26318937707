"""Segments: a LAN (a switch, with multicast) or the internet (routes by address), carried over one Link.

A segment delivers a packet to the interface that owns its destination address, else along a
route (longest prefix), else to its gateway (the LAN side of a router); otherwise it is dropped
with reason "no_route". Multicast goes to every host interface on a LAN (never across a router);
each host then hands it to the sockets that joined the group.
"""

from __future__ import annotations

import collections
import ipaddress
from collections.abc import Sequence
from typing import Protocol

from .addresses import AddressPool, is_ipv6, is_multicast, normalize_ip
from .link import Link
from .packet import Packet
from .scheduler import current_scheduler

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Node(Protocol):
    """Something with interfaces on segments: a Host or a Router."""

    name: str
    receives_multicast: bool

    def _receive(self, packet: Packet, attachment: Attachment) -> None: ...


class Attachment:
    """A node's interface on a segment: its name (eth0, wan, lan, ...) and its addresses there."""

    __slots__ = ("addresses", "name", "node", "segment")

    def __init__(self, node: Node, segment: Segment, name: str) -> None:
        self.node = node
        self.segment = segment
        self.name = name
        self.addresses: list[str] = []

    def address_for(self, ipv6: bool) -> str | None:
        """This interface's first address of a family."""
        for address in self.addresses:
            if is_ipv6(address) == ipv6:
                return address
        return None

    def __repr__(self) -> str:
        return f"<Attachment {self.node.name}/{self.name} on {self.segment.name} {self.addresses}>"


class Segment:
    """A broadcast domain carried over one Link: the common part of Lan and Internet."""

    strict_subnets = False

    def __init__(self, name: str, *, link: Link, pools: Sequence[AddressPool], multicast: bool) -> None:
        self.name = name
        self.link = link
        self.pools = list(pools)
        self.multicast = multicast
        self.drops: collections.Counter[str] = collections.Counter()
        """Packets dropped on this segment by reason: loss, mtu, no_route."""
        self.counters: collections.Counter[str] = collections.Counter()
        """Packets sent onto and delivered by this segment."""
        self.names: dict[str, list[str]] = {}
        self.gateway: Attachment | None = None
        self._by_address: dict[str, Attachment] = {}
        self._members: list[Attachment] = []
        self._routes: list[tuple[IPNetwork, Attachment]] = []
        self._route_cache: dict[str, Attachment | None] = {}

    # -- configuration --------------------------------------------------------------------------

    def register_name(self, name: str, *addresses: str) -> None:
        """Make `name` resolve to `addresses` for every host that reaches this segment (IPv4 first)."""
        if not addresses:
            raise ValueError("register_name needs at least one address")
        ips = [normalize_ip(a) for a in addresses]
        self.names[name.lower().rstrip(".")] = sorted(ips, key=is_ipv6)

    def owner(self, ip: str) -> Attachment | None:
        """The interface that has address `ip` on this segment."""
        return self._by_address.get(normalize_ip(ip))

    def addresses_in_use(self) -> set[str]:
        """Every address assigned on this segment."""
        return set(self._by_address)

    def _attach(self, node: Node, name: str) -> Attachment:
        attachment = Attachment(node, self, name)
        self._members.append(attachment)
        return attachment

    def _check_address(self, ip: str) -> None:
        parsed = ipaddress.ip_address(ip)
        if parsed.is_multicast or parsed.is_unspecified or parsed.is_loopback:
            raise ValueError(f"{ip} cannot be an interface address (multicast, unspecified or loopback)")
        if self.strict_subnets:
            pools = [p for p in self.pools if p.ipv6 == is_ipv6(ip)]
            if not pools:
                family = "IPv6" if is_ipv6(ip) else "IPv4"
                raise ValueError(f"{self.name} has no {family} subnet for {ip}")
            if not any(ip in p for p in pools):
                subnets = ", ".join(str(p.network) for p in pools)
                raise ValueError(f"{ip} is not in {self.name}'s subnet {subnets}")

    def _add_address(self, attachment: Attachment, address: str) -> str:
        ip = normalize_ip(address)
        self._check_address(ip)
        owner = self._by_address.get(ip)
        if owner is not None:
            raise ValueError(f"{ip} is already used on {self.name} by {owner.node.name}/{owner.name}")
        self._by_address[ip] = attachment
        attachment.addresses.append(ip)
        self._route_cache.clear()
        return ip

    def _remove_address(self, attachment: Attachment, ip: str) -> None:
        if self._by_address.get(ip) is attachment:
            del self._by_address[ip]
            attachment.addresses.remove(ip)
            self._route_cache.clear()

    def _detach(self, attachment: Attachment) -> None:
        """Remove a node's interface (its addresses first, with `_remove_address`)."""
        for ip in list(attachment.addresses):
            self._remove_address(attachment, ip)
        if attachment in self._members:
            self._members.remove(attachment)
        self._routes = [(net, via) for net, via in self._routes if via is not attachment]
        self._route_cache.clear()

    def _allocate(self, ipv6: bool) -> str | None:
        """A free address of the family from this segment's pool (None if it has no pool for it)."""
        for pool in self.pools:
            if pool.ipv6 == ipv6:
                return pool.take(self.addresses_in_use())
        return None

    def _set_gateway(self, attachment: Attachment) -> None:
        if self.gateway is not None:
            raise ValueError(f"{self.name} already has a gateway ({self.gateway.node.name})")
        self.gateway = attachment
        self._route_cache.clear()

    def _add_route(self, network: str, via: Attachment) -> None:
        net = ipaddress.ip_network(network, strict=False)
        for existing, other in self._routes:
            if existing == net:
                raise ValueError(f"{self.name} already routes {net} via {other.node.name}")
        self._routes.append((net, via))
        self._routes.sort(key=lambda r: -r[0].prefixlen)
        self._route_cache.clear()

    # -- forwarding ------------------------------------------------------------------------------

    def _lookup(self, ip: str) -> Attachment | None:
        try:
            return self._route_cache[ip]
        except KeyError:
            pass
        target = self._by_address.get(ip)
        if target is None:
            parsed = ipaddress.ip_address(ip)
            for net, via in self._routes:
                if parsed.version == net.version and parsed in net:
                    target = via
                    break
            else:
                target = self.gateway
        self._route_cache[ip] = target
        return target

    def next_hop(self, ip: str) -> Attachment | None:
        """Where a packet to `ip` goes on this segment (None: nowhere)."""
        return self._lookup(normalize_ip(ip))

    def transmit(self, packet: Packet, sender: Attachment) -> None:
        """Put `packet` on the link: it arrives after the link's delay, or is dropped (loss, mtu)."""
        scheduler = current_scheduler()
        result = self.link.transit(packet, scheduler.now())
        if isinstance(result, str):
            self.drops[result] += 1
            return
        self.counters["sent"] += 1
        for when in result:
            scheduler.call_at(when, self._arrive, packet, sender)

    def _arrive(self, packet: Packet, sender: Attachment) -> None:
        ip = packet.dst[0]
        if is_multicast(ip):
            if not self.multicast:
                self.drops["no_route"] += 1
                return
            self.counters["multicast"] += 1
            for member in self._members:
                if member is not sender and member.node.receives_multicast:
                    member.node._receive(packet, member)
            return
        target = self._lookup(ip)
        if target is None or target is sender:
            self.drops["no_route"] += 1
            return
        self.counters["delivered"] += 1
        target.node._receive(packet, target)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class Lan(Segment):
    """A LAN: a switch with an IPv4 subnet (and optionally an IPv6 one), multicast, at most one router."""

    strict_subnets = True

    def __init__(
        self,
        subnet: str = "192.168.1.0/24",
        ipv6_subnet: str | None = None,
        *,
        name: str | None = None,
        link: Link | None = None,
        seed: int | str = 0,
    ) -> None:
        pools = [AddressPool(subnet, reserve=1)]
        if ipv6_subnet is not None:
            pools.append(AddressPool(ipv6_subnet, reserve=1))
        if pools[0].ipv6:
            raise ValueError(f"Lan subnet must be IPv4 ({subnet!r}); give IPv6 as ipv6_subnet")
        if len(pools) > 1 and not pools[1].ipv6:
            raise ValueError(f"Lan ipv6_subnet must be IPv6, not {ipv6_subnet!r}")
        super().__init__(
            name or f"lan-{pools[0].network}",
            link=link if link is not None else Link(seed=seed),
            pools=pools,
            multicast=True,
        )

    @property
    def subnets(self) -> list[str]:
        """The LAN's subnets (IPv4 first)."""
        return [str(p.network) for p in self.pools]


class Internet(Segment):
    """The internet: public hosts and routers' WAN sides; any address may be used; no multicast.

    `pool` (and `ipv6_pool`) give addresses to hosts and routers that are not given any.
    """

    def __init__(
        self,
        *,
        link: Link | None = None,
        seed: int | str = 0,
        name: str = "internet",
        pool: str = "203.0.113.0/24",
        ipv6_pool: str | None = None,
    ) -> None:
        pools = [AddressPool(pool)]
        if ipv6_pool is not None:
            pools.append(AddressPool(ipv6_pool))
        super().__init__(name, link=link if link is not None else Link(seed=seed), pools=pools, multicast=False)
