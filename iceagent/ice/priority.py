"""Candidate priorities, local preferences, foundations and pair priorities (sans-IO).

- candidate priority: RFC 8445 5.1.2.1 (type preferences of 5.1.2.2)
- local preference for multihomed and dual-stack hosts: RFC 8421 3 and 4
- local preference of TCP candidates: RFC 6544 4.2
- foundations: RFC 8445 5.1.1.3
- peer-reflexive priority of a check: RFC 8445 7.1.1
- candidate pair priority: RFC 8445 6.1.2.3

Everything here is a pure function of its arguments.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from types import MappingProxyType

__all__ = [
    "DEFAULT_OTHER_PREFERENCE",
    "MAX_LOCAL_PREFERENCE",
    "MAX_PRIORITY",
    "TCP_DIRECTION_PREFERENCES",
    "TYPE_PREFERENCES",
    "candidate_priority",
    "compute_priority",
    "foundation",
    "interleave_addresses",
    "local_preferences",
    "pair_priority",
    "prflx_priority",
    "tcp_direction_preference",
    "tcp_local_preference",
    "type_preference",
]

#: Largest candidate priority: a 32-bit unsigned integer (RFC 8445 5.1.2.1).
MAX_PRIORITY = 2**32 - 1
#: Largest local preference (RFC 8445 5.1.2.1); the value for a host with a single IP address.
MAX_LOCAL_PREFERENCE = 65535
#: Largest ICE-TCP other-pref, the value for a single IP address (RFC 6544 4.2).
DEFAULT_OTHER_PREFERENCE = 8191

#: Recommended type preferences (RFC 8445 5.1.2.2): host 126, peer-reflexive 110,
#: server-reflexive 100, relayed 0.  RFC 6544 4.2 says TCP candidates SHOULD use the same ones.
TYPE_PREFERENCES: Mapping[str, int] = MappingProxyType({"host": 126, "prflx": 110, "srflx": 100, "relay": 0})

#: ICE-TCP direction-pref (RFC 6544 4.2), by candidate type then tcptype.  Host and relayed
#: candidates: active 6, passive 4, so 2.  Server-reflexive ("NAT-assisted") candidates: so 6,
#: active 4, passive 2; peer-reflexive candidates are NAT mappings too and are ranked like them.
TCP_DIRECTION_PREFERENCES: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        "host": MappingProxyType({"active": 6, "passive": 4, "so": 2}),
        "relay": MappingProxyType({"active": 6, "passive": 4, "so": 2}),
        "srflx": MappingProxyType({"so": 6, "active": 4, "passive": 2}),
        "prflx": MappingProxyType({"so": 6, "active": 4, "passive": 2}),
    }
)


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{what} {value} out of range ({low}..{high})")


def type_preference(cand_type: str) -> int:
    """The recommended type preference of a candidate type (RFC 8445 5.1.2.2)."""
    try:
        return TYPE_PREFERENCES[cand_type.lower()]
    except KeyError:
        raise ValueError(f"unknown candidate type {cand_type!r}") from None


def compute_priority(type_pref: int, local_pref: int, component: int) -> int:
    """The candidate priority formula of RFC 8445 5.1.2.1.

    priority = 2^24 * type preference + 2^8 * local preference + (256 - component ID),
    with type preference 0..126, local preference 0..65535 and component ID 1..256.
    """
    _check_range("type preference", type_pref, 0, 126)
    _check_range("local preference", local_pref, 0, MAX_LOCAL_PREFERENCE)
    _check_range("component", component, 1, 256)
    return (type_pref << 24) + (local_pref << 8) + (256 - component)


def candidate_priority(cand_type: str, component: int = 1, local_pref: int = MAX_LOCAL_PREFERENCE) -> int:
    """Priority of a candidate of type `cand_type` with the recommended type preference (RFC 8445 5.1.2).

    `candidate_priority("host")` is 2130706431, the priority of a host candidate of component 1 on a
    single-address host.  For several addresses take `local_pref` from `local_preferences()`; for a TCP
    candidate from `tcp_local_preference()`.
    """
    return compute_priority(type_preference(cand_type), local_pref, component)


def prflx_priority(priority: int) -> int:
    """The PRIORITY a connectivity check carries: `priority` with the peer-reflexive type preference.

    RFC 8445 7.1.1: computed with the formula of 5.1.2.1 using the type preference of peer-reflexive
    candidates (110) and the local preference and component of the local candidate that sends the check,
    i.e. only the top 8 bits of that candidate's priority change.
    """
    _check_range("priority", priority, 0, MAX_PRIORITY)
    return (TYPE_PREFERENCES["prflx"] << 24) | (priority & 0xFFFFFF)


def tcp_direction_preference(cand_type: str, tcptype: str) -> int:
    """Recommended direction-pref (0..7) of a TCP candidate (RFC 6544 4.2); see TCP_DIRECTION_PREFERENCES."""
    by_tcptype = TCP_DIRECTION_PREFERENCES.get(cand_type.lower())
    if by_tcptype is None:
        raise ValueError(f"unknown candidate type {cand_type!r}")
    try:
        return by_tcptype[tcptype.lower()]
    except KeyError:
        raise ValueError(f"unknown tcptype {tcptype!r} (expected active, passive or so)") from None


def tcp_local_preference(
    cand_type: str,
    tcptype: str,
    other_pref: int = DEFAULT_OTHER_PREFERENCE,
    *,
    direction_pref: int | None = None,
) -> int:
    """Local preference of a TCP candidate: 2^13 * direction-pref + other-pref (RFC 6544 4.2).

    direction-pref is 0..7 (recommended values from `tcp_direction_preference()` unless given);
    other-pref is 0..8191 and tells apart IP addresses of a multihomed host (8191 for a single
    address; `local_preferences(addresses, maximum=8191)` assigns them).
    """
    if direction_pref is None:
        direction_pref = tcp_direction_preference(cand_type, tcptype)
    _check_range("direction-pref", direction_pref, 0, 7)
    _check_range("other-pref", other_pref, 0, DEFAULT_OTHER_PREFERENCE)
    return (direction_pref << 13) + other_pref


@functools.lru_cache(maxsize=4096)
def _parse_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"{address!r} is not an IP address") from None


def interleave_addresses(addresses: Iterable[str], *, prefer_ipv6: bool = True) -> list[str]:
    """Order local IP addresses so that the two address families alternate (RFC 8421 4).

    `addresses` is in the host's own preference order (RFC 8421 3: e.g. the interface of the default
    route first, wired before wireless, VPNs last).  The result keeps that order within each family and
    alternates families, starting with IPv6 (RFC 8421 4: "prioritize IPv6 candidates by putting some of
    them first"; `prefer_ipv6=False` starts with IPv4).  When one family runs out, the rest of the other
    follows in order.  Duplicates (same IP in any textual form) are kept once, at their first place.

    Example: ["10.0.0.2", "192.168.1.2", "2001:db8::1", "2001:db8::2", "2001:db8::3"] becomes
    ["2001:db8::1", "10.0.0.2", "2001:db8::2", "192.168.1.2", "2001:db8::3"].
    """
    seen: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    v4: list[str] = []
    v6: list[str] = []
    for address in addresses:
        ip = _parse_ip(address)
        if ip in seen:
            continue
        seen.add(ip)
        (v6 if ip.version == 6 else v4).append(address)
    first, second = (v6, v4) if prefer_ipv6 else (v4, v6)
    ordered: list[str] = []
    for i in range(max(len(first), len(second))):
        if i < len(first):
            ordered.append(first[i])
        if i < len(second):
            ordered.append(second[i])
    return ordered


def local_preferences(
    addresses: Iterable[str], *, prefer_ipv6: bool = True, maximum: int = MAX_LOCAL_PREFERENCE
) -> dict[str, int]:
    """Assign unique local preferences to local IP addresses, families interleaved (RFC 8421 3, 4).

    The scheme: the addresses are put in the order of `interleave_addresses()` and the n-th one (from 0)
    gets `maximum - n`, so the best address gets the maximum (65535, the RFC 8445 5.1.2.1 value for a
    single address) and every address a distinct value, as RFC 8445 5.1.2.1 requires for candidates of
    the same type.  Candidates of one base share that base's local preference whatever their type (the
    type preference orders them), which keeps the host/srflx/relay candidates of the preferred
    interface ahead of those of the others within each type.  For ICE-TCP other-pref use
    `maximum=8191` (RFC 6544 4.2).  The dict is in the interleaved order.

    Example: ["192.168.1.2", "10.0.0.2", "2001:db8::1"] gives
    {"2001:db8::1": 65535, "192.168.1.2": 65534, "10.0.0.2": 65533}.
    """
    _check_range("maximum", maximum, 0, MAX_LOCAL_PREFERENCE)
    ordered = interleave_addresses(addresses, prefer_ipv6=prefer_ipv6)
    if len(ordered) > maximum + 1:
        raise ValueError(f"{len(ordered)} addresses cannot have distinct local preferences in 0..{maximum}")
    return {address: maximum - n for n, address in enumerate(ordered)}


def _normalize_address(address: str) -> str:
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address.lower()  # a host name: compare case-insensitively


def foundation(
    cand_type: str, base_address: str, transport: str = "udp", server_address: str | None = None
) -> str:
    """The foundation of a local candidate (RFC 8445 5.1.1.3).

    Two candidates get the same foundation exactly when they have the same type, the same base IP
    address, the same IP address of the STUN or TURN server that produced them (None for host and
    peer-reflexive candidates) and the same transport protocol.  IP addresses are compared as
    addresses (so "2001:db8::1" and "2001:DB8:0::1" are one), types and transports case-insensitively.

    The foundation is a digest of that tuple: 8 lower-case hex digits (valid `ice-char`s, RFC 8839 5.1),
    stable across runs and processes, so tests and logs can rely on it.  A 32-bit digest makes an
    accidental collision between the few tuples of one agent negligible, and a collision only couples
    the unfreezing of two pairs (RFC 8445 6.1.2.6), never correctness.
    """
    server = "" if server_address is None else _normalize_address(server_address)
    key = "\x00".join((cand_type.lower(), _normalize_address(base_address), server, transport.lower()))
    return hashlib.blake2s(key.encode("utf-8"), digest_size=4).hexdigest()


def pair_priority(controlling_prio: int, controlled_prio: int) -> int:
    """Priority of a candidate pair (RFC 8445 6.1.2.3).

    With G the priority of the controlling agent's candidate and D the controlled agent's:
    2^32 * MIN(G, D) + 2 * MAX(G, D) + (1 if G > D else 0).  Both agents compute the same value for a
    pair, so they order their check lists alike.
    """
    g, d = controlling_prio, controlled_prio
    # the range checks cost a call each: made only when the plain test fails (every pair is prioritized)
    if g.__class__ is not int or d.__class__ is not int or not (0 <= g <= MAX_PRIORITY and 0 <= d <= MAX_PRIORITY):
        _check_range("controlling priority", g, 0, MAX_PRIORITY)
        _check_range("controlled priority", d, 0, MAX_PRIORITY)
    if g > d:
        return (d << 32) + 2 * g + 1
    return (g << 32) + 2 * d
