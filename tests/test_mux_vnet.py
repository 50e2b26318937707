"""open_mux on the vnet plugin's network (simulated time): two agents on one mux port whose peers sit behind
one NAT address, answers through a network without synchronous sends, and what a virtual wildcard lacks."""

from __future__ import annotations

import pytest
import trio
from iceagent_vnet import Host, Internet, Lan, Link, Router

from iceagent.net.mux import open_mux
from iceagent.stun import Attr, Message, MessageClass, Method

SERVER = "198.51.100.10"
PUBLIC = "203.0.113.5"


def check(username: str, tid: bytes) -> bytes:
    msg = Message(Method.BINDING, MessageClass.REQUEST, transaction_id=tid, attributes=[(Attr.USERNAME, username)])
    return msg.encode(integrity_key=b"test-password-0123456789", fingerprint=True)


def success(tid: bytes, mapped: tuple[str, int]) -> bytes:
    return Message(Method.BINDING, MessageClass.SUCCESS, transaction_id=tid,
                   attributes=[(Attr.XOR_MAPPED_ADDRESS, mapped)]).encode(fingerprint=True)


async def test_two_agents_on_one_port_with_peers_behind_one_nat_address(autojump_clock: object) -> None:
    internet = Internet(link=Link(latency=0.01, seed=1))
    server = Host("server", internet, SERVER)
    lan = Lan("10.0.0.0/24")
    Router(internet, lan, nat="port-restricted", public=PUBLIC)
    peers = [await Host(f"peer{i}", lan).network.bind_udp("0.0.0.0", 5000) for i in range(2)]
    async with open_mux([SERVER], 3478, network=server.network) as mux:
        assert mux.local_addresses == [(SERVER, 3478)]
        with mux.register("a") as a, mux.register("b") as b:
            agents = [a.transports[0], b.transports[0]]
            a.add_ufrag("ufA")
            b.add_ufrag("ufB")
            # each peer checks its own agent; both arrive from the NAT's public address
            await peers[0].send(check("ufA:p0", b"\x10" * 12), (SERVER, 3478))
            await peers[1].send(check("ufB:p1", b"\x11" * 12), (SERVER, 3478))
            sources = []
            for i, t in enumerate(agents):
                data, source = await t.receive()
                assert source[0] == PUBLIC
                assert Message.decode(data).transaction_id == bytes([0x10 + i]) * 12
                sources.append(source)
                t.confirm(source)  # the agent verified MESSAGE-INTEGRITY (here: trusted test input)
                t.send_nowait(success(bytes([0x10 + i]) * 12, source), source)  # through the mux's outbox
            assert sources[0] != sources[1]
            for i, sock in enumerate(peers):
                data, _ = await sock.receive()
                assert Message.decode(data).transaction_id == bytes([0x10 + i]) * 12
            # each agent's own check to its peer: the response comes back by transaction id
            for i, t in enumerate(agents):
                assert t.try_send(check(f"p{i}:uf", bytes([0x20 + i]) * 12), sources[i])
            for sock in peers:
                data, source = await sock.receive()
                await sock.send(success(Message.decode(data).transaction_id, source), source)
            for i, t in enumerate(agents):
                data, _ = await t.receive()
                assert Message.decode(data).transaction_id == bytes([0x20 + i]) * 12
            # data by the bound addresses
            for i, sock in enumerate(peers):
                await sock.send(b"data from peer %d" % i, (SERVER, 3478))
            for i, t in enumerate(agents):
                assert await t.receive() == (b"data from peer %d" % i, sources[i])
            assert mux.stats() == {"agents": 2, "routed": 6, "dropped": {}}
    for sock in peers:
        sock.close()


async def test_data_from_an_unbound_address_is_dropped_on_vnet(autojump_clock: object) -> None:
    lan = Lan("10.0.0.0/24")
    server, other = Host("server", lan), Host("other", lan)
    sock = await other.network.bind_udp(other.address, 0)
    async with open_mux([server.address], 0, network=server.network) as mux:
        with mux.register("a") as a:
            a.add_ufrag("ufA")
            await sock.send(b"hello", mux.local_addresses[0])
            await sock.send(check("ufA:x", b"\x01" * 12), mux.local_addresses[0])
            data, _ = await a.transports[0].receive()
            assert Message.decode(data).message_class is MessageClass.REQUEST
            assert mux.stats()["dropped"] == {"unbound_address": 1}
    sock.close()


async def test_a_virtual_wildcard_is_not_implemented(autojump_clock: object) -> None:
    host = Host("server", Lan("10.0.0.0/24"))
    with pytest.raises(NotImplementedError, match="IP_PKTINFO"):
        async with open_mux(["0.0.0.0"], 0, network=host.network):
            pass
    await trio.lowlevel.checkpoint()
