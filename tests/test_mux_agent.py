"""Agents on a mux (`open_agent(mux=...)`, DESIGN.md "open_mux"): server agents sharing one port on the vnet
(simulated time) and on 127.0.0.1, isolation between them, restarts, srflx through the mux, aioice interop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
from agent_helpers import connect_both, signal
from iceagent_vnet import Host, Internet, Lan, Link, Router
from iceagent_vnet.packet import Packet

from iceagent import Agent, Candidate, IceConfig, IceServer, IceState, IceStream, open_agent
from iceagent.agent._runner import SessionRunner
from iceagent.net.mux import Mux, open_mux
from iceagent.stun import Attr, Message, MessageClass, Method
from iceagent.stun.server import serve_stun

SERVER = "198.51.100.10"
PUBLIC = "203.0.113.5"
ATTACKER = "198.51.100.66"
FAST = IceConfig(global_pacing=False)


class Net:
    """A server host on the internet with a mux on SERVER:3478, and peers behind one NAT address."""

    def __init__(self, peers: int = 2, *, nat: bool = True) -> None:
        self.internet = Internet(link=Link(latency=0.01, seed=1))
        self.server = Host("server", self.internet, SERVER)
        self.attacker = Host("attacker", self.internet, ATTACKER)
        lan = Lan("10.0.0.0/24")
        Router(self.internet, lan, nat="port-restricted", public=PUBLIC)
        self.peers = [Host(f"peer{i}", lan) if nat else Host(f"peer{i}", self.internet, f"198.51.100.{30 + i}")
                      for i in range(peers)]

    def spoof(self, source: tuple[str, int], payload: bytes) -> None:
        """The attacker sends a datagram with a forged source address (no ingress filtering on the internet)."""
        attachment = self.attacker.attachment_of(ATTACKER)
        assert attachment is not None
        attachment.segment.transmit(Packet("udp", source, (SERVER, 3478), payload), attachment)


@asynccontextmanager
async def pairs(net: Net, mux: Mux, n: int) -> AsyncIterator[list[tuple[Agent, Agent, IceStream, IceStream]]]:
    """n server agents on the mux (controlled) connected to n peers (controlling), one per peer host."""
    async with AsyncExitStack() as stack:
        out = []
        for i in range(n):
            server = await stack.enter_async_context(
                open_agent(controlling=False, mux=mux, network=net.server.network, name=f"S{i}", config=FAST))
            peer = await stack.enter_async_context(
                open_agent(controlling=True, network=net.peers[i].network, name=f"P{i}", config=FAST))
            s, p = await connect_both(server, peer)
            out.append((server, peer, s, p))
        yield out


def bound(mux: Mux, agent: Agent, remote: tuple[str, int]) -> bool:
    """Whether `remote` is bound to `agent` on the mux (its data goes to that agent)."""
    assert agent._mux is not None
    return mux._routes.bound_owner((SERVER, 3478), remote) is agent._mux.endpoint


def remote_of(agent: Agent) -> tuple[str, int]:
    pair = agent.selected_pair
    assert pair is not None
    return pair.remote_address


def check(ufrag: str, integrity: bytes | None) -> bytes:
    msg = Message(Method.BINDING, MessageClass.REQUEST,
                  attributes=[(Attr.USERNAME, f"{ufrag}:evil"), (Attr.PRIORITY, 1), (Attr.ICE_CONTROLLING, 1)])
    return msg.encode(integrity_key=integrity, fingerprint=True)


async def test_two_mux_agents_serve_two_peers_behind_one_nat_address(autojump_clock: object) -> None:
    net = Net()
    with trio.fail_after(60):
        async with open_mux([SERVER], 3478, network=net.server.network) as mux, pairs(net, mux, 2) as agents:
            (s0, _, a0, b0), (s1, _, a1, b1) = agents
            # both servers' host candidate is the mux's port; both peers come from the NAT's one address
            for server in (s0, s1):
                pair = server.selected_pair
                assert pair is not None and (pair.base.address, pair.base.port) == (SERVER, 3478)
            r0, r1 = remote_of(s0), remote_of(s1)
            assert r0[0] == r1[0] == PUBLIC and r0 != r1
            assert bound(mux, s0, r0) and bound(mux, s1, r1)
            for i, (a, b) in enumerate(((a0, b0), (a1, b1))):
                await b.send(b"to server %d" % i)
                await a.send(b"to peer %d" % i)
            assert [await a0.receive(), await a1.receive()] == [b"to server 0", b"to server 1"]
            assert [await b0.receive(), await b1.receive()] == [b"to peer 0", b"to peer 1"]
            assert mux.stats()["agents"] == 2
            assert mux.table_sizes()["ufrags"] == 2


async def test_spoofed_checks_without_credentials_bind_nothing(autojump_clock: object) -> None:
    """An attacker forges the source address bound to S0 and sends checks with S1's ufrag without (or with
    wrong) MESSAGE-INTEGRITY, then data from its own address: S1 answers no success and confirms nothing,
    so the address stays S0's and its data keeps going to S0; the attacker's own data reaches no agent."""
    net = Net()
    with trio.fail_after(60):
        async with open_mux([SERVER], 3478, network=net.server.network) as mux, pairs(net, mux, 2) as agents:
            (s0, _, a0, b0), (s1, _, a1, b1) = agents
            r0 = remote_of(s0)
            ufrag1 = s1.local_parameters.ufrag
            before = mux.table_sizes()["bindings"]
            net.spoof(r0, check(ufrag1, None))
            net.spoof(r0, check(ufrag1, b"not-the-password-0123456"))
            attacker = await net.attacker.network.bind_udp(ATTACKER, 4000)
            try:
                await attacker.send(check(s0.local_parameters.ufrag, b"not-the-password-0123456"), (SERVER, 3478))
                await attacker.send(b"attacker data", (SERVER, 3478))
                await trio.sleep(1)
                assert bound(mux, s0, r0)
                assert mux.table_sizes()["bindings"] == before
                assert mux._routes.bound_owner((SERVER, 3478), (ATTACKER, 4000)) is None
                assert mux.stats()["dropped"].get("unbound_address") == 1
                with trio.move_on_after(1):
                    while True:  # at most an error (RFC 8489 9.1.3: 400 or 401), never a success
                        data, _ = await attacker.receive()
                        assert Message.decode(data).message_class is MessageClass.ERROR
            finally:
                attacker.close()
            await b0.send(b"still S0's")
            await b1.send(b"still S1's")
            assert await a0.receive() == b"still S0's"
            assert await a1.receive() == b"still S1's"  # nothing of the attacker's came first
            assert s1.stats()["state"] == s0.stats()["state"] == "completed"


async def test_restart_keeps_both_generations_routable_until_the_old_closes(autojump_clock: object) -> None:
    # the peer on the internet, and data server -> peer after the restart: the agent loses the other
    # direction after a restart on the vnet, with or without a mux (reported to the lead)
    net = Net(peers=1, nat=False)
    with trio.fail_after(60):
        async with open_mux([SERVER], 3478, network=net.server.network) as mux, pairs(net, mux, 1) as agents:
            ((server, peer, a, b),) = agents
            assert server._mux is not None
            endpoint = server._mux.endpoint
            old = server.local_parameters.ufrag
            await server.restart()
            new = server.local_parameters.ufrag
            assert endpoint.stats()["ufrags"] == 2
            # the old generation still carries data (RFC 8445 12.1) while the new one checks
            await b.send(b"during")  # to the mux: split to the old generation, which knows the source
            assert await a.receive() == b"during"
            await a.send(b"during, back")
            assert await b.receive() == b"during, back"
            await signal(server, peer)
            await signal(peer, server)
            while not (server.generation.value == 1 and server.state.value is IceState.COMPLETED
                       and len(server._runners) == 1):
                await a.send(b"ping")  # a round over the virtual link: time moves on, data keeps flowing
                assert await b.receive() == b"ping"
            assert endpoint.stats()["ufrags"] == 1
            assert set(mux._routes._ufrags) == {new.encode()}
            # a check for the old ufrag now reaches no agent
            dropped = mux.stats()["dropped"].get("unknown_ufrag", 0)
            net.spoof((PUBLIC, 1), check(old, None))
            await trio.sleep(1)
            assert mux.stats()["dropped"]["unknown_ufrag"] == dropped + 1
            await a.send(b"after")
            assert await b.receive() == b"after"


async def test_agent_exit_unbinds_it_at_once(autojump_clock: object) -> None:
    net = Net()
    with trio.fail_after(60):
        async with open_mux([SERVER], 3478, network=net.server.network) as mux:
            async with pairs(net, mux, 1) as first:
                ((_, _, a0, b0),) = first
                async with pairs(net, mux, 2) as both:
                    (s1, _, _, _) = both[1]
                    r1 = remote_of(s1)
                    assert bound(mux, s1, r1)
                    size = s1._mux.endpoint.stats() if s1._mux else {}
                    assert size["ufrags"] == 1 and size["bindings"] >= 1
                    sizes = mux.table_sizes()
                # the second batch's agents closed: their ufrags and bindings are gone, the first's stay
                assert mux.stats()["agents"] == 1
                assert mux._routes.bound_owner((SERVER, 3478), r1) is None
                assert mux.table_sizes()["ufrags"] == sizes["ufrags"] - 2
                await b0.send(b"S0 unaffected")
                assert await a0.receive() == b"S0 unaffected"
            assert mux.table_sizes() == {"agents": 0, "ufrags": 0, "transactions": 0, "bindings": 0,
                                         "tcp_connections": 0}


async def test_a_bug_in_one_agent_ends_that_agent_only(autojump_clock: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """S1's datagram processing raises: S1's `async with` ends with the error; the mux and S0 go on."""
    net = Net()
    with trio.fail_after(60):
        async with open_mux([SERVER], 3478, network=net.server.network) as mux, pairs(net, mux, 1) as first:
            ((_, _, a0, b0),) = first
            with pytest.raises(RuntimeError, match="agent bug"):  # as itself, out of the agent's nursery
                async with pairs(net, mux, 2) as both:
                    (s1, _, _, b1) = both[1]
                    runner = s1._runners[-1]
                    works = SessionRunner._on_datagrams

                    def broken(self: SessionRunner, *args: Any) -> None:
                        if self is runner:
                            raise RuntimeError("agent bug")
                        works(self, *args)

                    monkeypatch.setattr(SessionRunner, "_on_datagrams", broken)
                    await b1.send(b"boom")
                    await trio.sleep_forever()
            assert mux.stats()["agents"] == 1
            await b0.send(b"S0 lives")
            assert await a0.receive() == b"S0 lives"
            assert not mux.closed


async def test_srflx_through_the_mux(autojump_clock: object) -> None:
    """A mux behind a NAT: the agent's STUN request leaves through the mux's socket and its response comes
    back by transaction id, so the srflx candidate is the NAT's mapping of the mux's port (RFC 8445 5.1.1.2)."""
    internet = Internet(link=Link(latency=0.01, seed=2))
    stun = Host("stun", internet, "198.51.100.20")
    lan = Lan("10.1.0.0/24")
    Router(internet, lan, nat="full-cone", public=PUBLIC)
    server = Host("server", lan)
    servers = [IceServer(urls=["stun:198.51.100.20:3478"])]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_stun, stun.network, ["198.51.100.20:3478"])
            async with open_mux([server.address], 5000, network=server.network) as mux:
                async with open_agent(controlling=False, mux=mux, network=server.network, ice_servers=servers,
                                      config=FAST) as agent:
                    cands = [c async for c in agent.gather()]
                    assert [(c.type, c.address, c.port) for c in cands] == [
                        ("host", server.address, 5000), ("srflx", PUBLIC, cands[1].port)]
                    assert (cands[1].related_address, cands[1].related_port) == (server.address, 5000)
                    assert agent.stats()["gatherers"]["srflx"]["errors"] == []
            nursery.cancel_scope.cancel()


async def test_host_addresses_and_filters_narrow_the_mux_addresses(autojump_clock: object) -> None:
    lan = Lan("10.2.0.0/24")
    host = Host("server", lan)
    with trio.fail_after(60):
        async with open_mux([host.address], 0, network=host.network) as mux:
            async with open_agent(controlling=False, mux=mux, network=host.network, config=FAST,
                                  ip_filter=lambda ip: False) as agent:
                assert [c async for c in agent.gather()] == []
            async with open_agent(controlling=False, mux=mux, network=host.network, config=FAST,
                                  host_addresses=["10.2.0.99"]) as agent:
                assert [c async for c in agent.gather()] == []
                (error,) = agent.stats()["gatherers"]["host"]["errors"]
                assert "the mux serves no 10.2.0.99" in error


async def test_wildcard_mux_hides_loopback_unless_asked() -> None:
    with trio.fail_after(10):
        async with open_mux(["0.0.0.0"], 0) as mux:
            assert ("127.0.0.1", mux.local_addresses[0][1]) in mux.local_addresses
            # only loopback allowed: nothing advertised from the wildcard by default ...
            async with open_agent(controlling=False, mux=mux, config=FAST,
                                  ip_filter=lambda ip: ip.is_loopback) as agent:
                assert [c async for c in agent.gather()] == []
            # ... but host_addresses may ask for it
            async with open_agent(controlling=False, mux=mux, config=FAST, host_addresses=["127.0.0.1"]) as agent:
                assert [(c.address, c.port) for c in [c async for c in agent.gather()]] == [
                    ("127.0.0.1", mux.local_addresses[0][1])]


async def test_mux_agents_on_loopback_os_sockets() -> None:
    """Real sockets: two server agents on one 127.0.0.1 port, clients with their own sockets; one mux socket."""
    with trio.fail_after(20):
        async with open_mux(["127.0.0.1"], 0) as mux:
            async with AsyncExitStack() as stack:
                streams = []
                for _ in range(2):
                    server = await stack.enter_async_context(
                        open_agent(controlling=False, mux=mux, host_addresses=["127.0.0.1"], config=FAST))
                    client = await stack.enter_async_context(
                        open_agent(controlling=True, host_addresses=["127.0.0.1"], config=FAST))
                    streams.append(await connect_both(server, client))
                    (cand,) = [c async for c in server.gather()]
                    assert (cand.address, cand.port) == mux.local_addresses[0]
                for i, (_, c) in enumerate(streams):
                    await c.send(b"%d" % i)
                for i, (s, _) in enumerate(streams):
                    assert await s.receive() == b"%d" % i
            assert mux.table_sizes()["agents"] == 0


async def test_mux_agents_with_ice_tcp_on_loopback() -> None:
    """tcp=True on a mux opened with tcp=True: the passive candidate is the mux's listener; a client whose
    UDP candidates are withheld connects over it (RFC 6544)."""
    with trio.fail_after(20):
        async with open_mux(["127.0.0.1"], 0, tcp=True) as mux:
            async with (
                open_agent(controlling=False, mux=mux, tcp=True, host_addresses=["127.0.0.1"], config=FAST) as s,
                open_agent(controlling=True, tcp=True, host_addresses=["127.0.0.1"], config=FAST) as c,
            ):
                mine = sorted([cand async for cand in s.gather()], key=lambda x: x.transport, reverse=True)
                assert [(x.transport, x.tcptype, (x.address, x.port)) for x in mine] == [
                    ("udp", None, mux.local_addresses[0]), ("tcp", "passive", mux.tcp_addresses[0])]
                c.set_remote_parameters(s.local_parameters)
                c.add_remote_candidate(Candidate.from_sdp(mine[1].to_sdp()))
                c.add_remote_candidate(None)
                s.set_remote_parameters(c.local_parameters)
                async for cand in c.gather():
                    if cand.transport == "tcp":
                        s.add_remote_candidate(Candidate.from_sdp(cand.to_sdp()))
                s.add_remote_candidate(None)
                cs = await c.connect()
                ss = await s.connect()
                await cs.send(b"over tcp")
                assert await ss.receive() == b"over tcp"
                pair = s.selected_pair
                assert pair is not None and pair.local.transport == "tcp"
                assert mux.table_sizes()["tcp_connections"] >= 1


async def test_two_generations_split_the_endpoints_traffic() -> None:
    """During a restart the agent's endpoint serves two generations: checks by ufrag, responses to the
    generation whose request it was, data by the generation that confirmed its source (else the oldest)."""
    from iceagent.net.mux import AgentMux

    async def next_for(view: Any) -> tuple[bytes, tuple[str, int]]:
        with trio.fail_after(5):
            return await view.receive()

    with trio.fail_after(10):
        async with open_mux(["127.0.0.1"], 0) as mux:
            agent = AgentMux(mux, "A")
            peers = [trio.socket.socket(type=trio.socket.SOCK_DGRAM) for _ in range(2)]
            try:
                for p in peers:
                    await p.bind(("127.0.0.1", 0))
                here = [p.getsockname() for p in peers]
                port = mux.local_addresses[0]
                old = agent.open_generation("ufOld")
                (v_old,) = old.transports
                v_old.confirm(here[0])  # before the restart: the old generation's peer
                new = agent.open_generation("ufNew")
                (v_new,) = new.transports
                assert agent.endpoint.stats()["ufrags"] == 2
                await peers[1].sendto(check("ufNew", None), port)
                await peers[0].sendto(check("ufOld", None), port)
                assert Message.decode((await next_for(v_new))[0]).get(Attr.USERNAME) == "ufNew:evil"
                assert Message.decode((await next_for(v_old))[0]).get(Attr.USERNAME) == "ufOld:evil"
                # each generation's request: the response comes back to it
                for view, tid, peer in ((v_new, b"\x01" * 12, here[1]), (v_old, b"\x02" * 12, here[0])):
                    request = Message(Method.BINDING, MessageClass.REQUEST, transaction_id=tid).encode()
                    await view.send(request, peer)
                for i, p in enumerate(peers):
                    data, _ = await p.recvfrom(2048)
                    tid = Message.decode(data).transaction_id
                    await p.sendto(Message(Method.BINDING, MessageClass.SUCCESS, transaction_id=tid).encode(), port)
                    view = v_new if tid == b"\x01" * 12 else v_old
                    assert Message.decode((await next_for(view))[0]).transaction_id == tid, i
                # data: the old generation's source goes to it; a source the new one confirmed to the new one
                v_new.confirm(here[1])
                await peers[0].sendto(b"to old", port)
                await peers[1].sendto(b"to new", port)
                assert await next_for(v_old) == (b"to old", here[0])
                assert await next_for(v_new) == (b"to new", here[1])
                old.close()  # the old generation closed: its ufrag is no longer routed, the new one gets all
                assert agent.endpoint.stats()["ufrags"] == 1
                await peers[0].sendto(b"now new", port)  # still bound to the agent's endpoint
                assert await next_for(v_new) == (b"now new", here[0])
            finally:
                agent.close()
                for p in peers:
                    p.close()


async def test_lite_agent_on_a_mux() -> None:
    """An ICE-lite server (RFC 8445 2.5) on the mux's port: the full client checks and nominates; the lite
    agent's answers confirm the client's address, so its data reaches the lite agent."""
    with trio.fail_after(10):
        async with open_mux(["127.0.0.1"], 0) as mux:
            async with (
                open_agent(controlling=False, lite=True, mux=mux, config=FAST) as server,
                open_agent(controlling=True, host_addresses=["127.0.0.1"], config=FAST) as client,
            ):
                s, c = await connect_both(server, client)
                await c.send(b"to the lite server")
                assert await s.receive() == b"to the lite server"
                await s.send(b"back")
                assert await c.receive() == b"back"
                assert server.state.value is IceState.COMPLETED
                assert mux.stats()["dropped"] == {}
