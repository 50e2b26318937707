"""Which peers the embedded TURN server relays to (RFC 8656 9.2, 21; CVE-2020-26262), and how much, sans-IO.

By default a TURN server must not become a proxy into its own host or to addresses no peer can own:
loopback, unspecified, link-local (the cloud metadata address 169.254.169.254 among them), multicast and
broadcast peers are refused, as coturn does with no-loopback-peers and no-multicast-peers. IPv4-mapped IPv6
peers (::ffff:127.0.0.1) are judged as the IPv4 address they reach. Datagrams toward the server's own
listening ip:port are always dropped (a relay must not feed the server itself). Private ranges stay allowed:
ICE on a LAN needs them; `denied_peers` can refuse them.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable

from ..uri import format_host_port
from .server_types import Address, Allocation, TurnServerConfig

__all__ = ["PeerPolicy", "burst", "peer_ip", "spend"]

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")  # RFC 791/1122: "this host on this network"


def peer_ip(host: str) -> IP:
    """The IP a datagram to `host` reaches: an IPv4-mapped IPv6 address (RFC 4291 2.5.5.2) is its IPv4."""
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _category(ip: IP) -> str | None:
    """The reason no peer can own `ip`, or None for an ordinary (public or private) address."""
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip == _BROADCAST:
        return "broadcast"
    return None


class PeerPolicy:
    """The peer policy of one server: `refused(ip)` for permissions and channels, `own(peer)` for datagrams."""

    def __init__(self, config: TurnServerConfig, own_addresses: Iterable[Address] = ()) -> None:
        self._denied = [ipaddress.ip_network(n) for n in config.denied_peers]
        allowed = config.allowed_peers
        self._allowed = None if allowed is None else [ipaddress.ip_network(n) for n in allowed]
        self._lifted = {"loopback"} if config.allow_loopback_peers else set()
        if config.allow_link_local_peers:
            self._lifted.add("link-local")
        self._own: set[tuple[IP, int]] = set()
        self._ports: set[int] = set()  # every own port: most datagrams need no closer look
        self._wildcard_ports: set[int] = set()  # ports listened on at a wildcard address
        self._local: set[IP] = set()
        self.add_own_addresses(own_addresses)

    def add_own_addresses(self, addresses: Iterable[Address]) -> None:
        """UDP ip:port this host's servers listen on (a wildcard IP: on every local IP), never sent to."""
        for host, port in addresses:
            ip = peer_ip(host)
            self._ports.add(port)
            if ip.is_unspecified:
                self._wildcard_ports.add(port)
            else:
                self._own.add((ip, port))

    def add_local_ips(self, hosts: Iterable[str]) -> None:
        """IPs of this host (e.g. the relay addresses, the interfaces): a wildcard listener is on each."""
        self._local.update(peer_ip(h) for h in hosts)

    def refused(self, host: str) -> str | None:
        """Why a permission or channel toward `host` gets 403 (a reason for the counters), or None (RFC 8656 9.2)."""
        ip = peer_ip(host)
        category = _category(ip)
        if category is not None and category not in self._lifted:
            return category
        forms = {ip, ipaddress.ip_address(host)}  # a mapped address matches IPv4 and IPv6 networks alike
        if any(form in net for net in self._denied for form in forms):
            return "denied"
        if self._allowed is not None and not any(form in net for net in self._allowed for form in forms):
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
        """Whether a datagram to `peer` would reach one of the server's own listening sockets."""
        if peer[1] not in self._ports:
            return False
        ip = peer_ip(peer[0])
        if (ip, peer[1]) in self._own:
            return True
        return peer[1] in self._wildcard_ports and (ip in self._local or _category(ip) is not None)


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
