"""The mDNS responder: publishes `<uuid4>.local` names for host addresses and answers for them only
(draft-ietf-mmusic-mdns-ice-candidates 3.1, RFC 6762 6).

`Zone` is the sans-IO part (names, answer rules, rate limits); `open_responder` runs it on the Network
seam: one socket per address family bound to port 5353 with SO_REUSEADDR/SO_REUSEPORT (so several
responders share a host and a process), the group joined on the interface of each published address,
a receive loop per socket in the responder's own nursery, and goodbye packets when it closes.
"""

from __future__ import annotations

import errno
import ipaddress
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from ..logs import get_logger
from ..net.base import Address, Network, UdpSocket
from .link import LocalLink
from .wire import (
    MDNS_GROUP4,
    MDNS_GROUP6,
    MDNS_PORT,
    QTYPE_A,
    QTYPE_AAAA,
    QTYPE_ANY,
    TTL_HOST,
    build_goodbye,
    build_response,
    normalize_name,
    parse,
)

__all__ = ["GOODBYE_TIMEOUT", "MdnsResponder", "Reply", "Zone", "open_responder"]

log = get_logger("iceagent.mdns")

#: How long closing waits for the goodbye packets to go out (shielded from cancellation).
GOODBYE_TIMEOUT = 0.25
#: Names one responder publishes at most (one per host address; hostile-input bound on answers).
MAX_NAMES = 64
#: Names answered in one response (keeps a response well under a 1500-byte MTU, RFC 6762 17).
MAX_ANSWERS = 16
#: Minimum interval between two multicasts of one record on one interface (RFC 6762 6: one second).
MULTICAST_INTERVAL = 1.0
#: Unicast replies (QU and legacy questions) allowed per second, as a token bucket (flood bound).
UNICAST_RATE = 20.0


def new_name() -> str:
    """A fresh `<uuid4>.local` name (draft-ietf-mmusic-mdns-ice-candidates 3.1.1)."""
    return f"{uuid.uuid4()}.local"


def group_of(family: int) -> Address:
    """The mDNS group and port of an IP version (RFC 6762 3)."""
    return (MDNS_GROUP6, MDNS_PORT) if family == 6 else (MDNS_GROUP4, MDNS_PORT)


@attrs.frozen
class Reply:
    """A response to send: to `to`, or to the mDNS group of the socket's family when `to` is None."""

    data: bytes
    to: Address | None = None


@attrs.define
class ZoneStats:
    """Counters of a responder (what it answered and what it ignored)."""

    queries: int = 0
    answered_multicast: int = 0
    answered_unicast: int = 0
    suppressed: int = 0  # known-answer suppression (RFC 6762 7.1) and the one-second rule (6)
    rate_limited: int = 0
    ignored: int = 0  # responses, malformed messages, questions for names that are not ours
    off_link: int = 0  # datagrams from sources not on the local link (RFC 6762 5.5, 11)


class Zone:
    """Our names and their addresses, and the answer rules of RFC 6762 6 for them (sans-IO)."""

    def __init__(self, *, max_names: int = MAX_NAMES, unicast_rate: float = UNICAST_RATE,
                 link: LocalLink | None = None) -> None:
        self.max_names = max_names
        self.unicast_rate = unicast_rate
        self.link = link  # None: every source is taken as on-link
        self._names: dict[str, str] = {}  # name (case-folded) -> address
        self._last_multicast: dict[tuple[str, int], float] = {}  # (name, family) -> time
        self._tokens = unicast_rate
        self._tokens_at: float | None = None
        self.stats = ZoneStats()

    @property
    def records(self) -> list[tuple[str, str]]:
        """The published (name, address) records."""
        return list(self._names.items())

    def publish(self, address: str, name: str | None = None) -> str:
        """Give `address` a fresh `<uuid4>.local` name (or `name`) and answer for it from now on
        (draft-ietf-mmusic-mdns-ice-candidates 3.1.1). Raises ValueError past `max_names`."""
        address = str(ipaddress.ip_address(address))
        if len(self._names) >= self.max_names:
            raise ValueError(f"an mDNS responder publishes at most {self.max_names} names")
        name = normalize_name(name or new_name())
        self._names[name] = address
        return name

    def withdraw(self) -> list[tuple[str, str]]:
        """Forget every name; returns the records to announce with TTL 0 (RFC 6762 10.1)."""
        records = self.records
        self._names.clear()
        return records

    def address_of(self, name: str) -> str | None:
        """The address published under `name` (case-insensitive), if it is ours."""
        return self._names.get(normalize_name(name))

    def handle(self, data: bytes, source: Address, family: int, now: float) -> list[Reply]:
        """A datagram received on the `family` socket from `source`: the replies to send (RFC 6762 6).
        Queries from sources not on the local link (`link`) are ignored and counted (RFC 6762 5.5, 11)."""
        if self.link is not None and source[0] not in self.link:
            self.stats.off_link += 1
            return []
        message = parse(data)
        if message is None or message.response:
            self.stats.ignored += 1
            return []  # malformed, or a response (another responder's business)
        self.stats.queries += 1
        positive: dict[str, str] = {}
        negative: dict[str, str] = {}
        for q in message.questions:
            address = self._names.get(q.name)
            if address is None or q.qtype not in (QTYPE_A, QTYPE_AAAA, QTYPE_ANY):
                continue
            have = QTYPE_A if ipaddress.ip_address(address).version == 4 else QTYPE_AAAA
            if q.qtype in (QTYPE_ANY, have):
                positive[q.name] = address
            elif q.name not in positive:
                negative[q.name] = address
        for name in positive:
            negative.pop(name, None)
        # known-answer suppression: the querier already holds the record with at least half its TTL (7.1)
        for record in message.answers:
            if positive.get(record.name) == record.address and record.ttl >= TTL_HOST // 2:
                del positive[record.name]
                self.stats.suppressed += 1
        if not positive and not negative:
            if message.questions:
                self.stats.ignored += 1
            return []
        pos = list(positive.items())[:MAX_ANSWERS]
        neg = list(negative.items())[: max(0, MAX_ANSWERS - len(pos))]
        if source[1] != MDNS_PORT:
            # legacy unicast query (6.7): unicast reply with the query's ID and questions, short TTL
            if not self._take_token(now):
                return []
            self.stats.answered_unicast += 1
            legacy = (message.id, message.questions)
            return [Reply(build_response(pos, negative=neg, legacy=legacy), source)]
        asked = [q for q in message.questions if q.name in positive or q.name in negative]
        if asked and all(q.unicast for q in asked):
            # QU questions (5.4): a unicast reply to the querier
            if not self._take_token(now):
                return []
            self.stats.answered_unicast += 1
            return [Reply(build_response(pos, negative=neg), source)]
        # multicast, at most once a second per record and interface (6)
        pos = [(n, a) for n, a in pos if self._may_multicast(n, family, now)]
        neg = [(n, a) for n, a in neg if self._may_multicast(n, family, now)]
        if not pos and not neg:
            self.stats.suppressed += 1
            return []
        for name, _ in pos + neg:
            self._last_multicast[(name, family)] = now
        self.stats.answered_multicast += 1
        return [Reply(build_response(pos, negative=neg))]

    def _may_multicast(self, name: str, family: int, now: float) -> bool:
        last = self._last_multicast.get((name, family))
        return last is None or now - last >= MULTICAST_INTERVAL

    def _take_token(self, now: float) -> bool:
        if self._tokens_at is not None:
            self._tokens = min(self.unicast_rate, self._tokens + (now - self._tokens_at) * self.unicast_rate)
        self._tokens_at = now
        if self._tokens < 1:
            self.stats.rate_limited += 1
            return False
        self._tokens -= 1
        return True


class MdnsResponder:
    """A running responder (RFC 6762 6); get one from `open_responder`, publish with `publish`."""

    def __init__(self, network: Network, nursery: trio.Nursery) -> None:
        self.network = network
        self.zone = Zone()
        self._nursery = nursery
        self._sockets: dict[int, UdpSocket] = {}  # IP version -> socket on port 5353
        self._joined: set[str] = set()
        self._lock = trio.Lock()

    async def publish(self, address: str) -> str:
        """Publish a fresh `<uuid4>.local` name for host address `address` and return it; joins the mDNS
        group on that address's interface (RFC 6762 3). Raises OSError or ValueError if it cannot."""
        ip = ipaddress.ip_address(address)
        if ip.is_loopback or ip.is_unspecified or ip.is_multicast:
            raise ValueError(f"no mDNS on {address}: loopback has no multicast (it would leave another way)")
        async with self._lock:
            self.zone.link = LocalLink(self.network.interfaces())  # the subnets as they are now
            sock = await self._socket(ip.version)
            if str(ip) not in self._joined:
                group = group_of(ip.version)[0]
                try:
                    await self.network.join_multicast(sock, group, str(ip))
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:  # the interface joined already (another of its addresses)
                        raise
                self._joined.add(str(ip))
        return self.zone.publish(str(ip))

    async def _socket(self, family: int) -> UdpSocket:
        sock = self._sockets.get(family)
        if sock is None:
            wildcard = "::" if family == 6 else "0.0.0.0"
            sock = await self.network.bind_udp(wildcard, MDNS_PORT, reuse=True)
            self._sockets[family] = sock
            self._nursery.start_soon(self._receive_loop, sock, family, name=f"mdns-responder-v{family}")
        return sock

    async def _receive_loop(self, sock: UdpSocket, family: int) -> None:
        """Answer queries as they come, one at a time (a flood costs time, never memory)."""
        group = group_of(family)
        while True:
            try:
                data, source = await sock.receive()
            except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
                return
            for reply in self.zone.handle(data, source, family, trio.current_time()):
                await _send(sock, reply.data, reply.to or group)

    async def goodbye(self) -> None:
        """Withdraw every name: the records again with TTL 0, on each socket (RFC 6762 10.1)."""
        records = self.zone.withdraw()
        if not records:
            return
        data = build_goodbye(records)
        for family, sock in self._sockets.items():
            await _send(sock, data, group_of(family))

    def close(self) -> None:
        """Close the sockets (the receive loops end)."""
        for sock in self._sockets.values():
            sock.close()


async def _send(sock: UdpSocket, data: bytes, to: Address) -> None:
    try:
        await sock.send(data, to)
    except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
        pass  # UDP: a reply that cannot go out is a lost datagram


@asynccontextmanager
async def open_responder(network: Network) -> AsyncIterator[MdnsResponder]:
    """Run a responder for the duration of the `async with`; on the way out (even when cancelled) send
    goodbye packets under a shielded GOODBYE_TIMEOUT (RFC 6762 10.1), then close its sockets."""
    async with trio.open_nursery() as nursery:
        responder = MdnsResponder(network, nursery)
        try:
            yield responder
        finally:
            with trio.move_on_after(GOODBYE_TIMEOUT) as scope:
                scope.shield = True
                await responder.goodbye()
            responder.close()
            nursery.cancel_scope.cancel()
