"""open_mux on real loopback sockets: routing, isolation, bounds, closing, wildcard binds (IP_PKTINFO)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence

import pytest
import trio
import trio.testing
from ipv6 import needs_ipv6
from leakcheck import open_fds

import iceagent
from iceagent.ice.tcp_framing import encode_frame
from iceagent.net import Interface, OSNetwork
from iceagent.net.mux import Mux, MuxEndpoint, MuxLimits, open_mux
from iceagent.stun import Attr, Message, MessageClass, Method

LOOP = "127.0.0.1"
TIMEOUT = 10


def check(username: str, tid: bytes = b"\x01" * 12, integrity: bool = True) -> bytes:
    """A Binding request with USERNAME (MESSAGE-INTEGRITY under a test password unless `integrity=False`)."""
    msg = Message(Method.BINDING, MessageClass.REQUEST, transaction_id=tid, attributes=[(Attr.USERNAME, username)])
    return msg.encode(integrity_key=b"test-password-0123456789" if integrity else None, fingerprint=True)


class Peer:
    """A plain UDP socket on loopback playing the remote agent (or the attacker)."""

    def __init__(self) -> None:
        self.sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def bind(self) -> Peer:
        await self.sock.bind((LOOP, 0))
        return self

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return host, port

    async def send(self, data: bytes, to: tuple[str, int]) -> None:
        await self.sock.sendto(data, to)

    async def receive(self) -> tuple[bytes, tuple[str, int]]:
        data, addr = await self.sock.recvfrom(65536)
        return data, (addr[0], addr[1])

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = await Peer().bind()
    yield p
    p.close()


async def marker(mux: Mux, peer: Peer, ep: MuxEndpoint) -> None:
    """Send a check for `ep` after what `peer` sent before and wait for it: once it is routed, the mux has
    routed everything `peer` sent earlier (one socket, in order on loopback)."""
    ep.add_ufrag("marker")
    await peer.send(check("marker:x"), mux.local_addresses[0])
    data, _ = await ep.transports[0].receive()
    assert Message.decode(data).get(Attr.USERNAME) == "marker:x"
    ep.remove_ufrag("marker")


async def test_checks_route_by_ufrag_two_agents_on_one_port(peer: Peer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0) as mux:
            assert [a[0] for a in mux.local_addresses] == [LOOP]
            with mux.register("a") as a, mux.register("b") as b:
                a.add_ufrag("ufA")
                b.add_ufrag("ufB")
                port = mux.local_addresses[0]
                await peer.send(check("ufB:p", b"\x02" * 12), port)
                await peer.send(check("ufA:p", b"\x03" * 12), port)
                data, source = await a.transports[0].receive()
                assert Message.decode(data).transaction_id == b"\x03" * 12 and source == peer.address
                data, source = await b.transports[0].receive()
                assert Message.decode(data).transaction_id == b"\x02" * 12
                assert a.transports[0].pending() == b.transports[0].pending() == 0
                assert mux.stats() == {"agents": 2, "routed": 2, "dropped": {}}


async def test_responses_route_by_transaction_id(peer: Peer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0) as mux:
            with mux.register("a") as a, mux.register("b") as b:
                tid = b"\x07" * 12
                await a.transports[0].send(check("remote:ufA", tid), peer.address)  # a's check
                assert a.stats()["transactions"] == 1
                _, source = await peer.receive()
                assert source == mux.local_addresses[0]
                reply = Message(Method.BINDING, MessageClass.SUCCESS, transaction_id=tid,
                                attributes=[(Attr.XOR_MAPPED_ADDRESS, source)]).encode(fingerprint=True)
                await peer.send(reply, source)
                await peer.send(reply, source)  # a duplicate: already answered
                data, _ = await a.transports[0].receive()
                assert Message.decode(data).message_class is MessageClass.SUCCESS
                await marker(mux, peer, b)
                assert a.transports[0].pending() == 0
                assert mux.stats()["dropped"] == {"unknown_transaction": 1}
                assert a.stats()["transactions"] == 0


async def test_data_needs_a_confirmed_address_and_the_latest_confirm_wins(peer: Peer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0) as mux:
            with mux.register("a") as a, mux.register("b") as b, mux.register("sync") as sync:
                port = mux.local_addresses[0]
                await peer.send(b"early data", port)
                await marker(mux, peer, sync)
                assert mux.stats()["dropped"] == {"unbound_address": 1}
                a.transports[0].confirm(peer.address)
                await peer.send(b"for a", port)
                assert await a.transports[0].receive() == (b"for a", peer.address)
                b.transports[0].confirm(peer.address)  # e.g. the peer's NAT mapping now serves b's peer
                await peer.send(b"for b", port)
                assert await b.transports[0].receive() == (b"for b", peer.address)
                await marker(mux, peer, sync)
                assert a.transports[0].pending() == 0


async def test_unauthenticated_stun_from_a_bound_address_cannot_steal_it(peer: Peer) -> None:
    """An attacker at (or spoofing) a's bound address sends checks without MESSAGE-INTEGRITY, with b's ufrag
    and with an unknown one, and responses nobody asked for: the binding stays a's, data still goes to a."""
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0) as mux:
            with mux.register("a") as a, mux.register("b") as b, mux.register("sync") as sync:
                b.add_ufrag("ufB")
                a.transports[0].confirm(peer.address)
                port = mux.local_addresses[0]
                await peer.send(check("ufB:evil", integrity=False), port)  # goes to b, which rejects it
                await peer.send(check("nobody:evil", integrity=False), port)
                await peer.send(Message(Method.BINDING, MessageClass.SUCCESS, transaction_id=b"\x09" * 12)
                                .encode(fingerprint=True), port)
                await peer.send(b"data", port)
                assert await a.transports[0].receive() == (b"data", peer.address)
                await marker(mux, peer, sync)
                assert b.transports[0].pending() == 1  # only the check with b's ufrag
                assert mux.stats()["dropped"] == {"unknown_ufrag": 1, "unknown_transaction": 1}


async def test_inbox_is_bounded_and_overflow_counted(peer: Peer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0, limits=MuxLimits(inbox_datagrams=4)) as mux:
            with mux.register("a") as a, mux.register("sync") as sync:
                a.transports[0].confirm(peer.address)
                for i in range(10):
                    await peer.send(b"d%d" % i, mux.local_addresses[0])
                await marker(mux, peer, sync)
                got = await a.transports[0].receive_batch(64)
                assert [d for d, _ in got] == [b"d0", b"d1", b"d2", b"d3"]
                assert mux.stats()["dropped"] == {"inbox_full": 6}


async def test_endpoint_close_unbinds_at_once(peer: Peer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0) as mux:
            with mux.register("sync") as sync:
                a = mux.register("a")
                a.add_ufrag("ufA")
                a.transports[0].confirm(peer.address)
                await a.transports[0].send(check("x:ufA", b"\x05" * 12), peer.address)
                assert a.stats() == {"ufrags": 1, "transactions": 1, "bindings": 1, "tcp_connections": 0}
                a.transports[0].close()  # closing a transport closes the whole endpoint
                assert a.closed and mux.stats()["agents"] == 1
                assert mux.table_sizes() == {"agents": 1, "ufrags": 0, "transactions": 0, "bindings": 0,
                                             "tcp_connections": 0}
                with pytest.raises(trio.ClosedResourceError):
                    await a.transports[0].receive()
                with pytest.raises(trio.ClosedResourceError):
                    await a.transports[0].send(b"x", peer.address)
                port = mux.local_addresses[0]
                await peer.send(b"data", port)
                await peer.send(check("ufA:p"), port)
                await marker(mux, peer, sync)
                assert mux.stats()["dropped"] == {"unbound_address": 1, "unknown_ufrag": 1}
                with mux.register("a2") as a2:
                    a2.add_ufrag("ufA")  # free again at once


async def test_close_wakes_a_waiting_receiver() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0) as mux:
            a = mux.register("a")
            async with trio.open_nursery() as nursery:
                result: list[str] = []

                async def wait() -> None:
                    with pytest.raises(trio.ClosedResourceError):
                        await a.transports[0].receive_batch()
                    result.append("closed")

                nursery.start_soon(wait)
                await trio.testing.wait_all_tasks_blocked()
                a.close()
            assert result == ["closed"]


async def test_a_failing_agent_does_not_end_the_mux_or_other_agents(peer: Peer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0) as mux:
            b = mux.register("b")
            b.add_ufrag("ufB")
            with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="a bug in agent a")):
                async with trio.open_nursery() as nursery:
                    with mux.register("a") as a:
                        a.add_ufrag("ufA")

                        async def buggy_agent() -> None:
                            await a.transports[0].receive()
                            raise RuntimeError("a bug in agent a")

                        nursery.start_soon(buggy_agent)
                        await peer.send(check("ufA:p"), mux.local_addresses[0])
                        await trio.sleep_forever()
            assert a.closed and mux.stats()["agents"] == 1  # the failing agent left the mux
            with pytest.raises(trio.ClosedResourceError):
                a.add_ufrag("again")
            await peer.send(check("ufB:p"), mux.local_addresses[0])
            data, _ = await b.transports[0].receive()  # the mux still routes
            assert Message.decode(data).get(Attr.USERNAME) == "ufB:p"


async def test_no_descriptor_or_task_left_after_the_mux_closes(peer: Peer) -> None:
    before = open_fds()
    nurseries = list(trio.lowlevel.current_task().child_nurseries)
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP, "127.0.0.2"], 0) as mux:
            assert len(open_fds()) == len(before) + 2
            ep = mux.register("left open")
            ep.add_ufrag("u")
        assert ep.closed
        with pytest.raises(trio.ClosedResourceError):
            await ep.transports[1].receive()
        with pytest.raises(trio.ClosedResourceError):
            mux.register("late")
    assert open_fds() == before
    assert trio.lowlevel.current_task().child_nurseries == nurseries


async def test_socket_buffers_are_enlarged() -> None:
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    default = plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    plain.close()
    async with open_mux([LOOP], 0) as mux:
        raw = mux._ports[0].sock.raw  # type: ignore[attr-defined]
        assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) > default


async def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="list of addresses"):
        async with open_mux(LOOP, 0):
            pass
    with pytest.raises(ValueError, match="out of range"):
        async with open_mux([LOOP], 70000):
            pass
    assert iceagent.open_mux is open_mux and iceagent.Mux is Mux


class TwoLoopbacks(OSNetwork):
    """The OS network, but its interface list names 127.0.0.1 and 127.0.0.2 (both on lo in Linux)."""

    def interfaces(self) -> Sequence[Interface]:
        return [Interface("lo", ("127.0.0.1", "127.0.0.2", "::1"), loopback=True)]


async def test_wildcard_learns_the_destination_and_answers_from_it(peer: Peer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux(["0.0.0.0"], 0, network=TwoLoopbacks()) as mux:
            port = mux.local_addresses[0][1]
            assert mux.local_addresses == [("127.0.0.1", port), ("127.0.0.2", port)]
            with mux.register("a") as a:
                a.add_ufrag("ufA")
                await peer.send(check("ufA:p"), ("127.0.0.2", port))
                _, source = await a.transport(("127.0.0.2", port)).receive()
                assert source == peer.address
                assert a.transport(("127.0.0.1", port)).pending() == 0
                await a.transport(("127.0.0.2", port)).send(b"reply", source)
                assert await peer.receive() == (b"reply", ("127.0.0.2", port))  # from the address it came to
                assert a.transport(("127.0.0.1", port)).try_send(b"other", source)
                assert await peer.receive() == (b"other", ("127.0.0.1", port))
                a.transports[1].confirm(peer.address)
                await peer.send(b"not ours", ("127.0.0.3", port))  # an address the mux does not serve
                await peer.send(b"ours", ("127.0.0.2", port))
                assert await a.transports[1].receive() == (b"ours", peer.address)
                assert mux.stats()["dropped"] == {"unknown_local": 1}


@needs_ipv6
async def test_ipv6_wildcard_learns_the_destination() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux(["::"], 0, network=TwoLoopbacks()) as mux:
            port = mux.local_addresses[0][1]
            assert mux.local_addresses == [("::1", port)]
            peer = trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            await peer.bind(("::1", 0))
            with peer, mux.register("a") as a:
                a.add_ufrag("ufA")
                await peer.sendto(check("ufA:p"), ("::1", port))
                _, source = await a.transports[0].receive()
                assert source == peer.getsockname()[:2]
                await a.transports[0].send(b"reply", source)
                data, addr = await peer.recvfrom(100)
                assert (data, addr[:2]) == (b"reply", ("::1", port))


async def test_wildcard_tcp_knows_the_local_address_of_each_connection() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux(["0.0.0.0"], 0, tcp=True, network=TwoLoopbacks()) as mux:
            port = mux.local_addresses[0][1]
            assert mux.tcp_addresses == mux.local_addresses
            with mux.register("a") as a:
                a.add_ufrag("ufA")
                stream = await trio.open_tcp_stream("127.0.0.2", port)
                async with stream:
                    await stream.send_all(encode_frame(check("ufA:p")))
                    _, remote = await a.tcp_transport(("127.0.0.2", port)).receive()
                    assert remote == stream.socket.getsockname()[:2]
                    assert a.tcp_transport(("127.0.0.1", port)).connections == []
