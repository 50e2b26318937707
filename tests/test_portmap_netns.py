"""Port mapping against miniupnpd on real Linux NATs (tests/portmap_lab.py; root only).

Both sites are `masquerade fully-random` (address-and-port-dependent mapping and filtering, RFC 4787) and
there is no STUN or TURN server: without a mapping asked of the gateway the agents cannot meet; with
`port_mapping=True` they connect directly through the mapped ports, by PCP (RFC 6887), NAT-PMP (RFC 6886)
or UPnP-IGD alone (the others filtered with nftables), and the mappings are gone after the agents close.
Real clock: every wait is bounded by `trio.fail_after` (in run_agents).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from netns import PRIVATE, open_worlds
from portmap_lab import WAN, PortMapWorld, require_tools
from test_netns_nat import Peer, run_agents

pytestmark = [pytest.mark.netns, pytest.mark.slow]

Build = Callable[..., PortMapWorld]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Build]:
    """`lab(port_mapping=True, block={"a": "pcp"})`: both sites symmetric, miniupnpd on both routers, `block`
    filtering protocols per router; every lab is removed after the test."""
    require_tools()

    with open_worlds(tmp_path, PortMapWorld) as build_world:

        def build(*, port_mapping: bool = True, block: dict[str, str] | None = None) -> PortMapWorld:
            world = build_world("symmetric", "symmetric")
            assert isinstance(world, PortMapWorld)
            world.port_mapping = port_mapping
            for side, what in (block or {}).items():
                world.block(side, what)
            return world

        yield build


def _mapped(peer: Peer) -> list[str]:
    """The srflx candidates the peer gathered (all of them come from port mapping here: no STUN server)."""
    return [e["sdp"] for e in peer.events if e["event"] == "candidate" and " typ srflx " in e["sdp"]]


def _portmap_stats(peer: Peer) -> dict[str, Any]:
    gathered = peer.event("gathered")
    assert gathered is not None, peer.events
    stats: dict[str, Any] = gathered["gatherers"]["portmap"]
    return stats


def _assert_direct(world: PortMapWorld, peers: dict[str, Peer]) -> None:
    """Data both ways over a pair whose ends are a mapped address (srflx) or the NAT mapping towards it (prflx)."""
    for side, other in (("a", "b"), ("b", "a")):
        peer = peers[side]
        assert peer.event("failed") is None, (peer.events, world.log(f"peer-{side}")[-3000:])
        received = peer.event("received")
        assert received is not None and received["data"] == f"hello from {other.upper()}", peer.events
        pair = received["pair"]
        assert pair["local"]["type"] in ("srflx", "prflx") and pair["local"]["address"] == WAN[side], pair
        assert pair["remote"]["address"] == WAN[other], pair


#: What miniupnpd logs when a protocol makes a mapping and when it deletes one (lifetime 0).
MINIUPNPD_SAYS = {
    "pcp": ("PCP MAP: added mapping UDP", "PCP: UDP port"),
    "natpmp": ("NAT-PMP port mapping request", "udp lifetime=0s"),
    "upnp": ("AddPortMapping: ext port", "DeletePortMapping: external port"),
}


def _assert_deleted(world: PortMapWorld, *, upnpc: bool = True) -> None:
    """No mapping left on either router after the agents closed (deleted with lifetime 0): miniupnpd's DNAT
    rules are gone and (`upnpc`, when UPnP is not filtered) `upnpc -l` lists none."""
    for side in world.sides:
        rules = world.upnp_rules(side)
        assert "dnat" not in rules, f"router {side} still forwards: {rules}"
        if upnpc:
            listing = world.upnpc_list(side)
            assert "ExternalIPAddress = " + WAN[side] in listing, listing
            assert f"{PRIVATE[side]}:" not in listing.split("leaseTime", 1)[-1], listing


async def test_without_port_mapping_symmetric_nats_cannot_connect(lab: Build) -> None:
    """The control: the same lab, gateways able to map, but the agents do not ask: IceFailed on both."""
    world = lab(port_mapping=False)
    peers = await run_agents(world, failed_timeout=3.0)
    for peer in peers.values():
        assert peer.event("failed") is not None, peer.events
        assert _mapped(peer) == []


async def test_port_mapping_connects_symmetric_nats_directly(lab: Build) -> None:
    """PCP and UPnP asked at once: a mapped srflx candidate per site on its router's WAN address, related to
    the host socket; the agents connect directly (no TURN); the mappings are deleted when they close."""
    world = lab()
    peers = await run_agents(world, until=("completed", "failed"))
    _assert_direct(world, peers)
    for side, peer in peers.items():
        mapped = _mapped(peer)
        assert mapped and all(f" {WAN[side]} " in sdp and f" raddr {PRIVATE[side]} " in sdp for sdp in mapped), mapped
        stats = _portmap_stats(peer)
        assert stats["state"] == "done" and stats["candidates"] >= 1, stats
    _assert_deleted(world)


@pytest.mark.parametrize("alone", ["pcp", "natpmp", "upnp"])
async def test_each_protocol_alone_connects(lab: Build, alone: str) -> None:
    """The other protocols filtered on both routers (PCP: version byte 2 on UDP 5351; NAT-PMP: version 0;
    UPnP: SSDP and its HTTP port): the one left makes the mapping, and it is deleted on close."""
    others = {"pcp": "natpmp+upnp", "natpmp": "pcp+upnp", "upnp": "pcp+natpmp"}[alone]
    world = lab(block={"a": others, "b": others})
    peers = await run_agents(world, until=("completed", "failed"))
    _assert_direct(world, peers)
    made, removed = MINIUPNPD_SAYS[alone]
    for side, peer in peers.items():
        assert len(_mapped(peer)) == 1, peer.events
        log = world.log(f"miniupnpd-{side}")
        assert made in log and removed in log, log[-3000:]
    _assert_deleted(world, upnpc=alone == "upnp")


async def test_a_gateway_that_answers_nothing_costs_at_most_the_timeout(lab: Build) -> None:
    """Every protocol filtered: gathering completes, the portmap gatherer having said done by itself (its
    timeout, 4 s, not the agent's gather_timeout of 10 s) with each protocol's silence in its errors."""
    world = lab(block={"a": "all", "b": "all"})
    peers = await run_agents(world, failed_timeout=30.0, until=("gathered",))
    for peer in peers.values():
        stats = _portmap_stats(peer)
        assert stats["state"] == "done" and stats["candidates"] == 0, stats
        assert not any("gather_timeout" in error for error in stats["errors"]), stats
        assert sorted(e.split(" on gateway")[0] for e in stats["errors"]) == ["PCP", "UPNP"], stats
        assert all("no answer" in error for error in stats["errors"]), stats
