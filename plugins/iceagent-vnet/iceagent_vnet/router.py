"""A router between a LAN and an upstream segment, with a NAT (RFC 4787) or plain routing."""

from __future__ import annotations

import collections
import ipaddress
from collections.abc import Sequence

from .addresses import Address, is_ipv6, is_multicast, normalize_ip
from .nat import Mapping, NatBehavior, NatTable, resolve_nat
from .packet import Packet
from .portmap import PORT as PORTMAP_PORT
from .portmap import PortMapServer
from .scheduler import advance_if_running, current_scheduler, now_or_zero
from .segment import Attachment, Lan, Segment


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


class Router:
    """A router: LAN side on `lan` (its gateway), WAN side on `upstream` (the internet or an outer LAN).

    With `nat` (a NatBehavior or a preset name, default "eim-apdf") it translates LAN addresses to its
    public address; with `nat=None` or "none" it routes the LAN's subnets unchanged (the upstream
    segment gets a route to them via this router).
    """

    receives_multicast = False

    def __init__(
        self,
        upstream: Segment,
        lan: Lan,
        *,
        nat: NatBehavior | str | None = "eim-apdf",
        public: str | Sequence[str] | None = None,
        gateway: str | Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        if lan is upstream:
            raise ValueError("a router needs two different segments")
        if lan.gateway is not None:
            raise ValueError(f"{lan.name} already has a gateway ({lan.gateway.node.name})")
        self.name = name or f"router-{lan.name}"
        self.upstream = upstream
        self.lan = lan
        self._nat = resolve_nat(nat)
        self.drops: collections.Counter[str] = collections.Counter()
        """Packets this router dropped, by reason: no_mapping, filtered, hairpin, no_route, no_listener, ttl."""
        self.counters: collections.Counter[str] = collections.Counter()
        """Packets forwarded: outbound, inbound, hairpinned; and reboots."""
        self._lan_cache: dict[str, bool] = {}
        self._portmap: PortMapServer | None = None

        lan_ips = [normalize_ip(a) for a in _as_list(gateway)] or [p.first() for p in lan.pools]
        public_ips = [normalize_ip(a) for a in _as_list(public)]
        if not public_ips:
            for ipv6 in sorted({is_ipv6(ip) for ip in lan_ips}):
                allocated = upstream._allocate(ipv6)
                if allocated is not None:
                    public_ips.append(allocated)
        if not public_ips:
            raise ValueError(f"{upstream.name} has no address pool: give the router a public address")
        self._table = (
            NatTable(self._nat, public_ips, seed=self.name) if self._nat is not None else None
        )  # validates one public address per family before anything is attached

        self.wan = upstream._attach(self, "wan")
        self.lan_side = lan._attach(self, "lan")
        for ip in public_ips:
            upstream._add_address(self.wan, ip)
        for ip in lan_ips:
            lan._add_address(self.lan_side, ip)
        lan._set_gateway(self.lan_side)
        if self._nat is None:
            for subnet in lan.subnets:
                upstream._add_route(subnet, self.wan)

    # -- ground truth and statistics -------------------------------------------------------------

    @property
    def nat(self) -> NatBehavior | None:
        """The NAT behaviour (ground truth for RFC 5780 classifiers); None for plain routing."""
        return self._nat

    @property
    def public_addresses(self) -> tuple[str, ...]:
        """The router's addresses on the upstream segment."""
        return tuple(self.wan.addresses)

    @property
    def public_address(self) -> str:
        """The router's first (IPv4 if it has one) address on the upstream segment."""
        return sorted(self.wan.addresses, key=is_ipv6)[0]

    @property
    def lan_addresses(self) -> tuple[str, ...]:
        """The router's (gateway) addresses on the LAN."""
        return tuple(self.lan_side.addresses)

    def mappings(self, proto: str | None = None) -> list[Mapping]:
        """The live NAT mappings (RFC 4787 4.1), oldest first; [] without NAT."""
        advance_if_running()
        if self._table is None:
            return []
        return self._table.mappings(now_or_zero(), proto)

    def mapping_table(self, proto: str = "udp") -> dict[Address, Address]:
        """{public address: private address} of the live mappings of `proto`."""
        return {m.external: m.internal for m in self.mappings(proto)}

    @property
    def port_mapping(self) -> str | None:
        """The port-mapping server on the LAN address, UDP 5351: "pcp" (PCP and NAT-PMP), "natpmp" (NAT-PMP
        only), or None (the default: nothing answers). Its forwards pass the NAT unfiltered (portmap.py)."""
        return None if self._portmap is None else self._portmap.mode

    @port_mapping.setter
    def port_mapping(self, mode: str | None) -> None:
        if mode is None:
            self._portmap = None
            return
        if self._table is None:
            raise ValueError(f"{self.name} has no NAT: there is nothing to map")
        ipv4 = [a for a in self.wan.addresses if not is_ipv6(a)]
        if not ipv4:
            raise ValueError(f"{self.name} has no public IPv4 address to map on")
        self._portmap = PortMapServer(mode, self._table, ipv4[0], now_or_zero())

    @property
    def port_mapping_requests(self) -> dict[str, int]:
        """The port-mapping requests answered, by kind ("pcp-map", "pcp-delete", "natpmp-map", ...)."""
        return {} if self._portmap is None else dict(self._portmap.requests)

    def forwards(self) -> dict[Address, Address]:
        """{public address: private address} of the live port forwards (PCP / NAT-PMP mappings)."""
        advance_if_running()
        if self._table is None:
            return {}
        return {m.external: m.internal for m in self._table.forwards(now_or_zero())}

    def _answer_portmap(self, packet: Packet) -> bool:
        """A request to the port-mapping server: answer it (or drop it as malformed); False if it is none."""
        server = self._portmap
        if server is None or packet.proto != "udp" or packet.dst[1] != PORTMAP_PORT:
            return False
        response = server.answer(packet.payload, packet.src, current_scheduler().now())
        if response is None:
            self.drops["portmap"] += 1
        else:
            self.lan.transmit(Packet("udp", packet.dst, packet.src, response), self.lan_side)
        return True

    # -- events ---------------------------------------------------------------------------------

    def reboot(self, new_public_address: str | None = None) -> None:
        """Forget every mapping (RFC 4787 4.3: state is lost), optionally coming back with a new public IP."""
        advance_if_running()
        self.counters["reboots"] += 1
        if self._portmap is not None:
            self._portmap.started = now_or_zero()  # its epoch starts again (RFC 6887 8.5)
        if new_public_address is not None:
            self.change_public_address(new_public_address)
        elif self._table is not None:
            self._table.clear()

    def change_public_address(self, new_ip: str) -> None:
        """Replace the public address of `new_ip`'s family (mappings are dropped: they were on the old one)."""
        advance_if_running()
        ip = normalize_ip(new_ip)
        if ip in self.wan.addresses:
            if self._table is not None:
                self._table.clear()
            return
        old = [a for a in self.wan.addresses if is_ipv6(a) == is_ipv6(ip)]
        self.upstream._add_address(self.wan, ip)  # raises before anything changes if the address is taken
        for address in old:
            self.upstream._remove_address(self.wan, address)
        if self._table is not None:
            self._table.set_public(self.wan.addresses)
        if self._portmap is not None and not is_ipv6(ip):
            self._portmap.public_ip = ip  # its answers name the new address (RFC 6887 11.3, RFC 6886 3.2)

    # -- forwarding -----------------------------------------------------------------------------

    def _in_lan(self, ip: str) -> bool:
        try:
            return self._lan_cache[ip]
        except KeyError:
            parsed = ipaddress.ip_address(ip)
            inside = any(parsed.version == (6 if p.ipv6 else 4) and parsed in p.network for p in self.lan.pools)
            self._lan_cache[ip] = inside
            return inside

    def _receive(self, packet: Packet, attachment: Attachment) -> None:
        if packet.hops <= 1:
            self.drops["ttl"] += 1
            return
        if is_multicast(packet.dst[0]):
            return  # multicast stays on its LAN
        if attachment is self.lan_side:
            self._from_lan(packet)
        else:
            self._from_wan(packet)

    def _from_lan(self, packet: Packet) -> None:
        ip = packet.dst[0]
        if ip in self.lan_side.addresses and self._answer_portmap(packet):
            return
        if ip in self.lan_side.addresses or (ip in self.wan.addresses and self._table is None):
            self.drops["no_listener"] += 1
            return
        table = self._table
        if table is None:
            if self._in_lan(ip):
                self.drops["no_route"] += 1
                return
            self.counters["outbound"] += 1
            self.upstream.transmit(packet.forwarded(), self.wan)
            return
        now = current_scheduler().now()
        if ip in self.wan.addresses:
            self._hairpin(table, packet, now)
            return
        if self._in_lan(ip):
            self.drops["no_route"] += 1
            return
        mapping = table.outbound(packet.proto, packet.src, packet.dst, now)
        if mapping is None:
            self.drops["no_route"] += 1  # no public address of this family, or out of ports
            return
        self.counters["outbound"] += 1
        self.upstream.transmit(packet.forwarded(src=mapping.external), self.wan)

    def _hairpin(self, table: NatTable, packet: Packet, now: float) -> None:
        """RFC 4787 6: turn a LAN packet to a public mapping back into the LAN, from the sender's mapping."""
        assert self._nat is not None
        if not self._nat.hairpinning:
            self.drops["hairpin"] += 1
            return
        outbound = table.outbound(packet.proto, packet.src, packet.dst, now)
        if outbound is None:
            self.drops["no_route"] += 1
            return
        inbound = table.inbound(packet.proto, packet.dst, outbound.external, now)
        if isinstance(inbound, str):
            self.drops[inbound] += 1
            return
        self.counters["hairpinned"] += 1
        self.lan.transmit(packet.forwarded(src=outbound.external, dst=inbound.internal), self.lan_side)

    def _from_wan(self, packet: Packet) -> None:
        ip = packet.dst[0]
        table = self._table
        if table is None:
            if self._in_lan(ip):
                self.counters["inbound"] += 1
                self.lan.transmit(packet.forwarded(), self.lan_side)
            else:
                self.drops["no_listener" if ip in self.wan.addresses else "no_route"] += 1
            return
        if ip not in self.wan.addresses:
            self.drops["no_route"] += 1
            return
        result = table.inbound(packet.proto, packet.dst, packet.src, current_scheduler().now())
        if isinstance(result, str):
            self.drops[result] += 1
            return
        self.counters["inbound"] += 1
        self.lan.transmit(packet.forwarded(dst=result.internal), self.lan_side)

    def __repr__(self) -> str:
        nat = self._nat.name if self._nat is not None else "none"
        return f"<Router {self.name} nat={nat} public={list(self.wan.addresses)}>"
