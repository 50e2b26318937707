"""RFC 5780 NAT behaviour discovery, the Trio side: the probes sent through the `Network` seam.

`discover_nat(network, server)` runs the tests of RFC 5780 4 against a STUN server with two addresses:

* mapping (RFC 5780 4.3, RFC 4787 4.1): Binding requests from one socket to the server's primary
  address (test I), its alternate IP with the primary port (test II) and the alternate IP and port
  (test III);
* filtering (RFC 5780 4.4, RFC 4787 5): from a fresh socket, test I and then CHANGE-REQUEST asking the
  server to answer from its other IP and port (test II) and from its other port only (test III);
* hairpinning (RFC 5780 4.5, RFC 4787 6), if asked: one socket sends to another socket's mapped address;
* mapping lifetime (RFC 5780 4.6, RFC 4787 4.3), if asked, within a bound: probes that idle for
  different times, then ask the server (RESPONSE-PORT) to answer to the first mapping from another one.

The tests run concurrently, each on its own sockets, so a run takes about one `timeout` (plus the
lifetime bound when asked). What the answers mean is decided by the sans-IO `model` module.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from ...errors import StunTimeout
from ...net.base import Address, Network, UdpSocket
from ...uri import format_host_port, parse_host_port
from ..attributes import Attr
from ..message import Message, MessageClass, Method, StunDecodeError
from ..transaction import Transaction
from .model import (
    EIM,
    FilteringBehavior,
    MappingBehavior,
    MappingLifetime,
    NatDiscoveryError,
    check_change_request_source,
    check_other_address,
    classify_filtering,
    classify_mapping,
    is_behind_nat,
    is_binding_response,
    lifetime_bounds,
    lifetime_idles,
    mapped_address,
    no_nat_notes,
    normalize_address,
    raise_for_error,
    settle_hairpinning,
)
from .result import NatDiscoveryResult

__all__ = ["discover_nat"]

_SOFTWARE = "iceagent NAT discovery"

Arrival = tuple["_Endpoint", Message, Address]


class _Endpoint:
    """One local UDP socket of the discovery: hands what arrives to whoever waits for its transaction id."""

    def __init__(self, sock: UdpSocket) -> None:
        self.sock = sock
        self.waiting: dict[bytes, trio.MemorySendChannel[Arrival]] = {}

    @property
    def local(self) -> Address:
        return normalize_address(self.sock.local_address)

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
                    channel.send_nowait((self, msg, normalize_address(source)))
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

        def accept(_endpoint: _Endpoint, msg: Message, source: Address) -> bool:
            if not is_binding_response(msg):
                return False
            return change_ip or change_port or source == destination

        arrival = await self.exchange(sender, destination, request, accept=accept)
        if arrival is None:
            return None
        _, msg, source = arrival
        raise_for_error(msg, destination, what)
        return msg, source


def _is_binding_response(_endpoint: _Endpoint, msg: Message, _source: Address) -> bool:
    return is_binding_response(msg)


async def _resolve(network: Network, server: Address | str) -> Address:
    if isinstance(server, str):
        server = parse_host_port(server, 3478)
    host, port = server
    try:
        ipaddress.ip_address(host)
        return normalize_address((host, port))
    except ValueError:
        pass
    resolved = await network.resolve(host, port)
    if not resolved:
        raise OSError(f"cannot resolve STUN server name {host!r}")
    return normalize_address(resolved[0])


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
    mapped: tuple[Address, ...] = (first, mapped_address(answer[0]))
    behavior = classify_mapping(mapped)
    if behavior is not None:
        return behavior, mapped
    answer = await session.binding(endpoint, other, what="mapping test III (alternate IP and port)")
    if answer is None:
        raise NatDiscoveryError(
            f"no answer from OTHER-ADDRESS {format_host_port(other)} (RFC 5780 4.3 test III): the server "
            "advertises an address it does not answer on, or it is unreachable"
        )
    mapped = (*mapped, mapped_address(answer[0]))
    behavior = classify_mapping(mapped)
    assert behavior is not None  # three mapped addresses always decide
    return behavior, mapped


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
        if answer is not None:
            check_change_request_source(server, what, change_ip, expected, answer[1])
        results[name] = answer is not None

    async with trio.open_nursery() as nursery:
        nursery.start_soon(test, "II", True, other)
        nursery.start_soon(test, "III", False, (server[0], other[1]))
    return classify_filtering(results["II"], results["III"])


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
        mapped[index] = mapped_address(answer[0])

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
    port = mapped_address(answer[0])[1]
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
    raise_for_error(msg, server, "the mapping lifetime test (RESPONSE-PORT)")
    if endpoint is b:
        raise NatDiscoveryError(
            f"STUN server {format_host_port(server)} ignored RESPONSE-PORT (RFC 5780 7.5): the answer came to the "
            "requesting port, so the mapping lifetime cannot be measured"
        )
    return True


async def _lifetime_tests(session: _Session, server: Address, bound: float, probes: int) -> MappingLifetime:
    """Probes idling `bound`*k/`probes` seconds (k = 1..probes), all at once (RFC 5780 4.6)."""
    alive: dict[float, bool] = {}

    async def probe(idle: float) -> None:
        alive[idle] = await _lifetime_probe(session, server, idle)

    async with trio.open_nursery() as nursery:
        for idle in lifetime_idles(bound, probes):
            nursery.start_soon(probe, idle)
    return lifetime_bounds(alive, bound)


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
    other = check_other_address(server, msg.get(Attr.OTHER_ADDRESS), software)
    first = mapped_address(msg)
    local = endpoint.local
    behind_nat = is_behind_nat(first, local, _local_ips(network, local))
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
    notes: list[str] = []
    if not behind_nat:
        notes = no_nat_notes(hairpinning, lifetime)
    else:
        hairpin_result, note = settle_hairpinning(hairpin_result, mapping_behavior, filtering_behavior)
        if note is not None:
            notes.append(note)
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
