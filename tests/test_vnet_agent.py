"""Smoke test of the seam: two iceagent agents and the embedded STUN server on a vnet scenario."""

from __future__ import annotations

import sys

import pytest
import trio
from agent_helpers import connect_both
from iceagent_vnet import vnet

from iceagent import IceFailed, IceServer, open_agent
from iceagent.stun.server import serve_stun

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


async def run_pair(nat_a: str, nat_b: str, **options: object) -> str:
    scenario = vnet(nat_a, nat_b, rtt=0.05, seed=3, **options)  # type: ignore[arg-type]
    ip, port = scenario.stun_addresses[0]
    servers = [IceServer(urls=[f"stun:{ip}:{port}"])]
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_stun, scenario.server_network, [f"{ip}:{port}"])
        async with (
            open_agent(controlling=True, network=scenario.network_a, ice_servers=servers, name="A") as a,
            open_agent(controlling=False, network=scenario.network_b, ice_servers=servers, name="B") as b,
        ):
            stream_a, stream_b = await connect_both(a, b)
            await stream_a.send(b"over the virtual internet")
            assert await stream_b.receive() == b"over the virtual internet"
            pair = a.selected_pair
            assert pair is not None
            kinds = f"{pair.local.type}/{pair.remote.type}"
        nursery.cancel_scope.cancel()
    return kinds


@pytest.mark.parametrize(
    ("nat_a", "nat_b", "kinds"),
    [("none", "none", "host/host"), ("full-cone", "eim-apdf", "srflx/srflx"), ("eim-apdf", "eim-apdf", "srflx/srflx")],
)
async def test_agents_connect_through_cone_nats(nat_a: str, nat_b: str, kinds: str, autojump_clock: object) -> None:
    with trio.fail_after(120):
        assert await run_pair(nat_a, nat_b) == kinds


async def test_symmetric_against_port_restricted_needs_a_relay(autojump_clock: object) -> None:
    """RFC 8445 has no way through APDM against APDF without TURN: the ground truth says fail."""
    with trio.fail_after(120), pytest.raises(BaseExceptionGroup) as info:
        await run_pair("symmetric", "eim-apdf")
    assert info.group_contains(IceFailed, depth=None)


async def test_stats_name_the_pair_that_generated_a_valid_pair(autojump_clock: object) -> None:
    """Behind a NAT without STUN, A's check comes back with its mapped address: the valid pair has a
    peer-reflexive local candidate and is not on A's check list (RFC 8445 7.2.5.3.2). stats() lists it
    and names the checked pair that carries its counters."""
    scenario = vnet("full-cone", "none", seed=4)
    with trio.fail_after(60):
        async with (
            open_agent(controlling=True, network=scenario.network_a, name="A") as a,
            open_agent(controlling=False, network=scenario.network_b, name="B") as b,
        ):
            await connect_both(a, b)
            pairs = a.stats()["pairs"]
            generated = [p for p in pairs if p["generated_by"] is not None]
            assert generated, pairs
            for entry in generated:
                assert " typ prflx" in entry["local"]
                checked = [p for p in pairs if (p["local"], p["remote"]) == (
                    entry["generated_by"]["local"], entry["generated_by"]["remote"])]
                assert len(checked) == 1 and checked[0]["generated_by"] is None
                assert " typ host" in checked[0]["local"] and checked[0]["responses_received"] >= 1
