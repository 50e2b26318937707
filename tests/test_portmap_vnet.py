"""Port mapping on the vnet (MockClock): the simulated routers answer PCP / NAT-PMP as a home router would
(iceagent_vnet/portmap.py), their forwards passing the NAT unfiltered.

Both NATs are address-and-port-dependent (RFC 4787 "symmetric") and there is no STUN or TURN server, so
the agents meet only through a mapping. Simulated time: timeouts and lease renewals are exact.
"""

from __future__ import annotations

import ipaddress
import sys
from contextlib import aclosing

import pytest
import trio
from agent_helpers import connect_both
from iceagent_vnet import vnet
from iceagent_vnet.scenario import Scenario

from iceagent import Agent, Candidate, GatheringState, IceFailed, IceServer, open_agent
from iceagent.gatherers.portmap import MAX_MAPPED_BASES, MAX_MOVES, PORT_MAPPING_TIMEOUT
from iceagent.ice.priority import candidate_priority
from iceagent.net.base import Address, NetworkWrapper, UdpSocket
from iceagent.stun.server import serve_stun

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

SYMMETRIC = "apdm-apdf"


async def _gathered(agent: Agent) -> list[Candidate]:
    """Every local candidate of the current generation, once gathering is complete."""
    return [c async for c in agent.gather()]


def _scenario(mode: str | None, nat: str = SYMMETRIC, **options: object) -> Scenario:
    scenario = vnet(nat, nat, rtt=0.04, seed=5, **options)  # type: ignore[arg-type]
    for router in (scenario.nat_a, scenario.nat_b):
        assert router is not None
        router.port_mapping = mode
    return scenario


async def _connect(scenario: Scenario, **options: object) -> tuple[str, str]:
    """Connect A and B with port_mapping=True; the selected pair's local and remote candidate types."""
    async with (
        open_agent(controlling=True, network=scenario.network_a, port_mapping=True, name="A", **options) as a,  # type: ignore[arg-type]
        open_agent(controlling=False, network=scenario.network_b, port_mapping=True, name="B", **options) as b,  # type: ignore[arg-type]
    ):
        stream_a, stream_b = await connect_both(a, b)
        await stream_a.send(b"through the mapped port")
        assert await stream_b.receive() == b"through the mapped port"
        pair = a.selected_pair
        assert pair is not None
        local = await _gathered(a)
        srflx = [c for c in local if c.type == "srflx"]
        assert len(srflx) == 1
        base = next(c for c in local if c.type == "host")
        assert srflx[0].address == scenario.nat_a.public_address  # type: ignore[union-attr]
        assert (srflx[0].related_address, srflx[0].related_port) == (base.address, base.port)
        assert srflx[0].priority == candidate_priority("srflx", 1, 65535)
        forwards = scenario.nat_a.forwards()  # type: ignore[union-attr]
        assert forwards == {(srflx[0].address, srflx[0].port): (base.address, base.port)}
        kinds = (pair.local.type, pair.remote.type)
    return kinds


@pytest.mark.parametrize("mode", ["pcp", "natpmp"])
async def test_symmetric_nats_connect_through_mapped_ports(mode: str, autojump_clock: object) -> None:
    """PCP (RFC 6887 MAP), or NAT-PMP after the router answered the PCP request with version 0's
    "Unsupported Version" (RFC 6887 9, RFC 6886 9): a srflx candidate on the router's public address,
    related to the host socket, top local preference; the agents connect directly; the mapping is deleted
    (lifetime 0) when they close."""
    scenario = _scenario(mode)
    with trio.fail_after(60):
        kinds = await _connect(scenario)
    assert "srflx" in kinds
    for router in (scenario.nat_a, scenario.nat_b):
        assert router is not None
        assert router.forwards() == {}
        requests = router.port_mapping_requests
        if mode == "pcp":
            assert requests == {"pcp-map": 1, "pcp-delete": 1}
        else:
            assert requests == {"unsupported-version": 1, "natpmp-address": 1, "natpmp-map": 1, "natpmp-delete": 1}


async def test_without_a_mapping_symmetric_nats_fail(autojump_clock: object) -> None:
    """The control: routers that answer nothing, the same agents: nothing to pair but private hosts."""
    scenario = _scenario(None)
    with trio.fail_after(120), pytest.raises(BaseExceptionGroup) as info:
        await _connect(scenario)
    assert info.group_contains(IceFailed, depth=None)


async def test_a_silent_gateway_costs_the_gathering_its_timeout(autojump_clock: object) -> None:
    """No answer to PCP, NAT-PMP or UPnP: gathering is COMPLETE PORT_MAPPING_TIMEOUT after it began (not at
    gather_timeout), and stats() name each protocol's silence."""
    scenario = _scenario(None)
    async with open_agent(controlling=True, network=scenario.network_a, port_mapping=True) as agent:
        start = trio.current_time()
        await agent.gathering_state.wait_value(GatheringState.COMPLETE)
        assert trio.current_time() - start == pytest.approx(PORT_MAPPING_TIMEOUT)
        stats = agent.stats()["gatherers"]["portmap"]
    assert stats["state"] == "done" and stats["candidates"] == 0
    assert sorted(e.split(" on gateway ")[0] for e in stats["errors"]) == ["PCP", "UPNP"], stats
    assert scenario.nat_a.drops["no_listener"] >= 3  # type: ignore[union-attr]  # PCP, NAT-PMP, SSDP went out


async def test_the_lease_is_renewed_at_half_its_lifetime(autojump_clock: object) -> None:
    """RFC 6887 11.2.1: the router grants 3600 s; the agent asks again at 1800 s, 2700 s... and the forward
    outlives the first lifetime."""
    scenario = _scenario("pcp")
    router = scenario.nat_a
    assert router is not None
    start = trio.current_time()
    async with open_agent(controlling=True, network=scenario.network_a, port_mapping=True):
        await trio.sleep(1799)
        assert router.port_mapping_requests == {"pcp-map": 1}
        await trio.sleep(2)
        assert router.port_mapping_requests == {"pcp-map": 2}
        await trio.sleep(start + 3600 * 3 + 10 - trio.current_time())
        assert router.port_mapping_requests == {"pcp-map": 7}  # at 1800, 3600, ... 10800 after the first grant
        assert len(router.forwards()) == 1
    assert router.forwards() == {}


class _Counting(NetworkWrapper):
    """Counts datagrams sent to port-mapping ports (5351, 1900) by any socket."""

    def __init__(self, inner: object) -> None:
        super().__init__(inner)  # type: ignore[arg-type]
        self.sent: list[Address] = []

    async def bind_udp(self, address: str, port: int = 0, *, reuse: bool = False) -> UdpSocket:
        sock = await super().bind_udp(address, port, reuse=reuse)
        outer = self
        send = sock.send

        async def counted(data: bytes, remote: Address) -> None:
            if remote[1] in (5351, 1900):
                outer.sent.append(remote)
            await send(data, remote)

        sock.send = counted  # type: ignore[method-assign]
        return sock


async def test_nothing_is_asked_under_the_relay_policy(autojump_clock: object) -> None:
    scenario = _scenario("pcp")
    network = _Counting(scenario.network_a)
    async with open_agent(
        network=network, port_mapping=True, ice_transport_policy="relay",
        ice_servers=[IceServer(urls=["turn:192.0.2.1:3478"], username="u", credential="p")],
    ) as agent:  # fmt: skip
        await agent.gathering_state.wait_value(GatheringState.COMPLETE)
        assert "portmap" not in agent.stats()["gatherers"]
    assert network.sent == []
    assert scenario.nat_a.port_mapping_requests == {}  # type: ignore[union-attr]


async def test_a_stun_srflx_equal_to_the_mapping_is_dropped(autojump_clock: object) -> None:
    """An endpoint-independent NAT hands STUN the forward's port too: one srflx candidate, not two."""
    scenario = _scenario("pcp", nat="eim-apdf")
    ip, port = scenario.stun_addresses[0]
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_stun, scenario.server_network, [f"{ip}:{port}"])
        async with open_agent(
            network=scenario.network_a, port_mapping=True, ice_servers=[IceServer(urls=[f"stun:{ip}:{port}"])]
        ) as agent:
            srflx = [c for c in await _gathered(agent) if c.type == "srflx"]
            gatherers = agent.stats()["gatherers"]
        nursery.cancel_scope.cancel()
    assert len(srflx) == 1, srflx
    assert gatherers["portmap"]["candidates"] + gatherers["srflx"]["candidates"] == 1
    assert ipaddress.ip_address(srflx[0].address) == ipaddress.ip_address(scenario.nat_a.public_address)  # type: ignore[union-attr]


async def test_a_lease_the_gateway_stops_renewing_is_reported_when_it_expires(autojump_clock: object) -> None:
    """RFC 6887 11.2.1: unanswered renewals are retried at half the remaining time (at least 1 s apart) until
    the lease expires; then stats() says the mapping expired, and the agent stops asking."""
    scenario = _scenario("pcp")
    router = scenario.nat_a
    assert router is not None
    async with open_agent(controlling=True, network=scenario.network_a, port_mapping=True) as agent:
        await agent.gathering_state.wait_value(GatheringState.COMPLETE)
        router.port_mapping = None  # the router stops answering (its forward stays until it expires)
        await trio.sleep(3600 + 60)
        asked = router.drops["no_listener"]
        await trio.sleep(3600)
        assert router.drops["no_listener"] == asked  # no more requests after the expiry
        errors = agent.stats()["gatherers"]["portmap"]["errors"]
    assert any("PCP on gateway 192.168.1.1: the mapping expired" in e for e in errors), errors
    assert asked < 64  # a bounded number of tries: halving from 1800 s down to 1 s apart


async def test_at_most_eight_host_sockets_are_mapped(autojump_clock: object) -> None:
    """Bounded work per gathering: a host with 12 addresses on the gateway's LAN gets 8 mappings, and the
    gatherer says why the others have none."""
    scenario = _scenario("pcp")
    router = scenario.nat_a
    assert router is not None
    scenario.host_a.attach(scenario.lan_a, *(f"192.168.1.{i}" for i in range(100, 111)))
    async with open_agent(controlling=True, network=scenario.network_a, port_mapping=True) as agent:
        await agent.gathering_state.wait_value(GatheringState.COMPLETE)
        host = [c for c in await _gathered(agent) if c.type == "host"]
        stats = agent.stats()["gatherers"]["portmap"]
    assert len(host) == 12
    assert router.port_mapping_requests["pcp-map"] == MAX_MAPPED_BASES == stats["candidates"]
    assert f"more than {MAX_MAPPED_BASES} host sockets: the others are not mapped" in stats["errors"]


class _DeafToGateway(NetworkWrapper):
    """Every answer from a port-mapping server port (5351) is lost on the way in."""

    async def bind_udp(self, address: str, port: int = 0, *, reuse: bool = False) -> UdpSocket:
        sock = await super().bind_udp(address, port, reuse=reuse)
        receive = sock.receive

        async def deaf() -> tuple[bytes, Address]:
            while True:
                data, source = await receive()
                if source[1] != 5351:
                    return data, source

        sock.receive = deaf  # type: ignore[method-assign]
        return sock


async def test_a_mapping_whose_answer_never_arrived_is_deleted(autojump_clock: object) -> None:
    """The gateway makes the mapping but every answer is lost: when the gatherer gives up on it (after its
    timeout) it sends a lifetime-0 request for the mapping it never heard of (RFC 6887 15) instead of
    leaving the forward open for its whole lifetime."""
    scenario = _scenario("pcp")
    router = scenario.nat_a
    assert router is not None
    network = _DeafToGateway(scenario.network_a)
    async with open_agent(controlling=True, network=network, port_mapping=True) as agent:
        await agent.gathering_state.wait_value(GatheringState.COMPLETE)
        assert agent.stats()["gatherers"]["portmap"]["candidates"] == 0
        await trio.sleep(0.1)  # the delete crosses the LAN (simulated time)
        assert router.port_mapping_requests["pcp-map"] == 1  # a mapping was made...
        assert router.port_mapping_requests["pcp-delete"] == 1  # ...and deleted, the agent still open
        assert router.forwards() == {}


async def test_with_mdns_the_mapping_hides_its_base(autojump_clock: object) -> None:
    """mdns=True hides the host address, so a port-mapped srflx says raddr 0.0.0.0 rport 9 as a STUN srflx
    does (draft-ietf-mmusic-mdns-ice-candidates 3.1.1), not the private base address (both are built by
    gatherers/srflx.py `emit_reflexive`)."""
    scenario = _scenario("pcp")
    async with open_agent(controlling=True, network=scenario.network_a, port_mapping=True, mdns=True) as agent:
        await agent.gathering_state.wait_value(GatheringState.COMPLETE)
        local = await _gathered(agent)
    srflx = [c for c in local if c.type == "srflx"]
    assert len(srflx) == 1 and srflx[0].address == scenario.nat_a.public_address  # type: ignore[union-attr]
    assert (srflx[0].related_address, srflx[0].related_port) == ("0.0.0.0", 9)
    assert not any("192.168." in c.to_sdp() for c in local)


async def test_a_renewal_on_a_new_public_address_is_offered_as_a_new_candidate(autojump_clock: object) -> None:
    """RFC 6887 11.2.1: the router comes back from a reboot with another public IP; the renewal at half the
    lifetime maps the socket there, and the agent offers that mapping through new_candidates() (to trickle)."""
    scenario = _scenario("pcp")
    router = scenario.nat_a
    assert router is not None
    async with open_agent(controlling=True, network=scenario.network_a, port_mapping=True) as agent:
        first = [c for c in await _gathered(agent) if c.type == "srflx"]
        assert [c.address for c in first] == [router.public_address]
        router.reboot(new_public_address="203.0.113.99")
        late: list[Candidate] = []
        with trio.move_on_after(3600):
            async with aclosing(agent.new_candidates()) as candidates:
                async for candidate in candidates:
                    late.append(candidate)
                    break
        assert [(c.type, c.address) for c in late] == [("srflx", "203.0.113.99")]
        assert (late[0].related_address, late[0].related_port) == (first[0].related_address, first[0].related_port)
        assert late[0].foundation == first[0].foundation  # same base, same gateway and protocol (RFC 8445 5.1.1.3)
        errors = agent.stats()["gatherers"]["portmap"]["errors"]
        assert not [e for e in errors if e.startswith("PCP")], errors  # renewed, not expired


async def test_a_mapping_that_keeps_moving_adds_at_most_max_moves_candidates(autojump_clock: object) -> None:
    """Bounded state per gateway: the router comes back on a new public IP before each of 6 renewals; the
    first MAX_MOVES new addresses are offered, the rest only reported in stats()."""
    scenario = _scenario("pcp")
    router = scenario.nat_a
    assert router is not None
    async with open_agent(controlling=True, network=scenario.network_a, port_mapping=True) as agent:
        await _gathered(agent)
        late: list[Candidate] = []

        async def follow() -> None:
            async with aclosing(agent.new_candidates()) as candidates:
                async for candidate in candidates:
                    late.append(candidate)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            for i in range(MAX_MOVES + 2):
                router.reboot(new_public_address=f"203.0.113.{100 + i}")
                await trio.sleep(1800)  # past the next renewal (at half of the 3600 s the router grants)
            nursery.cancel_scope.cancel()
        errors = agent.stats()["gatherers"]["portmap"]["errors"]
    assert [c.address for c in late] == [f"203.0.113.{100 + i}" for i in range(MAX_MOVES)]
    assert any(f"moved more than {MAX_MOVES} times" in e for e in errors), errors
