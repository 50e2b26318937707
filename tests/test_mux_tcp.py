"""The mux's ICE-TCP passive listeners (RFC 6544, RFC 4571 framing) on loopback and on the vnet: connections
claimed by the ufrag of their first check, closed on garbage, timeouts and endpoint close, bounded."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from iceagent_vnet import Host, Lan

from iceagent.ice.tcp_framing import Deframer, encode_frame
from iceagent.net.mux import Mux, MuxEndpoint, MuxLimits, MuxTcpTransport, open_mux
from iceagent.stun import Attr, Message, MessageClass, Method

LOOP = "127.0.0.1"
TIMEOUT = 10


def check(username: str, tid: bytes = b"\x01" * 12) -> bytes:
    msg = Message(Method.BINDING, MessageClass.REQUEST, transaction_id=tid, attributes=[(Attr.USERNAME, username)])
    return msg.encode(integrity_key=b"test-password-0123456789", fingerprint=True)


async def read_frame(stream: trio.abc.Stream, deframer: Deframer) -> bytes | None:
    """The next RFC 4571 frame, or None at the end of the stream."""
    while True:
        frame = deframer.next_frame()
        if frame is not None:
            return frame
        data = await stream.receive_some(65536)
        if not data:
            return None
        deframer.feed(data)


async def connect(mux: Mux, first: bytes | None = None) -> tuple[trio.SocketStream, tuple[str, int]]:
    stream = await trio.open_tcp_stream(*mux.tcp_addresses[0])
    if first is not None:
        await stream.send_all(encode_frame(first))
    host, port = stream.socket.getsockname()[:2]
    return stream, (host, port)


async def assert_closed_by_mux(stream: trio.SocketStream) -> None:
    try:
        assert await stream.receive_some(65536) == b""
    except trio.BrokenResourceError:
        pass  # reset rather than closed: closed either way
    await stream.aclose()


async def test_connections_are_claimed_by_the_ufrag_of_their_first_check() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0, tcp=True) as mux:
            assert mux.tcp_addresses == mux.local_addresses  # same address and port as UDP (RFC 6544 4.5)
            with mux.register("a") as a, mux.register("b") as b:
                a.add_ufrag("ufA")
                b.add_ufrag("ufB")
                sa, ra = await connect(mux, check("ufA:p", b"\x0a" * 12))
                sb, rb = await connect(mux, check("ufB:p", b"\x0b" * 12))
                ta, tb = a.tcp_transports[0], b.tcp_transports[0]
                data, source = await ta.receive()
                assert Message.decode(data).transaction_id == b"\x0a" * 12 and source == ra
                data, source = await tb.receive()
                assert Message.decode(data).transaction_id == b"\x0b" * 12 and source == rb
                assert ta.connections == [ra] and tb.connections == [rb]
                ta.confirm(ra)
                await ta.send(b"answer for a", ra)
                assert tb.try_send(b"answer for b", rb)
                assert await read_frame(sa, Deframer()) == b"answer for a"
                assert await read_frame(sb, Deframer()) == b"answer for b"
                await sa.send_all(encode_frame(b"data after the check"))
                assert await ta.receive() == (b"data after the check", ra)
                assert a.stats()["tcp_connections"] == 1
                await sa.aclose()
                await sb.aclose()


@pytest.mark.parametrize(("first", "reason"), [
    (b"GET / HTTP/1.1\r\n\r\n", "tcp_not_a_check"),
    (check("nobody:p"), "tcp_unknown_ufrag"),
    (Message(Method.BINDING, MessageClass.REQUEST, transaction_id=bytes(12)).encode(), "tcp_no_username"),
    (b"\x10\x00" + bytes(100), "tcp_framing"),  # a first frame of 4096 bytes: over FIRST_FRAME_MAX
])
async def test_a_connection_that_does_not_start_with_a_known_check_is_closed(first: bytes, reason: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0, tcp=True) as mux:
            with mux.register("a") as a:
                a.add_ufrag("ufA")
                stream, _ = await connect(mux)
                await stream.send_all(first if reason == "tcp_framing" else encode_frame(first))
                await assert_closed_by_mux(stream)
                assert a.tcp_transports[0].pending() == 0
        assert mux.stats()["dropped"] == {reason: 1}


async def test_data_before_a_confirmed_check_closes_the_connection() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0, tcp=True) as mux:
            with mux.register("a") as a:
                a.add_ufrag("ufA")
                stream, _ = await connect(mux, check("ufA:p"))
                await a.tcp_transports[0].receive()
                await stream.send_all(encode_frame(b"data, but nobody confirmed the check"))
                await assert_closed_by_mux(stream)
                assert a.tcp_transports[0].pending() == 0
        assert mux.stats()["dropped"] == {"tcp_data_before_check": 1}


async def test_unclaimed_connections_are_bounded_oldest_goes() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0, tcp=True, limits=MuxLimits(tcp_max_unclaimed=2)) as mux:
            with mux.register("a") as a:
                a.add_ufrag("ufA")
                first, _ = await connect(mux)
                second, _ = await connect(mux)
                third, remote = await connect(mux, check("ufA:p"))  # accepted: the oldest made room
                await assert_closed_by_mux(first)
                assert (await a.tcp_transports[0].receive())[1] == remote
                assert mux.stats()["dropped"] == {"tcp_evicted": 1}
                assert mux.table_sizes()["tcp_connections"] == 2
                await second.aclose()
                await third.aclose()


async def test_endpoint_close_closes_its_connections_and_watch_reports_peer_closes() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0, tcp=True) as mux:
            a = mux.register("a")
            a.add_ufrag("ufA")
            closed: list[tuple[str, int]] = []
            reported = trio.Event()

            def on_closed(remote: tuple[str, int]) -> None:
                closed.append(remote)
                reported.set()

            transport = a.tcp_transports[0]
            transport.watch(on_closed)
            s1, r1 = await connect(mux, check("ufA:p", b"\x01" * 12))
            s2, r2 = await connect(mux, check("ufA:p", b"\x02" * 12))
            await transport.receive()
            await transport.receive()
            transport.confirm(r1)
            transport.confirm(r2)
            await s1.aclose()  # the peer closes: reported
            await reported.wait()
            assert closed == [r1] and transport.connections == [r2]
            a.close()  # closes r2's connection at once, not reported
            await assert_closed_by_mux(s2)
            assert closed == [r1]
            with pytest.raises(trio.ClosedResourceError):
                await transport.send(b"x", r2)


async def test_a_raising_watch_callback_closes_its_endpoint_not_the_mux() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0, tcp=True) as mux:
            a, b = mux.register("a"), mux.register("b")
            a.add_ufrag("ufA")
            b.add_ufrag("ufB")

            def buggy(remote: tuple[str, int]) -> None:
                raise RuntimeError("a bug in agent a")

            a.tcp_transports[0].watch(buggy)
            stream, _ = await connect(mux, check("ufA:p"))
            await a.tcp_transports[0].receive()
            await stream.aclose()
            with pytest.raises(trio.ClosedResourceError):  # the endpoint closes: its receiver wakes
                await a.tcp_transports[0].receive()
            assert a.closed and mux.stats()["agents"] == 1
            other, remote = await connect(mux, check("ufB:p"))
            assert (await b.tcp_transports[0].receive())[1] == remote  # the mux still serves b
            await other.aclose()


async def test_unconfirmed_connections_time_out(autojump_clock: object) -> None:
    lan = Lan("10.0.0.0/24")
    server, client = Host("server", lan), Host("client", lan)
    limits = MuxLimits(tcp_check_timeout=5.0)
    async with open_mux([server.address], 3478, tcp=True, network=server.network, limits=limits) as mux:
        with mux.register("a") as a:
            a.add_ufrag("ufA")
            silent, _ = await client.network.connect_tcp(mux.tcp_addresses[0])
            claimed, local = await client.network.connect_tcp(mux.tcp_addresses[0])
            await claimed.send_all(encode_frame(check("ufA:p")))
            transport: MuxTcpTransport = a.tcp_transports[0]
            assert await transport.receive() == (check("ufA:p"), local)
            assert await silent.receive_some(100) == b""  # closed by the mux
            assert await claimed.receive_some(100) == b""  # its check was never confirmed
            await trio.testing.wait_all_tasks_blocked()
            assert transport.connections == []
            assert mux.stats()["dropped"] == {"tcp_timeout": 2}
            await silent.aclose()
            await claimed.aclose()


async def test_endpoint_stats_before_tcp(autojump_clock: object) -> None:
    lan = Lan("10.0.0.0/24")
    server = Host("server", lan)
    async with open_mux([server.address], 0, network=server.network) as mux:
        endpoint: MuxEndpoint = mux.register("a")
        assert endpoint.tcp_transports == [] and mux.tcp_addresses == []
        endpoint.close()
