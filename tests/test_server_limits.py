"""The front door of the embedded STUN and TURN servers (issue 12): small answers, rate limits per source and in
total, TCP/TLS connection caps, read and write deadlines. Sans-IO parts with literal times, rate limits on the
vnet under MockClock, connections on real loopback sockets with short deadlines."""

from __future__ import annotations

import itertools
import math
import os
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from iceagent.net.base import Address, Network
from iceagent.net.os import OSNetwork
from iceagent.stun import Attr, Message, MessageClass, Method, long_term_key
from iceagent.stun.limits import ConnectionCounter, RequestLimiter, ServerLimits, TokenBucket, source_key
from iceagent.stun.server import answer, open_stun_server
from iceagent.turn.server import open_turn_server
from iceagent.turn.server.types import TurnServerConfig

NET = OSNetwork()
USERS = {"alice": "secret"}
UNLIMITED = {"source_rate": math.inf, "total_rate": math.inf}


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _binding(*attributes: tuple[Attr | int, Any], method: int = Method.BINDING) -> Message:
    return Message(method, MessageClass.REQUEST, attributes=list(attributes))


# ---- sans-IO: buckets, the source table, connection counts ----


def test_token_bucket_gives_the_burst_then_the_rate() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=3.0, now=100.0)
    taken = 0
    while bucket.ready(100.0):
        bucket.take()
        taken += 1
    assert taken == 3
    assert bucket.wait(100.0) == pytest.approx(0.5)
    assert not bucket.ready(100.4) and bucket.ready(100.5)
    bucket.take()
    assert bucket.ready(1000.0) and bucket.tokens == 3.0  # never more than the burst


def test_sources_have_their_own_buckets_ipv4_per_address_ipv6_per_64() -> None:
    limiter = RequestLimiter(ServerLimits(source_rate=1, source_burst=2), now=0.0)
    assert [limiter.check("192.0.2.1", 0.0) for _ in range(3)] == [None, None, "rate_source"]
    assert limiter.check("192.0.2.2", 0.0) is None  # another IPv4 address: another bucket
    assert [limiter.check("2001:db8:1:2::1", 0.0) for _ in range(2)] == [None, None]
    assert limiter.check("2001:db8:1:2:ffff::9", 0.0) == "rate_source"  # same /64
    assert limiter.check("2001:db8:1:3::1", 0.0) is None  # another /64
    assert limiter.check("::ffff:192.0.2.1", 0.0) == "rate_source"  # IPv4-mapped: the IPv4 address's bucket
    assert limiter.check("192.0.2.1", 1.0) is None  # one token back after a second
    assert source_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:2:3:4:5:6", 48) == "2001:db8:1::/48"


def test_the_total_bucket_holds_when_every_request_has_another_source() -> None:
    """Forged sources dodge the per-source buckets; the total one still caps the answers."""
    limiter = RequestLimiter(ServerLimits(total_rate=10, total_burst=50), now=0.0)
    results = [limiter.check(f"10.0.{i // 256}.{i % 256}", 0.0) for i in range(1000)]
    assert results.count(None) == 50 and results.count("rate_total") == 950
    later = [limiter.check(f"10.1.{i // 256}.{i % 256}", 2.0) for i in range(100)]
    assert later.count(None) == 20  # 2 s at 10/s


def test_the_source_table_is_bounded() -> None:
    limiter = RequestLimiter(ServerLimits(max_sources=64), now=0.0)
    for i in range(5000):
        limiter.check(f"2001:db8:{i:x}::1", float(i))
        assert len(limiter) <= 64
    assert limiter.evicted == 5000 - 64
    # the least recently seen go first: a source seen just now keeps its (partly spent) bucket
    limiter = RequestLimiter(ServerLimits(max_sources=2, source_rate=1, source_burst=1), now=0.0)
    assert limiter.check("192.0.2.1", 0.0) is None
    assert limiter.check("192.0.2.2", 0.0) is None
    assert limiter.check("192.0.2.1", 0.0) == "rate_source"  # seen again: now the most recent
    assert limiter.check("192.0.2.3", 0.0) is None  # evicts 192.0.2.2
    assert limiter.check("192.0.2.1", 0.0) == "rate_source"


def test_connection_counter_caps_per_ip_and_in_total() -> None:
    counter = ConnectionCounter(ServerLimits(max_connections=3, max_connections_per_ip=2))
    assert [counter.open("192.0.2.1") for _ in range(3)] == [None, None, "connections_per_ip"]
    assert counter.open("192.0.2.2") is None
    assert counter.open("192.0.2.3") == "connections"
    counter.close("192.0.2.1")
    assert counter.open("192.0.2.3") is None and counter.total == 3


def test_connection_counter_counts_an_ipv6_prefix_as_one_client() -> None:
    """Like the rate limit: a host with a /64 must not take every slot by using 500 of its addresses."""
    counter = ConnectionCounter(ServerLimits(max_connections_per_ip=50))
    opened = [counter.open(f"2001:db8:1:2::{i:x}") for i in range(60)]
    assert opened.count(None) == 50 and opened[50:] == ["connections_per_ip"] * 10
    assert counter.open("2001:db8:1:3::1") is None  # the next /64 is another client
    assert counter.open("::ffff:192.0.2.1") is None and counter.open("192.0.2.1") is None  # mapped: the same IPv4
    counter.close("2001:db8:1:2::ffff")  # any address of the prefix frees its slot
    assert counter.open("2001:db8:1:2::abcd") is None and counter.total == 53


@pytest.mark.parametrize(
    "kwargs",
    [{"source_rate": 0}, {"total_burst": -1}, {"max_sources": 0}, {"ipv6_prefix": 129}, {"read_timeout": 0}],
)
def test_limits_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ServerLimits(**kwargs)


# ---- STUN answers are not much larger than their requests (no amplification) ----

V4, V6 = ("192.0.2.7", 40000), ("2001:db8::7", 40000)
LOCAL = {4: ("198.51.100.1", 3478), 6: ("2001:db8::1", 3478)}
OTHER = {4: ("198.51.100.2", 3479), 6: ("2001:db8::2", 3479)}


#: The largest UDP answer, and the largest answer/request ratio, of any request (`test_no_request_gets_more`):
#: an IPv6 client of a server with an RFC 5780 alternate (addresses are 24 bytes: XOR-MAPPED-ADDRESS,
#: RESPONSE-ORIGIN, OTHER-ADDRESS, and MAPPED-ADDRESS for an RFC 5780 request). Before: 164 bytes, 8x.
MAX_ANSWER, MAX_RATIO = 124, 4.6
OPTIONAL = {
    "SOFTWARE": [(Attr.SOFTWARE, "x")],
    "long SOFTWARE": [(Attr.SOFTWARE, "x" * 100)],
    "CHANGE-REQUEST": [(Attr.CHANGE_REQUEST, (True, True))],
    "CHANGE-REQUEST port": [(Attr.CHANGE_REQUEST, (False, True))],
    "RESPONSE-PORT": [(Attr.RESPONSE_PORT, 5000)],
    "privileged RESPONSE-PORT": [(Attr.RESPONSE_PORT, 53)],
    "PADDING": [(Attr.PADDING, b"")],
    "PADDING 8": [(Attr.PADDING, bytes(8))],
    "PADDING 100": [(Attr.PADDING, bytes(100))],
    "unknown attribute": [(0x7F31, b"")],
    "two unknown attributes": [(0x7F31, b""), (0x7F32, b"")],
}


def _combinations() -> list[tuple[str, ...]]:
    """Every set of at most three of `OPTIONAL` (one PADDING and one RESPONSE-PORT at most)."""
    names = list(OPTIONAL)
    out: list[tuple[str, ...]] = [()]
    for n in (1, 2, 3):
        out += [c for c in itertools.combinations(names, n) if sum("PADDING" in x for x in c) <= 1
                and sum("RESPONSE-PORT" in x for x in c) <= 1 and sum("CHANGE" in x for x in c) <= 1]
    return out


@pytest.mark.parametrize("alternate", [False, True], ids=["one address", "RFC 5780 alternate"])
@pytest.mark.parametrize("remote", [V4, V6], ids=["IPv4", "IPv6"])
def test_no_request_gets_more_than_124_bytes_or_4_6_times_its_size(remote: Address, alternate: bool) -> None:
    """Every combination of the attributes a request may carry, with and without FINGERPRINT, Binding and
    another method: no UDP answer is over 124 bytes or 4.6x the request; SOFTWARE never comes back over UDP;
    a PADDING request is never answered with more bytes than it had (no answer when it would be; an error,
    which RFC 5780 6.1 requires for PADDING with RESPONSE-PORT, stays within the general bounds). Before: a
    20-byte Binding got up to 160 bytes, 8x; SOFTWARE+CHANGE-REQUEST+FINGERPRINT 44 -> 164; empty PADDING 24 -> 120."""
    family = 6 if ":" in remote[0] else 4
    other = OTHER[family] if alternate else None
    answered = 0
    for combination in _combinations():
        attributes = [a for name in combination for a in OPTIONAL[name]]
        for method in (Method.BINDING, Method.ALLOCATE):
            for fingerprint in (False, True):
                request = _binding(*attributes, method=method).encode(fingerprint=fingerprint)
                reply = answer(request, remote, LOCAL[family], other=other)
                where = (combination, method, fingerprint, len(request))
                if reply is None:
                    assert Attr.PADDING in Message.decode(request), where  # only an oversized PADDING answer
                    continue
                answered += 1
                if reply.success and any("PADDING" in name for name in combination):
                    assert len(reply.data) <= len(request), where  # padded up to the request, never beyond
                else:
                    assert len(reply.data) <= MAX_ANSWER and len(reply.data) <= MAX_RATIO * len(request), where
                response = Message.decode(reply.data)
                assert Attr.SOFTWARE not in response, where
                assert (Attr.FINGERPRINT in response) == fingerprint, where
    assert answered > 300


@pytest.mark.parametrize("remote", [V4, V6], ids=["IPv4", "IPv6"])
def test_response_origin_in_every_answer_of_a_server_with_an_alternate(remote: Address) -> None:
    """RFC 5780 6.1: the server MUST add RESPONSE-ORIGIN (and OTHER-ADDRESS when it has an alternate), also to a
    plain Binding request: a client's test I compares it with the server it asked, to find a second NAT."""
    family = 6 if ":" in remote[0] else 4
    reply = answer(_binding().encode(), remote, LOCAL[family], other=OTHER[family])
    assert reply is not None
    response = Message.decode(reply.data)
    assert response.get(Attr.RESPONSE_ORIGIN) == LOCAL[family]
    assert response.get(Attr.OTHER_ADDRESS) == OTHER[family]
    assert Attr.MAPPED_ADDRESS not in response  # only RFC 5780 requests (CHANGE-REQUEST, ...) get it
    change = _binding((Attr.CHANGE_REQUEST, (True, False))).encode()
    changed = answer(change, remote, LOCAL[family], other=OTHER[family])
    assert changed is not None
    assert Message.decode(changed.data).get(Attr.RESPONSE_ORIGIN) == (OTHER[family][0], LOCAL[family][1])
    # A server with one address: plain requests get XOR-MAPPED-ADDRESS only.
    plain = answer(_binding().encode(), remote, LOCAL[family])
    assert plain is not None and [a for a, _ in Message.decode(plain.data).attributes] == [Attr.XOR_MAPPED_ADDRESS]


def test_padding_pads_the_answer_to_the_request_size() -> None:
    request = _binding((Attr.PADDING, bytes(1400))).encode()
    reply = answer(request, V6, LOCAL[6], other=OTHER[6])
    assert reply is not None and len(reply.data) == len(request)
    assert len(Message.decode(reply.data).get(Attr.PADDING)) == 1400 - 4 * 24  # four addresses take the rest


def test_software_comes_back_only_over_tcp() -> None:
    local = LOCAL[4]
    plain = answer(_binding().encode(), V4, local, software="srv")
    asked = answer(_binding((Attr.SOFTWARE, "client")).encode(), V4, local, software="srv")
    tcp = answer(_binding().encode(), V4, local, software="srv", transport="tcp")
    assert plain is not None and asked is not None and tcp is not None
    assert Message.decode(plain.data).get(Attr.SOFTWARE) is None
    assert Message.decode(asked.data).get(Attr.SOFTWARE) is None
    assert Message.decode(tcp.data).get(Attr.SOFTWARE) == "srv"


@pytest.mark.parametrize(("port", "ok"), [(0, False), (53, False), (1023, False), (1024, True), (65535, True)])
def test_response_port_below_1024_is_400(port: int, ok: bool) -> None:
    reply = answer(_binding((Attr.RESPONSE_PORT, port)).encode(), V4, LOCAL[4])
    assert reply is not None and reply.success is ok
    assert reply.destination == ((V4[0], port) if ok else V4)  # an error goes to the source, never to the port
    if not ok:
        assert Message.decode(reply.data).get(Attr.ERROR_CODE)[0] == 400


async def test_response_port_below_1024_on_the_wire() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"]) as server:
            sock = await NET.bind_udp("127.0.0.1", 0)
            try:
                request = _binding((Attr.RESPONSE_PORT, 1000))
                await sock.send(request.encode(), server.address)
                data, _ = await sock.receive()
            finally:
                sock.close()
    response = Message.decode(data)
    assert response.transaction_id == request.transaction_id
    assert response.get(Attr.ERROR_CODE)[0] == 400


# ---- rate limits on the vnet (MockClock: the burst arrives at one instant) ----


def _internet(sources: int) -> tuple[Network, list[tuple[Network, str]]]:
    vnet = pytest.importorskip("iceagent_vnet")
    internet = vnet.Internet()
    server = vnet.Host("server", internet, "198.51.100.1")
    addresses = [f"203.0.113.{10 + i}" for i in range(sources)]
    client = vnet.Host("client", internet, *addresses)
    return server.network, [(client.network, a) for a in addresses]


async def _flood(
    clients: list[tuple[Network, str]], server: Address, per_source: int, request: Callable[[], bytes]
) -> int:
    """Send `per_source` requests from each source at one instant; count the answers that come back."""
    socks = [await network.bind_udp(address, 0) for network, address in clients]
    answers = 0
    try:
        for sock in socks:
            for _ in range(per_source):
                await sock.send(request(), server)

        async def count(sock: Any) -> None:
            nonlocal answers
            while True:
                await sock.receive()
                answers += 1

        with trio.move_on_after(1):
            async with trio.open_nursery() as nursery:
                for sock in socks:
                    nursery.start_soon(count, sock)
    finally:
        for sock in socks:
            sock.close()
    return answers


def _stun_request() -> bytes:
    return _binding().encode()


def _turn_request() -> bytes:
    return Message(Method.ALLOCATE, MessageClass.REQUEST, attributes=[(Attr.REQUESTED_TRANSPORT, 17)]).encode()


@asynccontextmanager
async def _server(kind: str, network: Network, limits: ServerLimits, **kw: Any) -> AsyncIterator[Any]:
    if kind == "stun":
        async with open_stun_server(network, ["198.51.100.1:3478"], limits=limits, **kw) as server:
            yield server
    else:
        config = TurnServerConfig(limits=limits)
        async with open_turn_server(network, ["198.51.100.1:3478"], users=USERS, config=config, **kw) as server:
            yield server


REQUEST = {"stun": _stun_request, "turn": _turn_request}


@pytest.mark.parametrize("kind", ["stun", "turn"])
async def test_one_source_gets_its_burst_then_its_rate(kind: str, autojump_clock: trio.testing.MockClock) -> None:
    server_net, clients = _internet(2)
    limits = ServerLimits(source_rate=2, source_burst=5)
    async with _server(kind, server_net, limits) as server:
        assert await _flood(clients[:1], server.address, 20, REQUEST[kind]) == 5
        assert server.stats.limited == {"rate_source": 15}
        assert await _flood(clients[1:], server.address, 3, REQUEST[kind]) == 3  # another source: untouched
        # each flood listened for 1 s of (virtual) time: 2 s at 2/s gave the first source four tokens back
        assert await _flood(clients[:1], server.address, 10, REQUEST[kind]) == 4
        assert server.stats.limited == {"rate_source": 21}
        assert server.stats.requests == 12


@pytest.mark.parametrize("kind", ["stun", "turn"])
async def test_forged_sources_meet_the_total_limit(kind: str, autojump_clock: trio.testing.MockClock) -> None:
    """40 sources, 3 requests each, all under their own limit: the total bucket answers 30 and drops 90."""
    server_net, clients = _internet(40)
    limits = ServerLimits(source_rate=1, source_burst=5, total_rate=10, total_burst=30)
    async with _server(kind, server_net, limits) as server:
        assert await _flood(clients, server.address, 3, REQUEST[kind]) == 30
        assert server.stats.limited == {"rate_total": 90}


async def test_turn_relayed_data_is_not_rate_limited(autojump_clock: trio.testing.MockClock) -> None:
    """Only requests count: an allocation's Send indications pass however many there are."""
    server_net, clients = _internet(2)
    (client_net, client_ip), (peer_net, peer_ip) = clients
    limits = ServerLimits(source_rate=0.001, source_burst=3, total_rate=0.001, total_burst=3)
    async with _server("turn", server_net, limits) as server:
        sock = await client_net.bind_udp(client_ip, 0)
        peer = await peer_net.bind_udp(peer_ip, 0)
        try:
            key = long_term_key("alice", server.realm, "secret")
            challenge = await _exchange(sock, server.address, _turn_request())
            nonce = challenge.get(Attr.NONCE)
            auth = [(Attr.USERNAME, "alice"), (Attr.REALM, server.realm), (Attr.NONCE, nonce)]
            allocate = Message(Method.ALLOCATE, MessageClass.REQUEST, None, [(Attr.REQUESTED_TRANSPORT, 17), *auth])
            allocated = await _exchange(sock, server.address, allocate.encode(integrity_key=key))
            relay = allocated.get(Attr.XOR_RELAYED_ADDRESS)
            permit = Message(
                Method.CREATE_PERMISSION,
                MessageClass.REQUEST,
                None,
                [(Attr.XOR_PEER_ADDRESS, peer.local_address), *auth],
            )
            permitted = await _exchange(sock, server.address, permit.encode(integrity_key=key))
            assert permitted.message_class is MessageClass.SUCCESS
            for i in range(50):
                data = [(Attr.XOR_PEER_ADDRESS, peer.local_address), (Attr.DATA, b"%d" % i)]
                await sock.send(Message(Method.SEND, MessageClass.INDICATION, None, data).encode(), server.address)
            received = [(await peer.receive())[0] for _ in range(50)]
            assert len(received) == 50 and relay is not None
            assert server.stats.limited == {}  # three requests: within the burst
            assert await _exchange(sock, server.address, _binding().encode(), patience=1) is None  # the fourth
            assert server.stats.limited == {"rate_source": 1}
        finally:
            sock.close()
            peer.close()


async def _exchange(sock: Any, server: Address, data: bytes, patience: float = 5) -> Message | None:
    """Send a request; its response, or None if none came within `patience` seconds."""
    await sock.send(data, server)
    tid = data[8:20]
    with trio.move_on_after(patience):
        while True:
            message = Message.decode((await sock.receive())[0])
            if message.transaction_id == tid:
                return message
    return None


@pytest.mark.parametrize("kind", ["stun", "turn"])
async def test_over_tcp_requests_over_the_rate_wait_instead_of_being_dropped(
    kind: str, autojump_clock: trio.testing.MockClock
) -> None:
    server_net, clients = _internet(1)
    client_net, client_ip = clients[0]
    limits = ServerLimits(source_rate=10, source_burst=2)
    async with _server(kind, server_net, limits, tcp=True) as server:
        stream, _ = await client_net.connect_tcp(server.address, local=(client_ip, 0))
        async with stream:
            requests = [_binding() for _ in range(12)]
            await stream.send_all(b"".join(r.encode() for r in requests))
            start = trio.current_time()
            tids = [m.transaction_id for m in await _read_messages(stream, 12)]
            assert trio.current_time() > start  # (virtual time) the last ten waited for their tokens
        assert tids == [r.transaction_id for r in requests]  # all answered, in order
        assert server.stats.limited == {"rate_source": 10}


class _CountingLimiter:
    """Wraps a server's `RequestLimiter` and counts every call into it: the work done per request admitted."""

    def __init__(self, inner: RequestLimiter) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attribute(*args, **kwargs)

        return counted


@pytest.mark.parametrize("kind", ["stun", "turn"])
async def test_requests_waiting_over_tcp_cost_one_limiter_call_each(
    kind: str, autojump_clock: trio.testing.MockClock
) -> None:
    """20 connections from one source pipeline 10 requests each at 100/s: every request reserves its token
    once and sleeps until it is due (before: each waiting request polled the limiter every millisecond, and
    the connections sharing a source all woke at every token: 7126 limiter calls for 200 answers)."""
    server_net, clients = _internet(1)
    client_net, client_ip = clients[0]
    limits = ServerLimits(source_rate=100, source_burst=1, max_connections_per_ip=20)
    async with _server(kind, server_net, limits, tcp=True) as server:
        counting = server._limiter = _CountingLimiter(server._limiter)
        answered = 0

        async def client() -> None:
            nonlocal answered
            stream, _ = await client_net.connect_tcp(server.address, local=(client_ip, 0))
            async with stream:
                requests = [_binding() for _ in range(10)]
                await stream.send_all(b"".join(r.encode() for r in requests))
                messages = await _read_messages(stream, 10)
                assert [m.transaction_id for m in messages] == [r.transaction_id for r in requests]
                answered += len(messages)

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(client)
        assert answered == 200
        assert counting.calls == 200  # before: 7126 (STUN), 7222 (TURN)
        assert server.stats.limited == {"rate_source": 199}


@pytest.mark.parametrize("kind", ["stun", "turn"])
async def test_a_request_whose_turn_is_past_the_read_timeout_closes_the_connection(
    kind: str, autojump_clock: trio.testing.MockClock
) -> None:
    """At 10/s with a 0.5 s read timeout, 8 connections from one source send a request each at one instant:
    the first six get their tokens within 0.5 s (waits of 0, 0.1, ..., 0.5 s); the last two would wait
    longer, so their connections are closed at once, with no token reserved for them."""
    server_net, clients = _internet(1)
    client_net, client_ip = clients[0]
    limits = ServerLimits(source_rate=10, source_burst=1, read_timeout=0.5)
    async with _server(kind, server_net, limits, tcp=True) as server:
        outcomes: list[bool] = []

        async def client() -> None:
            stream, _ = await client_net.connect_tcp(server.address, local=(client_ip, 0))
            async with stream:
                await stream.send_all(_binding().encode())
                outcomes.append(not await _closed_by_server(stream))

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(client)
        assert sorted(outcomes) == [False] * 2 + [True] * 6
        assert server.stats.limited == {"rate_source": 5, "rate_wait": 2}


async def _read_messages(stream: trio.abc.Stream, count: int) -> list[Message]:
    buffer = bytearray()
    out: list[Message] = []
    while len(out) < count:
        while len(buffer) < 20 or len(buffer) < 20 + int.from_bytes(buffer[2:4], "big"):
            chunk = await stream.receive_some(65536)
            assert chunk, "closed by the server"
            buffer += chunk
        size = 20 + int.from_bytes(buffer[2:4], "big")
        out.append(Message.decode(bytes(buffer[:size])))
        del buffer[:size]
    return out


# ---- connections on real loopback sockets ----


def _loopback_server(kind: str, limits: ServerLimits, **kw: Any) -> AbstractAsyncContextManager[Any]:
    if kind == "stun":
        return open_stun_server(NET, ["127.0.0.1:0"], tcp=True, limits=limits, **kw)
    config = TurnServerConfig(limits=limits, **kw)
    return open_turn_server(NET, ["127.0.0.1:0"], users=USERS, tcp=True, config=config)


async def _closed_by_server(stream: trio.abc.Stream) -> bool:
    """Read until the server closes (True) or answers something (False)."""
    try:
        return await stream.receive_some(65536) == b""
    except trio.BrokenResourceError:
        return True


async def _answers(stream: trio.abc.Stream) -> bool:
    request = _binding()
    await stream.send_all(request.encode())
    return (await _read_messages(stream, 1))[0].transaction_id == request.transaction_id


@pytest.mark.parametrize("kind", ["stun", "turn"])
async def test_connections_are_capped_per_ip_and_in_total(kind: str) -> None:
    limits = ServerLimits(max_connections=3, max_connections_per_ip=2, **UNLIMITED)
    baseline = _fds()
    with trio.fail_after(10):
        async with _loopback_server(kind, limits) as server:
            address = server.address
            a1, _ = await NET.connect_tcp(address, local=("127.0.0.1", 0))
            a2, _ = await NET.connect_tcp(address, local=("127.0.0.1", 0))
            a3, _ = await NET.connect_tcp(address, local=("127.0.0.1", 0))
            b1, _ = await NET.connect_tcp(address, local=("127.0.0.2", 0))
            b2, _ = await NET.connect_tcp(address, local=("127.0.0.2", 0))
            async with a1, a2, a3, b1, b2:
                assert await _answers(a1) and await _answers(a2) and await _answers(b1)
                assert await _closed_by_server(a3)  # a third from 127.0.0.1
                assert await _closed_by_server(b2)  # a fourth in all
                assert server.stats.limited == {"connections_per_ip": 1, "connections": 1}
    assert _fds() == baseline


@pytest.mark.parametrize("kind", ["stun", "turn"])
async def test_a_trickling_client_is_closed_after_the_read_timeout(kind: str) -> None:
    """One byte every 50 ms keeps the connection busy, but the message never completes: closed after 0.3 s."""
    limits = ServerLimits(read_timeout=0.3, **UNLIMITED)
    message = _binding((Attr.SOFTWARE, "x" * 100)).encode()
    with trio.fail_after(5):
        async with _loopback_server(kind, limits) as server:
            baseline = _fds()
            stream, _ = await NET.connect_tcp(server.address)
            async with stream:
                assert await _answers(stream)  # a whole message is fine

                async def trickle() -> None:
                    for byte in message:
                        await stream.send_all(bytes([byte]))
                        await trio.sleep(0.05)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(trickle)
                    assert await _closed_by_server(stream)
                    nursery.cancel_scope.cancel()
            assert _fds() == baseline
            assert server.stats.limited == {"read_timeout": 1}


async def test_a_stalled_tls_handshake_is_closed_after_the_read_timeout() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    config = TurnServerConfig(limits=ServerLimits(read_timeout=0.3))
    with trio.fail_after(5):
        async with open_turn_server(
            NET, users=USERS, tls_listen=["127.0.0.1:0"], ssl_context=context, config=config
        ) as server:
            baseline = _fds()
            stream, _ = await NET.connect_tcp(server.tls_addresses[0])
            async with stream:
                await stream.send_all(bytes.fromhex("160301"))  # the start of a ClientHello, then nothing
                assert await _closed_by_server(stream)
            assert _fds() == baseline
            assert server.stats.limited == {"read_timeout": 1}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["stun", "turn"])
async def test_a_client_that_never_reads_is_closed_after_the_write_timeout(kind: str) -> None:
    """Pipelined requests whose answers pile up in the kernel until a send blocks: closed 0.3 s later."""
    limits = ServerLimits(write_timeout=0.3, **UNLIMITED)
    if kind == "stun":
        batch = b"".join(_binding((Attr.PADDING, bytes(60000))).encode() for _ in range(20))  # ~60 kB answers
    else:
        batch = b"".join(_binding().encode(fingerprint=True) for _ in range(20000))
    with trio.fail_after(60):
        async with _loopback_server(kind, limits) as server:
            baseline = _fds()
            stream, _ = await NET.connect_tcp(server.address)
            async with stream:
                with pytest.raises(trio.BrokenResourceError):
                    while True:  # never reads; the server's close (with our requests unread) resets the connection
                        await stream.send_all(batch)
            assert _fds() == baseline
            assert server.stats.limited == {"write_timeout": 1}
