"""Server-reflexive candidates through a mux (iceagent/net/_mux_stun.py): one Binding transaction per (mux
address, STUN server) shared by every agent on the mux, cached, refreshed while used, stopped when unused.
Counted at the server: the embedded STUN server's answers, or a server that never answers."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
from iceagent_vnet import Host, Internet, Lan, Link, Router
from iceagent_vnet.packet import Packet

from iceagent import Agent, Candidate, IceConfig, IceServer, open_agent
from iceagent.errors import StunTimeout
from iceagent.net.base import Address, Network
from iceagent.net.mux import Mux, MuxLimits, open_mux
from iceagent.stun import Attr, Message, MessageClass, Method
from iceagent.stun.server import StunServer, open_stun_server, serve_stun

STUN = "198.51.100.20"
PUBLIC = "203.0.113.5"
ATTACKER = "198.51.100.66"
FAST = IceConfig(global_pacing=False)
N = 50


class Net:
    """A mux host behind a full-cone NAT (PUBLIC), a STUN server and an attacker on the internet."""

    def __init__(self) -> None:
        self.internet = Internet(link=Link(latency=0.01, seed=3))
        self.stun = Host("stun", self.internet, STUN)
        self.attacker = Host("attacker", self.internet, ATTACKER)
        lan = Lan("10.1.0.0/24")
        Router(self.internet, lan, nat="full-cone", public=PUBLIC)
        self.server = Host("server", lan)

    def spoof(self, source: Address, destination: Address, payload: bytes) -> None:
        """A datagram with a forged source address (no ingress filtering on the internet)."""
        attachment = self.attacker.attachment_of(ATTACKER)
        assert attachment is not None
        attachment.segment.transmit(Packet("udp", source, destination, payload), attachment)


def servers(address: Address) -> list[IceServer]:
    return [IceServer(urls=[f"stun:{address[0]}:{address[1]}"])]


async def black_hole(network: Network, address: Address, seen: list[bytes], got: trio.Event | None = None, *,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A STUN "server" that receives and never answers; records every datagram (and sets `got`)."""
    sock = await network.bind_udp(*address)
    try:
        task_status.started()
        while True:
            data, _ = await sock.receive()
            seen.append(data)
            if got is not None:
                got.set()
    finally:
        sock.close()


@asynccontextmanager
async def agents(mux: Mux, network: Network | None, n: int, ice: list[IceServer],
                 **options: object) -> AsyncIterator[list[Agent]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(
            open_agent(controlling=False, mux=mux, network=network, ice_servers=ice, config=FAST, name=f"S{i}",
                       **options))  # type: ignore[arg-type]
            for i in range(n)]


async def gather_all(group: list[Agent]) -> list[list[Candidate]]:
    out: list[list[Candidate]] = [[] for _ in group]

    async def one(i: int, agent: Agent) -> None:
        out[i] = [c async for c in agent.gather()]

    async with trio.open_nursery() as nursery:
        for i, agent in enumerate(group):
            nursery.start_soon(one, i, agent)
    return out


def srflx_errors(agent: Agent) -> list[str]:
    return list(agent.stats()["gatherers"]["srflx"]["errors"])


async def test_fifty_agents_behind_a_nat_share_one_binding_transaction(autojump_clock: object) -> None:
    """50 agents on one mux gather srflx: the STUN server answers exactly one Binding request and every
    agent's srflx candidate is the NAT's one mapping of the mux's port (RFC 8445 5.1.1.2)."""
    net = Net()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            stun: StunServer = await nursery.start(serve_stun, net.stun.network, [f"{STUN}:3478"])
            async with open_mux([net.server.address], 5000, network=net.server.network) as mux, \
                    agents(mux, net.server.network, N, servers((STUN, 3478))) as group:
                gathered = await gather_all(group)
                assert stun.stats.requests == 1
                srflx = {(c.address, c.port, c.related_address, c.related_port)
                         for cands in gathered for c in cands if c.type == "srflx"}
                assert len(srflx) == 1 and all(len(cands) == 2 for cands in gathered)
                ((address, port, raddr, rport),) = srflx
                assert (address, raddr, rport) == (PUBLIC, net.server.address, 5000)
                assert mux.stun_stats()["mappings"] == {((net.server.address, 5000), (STUN, 3478)): (PUBLIC, port)}
                assert all(srflx_errors(a) == [] for a in group)
                # one more agent later: from the cache, still no new request
                async with agents(mux, net.server.network, 1, servers((STUN, 3478))) as (late,):
                    cands = [c async for c in late.gather()]
                    assert [(c.type, c.address, c.port) for c in cands][1] == ("srflx", PUBLIC, port)
                assert stun.stats.requests == 1 and mux.stun_stats()["transactions"] == 1
                assert mux.stun_stats()["cached"] >= 1
            nursery.cancel_scope.cancel()


async def test_concurrent_askers_share_the_transaction_in_flight(autojump_clock: object) -> None:
    """50 endpoints ask at the same moment: one transaction in flight, all get its answer, none from the cache."""
    net = Net()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            stun: StunServer = await nursery.start(serve_stun, net.stun.network, [f"{STUN}:3478"])
            async with open_mux([net.server.address], 5000, network=net.server.network) as mux:
                local = mux.local_addresses[0]
                endpoints = [mux.register(f"e{i}") for i in range(N)]
                answers: list[Address] = []

                async def ask(i: int) -> None:
                    answers.append(await endpoints[i].reflexive(local, (STUN, 3478)))

                async with trio.open_nursery() as asking:
                    for i in range(N):
                        asking.start_soon(ask, i)
                    await trio.testing.wait_all_tasks_blocked()
                    assert mux.stun_stats()["in_flight"] == 1
                assert len(answers) == N and len(set(answers)) == 1 and answers[0][0] == PUBLIC
                assert stun.stats.requests == 1
                assert mux.stun_stats() | {"mappings": None} == {
                    "bindings": 1, "in_flight": 0, "transactions": 1, "cached": 0, "mappings": None}
                for endpoint in endpoints:
                    endpoint.close()
                assert mux.stun_stats()["bindings"] == 0
            nursery.cancel_scope.cancel()


async def test_a_server_that_never_answers_fails_every_waiter_once(autojump_clock: object) -> None:
    """No answer: one transaction (Rc = 7 transmissions, RFC 8489 6.2.1) for all 50 agents, each reports one
    StunTimeout, every gathering ends, and the binding is gone (nobody holds a mapping to keep alive)."""
    net = Net()
    seen: list[bytes] = []
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            await nursery.start(black_hole, net.stun.network, (STUN, 3478), seen)
            async with open_mux([net.server.address], 5000, network=net.server.network) as mux, \
                    agents(mux, net.server.network, N, servers((STUN, 3478))) as group:
                gathered = await gather_all(group)  # COMPLETE at gather_timeout; the transaction goes on
                assert [[c.type for c in cands] for cands in gathered] == [["host"]] * N
                await trio.sleep(40)  # RFC 8489 6.2.1: 39.5 s at RTO 500 ms
                assert len(seen) == FAST.rc and len({d[8:20] for d in seen}) == 1
                for agent in group:
                    (error,) = [e for e in srflx_errors(agent) if "gather_timeout" not in e]
                    assert error.startswith(f"no STUN response from {STUN}:3478")
                assert mux.stun_stats()["bindings"] == 0 and mux.stun_stats()["in_flight"] == 0
                await trio.sleep(120)
                assert len(seen) == FAST.rc  # nothing retried behind the agents' backs
            nursery.cancel_scope.cancel()


async def test_refreshed_while_used_and_stopped_when_the_last_agent_closes(autojump_clock: object) -> None:
    """The mux re-sends a Binding request every stun_refresh seconds while an agent holds the mapping (RFC
    8489 3, RFC 8445 11), and stops when the last one closes."""
    net = Net()
    limits = MuxLimits(stun_refresh=15.0)
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            stun: StunServer = await nursery.start(serve_stun, net.stun.network, [f"{STUN}:3478"])
            async with open_mux([net.server.address], 5000, network=net.server.network, limits=limits) as mux:
                async with agents(mux, net.server.network, 1, servers((STUN, 3478))) as (first,):
                    async with agents(mux, net.server.network, 2, servers((STUN, 3478))) as others:
                        await gather_all([first, *others])
                        assert stun.stats.requests == 1
                        await trio.sleep(16)
                        assert stun.stats.requests == 2
                    assert mux.stun_stats()["bindings"] == 1  # `first` still uses it
                    await trio.sleep(15)
                    assert stun.stats.requests == 3
                assert mux.stun_stats()["bindings"] == 0
                await trio.sleep(100)
                assert stun.stats.requests == 3
            nursery.cancel_scope.cancel()


async def test_a_mapping_that_changes_is_followed_by_the_next_refresh(autojump_clock: object) -> None:
    """A refresh whose answer differs replaces the cached mapping: a later agent gets the new one."""
    net = Net()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_stun, net.stun.network, [f"{STUN}:3478"])
            async with open_mux([net.server.address], 5000, network=net.server.network) as mux:
                local = mux.local_addresses[0]
                with mux.register("holder") as holder:
                    before = await holder.reflexive(local, (STUN, 3478))
                    (binding,) = mux._stun._bindings.values()
                    binding.mapped = (PUBLIC, 1)  # as if the NAT had given another port since
                    with mux.register("cached") as cached:
                        assert await cached.reflexive(local, (STUN, 3478)) == (PUBLIC, 1)
                    await trio.sleep(MuxLimits().stun_refresh + 1)
                    with mux.register("late") as late:
                        assert await late.reflexive(local, (STUN, 3478)) == before
            nursery.cancel_scope.cancel()


async def test_answers_from_elsewhere_are_not_taken(autojump_clock: object) -> None:
    """A response with the right transaction id from another address, or a garbled one, is dropped
    (RFC 8489 6.3.1); the transaction still ends by timeout and the waiter learns it."""
    net = Net()
    direct = Host("direct", net.internet, "198.51.100.30")  # no NAT: the forged answers reach the mux
    seen: list[bytes] = []
    got = trio.Event()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(black_hole, net.stun.network, (STUN, 3478), seen, got)
            async with open_mux([direct.address], 5000, network=direct.network) as mux:
                local = mux.local_addresses[0]
                with mux.register("e") as endpoint:
                    async with trio.open_nursery() as asking:
                        failed: list[Exception] = []

                        async def ask() -> None:
                            try:
                                await endpoint.reflexive(local, (STUN, 3478))
                            except StunTimeout as exc:
                                failed.append(exc)

                        asking.start_soon(ask)
                        await got.wait()
                        tid = seen[0][8:20]
                        forged = Message(Method.BINDING, MessageClass.SUCCESS, transaction_id=tid,
                                         attributes=[(Attr.XOR_MAPPED_ADDRESS, ("192.0.2.99", 9))]).encode()
                        net.spoof((ATTACKER, 3478), local, forged)
                        empty = Message(Method.BINDING, MessageClass.SUCCESS, transaction_id=tid).encode()
                        net.spoof((STUN, 3478), local, empty)  # a success without an address
                        await trio.sleep(1)
                        assert mux.stats()["dropped"].get("stun_stray") == 2
                    (exc,) = failed
                    assert "no STUN response" in str(exc)
            nursery.cancel_scope.cancel()


async def test_bounds_and_closed_errors(autojump_clock: object) -> None:
    net = Net()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_stun, net.stun.network, [f"{STUN}:3478", f"{STUN}:3479"])
            async with open_mux([net.server.address], 5000, network=net.server.network,
                                limits=MuxLimits(max_stun_bindings=1)) as mux:
                local = mux.local_addresses[0]
                with mux.register("e") as endpoint:
                    await endpoint.reflexive(local, (STUN, 3478))
                    with pytest.raises(Exception, match="max_stun_bindings"):
                        await endpoint.reflexive(local, (STUN, 3479))
                    with pytest.raises(ValueError, match="no UDP address"):
                        await endpoint.reflexive(("10.9.9.9", 1), (STUN, 3478))
                with pytest.raises(trio.ClosedResourceError):
                    await endpoint.reflexive(local, (STUN, 3478))
            nursery.cancel_scope.cancel()


async def test_fifty_agents_on_loopback_one_request_at_the_embedded_server() -> None:
    """Real sockets: 50 agents on one 127.0.0.1 mux with the embedded STUN server: one Binding request at
    the server, the mapping is the mux's own address (no NAT: no srflx candidate, RFC 8445 5.1.3), no error."""
    with trio.fail_after(30):
        async with open_stun_server(_os_network(), ["127.0.0.1:0"]) as stun, \
                open_mux(["127.0.0.1"], 0) as mux, \
                agents(mux, None, N, servers(stun.address), host_addresses=["127.0.0.1"]) as group:
            gathered = await gather_all(group)
            assert stun.stats.requests == 1
            assert [[c.type for c in cands] for cands in gathered] == [["host"]] * N
            assert all(srflx_errors(a) == [] for a in group)
            assert mux.stun_stats()["mappings"] == {(mux.local_addresses[0], stun.address): mux.local_addresses[0]}
        assert mux.stun_stats()["bindings"] == 0


def _os_network() -> Network:
    from iceagent.net.os import OSNetwork
    return OSNetwork()


async def answer_first_only(network: Network, address: Address, times: list[tuple[float, bytes]], *,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A STUN server that answers the first Binding request only; records (time, transaction id) of each."""
    sock = await network.bind_udp(*address)
    try:
        task_status.started()
        while True:
            data, remote = await sock.receive()
            request = Message.decode(data)
            times.append((trio.current_time(), request.transaction_id))
            if len(times) == 1:
                answer = Message(Method.BINDING, MessageClass.SUCCESS, transaction_id=request.transaction_id,
                                 attributes=[(Attr.XOR_MAPPED_ADDRESS, remote)])
                await sock.send(answer.encode(fingerprint=True), remote)
    finally:
        sock.close()


async def test_a_refresh_starts_from_the_refresh_rto_not_the_gathering_one(autojump_clock: object) -> None:
    """RFC 8445 14.3's larger RTO is for gathering: the binding's first transaction starts from `rto`, its
    refreshes (keepalives of a cached mapping) from `refresh_rto` (the agent's IceConfig.rto)."""
    net = Net()
    times: list[tuple[float, bytes]] = []
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(answer_first_only, net.stun.network, (STUN, 3478), times)
            async with open_mux([net.server.address], 5000, network=net.server.network) as mux:
                local = mux.local_addresses[0]
                with mux.register("holder") as holder:
                    await holder.reflexive(local, (STUN, 3478), rto=0.6, refresh_rto=0.5)
                    await trio.sleep(MuxLimits().stun_refresh + 10)  # the refresh goes unanswered
            nursery.cancel_scope.cancel()
    refresh = [t for t, tid in times[1:] if tid == times[1][1]]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(refresh)]
    assert gaps[:3] == [0.5, 1.0, 2.0], gaps
