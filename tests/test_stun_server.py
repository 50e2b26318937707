"""The embedded STUN server (RFC 8489, RFC 5780) and the Binding client, on real loopback sockets."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio
from ipv6 import needs_ipv6

from iceagent.errors import StunTimeout
from iceagent.net.base import Address
from iceagent.net.os import OSNetwork
from iceagent.stun import Attr, Message, MessageClass, Method
from iceagent.stun.client import StunErrorResponse, stun_binding
from iceagent.stun.server import (
    DEFAULT_SOFTWARE,
    answer,
    bind_stun_server,
    open_stun_server,
    serve_stun,
)

NET = OSNetwork()
ALT = "127.0.0.2"  # Linux routes all of 127.0.0.0/8 to lo



def _request(*attributes: tuple[Attr | int, Any], method: int = Method.BINDING) -> Message:
    return Message(method, MessageClass.REQUEST, attributes=list(attributes))


async def _exchange(sock: Any, server: Address, request: Message, *, fingerprint: bool = True) -> Message:
    """Send one raw request from `sock` and return the response with its transaction id."""
    await sock.send(request.encode(fingerprint=fingerprint), server)
    while True:
        data, _ = await sock.receive()
        msg = Message.decode(data)
        if msg.transaction_id == request.transaction_id:
            return msg


# ---- client and server over UDP and TCP ----


async def test_binding_udp() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"]) as server:
            result = await stun_binding(NET, server.address, local_address="127.0.0.1")
    assert result.mapped == result.local
    assert result.mapped[0] == "127.0.0.1"
    assert result.server == result.source == server.address
    assert result.software is None  # a plain request over UDP gets no SOFTWARE and no RFC 5780 attributes
    assert result.response_origin is None
    assert result.other_address is None
    assert result.attempts == 1 and result.transport == "udp"
    assert 0 <= result.rtt < 5
    assert server.stats.requests == 1 and server.stats.errors == 0


async def test_binding_on_a_given_socket() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, [("127.0.0.1", 0)]) as server:
            sock = await NET.bind_udp("127.0.0.1", 0)
            try:
                first = await stun_binding(sock, server.address)
                second = await stun_binding(sock, server.address)
            finally:
                sock.close()
    assert first.mapped == second.mapped == sock.local_address


async def test_binding_tcp() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"], tcp=True) as server:
            assert server.tcp_addresses == [server.address]
            result = await stun_binding(NET, server.address, transport="tcp")
    assert result.transport == "tcp"
    assert result.mapped == result.local and result.mapped[0] == "127.0.0.1"
    assert result.software == DEFAULT_SOFTWARE  # over TCP the source is real: no reflection to fear
    assert server.stats.tcp_connections == 1


@needs_ipv6
async def test_binding_ipv6_udp_and_tcp() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["[::1]:0"], tcp=True) as server:
            assert server.address[0] == "::1"
            udp = await stun_binding(NET, server.address)
            tcp = await stun_binding(NET, server.address, transport="tcp")
    assert udp.mapped[0] == "::1" and tcp.mapped[0] == "::1"


@needs_ipv6
async def test_two_primary_addresses() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0", "[::1]:0"]) as server:
            assert [a[0] for a in server.addresses] == ["127.0.0.1", "::1"]
            for address in server.addresses:
                assert (await stun_binding(NET, address)).mapped[0] == address[0]


async def test_serve_stun_with_nursery_start() -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_stun, NET, ["127.0.0.1:0"])
            result = await stun_binding(NET, server.address)
            assert result.mapped[0] == "127.0.0.1"
            nursery.cancel_scope.cancel()


async def test_everything_is_closed_on_exit() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"], alternate=ALT, tcp=True) as server:
            udp, tcp = server.udp_addresses, server.tcp_addresses
        assert len(udp) == 4 and len(tcp) == 4
        for host, port in udp:  # every port is free again
            (await NET.bind_udp(host, port)).close()
        for host, port in tcp:
            (await NET.listen_tcp(host, port)).close()


async def test_body_exception_is_not_wrapped() -> None:
    with pytest.raises(KeyError):
        async with open_stun_server(NET, ["127.0.0.1:0"]):
            raise KeyError("from the body")


async def test_bind_errors() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"]) as server:
            with pytest.raises(OSError, match=r"cannot open the STUN server on 127\.0\.0\.1:\d+"):
                async with open_stun_server(NET, [server.address]):
                    pass  # pragma: no cover


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"addresses": []}, "at least one address"),
        ({"addresses": ["localhost:0"]}, "must be an IP address"),
        ({"alternate": "::1"}, "same family"),
        ({"alternate": "127.0.0.1"}, "another IP"),
        ({"alternate": "nope"}, "must be an IP address"),
        ({"addresses": ["127.0.0.1:0", "127.0.0.3:0"], "alternate": ALT}, "exactly one primary"),
        ({"addresses": ["0.0.0.0:0"], "alternate": ALT}, "specific IPs"),
        ({"alternate": ALT, "alternate_port": 70000}, "not in 0..65535"),
    ],
)
async def test_bad_options(kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("addresses", ["127.0.0.1:0"])
    with pytest.raises(ValueError, match=message):
        await bind_stun_server(NET, **kwargs)


# ---- RFC 5780 ----


@pytest.mark.parametrize(("change_ip", "change_port"), [(False, False), (True, False), (False, True), (True, True)])
async def test_change_request(change_ip: bool, change_port: bool) -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"], alternate=ALT) as server:
            (a1, p1), (a2, p2) = server.address, server.other_address or ("", 0)
            assert (a1, a2) == ("127.0.0.1", ALT) and p1 != p2
            result = await stun_binding(NET, server.address, change_ip=change_ip, change_port=change_port)
    expected = (a2 if change_ip else a1, p2 if change_port else p1)
    assert result.source == expected  # RFC 5780 6.1 table: really sent from there
    assert result.response_origin == expected  # RFC 5780 6.1: in every answer of a server with an alternate
    assert result.other_address == (a2, p2)  # differs in both IP and port from where the request went
    assert result.mapped[0] == "127.0.0.1"


async def test_other_address_from_each_socket() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"], alternate=ALT) as server:
            (a1, p1), (a2, p2) = server.address, server.other_address or ("", 0)
            assert sorted(server.udp_addresses) == sorted([(a1, p1), (a2, p1), (a1, p2), (a2, p2)])
            for host, port in server.udp_addresses:
                result = await stun_binding(NET, (host, port), padding=100)  # PADDING: an RFC 5780 request
                assert result.response_origin == (host, port)
                assert result.other_address == (a2 if host == a1 else a1, p2 if port == p1 else p1)


async def test_fixed_primary_port_with_alternate() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"], alternate=ALT, alternate_port=0) as probe:
            port = probe.address[1]  # free on both IPs a moment ago
        async with open_stun_server(NET, [("127.0.0.1", port)], alternate=ALT, alternate_port=0) as server:
            assert server.address == ("127.0.0.1", port)
            assert server.other_address is not None and server.other_address[0] == ALT
            result = await stun_binding(NET, (ALT, port), change_ip=True)
    assert result.source == ("127.0.0.1", port)


async def test_change_request_without_alternate_is_420() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"]) as server:
            with pytest.raises(StunErrorResponse) as info:
                await stun_binding(NET, server.address, change_port=True)
    assert info.value.code == 420
    assert info.value.unknown_attributes == [Attr.CHANGE_REQUEST]
    assert "error 420" in str(info.value) and "0x0003" in str(info.value)


async def test_response_port() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"]) as server:
            sender = await NET.bind_udp("127.0.0.1", 0)
            receiver = await NET.bind_udp("127.0.0.1", 0)
            try:
                request = _request((Attr.RESPONSE_PORT, receiver.local_address[1]))
                await sender.send(request.encode(fingerprint=True), server.address)
                data, source = await receiver.receive()
            finally:
                sender.close()
                receiver.close()
    response = Message.decode(data)
    assert source == server.address
    assert response.message_class is MessageClass.SUCCESS
    assert response.transaction_id == request.transaction_id
    assert response.get(Attr.XOR_MAPPED_ADDRESS) == sender.local_address  # the source, not the response port


async def test_padding() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"], alternate=ALT) as server:
            sock = await NET.bind_udp("127.0.0.1", 0)
            try:
                request = _request((Attr.PADDING, bytes(500)))
                response = await _exchange(sock, server.address, request)
                both = _request((Attr.PADDING, bytes(8)), (Attr.RESPONSE_PORT, sock.local_address[1]))
                error = await _exchange(sock, server.address, both)
            finally:
                sock.close()
    assert response.message_class is MessageClass.SUCCESS
    padding = response.get(Attr.PADDING)
    assert padding is not None and len(padding) > 400
    assert abs(len(response.encode(fingerprint=True)) - len(request.encode(fingerprint=True))) < 8
    assert error.message_class is MessageClass.ERROR
    assert error.get(Attr.ERROR_CODE)[0] == 400


# ---- errors and robustness ----


async def test_unknown_comprehension_required_attribute_is_420() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"]) as server:
            sock = await NET.bind_udp("127.0.0.1", 0)
            try:
                bad = await _exchange(sock, server.address, _request((0x7F31, b"abcd"), (0x7F32, b"")))
                ok = await _exchange(sock, server.address, _request((0xBF31, b"optional")))
            finally:
                sock.close()
    assert bad.message_class is MessageClass.ERROR and bad.method is Method.BINDING
    assert bad.get(Attr.ERROR_CODE) == (420, "Unknown Attribute")
    assert bad.get(Attr.UNKNOWN_ATTRIBUTES) == [0x7F31, 0x7F32]
    assert bad.verify_fingerprint()
    assert ok.message_class is MessageClass.SUCCESS  # unknown comprehension-optional: ignored (RFC 8489 7.3.1)


async def test_non_binding_request_is_400() -> None:
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"]) as server:
            sock = await NET.bind_udp("127.0.0.1", 0)
            try:
                allocate = await _exchange(sock, server.address, _request(method=Method.ALLOCATE))
                unknown = await _exchange(sock, server.address, _request(method=0x0FF))
            finally:
                sock.close()
    for response, method in ((allocate, Method.ALLOCATE), (unknown, 0x0FF)):
        assert response.message_class is MessageClass.ERROR and response.method == method
        code, reason = response.get(Attr.ERROR_CODE)
        assert (code, reason) == (400, "Binding only")


async def test_garbage_does_not_kill_the_server() -> None:
    request = _request().encode(fingerprint=True)
    bad_fingerprint = request[:-1] + bytes([request[-1] ^ 1])
    garbage = [
        b"",
        b"\x00",
        b"hello, world",
        bytes(range(256)),
        request[:19],
        request[:-4],  # length field no longer matches
        request[:2] + b"\x00\x10" + request[4:],  # length field too big
        b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(11),  # truncated transaction id
        bad_fingerprint,
        Message(Method.BINDING, MessageClass.INDICATION).encode(fingerprint=True),
        Message(Method.BINDING, MessageClass.SUCCESS).encode(fingerprint=True),
        b"\x00\x01\x00\x08\x21\x12\xa4\x42" + bytes(12) + b"\x00\x20\x00\x08\x00\x07\x00\x00",  # bad family
        b"\x00\x01\x00\x04\x21\x12\xa4\x42" + bytes(12) + b"\x00\x03\x00\x00",  # CHANGE-REQUEST too short
    ]
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"], alternate=ALT) as server:
            sock = await NET.bind_udp("127.0.0.1", 0)
            try:
                for data in garbage:
                    await sock.send(data, server.address)
                result = await stun_binding(sock, server.address)  # still answering, in order after the garbage
            finally:
                sock.close()
    assert result.mapped == sock.local_address
    assert server.stats.dropped == len(garbage)
    assert server.stats.requests == 1


async def test_tcp_framing_and_garbage() -> None:
    one = _request().encode(fingerprint=True)
    two = _request((Attr.SOFTWARE, "two")).encode(fingerprint=True)
    three = _request().encode(fingerprint=True)
    with trio.fail_after(5):
        async with open_stun_server(NET, ["127.0.0.1:0"], alternate=ALT, tcp=True) as server:
            stream, _ = await NET.connect_tcp(server.address)
            reader = _Framer(stream)
            async with stream:
                await stream.send_all(one + two[:7])  # two messages split across writes
                await stream.send_all(two[7:])
                await stream.send_all(three[:20])
                await stream.send_all(three[20:])
                responses = [await reader.message() for _ in range(3)]
                change = _request((Attr.CHANGE_REQUEST, (True, False))).encode(fingerprint=True)
                await stream.send_all(change)
                error = await reader.message()
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not STUN: the server hangs up
                assert await _receive(stream) == b""
            result = await stun_binding(NET, server.address, transport="tcp")  # still serving
    assert [Message.decode(r).transaction_id for r in responses] == [m[8:20] for m in (one, two, three)]
    assert Message.decode(error).get(Attr.ERROR_CODE)[0] == 400
    assert result.mapped[0] == "127.0.0.1"
    assert server.stats.dropped == 1


async def _receive(stream: trio.abc.Stream) -> bytes:
    return bytes(await stream.receive_some(65536))


class _Framer:
    """Reads whole STUN messages from a TCP stream (each framed by its header's length)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""

    async def message(self) -> bytes:
        while len(self.buffer) < 20 or len(self.buffer) < 20 + int.from_bytes(self.buffer[2:4], "big"):
            self.buffer += await _receive(self.stream)
        size = 20 + int.from_bytes(self.buffer[2:4], "big")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def test_answer_sans_io() -> None:
    request = _request((Attr.CHANGE_REQUEST, (True, True)))
    reply = answer(request.encode(fingerprint=True), ("192.0.2.7", 4000), ("127.0.0.1", 3478), other=(ALT, 3479))
    assert reply is not None and reply.change_ip and reply.change_port
    assert reply.destination == ("192.0.2.7", 4000)
    response = Message.decode(reply.data)
    assert response.verify_fingerprint()
    assert response.get(Attr.XOR_MAPPED_ADDRESS) == response.get(Attr.MAPPED_ADDRESS) == ("192.0.2.7", 4000)
    assert response.get(Attr.RESPONSE_ORIGIN) == (ALT, 3479)
    assert response.get(Attr.OTHER_ADDRESS) == (ALT, 3479)
    # bound to a wildcard: RESPONSE-ORIGIN would be a lie, so it is left out
    wild = answer(_request((Attr.PADDING, bytes(40))).encode(), ("192.0.2.7", 4000), ("0.0.0.0", 3478), software=None)
    assert wild is not None
    wild_response = Message.decode(wild.data)
    assert Attr.RESPONSE_ORIGIN not in wild_response and Attr.SOFTWARE not in wild_response
    # over TCP, CHANGE-REQUEST and RESPONSE-PORT cannot be honoured
    tcp = answer(_request((Attr.RESPONSE_PORT, 9)).encode(), ("192.0.2.7", 4000), ("127.0.0.1", 3478), transport="tcp")
    assert tcp is not None and not tcp.success
    assert answer(b"\x17\x03\x03", ("192.0.2.7", 4000), ("127.0.0.1", 3478)) is None


# ---- the client's rules ----


async def test_client_ignores_wrong_transaction_and_wrong_source() -> None:
    fake = await NET.bind_udp("127.0.0.1", 0)
    elsewhere = await NET.bind_udp(ALT, 0)
    client = await NET.bind_udp("127.0.0.1", 0)

    async def fake_server() -> None:
        data, remote = await fake.receive()
        request = Message.decode(data)
        wrong_tid = Message(
            Method.BINDING, MessageClass.SUCCESS, attributes=[(Attr.XOR_MAPPED_ADDRESS, ("127.0.0.1", 1111))]
        )
        right = request.success_response([(Attr.XOR_MAPPED_ADDRESS, ("127.0.0.1", 3333))])
        wrong_source = request.success_response([(Attr.XOR_MAPPED_ADDRESS, ("127.0.0.1", 2222))])
        await fake.send(wrong_tid.encode(fingerprint=True), remote)
        await elsewhere.send(wrong_source.encode(fingerprint=True), remote)
        await fake.send(b"not stun at all", remote)
        await fake.send(right.encode(fingerprint=True), remote)

    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fake_server)
                result = await stun_binding(client, fake.local_address)
    finally:
        for sock in (fake, elsewhere, client):
            sock.close()
    assert result.mapped == ("127.0.0.1", 3333)
    assert result.software is None


async def test_client_retransmits() -> None:
    fake = await NET.bind_udp("127.0.0.1", 0)

    async def deaf_twice() -> None:
        for _ in range(2):
            await fake.receive()  # the first two transmissions are "lost"
        data, remote = await fake.receive()
        await fake.send(Message.decode(data).success_response([(Attr.XOR_MAPPED_ADDRESS, remote)]).encode(), remote)

    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(deaf_twice)
                result = await stun_binding(NET, fake.local_address, rto=0.02)
    finally:
        fake.close()
    assert result.attempts == 3
    assert result.mapped[0] == "127.0.0.1"


async def test_client_timeout_on_loopback() -> None:
    black_hole = await NET.bind_udp("127.0.0.1", 0)
    try:
        with trio.fail_after(5), pytest.raises(StunTimeout) as info:
            await stun_binding(NET, black_hole.local_address, rto=0.01, rc=3, rm=2)
    finally:
        black_hole.close()
    port = black_hole.local_address[1]
    assert re.fullmatch(rf"no STUN response from 127\.0\.0\.1:{port} after 3 attempts over 0\.0\d* s", str(info.value))


class _SilentSocket:
    """A UdpSocket that records when it sends and never receives anything (for MockClock tests)."""

    def __init__(self) -> None:
        self.sent: list[float] = []

    @property
    def local_address(self) -> Address:
        return ("127.0.0.1", 50000)

    async def send(self, data: bytes, remote: Address) -> None:
        self.sent.append(trio.current_time())
        await trio.lowlevel.checkpoint()

    async def receive(self) -> tuple[bytes, Address]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    def close(self) -> None:
        pass


async def test_client_default_schedule(autojump_clock: trio.testing.MockClock) -> None:
    sock = _SilentSocket()
    start = trio.current_time()
    with pytest.raises(StunTimeout) as info:
        await stun_binding(sock, ("127.0.0.1", 3478))
    assert [t - start for t in sock.sent] == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # RFC 8489 6.2.1
    assert trio.current_time() - start == 39.5
    assert str(info.value) == "no STUN response from 127.0.0.1:3478 after 7 attempts over 39.5 s"


async def test_client_timeout_caps_the_schedule(autojump_clock: trio.testing.MockClock) -> None:
    sock = _SilentSocket()
    with pytest.raises(StunTimeout, match=r"after 3 attempts over 2 s"):
        await stun_binding(sock, ("::1", 3478), timeout=2.0)
    with pytest.raises(StunTimeout, match=r"from \[::1\]:3478 after 1 attempt over"):
        await stun_binding(sock, ("::1", 3478), timeout=0.1)


async def test_client_argument_errors() -> None:
    sock = _SilentSocket()
    with pytest.raises(ValueError, match="not an IP address"):
        await stun_binding(sock, ("stun.example.org", 3478))
    with pytest.raises(ValueError, match="needs a Network"):
        await stun_binding(sock, ("127.0.0.1", 3478), transport="tcp")
    with pytest.raises(ValueError, match="timeout must be > 0"):
        await stun_binding(sock, ("127.0.0.1", 3478), timeout=0)


async def test_client_tcp_refused() -> None:
    listener = await NET.listen_tcp("127.0.0.1", 0)
    port = listener.local_address[1]
    listener.close()  # nothing listens there now
    with (
        trio.fail_after(5),
        pytest.raises(OSError, match=rf"cannot connect to STUN server 127\.0\.0\.1:{port} over TCP"),
    ):
        await stun_binding(NET, ("127.0.0.1", port), transport="tcp")
