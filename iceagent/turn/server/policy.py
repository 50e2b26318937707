"""Which peers the embedded TURN server relays to (RFC 8656 9.2, 21; CVE-2020-26262), and how much, sans-IO.

By default a TURN server must not become a proxy into its own host or to addresses no peer can own:
loopback, unspecified, link-local (the cloud metadata address 169.254.169.254 among them), multicast and
broadcast peers are refused, as coturn does with no-loopback-peers and no-multicast-peers. IPv6 peers that
embed an IPv4 address (::ffff:127.0.0.1, NAT64 64:ff9b::7f00:1, 6to4, ...) are judged as the IPv4 address they
reach too (`iceagent._addresses`). Datagrams toward or from the server's own listening ip:port are always
dropped (a relay must not feed the server itself). Private ranges stay allowed: ICE on a LAN needs them;
`denied_peers` can refuse them.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable

from ..._addresses import IP, category, forms, parse_ip, unmapped
from ...uri import format_host_port
from .types import Address, Allocation, TurnServerConfig

__all__ = ["PeerPolicy", "burst", "desired_lifetime", "peer_ip", "spend"]


def peer_ip(host: str) -> IP:
    """The IP a datagram to `host` reaches: an IPv4-mapped IPv6 address (RFC 4291 2.5.5.2) is its IPv4."""
    return unmapped(ipaddress.ip_address(host))


_CATEGORIES = frozenset({"unspecified", "loopback", "link-local", "multicast", "broadcast"})


class PeerPolicy:
    """The peer policy of one server: `refused(ip)` for permissions and channels, `own(peer)` for datagrams."""

    def __init__(self, config: TurnServerConfig, own_addresses: Iterable[Address] = ()) -> None:
        self._denied = [ipaddress.ip_network(n) for n in config.denied_peers]
        allowed = config.allowed_peers
        self._allowed = None if allowed is None else [ipaddress.ip_network(n) for n in allowed]
        lifted = {"loopback"} if config.allow_loopback_peers else set()
        if config.allow_link_local_peers:
            lifted.add("link-local")
        self._refused = _CATEGORIES - lifted
        self._own: set[tuple[IP, int]] = set()
        self._ports: set[int] = set()  # every own port: most datagrams need no closer look
        self._wildcard_ports: set[int] = set()  # ports listened on at a wildcard address: own on every IP
        self.add_own_addresses(own_addresses)

    def add_own_addresses(self, addresses: Iterable[Address]) -> None:
        """UDP ip:port this host's servers listen on, never sent to nor taken from. A wildcard listener's port
        is own on every IP: which IPs are this host's changes at run time (and a peer's NAT64 or 6to4 address
        may lead back here), so a peer on that port is refused wherever it is (CVE-2020-26262)."""
        for host, port in addresses:
            ip = peer_ip(host)
            self._ports.add(port)
            if ip.is_unspecified:
                self._wildcard_ports.add(port)
            else:
                self._own.add((ip, port))

    def refused(self, host: str) -> str | None:
        """Why a permission or channel toward `host` gets 403 (a reason for the counters), or None (RFC 8656 9.2).
        An IPv6 address that embeds an IPv4 one is judged as both (`iceagent._addresses.forms`)."""
        ip = ipaddress.ip_address(host)
        reason = category(ip, self._refused)
        if reason is not None:
            return reason
        reached = forms(ip)  # a mapped or NAT64 address matches IPv4 and IPv6 networks alike
        if any(form in net for net in self._denied for form in reached):
            return "denied"
        if self._allowed is not None and not any(form in net for net in self._allowed for form in reached):
            return "not-allowed"
        return None

    def check(self, peer: Address, family: int, *, channel: bool) -> tuple[int, str, str] | None:
        """(code, reason phrase, counter name) for a permission or channel to `peer` on a relay of IP `family`:
        443 for the other family, 403 for a refused peer or (a channel) the server's own ip:port; else None."""
        if (6 if ":" in peer[0] else 4) != family:
            return 443, f"Peer Address Family Mismatch: {peer[0]} is not IPv{family} like the relay", "family"
        reason = self.refused(peer[0])
        if reason is None and channel and self.own(peer):
            reason = "own-address"
        if reason is None:
            return None
        hint = " (allow_loopback_peers / --allow-loopback-peers lifts this)" if reason == "loopback" else ""
        return 403, f"Forbidden: this server does not relay to {format_host_port(peer)}: {reason} peer{hint}", reason

    def own(self, peer: Address) -> bool:
        """Whether `peer` may be one of the server's own listening sockets: a datagram to it or from it is dropped."""
        port = peer[1]
        if port not in self._ports:
            return False
        if port in self._wildcard_ports:
            return True
        ip = parse_ip(peer[0])
        return ip is not None and any((form, port) in self._own for form in forms(ip))


def burst(rate: float | None) -> float:
    """The size of an allocation's bandwidth bucket: one second of `rate`, at least one largest datagram."""
    return math.inf if rate is None else max(rate, 65535.0)


def spend(allocation: Allocation, size: int, now: float, rate: float | None) -> bool:
    """Take `size` relayed bytes from the allocation's token bucket, refilled at `rate` bytes per second;
    False when it holds fewer (the datagram is dropped). Both directions share the bucket."""
    if rate is None:
        return True
    tokens = min(burst(rate), allocation.tokens + (now - allocation.tokens_at) * rate)
    allocation.tokens_at = now
    if size > tokens:
        allocation.tokens = tokens
        return False
    allocation.tokens = tokens - size
    return True


def desired_lifetime(config: TurnServerConfig, requested: int | None) -> float:
    """An allocation's lifetime: min(requested, max), but not under the default (RFC 8656 7.2, 8.2)."""
    if requested is None:
        return config.default_lifetime
    return max(config.default_lifetime, min(float(requested), config.max_lifetime))
