"""ICE-lite agents on the vnet under MockClock (RFC 8445 2.5, 6.1.1, 7.3, 8.2; RFC 7675).

A lite agent offers host candidates only, sends no check of its own, answers the full peer's checks and
connects at its first USE-CANDIDATE; a full agent whose peer is lite controls; two lite agents fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest
import trio
import trio.testing
from agent_helpers import connect_both, signal
from iceagent_vnet import vnet
from nat_matrix_tools import NAT_TYPES
from test_ice_tcp import UdpBlocked

from iceagent import Agent, IceConfig, IceFailed, IceState, open_agent
from iceagent.net.base import NetworkWrapper, UdpSocket

CONFIG = IceConfig(global_pacing=False)


def sent_requests(agent: Agent) -> int:
    """Binding requests the agent sent, over all its pairs."""
    return sum(p["requests_sent"] for p in agent.stats()["pairs"])


@asynccontextmanager
async def record_states(agent: Agent) -> AsyncIterator[list[IceState]]:
    """Every state the agent goes through while the block runs."""
    seen: list[IceState] = []

    async def watch() -> None:
        async for state in agent.state.transitions():
            seen.append(state[0])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await trio.lowlevel.checkpoint()
        yield seen
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("lite_side", ["controlled-full", "controlling-full"])
async def test_full_and_lite_connect_on_public_addresses(lite_side: str, autojump_clock: object) -> None:
    """A full agent (opened controlled or controlling) and a lite one, both on public addresses: the full
    agent controls and nominates (6.1.1), the lite one sends no check, connect() returns on both sides,
    the lite side's pair is nominated with no rtt (it measured none), data flows both ways."""
    scenario = vnet("none", "none", rtt=0.05, seed=1)
    with trio.fail_after(60):
        async with (
            open_agent(controlling=lite_side == "controlling-full", network=scenario.network_a, config=CONFIG,
                       name="full") as full,
            open_agent(controlling=False, lite=True, network=scenario.network_b, config=CONFIG, name="lite") as lite,
        ):
            assert lite.local_parameters.lite and not full.local_parameters.lite
            async with trio.open_nursery() as nursery:
                # CONNECTED and COMPLETED come together (7.3.2), and a waiter for either sees it
                nursery.start_soon(lite.state.wait_value, IceState.CONNECTED)
                nursery.start_soon(lite.state.wait_value, IceState.COMPLETED)
                await trio.testing.wait_all_tasks_blocked()
                s_full, s_lite = await connect_both(full, lite)
                await full.state.wait_value(IceState.COMPLETED)
            assert full.controlling and not lite.controlling
            pair = lite.selected_pair
            assert pair is not None and pair.nominated and pair.rtt is None
            assert full.selected_pair is not None and full.selected_pair.nominated
            await s_full.send(b"to lite")
            assert await s_lite.receive() == b"to lite"
            await s_lite.send(b"to full")
            assert await s_full.receive() == b"to full"
            await trio.sleep(40)  # past consent_timeout: the full side's consent checks keep the lite pair
            assert lite.state.value is IceState.COMPLETED and full.state.value is IceState.COMPLETED
            assert sent_requests(lite) == 0
            assert all(c.type == "host" for c in lite._runner().gathering.candidates)
            assert pair.requests_received > 3  # the full peer's consent checks, answered


@pytest.mark.parametrize("nat", ["full-cone", "restricted-cone", "port-restricted", "symmetric", *NAT_TYPES])
async def test_lite_server_and_full_client_behind_a_nat(nat: str, autojump_clock: object) -> None:
    """The lite agent on a public address, the full one behind a NAT (the presets and every cell of the
    NAT matrix's RFC 4787 mapping x filtering, symmetric too) without STUN: the full agent's checks arrive
    from its NAT address, a peer-reflexive candidate for the lite agent, which nominates that pair from
    USE-CANDIDATE (7.3.2) and sends data back through the NAT. Without a NAT the client's host candidate
    is the remote."""
    scenario = vnet(nat, "none", rtt=0.05, seed=2)
    with trio.fail_after(60):
        async with (
            open_agent(controlling=False, network=scenario.network_a, config=CONFIG, name="client") as full,
            open_agent(controlling=False, lite=True, network=scenario.network_b, config=CONFIG, name="srv") as lite,
        ):
            s_full, s_lite = await connect_both(full, lite)
            await lite.state.wait_value(IceState.COMPLETED)
            pair = lite.selected_pair
            assert pair is not None
            if scenario.nat_a is None:
                assert pair.remote.type == "host"
            else:
                assert pair.remote.type == "prflx" and pair.remote.address == scenario.nat_a.public_address
            await s_full.send(b"hello server")
            assert await s_lite.receive() == b"hello server"
            await s_lite.send(b"hello client")
            assert await s_full.receive() == b"hello client"
            assert sent_requests(lite) == 0


async def test_lite_declares_the_peer_gone_after_consent_timeout(autojump_clock: object) -> None:
    """No DISCONNECTED while the full peer's consent checks come 4-6 s apart (disconnected_timeout is 5 s);
    once the peer is gone, the lite agent fails after consent_timeout and says why."""
    scenario = vnet("none", "none", rtt=0.05, seed=3)
    with trio.fail_after(200):
        async with open_agent(controlling=False, lite=True, network=scenario.network_b, config=CONFIG) as lite:
            async with record_states(lite) as states:
                async with open_agent(network=scenario.network_a, config=CONFIG) as full:
                    await connect_both(full, lite)
                    await lite.state.wait_value(IceState.COMPLETED)
                    await trio.sleep(60)
                await lite.state.wait_value(IceState.FAILED)
            assert IceState.DISCONNECTED not in states
            with pytest.raises(IceFailed, match="consent_timeout=30"):
                await lite.connect()


class _Deaf(NetworkWrapper):
    """A full agent that hears nothing: its checks reach the lite peer, the answers never come back."""

    async def bind_udp(self, address: str, port: int = 0, *, reuse: bool = False) -> UdpSocket:
        sock = await super().bind_udp(address, port, reuse=reuse)

        async def deaf(*args: object) -> object:
            await trio.sleep_forever()

        for name in ("receive", "receive_batch"):
            if hasattr(sock, name):
                setattr(sock, name, deaf)
        return sock


async def test_lite_waits_failed_timeout_from_the_peers_last_check(autojump_clock: object) -> None:
    """A lite agent cannot check; it waits for the full peer's nomination. While the peer's checks keep
    arriving (here its retransmissions, whose answers it never hears) the lite agent does not fail at
    failed_timeout after CHECKING began, but failed_timeout after the last check, and says so."""
    scenario = vnet("none", "none", rtt=0.05, seed=6)
    config = attrs.evolve(CONFIG, failed_timeout=10.0)
    with trio.fail_after(200):
        async with (
            open_agent(controlling=False, lite=True, network=scenario.network_b, config=config) as lite,
            open_agent(network=_Deaf(scenario.network_a), config=CONFIG) as full,
        ):
            await signal(full, lite)
            await signal(lite, full)
            start = trio.current_time()
            await trio.sleep(15)
            assert lite.state.value is IceState.CHECKING  # checks still came within the last 10 s
            heard = sum(p["requests_received"] for p in lite.stats()["pairs"])
            assert heard >= 3
            await lite.state.wait_value(IceState.FAILED)
            assert trio.current_time() - start > 20  # well after failed_timeout from the start
            with pytest.raises(IceFailed, match="no nomination from the peer within failed_timeout=10 s"):
                await lite.connect()


async def test_lite_with_auto_restart_restarts_when_the_peer_is_gone(autojump_clock: object) -> None:
    scenario = vnet("none", "none", rtt=0.05, seed=4)
    with trio.fail_after(200):
        async with open_agent(
            controlling=False, lite=True, network=scenario.network_b, config=CONFIG, auto_restart=True
        ) as lite:
            async with open_agent(network=scenario.network_a, config=CONFIG) as full:
                await connect_both(full, lite)
            await lite.generation.wait_value(1)
            assert lite.local_parameters.lite


async def test_two_lite_agents_with_one_pair_use_it(autojump_clock: object) -> None:
    """RFC 8445 8.2: two lite agents with one host candidate each select that pair without a check, and
    keep it (no consent to lapse: neither side checks)."""
    scenario = vnet("none", "none", rtt=0.05, seed=5)
    with trio.fail_after(200):
        async with (
            open_agent(controlling=False, lite=True, network=scenario.network_a, config=CONFIG) as a,
            open_agent(controlling=False, lite=True, network=scenario.network_b, config=CONFIG) as b,
        ):
            s_a, s_b = await connect_both(a, b)
            await s_a.send(b"lite to lite")
            assert await s_b.receive() == b"lite to lite"
            await trio.sleep(60)  # past consent_timeout
            assert a.state.value is IceState.COMPLETED and b.state.value is IceState.COMPLETED
            assert sent_requests(a) == sent_requests(b) == 0


async def test_two_lite_agents_with_several_pairs_fail_with_a_clear_message(autojump_clock: object) -> None:
    """With two pairs RFC 8445 8.2 needs an updated candidate exchange, which the API does not do."""
    scenario = vnet("none", "none", seed=5)
    with trio.fail_after(30):
        async with (
            open_agent(controlling=False, lite=True, network=scenario.network_a, config=CONFIG) as a,
            open_agent(controlling=False, lite=True, network=scenario.network_b, config=CONFIG) as b,
        ):
            await signal(b, a, end=False)
            (theirs,) = [c async for c in b.gather()]
            a.add_remote_candidate(attrs.evolve(theirs, port=theirs.port + 1))
            a.add_remote_candidate(None)
            with pytest.raises(IceFailed, match=r"both agents are ICE-lite .* form 2 pairs"):
                await a.connect()
            assert sent_requests(a) == 0


async def test_role_conflict_with_a_peer_that_was_not_told_it_is_lite(autojump_clock: object) -> None:
    """A controlled full agent that does not know its peer is lite checks it as controlled: the lite agent
    answers 487 and stays controlled, the full agent switches to controlling (7.2.5.1) and nominates."""
    scenario = vnet("none", "none", rtt=0.05, seed=6)
    with trio.fail_after(60):
        async with (
            open_agent(controlling=False, network=scenario.network_a, config=CONFIG) as full,
            open_agent(controlling=False, lite=True, network=scenario.network_b, config=CONFIG) as lite,
        ):
            full.set_remote_parameters(attrs.evolve(lite.local_parameters, lite=False))  # a=ice-lite lost
            async for cand in lite.gather():
                full.add_remote_candidate(cand)
            full.add_remote_candidate(None)
            await signal(full, lite)
            await full.connect()
            await lite.connect()
            await lite.state.wait_value(IceState.COMPLETED)
            assert full.controlling and not lite.controlling
            assert sent_requests(lite) == 0


async def test_lite_gathers_host_candidates_only(autojump_clock: object) -> None:
    """UDP host and ICE-TCP passive only (no active TCP candidate), and public_ips replace the host address
    even in the default public_ip_mode="srflx" (no srflx candidate)."""
    scenario = vnet("none", "none", seed=7)
    host = scenario.host_b.address
    with trio.fail_after(30):
        async with open_agent(
            controlling=False, lite=True, tcp=True, network=scenario.network_b, public_ips={host: "198.51.100.9"}
        ) as lite:
            got = [c async for c in lite.gather()]
    assert sorted((c.type, c.transport, c.tcptype, c.address) for c in got) == [
        ("host", "tcp", "passive", "198.51.100.9"),
        ("host", "udp", None, "198.51.100.9"),
    ]


async def test_lite_over_ice_tcp_passive_only(autojump_clock: object) -> None:
    """UDP blocked on both sides: the lite agent's passive TCP candidate, the full agent's active one
    connects to it (RFC 6544), the lite agent answers over the connection and connects on USE-CANDIDATE."""
    scenario = vnet("none", "none", rtt=0.05, seed=8)
    with trio.fail_after(60):
        async with (
            open_agent(controlling=False, tcp=True, network=UdpBlocked(scenario.network_a), config=CONFIG) as full,
            open_agent(
                controlling=False, lite=True, tcp=True, network=UdpBlocked(scenario.network_b), config=CONFIG
            ) as lite,
        ):
            s_full, s_lite = await connect_both(full, lite)
            await lite.state.wait_value(IceState.COMPLETED)
            pair = lite.selected_pair
            assert pair is not None and pair.local.transport == "tcp" and pair.local.tcptype == "passive"
            await s_full.send(b"over tcp")
            assert await s_lite.receive() == b"over tcp"
            await s_lite.send(b"back")
            assert await s_full.receive() == b"back"
            assert sent_requests(lite) == 0
