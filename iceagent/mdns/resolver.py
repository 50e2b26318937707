"""The mDNS resolver: turns a remote candidate's `<uuid>.local` name into an address by multicast
query (draft-ietf-mmusic-mdns-ice-candidates 3.2, RFC 6762 5).

`ResolverCore` is the sans-IO part: the names being resolved, which answers settle them (several
answers, the additional section, other record types, cache-flush bits, any letter case; unsolicited
answers are ignored), and a bounded cache. `MdnsResolver` runs it on the Network seam: one socket per
address family on port 5353 (SO_REUSEADDR/SO_REUSEPORT), the group joined on the interfaces of the
host candidates, queries retried at increasing intervals until a timeout.
"""

from __future__ import annotations

import errno
import ipaddress
from collections import OrderedDict
from collections.abc import Collection, Sequence

import attrs
import trio

from ..logs import get_logger
from ..net.base import Address, Network, UdpSocket
from .link import LocalLink
from .responder import group_of
from .wire import MAX_NAME, MDNS_PORT, QTYPE_A, QTYPE_AAAA, build_query, normalize_name, parse

__all__ = ["MAX_PENDING", "MdnsResolveError", "MdnsResolver", "ResolverCore", "is_valid_name"]

log = get_logger("iceagent.mdns")

#: Names being resolved at once per resolver (hostile-input bound: a peer can signal many names).
MAX_PENDING = 64
#: Resolved names kept in the cache (least recently resolved dropped first).
MAX_CACHE = 128
#: First retry interval; each next one doubles (RFC 6762 5.2: at least one second, then at least x2).
FIRST_RETRY = 1.0


class MdnsResolveError(Exception):
    """A `.local` name did not resolve (timeout, no usable interface, too many pending names)."""


def is_valid_name(name: str) -> bool:
    """A plausible mDNS host name: `<label>.local`, labels of 1-63 octets, at most 255 (RFC 6762 3)."""
    name = normalize_name(name)
    if not name.endswith(".local") or len(name) > MAX_NAME:
        return False
    labels = name.split(".")
    return all(0 < len(label) <= 63 and label.isascii() for label in labels)


@attrs.define
class ResolverStats:
    """Counters of a resolver."""

    queries_sent: int = 0
    answers: int = 0  # response messages looked at
    unsolicited: int = 0  # records for names nobody asked for (ignored, RFC 6762 6: cache is optional)
    ignored: int = 0  # malformed messages, queries, and responses from a port other than 5353
    off_link: int = 0  # responses from sources not on the local link (RFC 6762 11)


class ResolverCore:
    """Names being resolved, the answers that settle them, and a bounded cache (sans-IO)."""

    def __init__(self, *, families: Collection[int] = (4, 6), max_pending: int = MAX_PENDING,
                 max_cache: int = MAX_CACHE, link: LocalLink | None = None) -> None:
        self.families = frozenset(families)
        self.link = link  # None: every source is taken as on-link
        self.max_pending = max_pending
        self.max_cache = max_cache
        self._pending: dict[str, int] = {}  # name -> resolutions waiting for it
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()  # name -> (address, expiry)
        self.stats = ResolverStats()

    @property
    def pending(self) -> list[str]:
        """The names being resolved."""
        return list(self._pending)

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def want(self, name: str) -> bool:
        """Start waiting for `name`; False when `max_pending` other names are already pending."""
        name = normalize_name(name)
        if name not in self._pending and len(self._pending) >= self.max_pending:
            return False
        self._pending[name] = self._pending.get(name, 0) + 1
        return True

    def release(self, name: str) -> None:
        """One resolution of `name` ended (answered or not)."""
        name = normalize_name(name)
        left = self._pending.get(name, 0) - 1
        if left > 0:
            self._pending[name] = left
        else:
            self._pending.pop(name, None)

    def cached(self, name: str, now: float) -> str | None:
        """A cached, unexpired address for `name` (RFC 6762 10: the record's TTL)."""
        name = normalize_name(name)
        entry = self._cache.get(name)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._cache[name]
            return None
        return entry[0]

    def qtypes(self) -> list[int]:
        """The address types worth asking for: those of the families we can pair with (RFC 8445 6.1.2.2)."""
        return [t for t, f in ((QTYPE_A, 4), (QTYPE_AAAA, 6)) if f in self.families]

    def query(self, name: str) -> bytes:
        """A multicast (QM) query for `name` (RFC 6762 5.2, 18)."""
        self.stats.queries_sent += 1
        return build_query([normalize_name(name)], self.qtypes())

    def feed(self, data: bytes, now: float, source: Address | None = None) -> dict[str, str]:
        """A datagram from `source`: the pending names it settles, with the address chosen for each.

        Of several addresses for one name the first IPv6 one wins, else the first IPv4 one
        (draft-ietf-mmusic-mdns-ice-candidates 3.2.2), among the families we can use; records with
        TTL 0 (goodbye, RFC 6762 10.1) settle nothing and leave the cache. Responses come from port 5353
        (RFC 6762 6) and from the local link (`link`, RFC 6762 11): others are ignored and counted."""
        if source is not None:
            if source[1] != MDNS_PORT:
                self.stats.ignored += 1
                return {}
            if self.link is not None and source[0] not in self.link:
                self.stats.off_link += 1
                return {}
        message = parse(data)
        if message is None or not message.response:
            self.stats.ignored += 1
            return {}
        self.stats.answers += 1
        found: dict[str, list[tuple[int, str, int]]] = {}
        for record in message.records:
            if record.ttl == 0:
                self._cache.pop(record.name, None)
                continue
            if record.name not in self._pending:
                self.stats.unsolicited += 1
                continue
            family = 6 if record.rtype == QTYPE_AAAA else 4
            if family in self.families:
                found.setdefault(record.name, []).append((family, record.address, record.ttl))
        settled: dict[str, str] = {}
        for name, options in found.items():
            best = max(o[0] for o in options)  # IPv6 if any, then the first of that family
            _family, address, ttl = next(o for o in options if o[0] == best)
            settled[name] = address
            self._cache[name] = (address, now + ttl)
            self._cache.move_to_end(name)
            while len(self._cache) > self.max_cache:
                self._cache.popitem(last=False)
        return settled


class MdnsResolver:
    """A running resolver: `run` it in a nursery, then `resolve` names from any task of that nursery."""

    def __init__(self, network: Network, *, max_pending: int = MAX_PENDING) -> None:
        self.network = network
        self.core = ResolverCore(max_pending=max_pending)
        self.error: str | None = None
        self._sockets: dict[int, UdpSocket] = {}
        self._ready = trio.Event()
        self._settled: dict[str, trio.Event] = {}
        self._results: dict[str, str] = {}

    @property
    def families(self) -> frozenset[int]:
        """The IP versions this resolver queries on and accepts answers for."""
        return frozenset(self._sockets)

    async def run(self, interfaces: Sequence[str], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Open the sockets, join the groups on `interfaces` (the host candidates' addresses; loopback is
        skipped: it has no multicast), receive answers until cancelled, then close (RFC 6762 3, 5)."""
        try:
            try:
                self.core.link = LocalLink(self.network.interfaces())
                await self._open(interfaces)
            finally:
                self.core.families = frozenset(self._sockets)
                self._ready.set()
            task_status.started()
            async with trio.open_nursery() as nursery:
                for family, sock in self._sockets.items():
                    nursery.start_soon(self._receive_loop, sock, name=f"mdns-resolver-v{family}")
        finally:
            for sock in self._sockets.values():
                sock.close()

    def fail(self, reason: str) -> None:
        """Stop serving: close the sockets; every resolution from now on fails with `reason`."""
        self.error = reason
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self._ready.set()

    async def _open(self, interfaces: Sequence[str]) -> None:
        usable = []
        for address in interfaces:
            try:
                ip = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                continue
            if not (ip.is_loopback or ip.is_unspecified or ip.is_multicast):
                usable.append(ip)
        if not usable:
            self.error = "no multicast-capable host address to query from (loopback has no multicast)"
            return
        joined: dict[int, int] = {}
        for ip in usable:
            try:
                sock = self._sockets.get(ip.version)
                if sock is None:
                    wildcard = "::" if ip.version == 6 else "0.0.0.0"
                    sock = self._sockets[ip.version] = await self.network.bind_udp(wildcard, MDNS_PORT, reuse=True)
                await self.network.join_multicast(sock, group_of(ip.version)[0], str(ip))
                joined[ip.version] = joined.get(ip.version, 0) + 1
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE and ip.version in self._sockets:
                    joined[ip.version] = joined.get(ip.version, 0) + 1  # its interface joined already
                    continue
                log.warning("mDNS resolver: cannot listen on %s: %s", ip, exc)
                self.error = f"cannot join the mDNS group on {ip}: {exc.strerror or exc}"
        for family in [f for f in self._sockets if not joined.get(f)]:
            self._sockets.pop(family).close()
        if self._sockets:
            self.error = None

    async def _receive_loop(self, sock: UdpSocket) -> None:
        while True:
            try:
                data, source = await sock.receive()
            except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
                return
            for name, address in self.core.feed(data, trio.current_time(), source).items():
                self._results[name] = address
                event = self._settled.get(name)
                if event is not None:
                    event.set()

    async def resolve(self, name: str, within: float) -> str:
        """The address of `name`: the cache, else multicast queries at 0, 1, 3, 7... s for `within` seconds
        (RFC 6762 5.2). Raises MdnsResolveError when it does not resolve."""
        await self._ready.wait()
        name = normalize_name(name)
        if not is_valid_name(name):
            raise MdnsResolveError(f"{name!r} is not an mDNS host name")
        if not self._sockets:
            raise MdnsResolveError(self.error or "the mDNS resolver has no socket")
        cached = self.core.cached(name, trio.current_time())
        if cached is not None:
            return cached
        if not self.core.want(name):
            raise MdnsResolveError(f"too many mDNS names pending (at most {self.core.max_pending})")
        event = self._settled.get(name)
        if event is None:
            event = self._settled[name] = trio.Event()
        try:
            with trio.move_on_after(within):
                interval = FIRST_RETRY
                while not event.is_set():
                    query = self.core.query(name)
                    for family, sock in list(self._sockets.items()):
                        try:
                            await sock.send(query, group_of(family))
                        except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
                            pass
                    with trio.move_on_after(interval):
                        await event.wait()
                    interval *= 2
            address = self._results.get(name)
            if address is None:
                raise MdnsResolveError(f"no mDNS answer for {name} within {within:g} s")
            return address
        finally:
            self.core.release(name)
            if name not in self.core.pending:
                self._settled.pop(name, None)
                self._results.pop(name, None)
