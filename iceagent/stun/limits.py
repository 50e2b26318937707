"""Rate and connection limits of the embedded STUN and TURN servers (sans-IO: every call takes `now`).

A server answers requests from anyone, and over UDP "anyone" is whatever source address a packet claims:
each answer could be aimed at a victim (reflection; RFC 5780 9, RFC 8489 16). So both servers pass
every request through a `RequestLimiter` before doing any work for it: a token bucket per source (an
IPv4 address, or an IPv6 /64, which one subscriber usually holds) and one for the whole server. Per-source
buckets are dodged by spoofing many sources, so the total bucket is the bound that always holds; the table
of sources is itself bounded (least recently used first out). The `ServerLimits` options hold the rates and
the TCP/TLS connection limits the servers' I/O side enforces.

Over TCP/TLS, where the source is real, a request over the rate is not dropped but waits: it reserves its
tokens at once (the buckets may go below zero, as in GCRA) and sleeps once, exactly until they are due
(`iceagent.stun._serving.wait_for_rate`, the Trio side), so waiting connections cost one wakeup per
request, not a poll.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Literal

import attrs

from .._addresses import source_key
from .._validators import at_least_one as _at_least_one
from .._validators import positive as _positive

__all__ = [
    "ConnectionCounter",
    "Limited",
    "RequestLimiter",
    "ServerLimits",
    "TokenBucket",
    "is_request",
    "source_key",
]

Limited = Literal["rate_source", "rate_total"]
"""Why a request was held back: its source's bucket or the server's total bucket was empty."""
Refused = Literal["connections", "connections_per_ip"]
"""Why a TCP/TLS connection was closed at once: the cap in total or per client IP (or IPv6 prefix)."""


@attrs.frozen
class ServerLimits:
    """How much work the embedded STUN and TURN servers do for strangers: request rates and TCP/TLS connections.

    Rates are requests answered per second, with a burst (the bucket's size); `math.inf` lifts a rate. Relayed
    data of an authenticated allocation is not a request and is not limited here. The defaults are far above
    what an ICE agent sends (a few Binding requests per gathering, a TURN allocation's handful of requests
    every few minutes), so only floods are dropped.
    """

    source_rate: float = attrs.field(default=100.0, validator=_positive)
    """Requests per second answered for one source: an IPv4 address or an IPv6 /64 (`ipv6_prefix`)."""
    source_burst: float = attrs.field(default=200.0, validator=_positive)
    """Requests one source may send at once before `source_rate` applies."""
    total_rate: float = attrs.field(default=5000.0, validator=_positive)
    """Requests per second answered in all: with spoofed sources this is what bounds the reflected traffic."""
    total_burst: float = attrs.field(default=10000.0, validator=_positive)
    """Requests the whole server answers at once before `total_rate` applies."""
    max_sources: int = attrs.field(default=10000, validator=_at_least_one)
    """Per-source buckets kept; beyond this the least recently seen source is forgotten (its bucket was full
    again anyway unless it sent in the last `source_burst / source_rate` seconds)."""
    ipv6_prefix: int = attrs.field(default=64, validator=attrs.validators.and_(_at_least_one, attrs.validators.le(128)))
    """IPv6 sources sharing this prefix share a bucket (a /64 is one subscriber's LAN, RFC 6177)."""
    max_connections: int = attrs.field(default=500, validator=_at_least_one)
    """Open TCP/TLS connections in all (per server); more are closed at once."""
    max_connections_per_ip: int = attrs.field(default=50, validator=_at_least_one)
    """Open TCP/TLS connections from one client IP; more are closed at once."""
    read_timeout: float = attrs.field(default=10.0, validator=_positive)
    """A message (and a TLS handshake) must arrive whole within this many seconds of its first byte."""
    write_timeout: float = attrs.field(default=10.0, validator=_positive)
    """A send to a TCP/TLS client that blocks this long (the client does not read) closes the connection."""


@attrs.define
class TokenBucket:
    """`rate` tokens per second up to `burst`; starts full at `now`."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate, burst, burst, now)

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def ready(self, now: float) -> bool:
        """Whether a token is there (after refilling up to `now`)."""
        self.refill(now)
        return self.tokens >= 1 or math.isinf(self.rate)

    def wait(self, now: float) -> float:
        """Seconds from `now` until a token is there (0 if one is)."""
        if self.ready(now):
            return 0.0
        return (1 - self.tokens) / self.rate

    def take(self) -> None:
        """Spend a token: after `ready` said yes, or to reserve one `wait` ahead (the bucket goes below zero)."""
        if not math.isinf(self.rate):
            self.tokens -= 1


class RequestLimiter:
    """A token bucket per source and one for the server (`ServerLimits`); a bounded LRU table of sources."""

    def __init__(self, limits: ServerLimits, now: float) -> None:
        self.limits = limits
        self.total = TokenBucket.full(limits.total_rate, limits.total_burst, now)
        self._sources: OrderedDict[str, TokenBucket] = OrderedDict()
        self.evicted = 0  # sources forgotten to keep the table within `max_sources`

    def __len__(self) -> int:
        return len(self._sources)

    def _bucket(self, ip: str, now: float) -> TokenBucket:
        key = source_key(ip, self.limits.ipv6_prefix)
        bucket = self._sources.get(key)
        if bucket is None:
            if len(self._sources) >= self.limits.max_sources:
                self._sources.popitem(last=False)
                self.evicted += 1
            bucket = self._sources[key] = TokenBucket.full(self.limits.source_rate, self.limits.source_burst, now)
        else:
            self._sources.move_to_end(key)
        return bucket

    def check(self, ip: str, now: float) -> Limited | None:
        """Admit one request from `ip` (spending a token of both buckets) or say which bucket was empty."""
        bucket = self._bucket(ip, now)
        if not bucket.ready(now):
            return "rate_source"
        if not self.total.ready(now):
            return "rate_total"
        bucket.take()
        self.total.take()
        return None

    def reserve(self, ip: str, now: float, max_wait: float) -> tuple[float, Limited | None] | None:
        """Admit one request from `ip` ahead of time: spend its tokens now (the buckets may go below zero) and
        say how many seconds it must wait for them, and why (None: no wait); or, when that wait would be over
        `max_wait`, None and nothing spent. Later requests then wait behind it: first come, first served."""
        bucket = self._bucket(ip, now)
        own, total = bucket.wait(now), self.total.wait(now)
        delay = max(own, total)
        if delay > max_wait:
            return None
        bucket.take()
        self.total.take()
        reason: Limited | None = "rate_source" if own > 0 else "rate_total" if total > 0 else None
        return delay, reason


class ConnectionCounter:
    """Open TCP/TLS connections per client IP and in all, against `ServerLimits.max_connections(_per_ip)`."""

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.total = 0
        self._per_ip: dict[str, int] = {}  # by `source_key`: an IPv6 client's whole prefix counts as one

    def open(self, ip: str) -> Refused | None:
        """Count a new connection from `ip`, or say which cap it would exceed (then it is not counted). IPv6
        clients are counted per `ipv6_prefix`, like the rate limit: one host with a /64 is one client."""
        if self.total >= self.limits.max_connections:
            return "connections"
        key = source_key(ip, self.limits.ipv6_prefix)
        count = self._per_ip.get(key, 0)
        if count >= self.limits.max_connections_per_ip:
            return "connections_per_ip"
        self._per_ip[key] = count + 1
        self.total += 1
        return None

    def close(self, ip: str) -> None:
        """A connection counted by `open` ended."""
        key = source_key(ip, self.limits.ipv6_prefix)
        self.total -= 1
        count = self._per_ip.pop(key) - 1
        if count:
            self._per_ip[key] = count


def is_request(data: bytes | bytearray) -> bool:
    """Whether `data` starts like a STUN request: top bits 00 and class bits C1 C0 = 00 (RFC 8489 5, 6)."""
    return len(data) >= 20 and data[0] < 0x40 and not data[0] & 0x01 and not data[1] & 0x10
