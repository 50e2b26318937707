"""Which IP addresses no peer can own, and which IPv4 address an IPv6 one reaches (sans-IO, no I/O at all).

One place for the rules the TURN server's peer policy, the agent's remote-candidate check and the servers'
rate limiter share. An IPv6 address that embeds an IPv4 one is judged as both: a datagram to it may reach
that IPv4 address through a dual-stack socket (IPv4-mapped, RFC 4291 2.5.5.2), a translator (IPv4-translated,
RFC 2765; NAT64, RFC 6052 and RFC 8215), a 6to4 relay (RFC 3056) or an old stack (IPv4-compatible, RFC 4291
2.5.5.1). So 64:ff9b::7f00:1 is loopback, and `denied_peers=["10.0.0.0/8"]` covers 64:ff9b::a00:1.
"""

from __future__ import annotations

import ipaddress

__all__ = ["IP", "category", "forms", "parse_ip", "source_key", "unmapped"]

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")  # RFC 791/1122: "this host on this network"
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 2.1
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 2.1
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215; judged with a /96 prefix (RFC 6052 2.2)
_SIXTOFOUR = ipaddress.IPv6Network("2002::/16")  # RFC 3056 2
_METADATA6 = ipaddress.IPv6Address("fd00:ec2::254")  # the IPv6 cloud metadata service (AWS), like 169.254.169.254
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 2.5.5.1 (deprecated); :: and ::1 are not IPv4


def parse_ip(host: str) -> IP | None:
    """`host` as an address (an IPv6 zone index dropped), or None for a host name."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def unmapped(ip: IP) -> IP:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it is; any other as itself."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def forms(ip: IP) -> tuple[IP, ...]:
    """`ip`, and the IPv4 address a datagram to it may reach if it embeds one. RFC 8215's 64:ff9b:1::/48 is read
    with a /96 prefix (the IPv4 address in the last 32 bits) like 64:ff9b::/96: an operator who gives it a
    shorter prefix (RFC 6052 2.2 layouts) knows which, and can deny those peers with `denied_peers`."""
    if isinstance(ip, ipaddress.IPv4Address):
        return (ip,)
    value = int(ip)
    low = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None or ip in _TRANSLATED or ip in _NAT64 or ip in _NAT64_LOCAL:
        return (ip, low)
    if ip.sixtofour is not None:
        return (ip, ip.sixtofour)
    if ip in _COMPATIBLE and value > 1:
        return (ip, low)
    return (ip,)


def _own_category(ip: IP) -> str | None:
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local or ip == _METADATA6:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip == _BROADCAST:
        return "broadcast"
    return None


def category(ip: IP, among: frozenset[str] | None = None) -> str | None:
    """Why no peer can own `ip` or an IPv4 address it embeds (`forms`): "unspecified" (0.0.0.0/8, ::),
    "loopback", "link-local" (with the IPv6 metadata service fd00:ec2::254, a ULA), "multicast" or "broadcast"
    (255.255.255.255); None for an ordinary (public or private) address. With `among`, only those count."""
    for form in forms(ip):
        reason = _own_category(form)
        if reason is not None and (among is None or reason in among):
            return reason
    return None


def source_key(ip: str, ipv6_prefix: int = 64) -> str:
    """The rate-limit bucket of a source: the IPv4 address (an IPv4-mapped IPv6 one too), else its IPv6 prefix
    (one subscriber usually holds a /64, RFC 6177)."""
    address = parse_ip(ip)
    if address is None:
        return ip
    address = unmapped(address)
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    value = int(address) >> (128 - ipv6_prefix) << (128 - ipv6_prefix)
    return f"{ipaddress.IPv6Address(value)}/{ipv6_prefix}"
