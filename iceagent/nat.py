"""NAT behaviour discovery (RFC 5780 4) against a STUN server with two addresses, on the `Network` seam.

`discover_nat(network, server)` classifies the NAT between this host and `server` in RFC 4787's terms:

* mapping (RFC 5780 4.3, RFC 4787 4.1): Binding requests from one socket to the server's primary
  address (test I), its alternate IP with the primary port (test II) and the alternate IP and port
  (test III); equal mapped addresses mean endpoint-independent mapping;
* filtering (RFC 5780 4.4, RFC 4787 5): from a fresh socket, test I and then CHANGE-REQUEST asking the
  server to answer from its other IP and port (test II) and from its other port only (test III);
* hairpinning (RFC 5780 4.5, RFC 4787 6), if asked: one socket sends to another socket's mapped address;
* mapping lifetime (RFC 5780 4.6, RFC 4787 4.3), if asked, within a bound: probes that idle for
  different times, then ask the server (RESPONSE-PORT) to answer to the first mapping from another one.

The tests run concurrently, each on its own sockets, so a run takes about one `timeout` (plus the
lifetime bound when asked). `direct_connection_possible` says, for two NAT behaviours, whether ICE with
host, server-reflexive and peer-reflexive candidates can connect them without a relay.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import trio

from .errors import IceError, StunTimeout
from .net.base import Address, Network, UdpSocket
from .stun.attributes import Attr
from .stun.message import Message, MessageClass, Method, StunDecodeError
from .stun.transaction import Transaction
from .uri import format_host_port, parse_host_port

__all__ = [
    "FilteringBehavior",
    "MappingBehavior",
    "MappingLifetime",
    "NatDiscoveryError",
    "NatDiscoveryResult",
    "classic_name",
    "direct_connection_possible",
    "discover_nat",
    "explain_direct_connectivity",
]

_SOFTWARE = "iceagent NAT discovery"


class NatDiscoveryError(IceError):
    """The server cannot be used for RFC 5780 discovery, or it answered inconsistently (RFC 5780 4, 7)."""


class MappingBehavior(enum.Enum):
    """How a NAT maps an internal endpoint to external ones (RFC 4787 4.1, found by RFC 5780 4.3)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"

    @property
    def abbreviation(self) -> str:
        """EIM, ADM or APDM (RFC 4787 4.1)."""
        return {"endpoint-independent": "EIM", "address-dependent": "ADM", "address-and-port-dependent": "APDM"}[
            self.value
        ]


class FilteringBehavior(enum.Enum):
    """Which inbound packets a NAT lets through to a mapping (RFC 4787 5, found by RFC 5780 4.4)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"

    @property
    def abbreviation(self) -> str:
        """EIF, ADF or APDF (RFC 4787 5)."""
        return {"endpoint-independent": "EIF", "address-dependent": "ADF", "address-and-port-dependent": "APDF"}[
            self.value
        ]


EIM = MappingBehavior.ENDPOINT_INDEPENDENT
ADM = MappingBehavior.ADDRESS_DEPENDENT
APDM = MappingBehavior.ADDRESS_AND_PORT_DEPENDENT
EIF = FilteringBehavior.ENDPOINT_INDEPENDENT
ADF = FilteringBehavior.ADDRESS_DEPENDENT
APDF = FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT

NatClass = tuple[MappingBehavior, FilteringBehavior]
"""A (mapping, filtering) pair; no NAT counts as endpoint-independent mapping (RFC 5780 4.3)."""

ALL_CLASSES: tuple[NatClass, ...] = tuple((m, f) for m in MappingBehavior for f in FilteringBehavior)


@attrs.frozen
class MappingLifetime:
    """Bounds on how long an idle UDP mapping lives (RFC 5780 4.6, RFC 4787 4.3 REQ-1)."""

    at_least: float  # a mapping idle this long (seconds) still answered; 0.0 if even the shortest probe failed
    at_most: float | None  # a mapping idle this long was gone; None: every probe up to `bound` was alive
    bound: float  # the longest idle time probed

    def describe(self) -> str:
        """A few words: "between 25 s and 30 s", "more than 60 s", "less than 5 s"."""
        if self.at_most is None:
            return f"more than {self.bound:g} s (the longest probe)"
        if self.at_least <= 0:
            return f"less than {self.at_most:g} s"
        return f"between {self.at_least:g} s and {self.at_most:g} s"


def classic_name(behind_nat: bool, mapping: MappingBehavior, filtering: FilteringBehavior) -> str:
    """The RFC 3489 name of a behaviour ("port-restricted cone", ...), as far as one exists (RFC 5780 1)."""
    if not behind_nat:
        if filtering is EIF:
            return "no NAT (open internet)"
        return f"no NAT, but a firewall with {filtering.value} filtering"
    if mapping is EIM:
        return {EIF: "full cone", ADF: "restricted cone", APDF: "port-restricted cone"}[filtering]
    if mapping is APDM and filtering is APDF:
        return "symmetric"
    return "symmetric-like"  # RFC 3489 has no name for ADM or for APDM without APDF


def _short(nat: NatClass) -> str:
    return f"{nat[0].abbreviation}+{nat[1].abbreviation}"


def direct_connection_possible(local: NatClass, peer: NatClass) -> bool:
    """Whether ICE connects two hosts behind these NATs without a relay (RFC 8445, RFC 4787 4.1, 5).

    A small model of two NATs with one public IP each (distinct from the STUN server's): each side knows
    the other's server-reflexive candidate, sends checks to every remote candidate it knows, learns
    peer-reflexive candidates from requests that reach it and answers them. A side succeeds when a
    response comes back from the address its request went to (RFC 8445 7.2.5.2.1); the connection works
    when both sides succeed. Hosts without NAT are endpoint-independent with their firewall's filtering.
    The outcome agrees with the agent on vnet for all 100 combinations (tests/test_nat_discovery.py).
    """
    return _connects(local, peer)


class _ModelNat:
    """The translation state of one NAT in `direct_connection_possible`'s model (RFC 4787 4.1, 5)."""

    def __init__(self, public: str, nat: NatClass) -> None:
        self.public = public
        self.mapping, self.filtering = nat
        self.ports: dict[object, int] = {}
        self.sent: dict[int, set[Address]] = {}

    def outbound(self, destination: Address) -> Address:
        key: object = None
        if self.mapping is ADM:
            key = destination[0]
        elif self.mapping is APDM:
            key = destination
        if key not in self.ports:
            self.ports[key] = 1024 + len(self.ports)
            self.sent[self.ports[key]] = set()
        port = self.ports[key]
        self.sent[port].add(destination)
        return self.public, port

    def inbound(self, port: int, source: Address) -> bool:
        sent = self.sent.get(port)
        if sent is None:
            return False
        if self.filtering is EIF:
            return True
        if self.filtering is ADF:
            return any(ip == source[0] for ip, _ in sent)
        return source in sent

    def state(self) -> object:
        return sorted((port, sorted(dests)) for port, dests in self.sent.items())


@functools.cache
def _connects(a: NatClass, b: NatClass) -> bool:
    nats = (_ModelNat("a", a), _ModelNat("b", b))
    server = ("server", 3478)
    srflx = [nat.outbound(server) for nat in nats]
    known: list[set[Address]] = [{srflx[1]}, {srflx[0]}]
    succeeded = [False, False]
    previous: object = None
    for _ in range(32):  # the state only grows, so this reaches a fixpoint in a few rounds
        for me, peer in ((0, 1), (1, 0)):
            for remote in sorted(known[me]):
                source = nats[me].outbound(remote)
                if remote[0] != nats[peer].public or not nats[peer].inbound(remote[1], source):
                    continue
                known[peer].add(source)  # a peer-reflexive candidate (RFC 8445 7.3.1.3)
                answer_from = nats[peer].outbound(source)
                if answer_from == remote and nats[me].inbound(source[1], answer_from):
                    succeeded[me] = True
        state = (sorted(known[0]), sorted(known[1]), succeeded, nats[0].state(), nats[1].state())
        if state == previous:
            break
        previous = state
    return all(succeeded)


_CLASSIC: dict[NatClass, str] = {
    (EIM, EIF): "full cone",
    (EIM, ADF): "restricted cone",
    (EIM, APDF): "port-restricted cone",
    (APDM, APDF): "symmetric",
}


def _describe_peers(classes: Iterable[NatClass]) -> str:
    """Words for a set of peer behaviours: whole mapping rows by their mapping, the rest one by one."""
    chosen = set(classes)
    whole = [m for m in MappingBehavior if all((m, f) in chosen for f in FilteringBehavior)]
    parts: list[str] = []
    if EIM in whole:
        parts.append("endpoint-independent mapping (cone NATs, any filtering)")
    if ADM in whole and APDM in whole:
        parts.append("address- or port-dependent mapping (symmetric NATs)")
    else:
        parts.extend(f"{m.value} mapping (any filtering)" for m in (ADM, APDM) if m in whole)
    for nat in ALL_CLASSES:
        if nat in chosen and nat[0] not in whole:
            parts.append(_short(nat) + (f" ({_CLASSIC[nat]})" if nat in _CLASSIC else ""))
    return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else "".join(parts)


def explain_direct_connectivity(behind_nat: bool, mapping: MappingBehavior, filtering: FilteringBehavior) -> str:
    """What this behaviour means for direct (relay-free) ICE connections, in one sentence (RFC 4787, RFC 8445)."""
    me: NatClass = (mapping, filtering)
    name = classic_name(behind_nat, mapping, filtering)
    label = f"{mapping.abbreviation} + {filtering.abbreviation} ({name})" if behind_nat else name
    works = [peer for peer in ALL_CLASSES if direct_connection_possible(me, peer)]
    fails = [peer for peer in ALL_CLASSES if peer not in works]
    if not fails:
        return (
            f"{label}: direct connections work with every peer, even one behind a symmetric NAT (its checks "
            "arrive from new mappings and are learnt as peer-reflexive candidates)"
        )
    why = "" if mapping is EIM else "every new destination gets a new mapping, so "
    return (
        f"{label}: {why}direct connections work with peers with no NAT or {_describe_peers(works)}; "
        f"peers with {_describe_peers(fails)} need a relay (TURN)"
    )


@attrs.frozen
class NatDiscoveryResult:
    """What RFC 5780 discovery found (RFC 5780 4.3-4.6), in RFC 4787 terms, with its evidence."""

    server: Address  # the primary address asked (test I)
    other_address: Address  # the server's OTHER-ADDRESS (RFC 5780 7.4)
    local: Address  # the local address of the mapping tests' socket (as bound)
    mapped: Address  # the mapped address of test I
    behind_nat: bool  # False when the mapped address is the local one (RFC 5780 4.3)
    mapping: MappingBehavior
    filtering: FilteringBehavior
    mapped_addresses: tuple[Address, ...]  # mapped addresses of tests I, II, III (fewer when I or II decided)
    hairpinning: bool | None = None  # None: not tested, or not decidable (see `notes`)
    mapping_lifetime: MappingLifetime | None = None  # None: not measured (or no NAT)
    software: str | None = None  # the server's SOFTWARE (RFC 8489 14.14)
    elapsed: float = 0.0  # seconds the discovery took
    notes: tuple[str, ...] = ()  # caveats: undecidable hairpinning, no NAT, ...

    @property
    def nat_type(self) -> str:
        """The type as vnet presets name it: "none" without a NAT, else like "eim-apdf" (RFC 4787 4.1, 5)."""
        if not self.behind_nat:
            return "none" if self.filtering is EIF else f"none-{self.filtering.abbreviation.lower()}"
        return f"{self.mapping.abbreviation.lower()}-{self.filtering.abbreviation.lower()}"

    @property
    def port_preserved(self) -> bool:
        """The mapped port equals the local port (RFC 4787 4.2.1 port preservation, or no NAT)."""
        return self.mapped[1] == self.local[1]

    @property
    def classic_name(self) -> str:
        """The RFC 3489 name ("full cone", "restricted cone", "port-restricted cone", "symmetric", ...)."""
        return classic_name(self.behind_nat, self.mapping, self.filtering)

    @property
    def direct_connectivity(self) -> str:
        """What this means for direct connections with peers (see `explain_direct_connectivity`)."""
        return explain_direct_connectivity(self.behind_nat, self.mapping, self.filtering)

    def reachable_peers(self) -> list[NatClass]:
        """The peer behaviours a direct ICE connection works with (`direct_connection_possible`)."""
        return [peer for peer in ALL_CLASSES if direct_connection_possible((self.mapping, self.filtering), peer)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (addresses as {"address", "port"}, enums as their values)."""

        def addr(a: Address) -> dict[str, Any]:
            return {"address": a[0], "port": a[1]}

        lifetime = self.mapping_lifetime
        return {
            "behind_nat": self.behind_nat,
            "mapping": self.mapping.value,
            "filtering": self.filtering.value,
            "nat_type": self.nat_type,
            "classic_name": self.classic_name,
            "hairpinning": self.hairpinning,
            "mapping_lifetime": None if lifetime is None else attrs.asdict(lifetime),
            "port_preserved": self.port_preserved,
            "direct_connectivity": self.direct_connectivity,
            "direct_peers": [_short(p) for p in self.reachable_peers()],
            "local": addr(self.local),
            "mapped": addr(self.mapped),
            "mapped_addresses": [addr(a) for a in self.mapped_addresses],
            "server": addr(self.server),
            "other_address": addr(self.other_address),
            "software": self.software,
            "elapsed_ms": round(self.elapsed * 1000, 3),
            "notes": list(self.notes),
        }


# --- the probes ------------------------------------------------------------------------------------------

Arrival = tuple["_Endpoint", Message, Address]


def _norm(address: Address) -> Address:
    host, port = address
    try:
        return str(ipaddress.ip_address(host.partition("%")[0])), int(port)
    except ValueError:
        return host, int(port)


class _Endpoint:
    """One local UDP socket of the discovery: hands what arrives to whoever waits for its transaction id."""

    def __init__(self, sock: UdpSocket) -> None:
        self.sock = sock
        self.waiting: dict[bytes, trio.MemorySendChannel[Arrival]] = {}

    @property
    def local(self) -> Address:
        return _norm(self.sock.local_address)

    async def receive_loop(self) -> None:
        """Read datagrams until cancelled; STUN messages with a waited-for transaction id go to the waiter."""
        while True:
            data, source = await self.sock.receive()
            try:
                msg = Message.decode(data)
            except StunDecodeError:
                continue
            if Attr.FINGERPRINT in msg and not msg.verify_fingerprint():
                continue
            channel = self.waiting.get(msg.transaction_id)
            if channel is not None:
                try:
                    channel.send_nowait((self, msg, _norm(source)))
                except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                    pass


@attrs.define
class _Options:
    """The retransmission schedule of every transaction (RFC 8489 6.2.1) and its cap (`timeout`)."""

    rto: float
    rc: int
    rm: int
    timeout: float


class _Session:
    """The sockets of one discovery run and the transactions on them (RFC 8489 6.2.1 retransmissions)."""

    def __init__(self, network: Network, nursery: trio.Nursery, bind_ip: str, options: _Options) -> None:
        self.network = network
        self.nursery = nursery
        self.bind_ip = bind_ip
        self.options = options
        self.sockets: list[UdpSocket] = []

    async def endpoint(self) -> _Endpoint:
        try:
            sock = await self.network.bind_udp(self.bind_ip, 0)
        except OSError as e:
            raise OSError(e.errno, f"cannot open a UDP socket on {self.bind_ip} for NAT discovery: {e}") from e
        self.sockets.append(sock)
        endpoint = _Endpoint(sock)
        self.nursery.start_soon(endpoint.receive_loop)
        return endpoint

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()

    async def exchange(
        self,
        sender: _Endpoint,
        destination: Address,
        request: Message,
        *,
        listeners: Sequence[_Endpoint] = (),
        accept: Callable[[_Endpoint, Message, Address], bool] | None = None,
    ) -> Arrival | None:
        """Send `request` (retransmitted, RFC 8489 6.2.1) until something `accept`s; None after the timeout.

        Arrivals with the request's transaction id at `sender` and at the `listeners` (RESPONSE-PORT,
        hairpinning) are offered to `accept`; by default any Binding response (success or error) is taken.
        """
        tid = request.transaction_id
        send_channel, receive_channel = trio.open_memory_channel[Arrival](math.inf)
        watched = [sender, *listeners]
        for endpoint in watched:
            endpoint.waiting[tid] = send_channel
        if accept is None:
            accept = _is_binding_response
        try:
            data = request.encode(fingerprint=True)
            start = trio.current_time()
            tx = Transaction(data, tid, start, rto=self.options.rto, rc=self.options.rc, rm=self.options.rm)
            end = start + self.options.timeout
            await sender.sock.send(data, destination)
            while True:
                timer = tx.get_timer()
                with trio.move_on_at(min(end, math.inf if timer is None else timer)):
                    async for arrival in receive_channel:
                        if accept(*arrival):
                            return arrival
                now = trio.current_time()
                if now >= end:
                    return None
                again = tx.handle_timer(now)
                if again is not None:
                    await sender.sock.send(again, destination)
                elif tx.timed_out:
                    return None
        finally:
            for endpoint in watched:
                if endpoint.waiting.get(tid) is send_channel:
                    del endpoint.waiting[tid]
            send_channel.close()
            receive_channel.close()

    async def binding(
        self,
        sender: _Endpoint,
        destination: Address,
        *,
        change_ip: bool = False,
        change_port: bool = False,
        what: str,
    ) -> tuple[Message, Address] | None:
        """One Binding transaction; the success response and its source, or None after the timeout.

        Without CHANGE-REQUEST only answers from `destination` count (RFC 8489 6.3); an error response
        raises `NatDiscoveryError` naming the test.
        """
        attributes: list[tuple[Attr | int, Any]] = []
        if change_ip or change_port:
            attributes.append((Attr.CHANGE_REQUEST, (change_ip, change_port)))
        attributes.append((Attr.SOFTWARE, _SOFTWARE))
        request = Message(Method.BINDING, MessageClass.REQUEST, attributes=attributes)

        def accept(endpoint: _Endpoint, msg: Message, source: Address) -> bool:
            if not _is_binding_response(endpoint, msg, source):
                return False
            return change_ip or change_port or source == destination

        arrival = await self.exchange(sender, destination, request, accept=accept)
        if arrival is None:
            return None
        _, msg, source = arrival
        _raise_for_error(msg, destination, what)
        return msg, source


def _is_binding_response(_endpoint: _Endpoint, msg: Message, _source: Address) -> bool:
    return msg.method is Method.BINDING and msg.message_class in (MessageClass.SUCCESS, MessageClass.ERROR)


def _raise_for_error(msg: Message, server: Address, what: str) -> None:
    if msg.message_class is not MessageClass.ERROR:
        return
    code, reason = msg.get(Attr.ERROR_CODE) or (0, "no ERROR-CODE")
    unknown = msg.get(Attr.UNKNOWN_ATTRIBUTES)
    detail = ""
    if unknown:
        names = ", ".join(_attr_name(t) for t in unknown)
        detail = f" (it does not understand {names}: it does not implement RFC 5780)"
    raise NatDiscoveryError(
        f"STUN server {format_host_port(server)} answered {what} with error {code} {reason}{detail}"
    )


def _attr_name(code: int) -> str:
    try:
        return Attr(code).name.replace("_", "-")
    except ValueError:
        return f"{code:#06x}"


def _mapped(msg: Message) -> Address:
    mapped = msg.get(Attr.XOR_MAPPED_ADDRESS) or msg.get(Attr.MAPPED_ADDRESS)
    if mapped is None:
        raise NatDiscoveryError("the STUN server's Binding response has no XOR-MAPPED-ADDRESS (RFC 8489 14.2)")
    return _norm(mapped)


async def _resolve(network: Network, server: Address | str) -> Address:
    if isinstance(server, str):
        server = parse_host_port(server, 3478)
    host, port = server
    try:
        ipaddress.ip_address(host)
        return _norm((host, port))
    except ValueError:
        pass
    resolved = await network.resolve(host, port)
    if not resolved:
        raise OSError(f"cannot resolve STUN server name {host!r}")
    return _norm(resolved[0])


def _check_other(server: Address, other: Address | None, software: str | None) -> Address:
    where = format_host_port(server)
    name = f" ({software})" if software else ""
    if other is None:
        raise NatDiscoveryError(
            f"STUN server {where}{name} does not support RFC 5780 NAT behaviour discovery: its Binding response "
            "has no OTHER-ADDRESS. Use a server with two IP addresses, e.g. 'iceagent serve --stun IP:3478 --alt "
            "IP2' or coturn with two --listening-ip addresses"
        )
    other = _norm(other)
    if ipaddress.ip_address(other[0]).version != ipaddress.ip_address(server[0]).version:
        raise NatDiscoveryError(f"STUN server {where} gave OTHER-ADDRESS {format_host_port(other)} of another family")
    if other[0] == server[0] or other[1] == server[1]:
        raise NatDiscoveryError(
            f"STUN server {where} gave OTHER-ADDRESS {format_host_port(other)}, which must differ from the "
            "primary address in both IP and port (RFC 5780 7.4)"
        )
    return other


def _local_ips(network: Network, bound: Address) -> set[str]:
    if not ipaddress.ip_address(bound[0]).is_unspecified:
        return {bound[0]}
    ips: set[str] = set()
    for interface in network.interfaces():
        for ip in interface.addresses:
            try:
                ips.add(str(ipaddress.ip_address(ip.partition("%")[0])))
            except ValueError:
                continue
    return ips


async def _mapping_tests(
    session: _Session, endpoint: _Endpoint, server: Address, other: Address, first: Address
) -> tuple[MappingBehavior, tuple[Address, ...]]:
    """RFC 5780 4.3 tests II and III from the socket of test I."""
    test2 = (other[0], server[1])
    answer = await session.binding(endpoint, test2, what="mapping test II (alternate IP, primary port)")
    if answer is None:
        raise NatDiscoveryError(
            f"no answer from {format_host_port(test2)}, the alternate IP of OTHER-ADDRESS with the primary port "
            f"(RFC 5780 4.3 test II): the server advertises an address it does not answer on, or it is unreachable"
        )
    second = _mapped(answer[0])
    if second == first:
        return EIM, (first, second)
    answer = await session.binding(endpoint, other, what="mapping test III (alternate IP and port)")
    if answer is None:
        raise NatDiscoveryError(
            f"no answer from OTHER-ADDRESS {format_host_port(other)} (RFC 5780 4.3 test III): the server "
            "advertises an address it does not answer on, or it is unreachable"
        )
    third = _mapped(answer[0])
    return (ADM if third == second else APDM), (first, second, third)


async def _filtering_tests(session: _Session, server: Address, other: Address) -> FilteringBehavior:
    """RFC 5780 4.4 from a fresh socket: test I, then CHANGE-REQUEST tests II (IP and port) and III (port).

    Tests II and III run at once: neither sends anywhere but the primary address, so neither opens the
    filter for the other, and together they take one timeout instead of two.
    """
    endpoint = await session.endpoint()
    if await session.binding(endpoint, server, what="filtering test I") is None:
        raise StunTimeout(f"no STUN response from {format_host_port(server)} for filtering test I (RFC 5780 4.4)")
    results: dict[str, bool] = {}

    async def test(name: str, change_ip: bool, expected: Address) -> None:
        what = f"filtering test {name} (CHANGE-REQUEST)"
        answer = await session.binding(endpoint, server, change_ip=change_ip, change_port=True, what=what)
        if answer is not None and answer[1] != expected:
            changed = "IP and port" if change_ip else "port"
            raise NatDiscoveryError(
                f"STUN server {format_host_port(server)} answered {what}, which asks for a reply from its other "
                f"{changed} ({format_host_port(expected)}), from {format_host_port(answer[1])} instead: it does "
                "not honour CHANGE-REQUEST (RFC 5780 6.1)"
            )
        results[name] = answer is not None

    async with trio.open_nursery() as nursery:
        nursery.start_soon(test, "II", True, other)
        nursery.start_soon(test, "III", False, (server[0], other[1]))
    if results["II"]:
        return EIF
    return ADF if results["III"] else APDF


async def _hairpin_test(session: _Session, server: Address) -> bool:
    """RFC 5780 4.5: socket B sends a Binding request to socket A's mapped address; does A receive it?

    A first sends to B's mapped address, so that a filtering NAT with endpoint-independent mapping lets
    B's packet in: the answer is then about hairpinning, not filtering (RFC 4787 6, REQ-9).
    """
    a, b = await session.endpoint(), await session.endpoint()
    mapped: dict[int, Address] = {}

    async def test_one(index: int, endpoint: _Endpoint) -> None:
        answer = await session.binding(endpoint, server, what="hairpinning test I")
        if answer is None:
            raise StunTimeout(f"no STUN response from {format_host_port(server)} for the hairpinning test")
        mapped[index] = _mapped(answer[0])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(test_one, 0, a)
        nursery.start_soon(test_one, 1, b)
    punch = Message(Method.BINDING, MessageClass.INDICATION, attributes=[(Attr.SOFTWARE, _SOFTWARE)])
    await a.sock.send(punch.encode(fingerprint=True), mapped[1])
    request = Message(Method.BINDING, MessageClass.REQUEST, attributes=[(Attr.SOFTWARE, _SOFTWARE)])

    def arrived_at_a(endpoint: _Endpoint, msg: Message, _source: Address) -> bool:
        return endpoint is a and msg.message_class is MessageClass.REQUEST

    arrival = await session.exchange(b, mapped[0], request, listeners=[a], accept=arrived_at_a)
    return arrival is not None


async def _lifetime_probe(session: _Session, server: Address, idle: float) -> bool:
    """RFC 5780 4.6 for one idle time: a mapping made by test I still receives after `idle` seconds?

    Socket A does test I and stays silent; after `idle` seconds socket B asks the server (RESPONSE-PORT,
    RFC 5780 7.5) to answer to A's mapped port on the NAT's address. The server answers from the address
    A talked to, so filtering does not interfere.
    """
    a, b = await session.endpoint(), await session.endpoint()
    answer = await session.binding(a, server, what="mapping lifetime test I")
    if answer is None:
        raise StunTimeout(f"no STUN response from {format_host_port(server)} for the mapping lifetime test")
    port = _mapped(answer[0])[1]
    await trio.sleep(idle)
    request = Message(
        Method.BINDING,
        MessageClass.REQUEST,
        attributes=[(Attr.RESPONSE_PORT, port), (Attr.SOFTWARE, _SOFTWARE)],
    )
    arrival = await session.exchange(b, server, request, listeners=[a])
    if arrival is None:
        return False
    endpoint, msg, _ = arrival
    _raise_for_error(msg, server, "the mapping lifetime test (RESPONSE-PORT)")
    if endpoint is b:
        raise NatDiscoveryError(
            f"STUN server {format_host_port(server)} ignored RESPONSE-PORT (RFC 5780 7.5): the answer came to the "
            "requesting port, so the mapping lifetime cannot be measured"
        )
    return True


async def _lifetime_tests(session: _Session, server: Address, bound: float, probes: int) -> MappingLifetime:
    """Probes idling `bound`*k/`probes` seconds (k = 1..probes), all at once (RFC 5780 4.6)."""
    idles = [bound * k / probes for k in range(1, probes + 1)]
    alive: dict[float, bool] = {}

    async def probe(idle: float) -> None:
        alive[idle] = await _lifetime_probe(session, server, idle)

    async with trio.open_nursery() as nursery:
        for idle in idles:
            nursery.start_soon(probe, idle)
    dead = [idle for idle in idles if not alive[idle]]
    at_most = min(dead) if dead else None
    at_least = max((idle for idle in idles if alive[idle] and (at_most is None or idle < at_most)), default=0.0)
    return MappingLifetime(at_least=at_least, at_most=at_most, bound=bound)


async def discover_nat(
    network: Network,
    server: Address | str,
    *,
    local_address: str | None = None,
    hairpinning: bool = False,
    lifetime: bool = False,
    lifetime_max: float = 60.0,
    lifetime_probes: int = 12,
    rto: float = 0.5,
    timeout: float = 3.0,  # noqa: ASYNC109 (a per-transaction bound that decides "no answer", not a cancel)
) -> NatDiscoveryResult:
    """Classify the NAT between `network` and `server` (RFC 5780 4.3 mapping, 4.4 filtering; 4.5, 4.6 if asked).

    `server` is the primary address of a STUN server that reports OTHER-ADDRESS (an (ip, port) tuple or
    "HOST[:PORT]"); `local_address` the IP to bind (default: the wildcard of the server's family). Each
    transaction is retransmitted from `rto` (RFC 8489 6.2.1) and given up after `timeout` seconds; a
    filtering test without answer in that time counts as filtered. With `lifetime`, `lifetime_probes`
    mappings idle for up to `lifetime_max` seconds. Raises `NatDiscoveryError` when the server cannot do
    RFC 5780 (no OTHER-ADDRESS, errors, ignored CHANGE-REQUEST), `StunTimeout` when it does not answer at all.
    """
    if not timeout > 0 or not rto > 0:
        raise ValueError(f"timeout and rto must be > 0, not {timeout!r} and {rto!r}")
    if lifetime and (not lifetime_max > 0 or lifetime_probes < 1):
        raise ValueError("lifetime_max must be > 0 and lifetime_probes >= 1")
    started = trio.current_time()
    primary = await _resolve(network, server)
    version = ipaddress.ip_address(primary[0]).version
    if local_address is not None and ipaddress.ip_address(local_address).version != version:
        raise ValueError(f"local_address {local_address} is not IPv{version} like the server {primary[0]}")
    bind_ip = local_address or ("::" if version == 6 else "0.0.0.0")
    options = _Options(rto=rto, rc=7, rm=16, timeout=timeout)
    sessions: list[_Session] = []
    try:
        async with trio.open_nursery() as nursery:
            sessions.append(_Session(network, nursery, bind_ip, options))
            try:
                result = await _discover(
                    sessions[0], network, primary, hairpinning, lifetime, lifetime_max, lifetime_probes
                )
            finally:
                nursery.cancel_scope.cancel()  # the receive loops
    except BaseException as e:
        error = _first_error(e)
        if error is e:
            raise
        raise error from None
    finally:
        for session in sessions:
            session.close()  # after the receive loops ended
    return attrs.evolve(result, elapsed=trio.current_time() - started)


def _first_error(error: BaseException) -> BaseException:
    """The first real error inside the ExceptionGroups of the concurrent tests (not a Cancelled), or `error`."""
    inner = getattr(error, "exceptions", None)  # a BaseExceptionGroup (no import: Python 3.10 has none)
    if not isinstance(inner, tuple):
        return error
    leaves = [_first_error(e) for e in inner if isinstance(e, BaseException)]
    for leaf in leaves:
        if not isinstance(leaf, trio.Cancelled) and getattr(leaf, "exceptions", None) is None:
            return leaf
    return error


async def _discover(
    session: _Session,
    network: Network,
    server: Address,
    hairpinning: bool,
    lifetime: bool,
    lifetime_max: float,
    lifetime_probes: int,
) -> NatDiscoveryResult:
    endpoint = await session.endpoint()
    answer = await session.binding(endpoint, server, what="mapping test I")
    if answer is None:
        raise StunTimeout(
            f"no STUN response from {format_host_port(server)} within {session.options.timeout:g} s (RFC 5780 "
            "4.3 test I): is a STUN server running there, and is it reachable from this host?"
        )
    msg = answer[0]
    software = msg.get(Attr.SOFTWARE)
    other = _check_other(server, msg.get(Attr.OTHER_ADDRESS), software)
    first = _mapped(msg)
    local = endpoint.local
    behind_nat = not (first[1] == local[1] and first[0] in _local_ips(network, local))
    notes: list[str] = []
    found: dict[str, Any] = {}

    async def mapping() -> None:
        if behind_nat:
            found["mapping"] = await _mapping_tests(session, endpoint, server, other, first)
        else:
            found["mapping"] = (EIM, (first,))  # RFC 5780 4.3: mapped == local, no NAT

    async def filtering() -> None:
        found["filtering"] = await _filtering_tests(session, server, other)

    async def hairpin() -> None:
        found["hairpin"] = await _hairpin_test(session, server)

    async def lifetimes() -> None:
        found["lifetime"] = await _lifetime_tests(session, server, lifetime_max, lifetime_probes)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(mapping)
        nursery.start_soon(filtering)
        if hairpinning and behind_nat:
            nursery.start_soon(hairpin)
        if lifetime and behind_nat:
            nursery.start_soon(lifetimes)
    mapping_behavior, mapped_addresses = found["mapping"]
    filtering_behavior: FilteringBehavior = found["filtering"]
    hairpin_result: bool | None = found.get("hairpin")
    if not behind_nat:
        notes.append("the mapped address is the local address: no NAT between this host and the server")
        if hairpinning:
            notes.append("hairpinning: not applicable without a NAT")
        if lifetime:
            notes.append("mapping lifetime: not applicable without a NAT")
    elif hairpin_result is False and mapping_behavior is not EIM and filtering_behavior is not EIF:
        hairpin_result = None  # the hairpinned packet comes from a new mapping that the filter may refuse
        notes.append(
            "hairpinning: undecided; without endpoint-independent mapping or filtering a hairpinned packet comes "
            "from a new mapping that the filter refuses whether or not the NAT hairpins (RFC 4787 6)"
        )
    return NatDiscoveryResult(
        server=server,
        other_address=other,
        local=local,
        mapped=first,
        behind_nat=behind_nat,
        mapping=mapping_behavior,
        filtering=filtering_behavior,
        mapped_addresses=mapped_addresses,
        hairpinning=hairpin_result,
        mapping_lifetime=found.get("lifetime"),
        software=software,
        notes=tuple(notes),
    )
