"""Roaming on the vnet under MockClock (issue 16 item 2): the address under the selected pair goes, a new
one comes, and the data flows again within 2 s of simulated time with auto_restart on both sides,
instead of waiting for consent to fail (30 s, RFC 7675 5.1). Simulated time is deterministic here, so the
gap is a behaviour, not a timing measurement."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from iceagent_vnet import Lan, Router, Scenario, nat_preset, vnet
from nat_matrix_tools import connect_pair, exchange, roundtrip, servers_for

from iceagent import Agent, IceConfig, IceFailed, IceState, IceStream, open_agent
from iceagent.hookspecs import hookimpl
from iceagent.plugins import create_plugin_manager
from iceagent.stun.server import open_stun_server

#: The send interval of the application's data, and so the resolution of the gap measured.
TICK = 0.02


@asynccontextmanager
async def open_roaming_pair(
    scenario: Scenario, *, plugin_manager: Any = None, **options: Any
) -> AsyncIterator[tuple[Agent, Agent]]:
    """A (controlling) and B on the scenario's hosts, auto_restart on both, the embedded STUN server."""
    servers = servers_for(scenario)
    stun = [f"{ip}:{port}" for ip, port in scenario.stun_addresses[:1]]
    async with (
        open_stun_server(scenario.server_network, stun),
        open_agent(controlling=True, network=scenario.network_a, ice_servers=servers, auto_restart=True, name="A",
                   plugin_manager=plugin_manager, **options) as a,
        open_agent(controlling=False, network=scenario.network_b, ice_servers=servers, auto_restart=True,
                   name="B", plugin_manager=plugin_manager, **options) as b,
    ):
        yield a, b


async def resignal(a: Agent, b: Agent) -> None:
    """What the application does: offer/answer again on every new generation of A."""
    async for _generation in a.generation.eventual_values(lambda g: g > 0):
        await exchange(a, b)


async def stream_data(src: IceStream, dst: IceStream, arrivals: list[float]) -> None:
    """Send a datagram every TICK (waiting while the agent restarts) and note when each arrives."""

    async def receive() -> None:
        while True:
            await dst.receive()
            arrivals.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        while True:
            await src.send(b"data")
            await trio.sleep(TICK)


def gap_around(arrivals: list[float], moved_at: float) -> float:
    """The longest silence between two arrivals from the last one before `moved_at` on (the data stops,
    then flows again: there must be arrivals well after the move)."""
    start = max(i for i, t in enumerate(arrivals) if t <= moved_at)
    assert arrivals[-1] > moved_at + 2.0, "the data did not flow again"
    return max(later - earlier for earlier, later in itertools.pairwise(arrivals[start:]))


async def roam(
    scenario: Scenario, move: Callable[[Agent], Any], *, both_ways: bool = True, **options: Any
) -> dict[str, float]:
    """Connect A and B, stream data both ways, `move(a)` A, and measure each direction's gap (simulated s)."""
    out: dict[str, float] = {}
    with trio.fail_after(120):
        async with open_roaming_pair(scenario, **options) as (a, b), trio.open_nursery() as nursery:
            sa, sb = await connect_pair(a, b)
            await a.state.wait_value(IceState.COMPLETED)
            nursery.start_soon(resignal, a, b)
            a_to_b: list[float] = []
            b_to_a: list[float] = []
            nursery.start_soon(stream_data, sa, sb, a_to_b)
            if both_ways:
                nursery.start_soon(stream_data, sb, sa, b_to_a)
            await trio.sleep(1.0)
            moved_at = trio.current_time()
            await move(a)
            await trio.sleep(5.0)
            out["a_to_b"] = gap_around(a_to_b, moved_at)
            if both_ways:
                out["b_to_a"] = gap_around(b_to_a, moved_at)
            out["generation"] = a.generation.value
            out["state"] = a.state.value is IceState.COMPLETED
            nursery.cancel_scope.cancel()
    return out


async def test_address_moves_on_the_lan_data_resumes_within_2_s(autojump_clock: object) -> None:
    """`ip addr del` of A's address then `ip addr add` of another on the same LAN (10.99.0.1 -> .11 in the
    issue's lab): A restarts at once (no consent wait, no back-off) and data flows again both ways."""
    scenario = vnet("eim-apdf", "eim-apdf", rtt=0.05, seed=3)
    host = scenario.host_a
    eth0 = host.attachments[0]

    async def move(a: Agent) -> None:
        host.remove_address("192.168.1.2")
        await trio.sleep(0.1)
        host.add_address(eth0, "192.168.1.11")

    gaps = await roam(scenario, move)
    print(f"roaming gap on the vnet (address moved on the LAN): A->B {gaps['a_to_b']:.3f} s, "
          f"B->A {gaps['b_to_a']:.3f} s")
    assert gaps["a_to_b"] < 2.0
    assert gaps["b_to_a"] < 2.0
    assert gaps["generation"] == 1  # one restart: none for the empty moment between del and add
    assert gaps["state"]


async def test_host_moves_to_another_lan_behind_another_nat(autojump_clock: object) -> None:
    """The demo's move: A's interface is unplugged from its LAN and plugged into a new LAN behind another
    NAT (in one step, as a Wi-Fi handover): the new generation connects through the new NAT."""
    scenario = vnet("eim-apdf", "eim-apdf", rtt=0.05, seed=4)
    host = scenario.host_a
    new_lan = Lan("192.168.9.0/24", name="lan_c")
    Router(scenario.internet, new_lan, nat=nat_preset("eim-apdf"), name="nat_c")

    async def move(a: Agent) -> None:
        host.detach(host.attachments[0])
        host.attach(new_lan)
        await trio.lowlevel.checkpoint()

    gaps = await roam(scenario, move)
    assert gaps["a_to_b"] < 2.0 and gaps["b_to_a"] < 2.0
    assert gaps["generation"] == 1


async def test_with_renomination_the_stream_moves_to_the_other_interface_without_a_restart(
    autojump_clock: object,
) -> None:
    """A has two addresses on its LAN and both sides negotiated renomination (draft-thatcher-ice-
    renomination): when the selected pair's address goes, every pair on it fails and the controlling A
    renominates a pair on the other address, which kept consent: no restart (generation 0), and the data
    flows again within 2 s both ways."""
    scenario = vnet("eim-apdf", "eim-apdf", rtt=0.05, seed=3)
    host = scenario.host_a
    host.add_address(host.attachments[0], "192.168.1.12")
    moved: list[str] = []

    async def move(a: Agent) -> None:
        pair = a.selected_pair
        assert pair is not None
        address = pair.local.related_address if pair.local.type != "host" else pair.local.address
        assert address is not None
        moved.append(address)
        host.remove_address(address)
        await trio.lowlevel.checkpoint()

    gaps = await roam(scenario, move, config=IceConfig(renomination=True))
    assert moved and moved[0] in ("192.168.1.2", "192.168.1.12")
    assert gaps["a_to_b"] < 2.0 and gaps["b_to_a"] < 2.0
    assert gaps["generation"] == 0  # moved by renomination, not by a restart


async def test_without_auto_restart_the_agent_fails_at_once_and_says_why(autojump_clock: object) -> None:
    """No auto_restart: the agent is FAILED the moment the address goes (not 30 s later), and send()
    raises IceFailed naming the address; restart() is the application's call."""
    scenario = vnet("eim-apdf", "eim-apdf", rtt=0.05, seed=9)
    servers = servers_for(scenario)
    with trio.fail_after(60):
        async with (
            open_stun_server(scenario.server_network, [f"{ip}:{port}" for ip, port in scenario.stun_addresses[:1]]),
            open_agent(network=scenario.network_a, ice_servers=servers, name="A") as a,
            open_agent(network=scenario.network_b, ice_servers=servers, controlling=False, name="B") as b,
        ):
            sa, sb = await connect_pair(a, b)
            await roundtrip(sa, sb, b"before")
            gone = trio.current_time()
            scenario.host_a.remove_address("192.168.1.2")
            await a.state.wait_value(IceState.FAILED)
            assert trio.current_time() - gone < 0.1
            with pytest.raises(IceFailed, match=r"192\.168\.1\.2 under the selected pair disappeared"):
                await sa.send(b"lost")
            assert a.generation.value == 0


class NetworkObserver:
    @hookimpl
    def iceagent_network_changed(self, agent: Agent, changes: Any) -> None:
        self.seen.append((agent.name, [(c.kind, c.address) for c in changes]))

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[tuple[str, str]]]] = []


async def test_network_changed_hook_and_no_restart_for_an_unrelated_address(autojump_clock: object) -> None:
    """An address that is not under the selected pair comes and goes: the hook reports it, the pair stays."""
    scenario = vnet("eim-apdf", "eim-apdf", rtt=0.05, seed=5)
    observer = NetworkObserver()
    pm = create_plugin_manager()
    pm.register(observer)
    with trio.fail_after(60):
        async with open_roaming_pair(scenario, plugin_manager=pm) as (a, b):
            sa, sb = await connect_pair(a, b)
            pair = a.selected_pair
            eth0 = scenario.host_a.attachments[0]
            scenario.host_a.add_address(eth0, "192.168.1.77")
            await trio.sleep(0.5)
            scenario.host_a.remove_address("192.168.1.77")
            await trio.sleep(0.5)
            assert observer.seen == [("A", [("added", "192.168.1.77")]), ("A", [("removed", "192.168.1.77")])]
            assert a.selected_pair is pair and a.generation.value == 0
            await roundtrip(sa, sb, b"still here")


async def test_failed_agent_restarts_at_once_on_a_new_address(autojump_clock: object) -> None:
    """A lost its only address and has none to gather on: it stays FAILED (no generation with nothing
    to offer), and restarts the moment an address appears, without waiting for the back-off."""
    scenario = vnet("eim-apdf", "eim-apdf", rtt=0.05, seed=6)
    config = IceConfig(restart_backoff=30.0)
    with trio.fail_after(60):
        async with open_roaming_pair(scenario, config=config) as (a, b):
            await connect_pair(a, b)
            scenario.host_a.remove_address("192.168.1.2")
            await a.state.wait_value(IceState.FAILED)
            assert a.generation.value == 0
            await trio.sleep(3.0)
            assert a.generation.value == 0 and a.state.value is IceState.FAILED
            appeared = trio.current_time()
            scenario.host_a.add_address(scenario.host_a.attachments[0], "192.168.1.40")
            await a.generation.wait_value(1)
            assert trio.current_time() - appeared < 0.1


async def test_continual_gathering_trickles_a_new_address(autojump_clock: object) -> None:
    """continual_gathering=True: a new address gets a host candidate (and a srflx one through the NAT) in
    the current generation, handed out by new_candidates(); gather() is not extended; no restart."""
    scenario = vnet("eim-apdf", "eim-apdf", rtt=0.05, seed=7)
    with trio.fail_after(60):
        async with open_roaming_pair(scenario, continual_gathering=True) as (a, b):
            await connect_pair(a, b)
            first = [c async for c in a.gather()]
            late: list[Any] = []

            async def follow() -> None:
                async for cand in a.new_candidates():
                    late.append(cand)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                await trio.sleep(0.5)
                assert late == []
                scenario.host_a.add_address(scenario.host_a.attachments[0], "192.168.1.60")
                await trio.sleep(5.0)
                nursery.cancel_scope.cancel()
            assert {(c.type, c.related_address or c.address) for c in late} == {
                ("host", "192.168.1.60"), ("srflx", "192.168.1.60")}
            assert [c async for c in a.gather()] == first + late
            assert a.generation.value == 0
            host = next(c for c in late if c.type == "host")
            assert any(p["local"] == host.to_sdp() for p in a.stats()["pairs"])  # paired with B's at once


@pytest.mark.parametrize("continual", [False, True])
async def test_watcher_is_shared_and_closed_with_the_last_agent(continual: bool, autojump_clock: object) -> None:
    """Every agent on a Network subscribes to the same watcher; it closes with the last agent."""
    scenario = vnet("eim-apdf", "eim-apdf", seed=8)
    network = scenario.network_a
    async with (
        open_agent(network=network, name="x", continual_gathering=continual),
        open_agent(network=network, name="y"),
    ):
        watcher = network._watcher
        assert watcher is not None and watcher.subscribers == 2 and watcher.watching
    assert watcher.subscribers == 0 and not watcher.watching
