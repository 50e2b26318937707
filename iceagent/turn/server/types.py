"""Values of the embedded TURN server (RFC 8656): its config, the 5-tuple, the core's outputs, an allocation,
counters, and the framing of STUN and ChannelData on a TCP/TLS stream (RFC 8656 12.5)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import attrs

from ..._validators import positive as _positive
from ...stun.attributes import COOKIE_BYTES
from ...stun.limits import ServerLimits
from ...stun.message import Message
from .auth import Authenticated

__all__ = [
    "DEFAULT_SOFTWARE",
    "Allocation",
    "CloseRelay",
    "FiveTuple",
    "OpenRelay",
    "Output",
    "SendToClient",
    "SendToPeer",
    "TurnServerConfig",
    "TurnServerStats",
    "split_stream",
]

DEFAULT_SOFTWARE = "iceagent embedded TURN server"
"""The SOFTWARE attribute of authenticated responses (RFC 8489 14.14); unauthenticated ones carry none."""

DEFAULT_RELAY_BANDWIDTH = 1_250_000
"""Relayed bytes per second per allocation, both directions together (10 Mbit/s: HD video fits)."""

Address = tuple[str, int]
Transport = Literal["udp", "tcp", "tls"]


def _networks(value: Sequence[str]) -> tuple[str, ...]:
    out = []
    for text in value:
        try:
            out.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP network such as '10.0.0.0/8' or '::1/128'") from None
    return tuple(out)


def _optional_positive(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None:
        _positive(instance, attribute, value)


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _optional_networks(value: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if value is None else _networks(value)


@attrs.frozen
class TurnServerConfig:
    """Every timer, quota and policy of the embedded TURN server, with the RFC 8656 defaults."""

    default_lifetime: float = attrs.field(default=600.0, validator=_positive)
    """Allocation lifetime when the client asks for less or nothing (RFC 8656 7.2: 10 minutes)."""
    max_lifetime: float = attrs.field(default=3600.0, validator=_positive)
    """The most a LIFETIME request gets (RFC 8656 7.2 recommends 3600 s)."""
    permission_lifetime: float = attrs.field(default=300.0, validator=_positive)
    """Permissions last 300 s unless refreshed (RFC 8656 9)."""
    channel_lifetime: float = attrs.field(default=600.0, validator=_positive)
    """Channel bindings last 10 minutes unless refreshed (RFC 8656 12)."""
    channel_cooldown: float = attrs.field(default=300.0, validator=attrs.validators.ge(0))
    """After a binding expires, its number and peer cannot be rebound differently for 5 minutes (RFC 8656 12)."""
    nonce_lifetime: float = attrs.field(default=600.0, validator=_positive)
    """After this, a nonce is stale and requests get 438 (RFC 8489 9.2.4)."""
    max_allocations_per_user: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    """More Allocates by one user get 486 Allocation Quota Reached (RFC 8656 7.2)."""
    max_allocations: int = attrs.field(default=1000, validator=attrs.validators.ge(1))
    """More Allocates in all get 508 Insufficient Capacity (RFC 8656 7.2)."""
    max_permissions: int = attrs.field(default=1000, validator=attrs.validators.ge(1))
    """More permissions on one allocation get 508 Insufficient Capacity."""
    password_algorithms: tuple[str, ...] = attrs.field(default=("sha256", "md5"), converter=_strings)
    """Offered in PASSWORD-ALGORITHMS, in order of preference (RFC 8489 9.2.1); () offers none (MD5 only)."""
    denied_peers: tuple[str, ...] = attrs.field(default=(), converter=_networks)
    """Peer networks (CIDR) a permission or channel is refused for with 403 Forbidden (RFC 8656 9.2, 21)."""
    allowed_peers: tuple[str, ...] | None = attrs.field(default=None, converter=_optional_networks)
    """When given, only peers in these networks are allowed (403 for any other); it narrows the default policy,
    it does not lift it (loopback needs `allow_loopback_peers` too)."""
    allow_loopback_peers: bool = False
    """Relay to loopback peers (127.0.0.0/8, ::1): for tests on one host only (coturn's default
    no-loopback-peers; CVE-2020-26262). The server's own listening ip:port stays refused."""
    allow_link_local_peers: bool = False
    """Relay to link-local peers (169.254.0.0/16 with the cloud metadata address, fe80::/10)."""
    relay_bandwidth: float | None = attrs.field(default=DEFAULT_RELAY_BANDWIDTH, validator=_optional_positive)
    """Relayed payload bytes per second per allocation, both directions in one token bucket holding one
    second (at least one 64 KiB datagram); excess datagrams are dropped and counted. None: no limit."""
    software: str | None = DEFAULT_SOFTWARE
    """The SOFTWARE attribute of authenticated responses, None for none (RFC 8489 14.14)."""
    response_cache_time: float = attrs.field(default=40.0, validator=attrs.validators.ge(0))
    """How long a success response is kept to answer a retransmission of its request (RFC 8489 6.3.1, Ti)."""
    tcp_idle_timeout: float = attrs.field(default=60.0, validator=_positive)
    """A TCP/TLS connection without an allocation is closed after this long without a message."""
    limits: ServerLimits = attrs.field(factory=ServerLimits)
    """Request rates per source and in total, TCP/TLS connection caps and read/write deadlines (no amplification,
    no slowloris; RFC 8656 21.3.1)."""

    def __attrs_post_init__(self) -> None:
        if self.default_lifetime > self.max_lifetime:
            raise ValueError(
                f"default_lifetime {self.default_lifetime} is more than max_lifetime {self.max_lifetime} (RFC 8656 7.2)"
            )


@attrs.frozen
class FiveTuple:
    """Client address, server address and transport: what identifies an allocation (RFC 8656 2, 5)."""

    client: Address
    server: Address
    transport: Transport = "udp"


@attrs.frozen
class SendToClient:
    """Send `data` (a STUN message or ChannelData, framed for the transport) to the client of `five_tuple`."""

    five_tuple: FiveTuple
    data: bytes


@attrs.frozen
class SendToPeer:
    """Send `data` as one UDP datagram from the relayed address `relay` to `peer` (RFC 8656 10.2, 12.5)."""

    relay: Address
    peer: Address
    data: bytes


@attrs.frozen
class OpenRelay:
    """Bind a UDP socket of `family` (4 or 6) for the Allocate on `five_tuple`, then call `relay_opened`."""

    five_tuple: FiveTuple
    family: int
    even_port: bool = False


@attrs.frozen
class CloseRelay:
    """The allocation on `five_tuple` ended (`reason`): close the relay socket at `relay` (RFC 8656 6)."""

    five_tuple: FiveTuple
    relay: Address
    reason: str


Output = SendToClient | SendToPeer | OpenRelay | CloseRelay


class Cooldowns:
    """Channel numbers cooling down after their binding expired: number -> (peer, until) (RFC 8656 12), indexed
    by peer too, so a ChannelBind looks up its number and its peer instead of scanning up to 4096 cooldowns."""

    __slots__ = ("_by_number", "_by_peer")

    def __init__(self) -> None:
        self._by_number: dict[int, tuple[Address, float]] = {}
        self._by_peer: dict[Address, int] = {}  # the peer's latest cooldown (an older one has ended)

    def __len__(self) -> int:
        return len(self._by_number)

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_number)

    def __contains__(self, number: object) -> bool:
        return number in self._by_number

    def __setitem__(self, number: int, value: tuple[Address, float]) -> None:
        self.pop(number)
        self._by_number[number] = value
        self._by_peer[value[0]] = number

    def __delitem__(self, number: int) -> None:
        peer = self._by_number.pop(number)[0]
        if self._by_peer.get(peer) == number:
            del self._by_peer[peer]

    def get(self, number: int) -> tuple[Address, float] | None:
        return self._by_number.get(number)

    def pop(self, number: int) -> tuple[Address, float] | None:
        value = self._by_number.get(number)
        if value is not None:
            del self[number]
        return value

    def of_peer(self, peer: Address) -> tuple[int, float] | None:
        """(number, until) of the peer's latest cooldown, if any."""
        number = self._by_peer.get(peer)
        return None if number is None else (number, self._by_number[number][1])


@attrs.define(eq=False)
class Allocation:
    """One allocation: its relayed address, owner, expiry, permissions and channels (RFC 8656 5)."""

    five_tuple: FiveTuple
    relay: Address
    username: str
    expires: float
    family: int
    permissions: dict[str, float] = attrs.Factory(dict)  # peer IP -> expiry (RFC 8656 9: ports ignored)
    channels: dict[int, tuple[Address, float]] = attrs.Factory(dict)  # number -> (peer, expiry)
    channel_by_peer: dict[Address, int] = attrs.Factory(dict)
    cooldown: Cooldowns = attrs.Factory(Cooldowns)  # expired numbers -> (peer, until)
    tokens: float = 0.0  # the bandwidth token bucket (bytes), full when the allocation is made
    tokens_at: float = 0.0  # when `tokens` was last topped up


@attrs.define(eq=False)
class PendingAllocate:
    """An Allocate request waiting for its relay socket to be bound (RFC 8656 7.2)."""

    request: Message
    auth: Authenticated
    lifetime: float
    family: int
    fingerprint: bool


def ip_version(host: str) -> int:
    """4 or 6 for an IP address string."""
    return 6 if ":" in host else 4


@attrs.define
class TurnServerStats:
    """Counters of one embedded TURN server; the first three are current counts."""

    allocations: int = 0
    permissions: int = 0
    channels: int = 0
    requests: int = 0  # STUN requests answered
    errors: int = 0  # of those, error responses
    allocations_created: int = 0
    allocations_expired: int = 0
    allocations_deleted: int = 0  # Refresh LIFETIME 0, or the TCP connection closed
    to_peers: int = 0  # datagrams relayed to peers
    to_clients: int = 0  # datagrams relayed to clients (Data indications and ChannelData)
    dropped: int = 0  # ignored input: not STUN, no permission, unbound channel, ...
    dropped_by_reason: dict[str, int] = attrs.Factory(dict)  # relayed datagrams dropped by policy or quota
    forbidden_by_reason: dict[str, int] = attrs.Factory(dict)  # 403 answers to CreatePermission/ChannelBind
    timers: int = 0  # entries in the expiry timer heap now (at most 2x the timed items + a constant)
    timer_visits: int = 0  # timer heap entries taken off by expiry passes, since the start
    limited: dict[str, int] = attrs.Factory(dict)  # by reason, as the STUN server's `ServerStats.limited`


def split_stream(buffer: bytearray) -> list[bytes]:
    """Take the complete STUN messages and ChannelData messages off the front of a TCP/TLS byte stream
    (RFC 8656 12.5: ChannelData is padded to 4 bytes there). Raises ValueError on bytes that are neither."""
    frames: list[bytes] = []
    while len(buffer) >= 4:
        kind = buffer[0] >> 6
        length = buffer[2] << 8 | buffer[3]
        if kind == 0:
            if (len(buffer) >= 8 and buffer[4:8] != COOKIE_BYTES) or length & 3:
                raise ValueError("a message without the STUN magic cookie (is this TLS on a TCP port?)")
            size = 20 + length
        elif kind == 1 and buffer[0] < 0x50:
            size = 4 + ((length + 3) & ~3)
        else:
            raise ValueError(f"a message starting with byte {buffer[0]:#04x} is neither STUN nor ChannelData")
        if len(buffer) < size:
            break
        frames.append(bytes(buffer[:size]))
        del buffer[:size]
    return frames
