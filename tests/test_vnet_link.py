"""vnet links: exact latency on Trio time, jitter, seeded loss, duplication, reordering, MTU."""

from __future__ import annotations

import itertools

import pytest
import trio
from iceagent_vnet import Host, Internet, Lan, Link, VirtualUdpSocket, vnet
from iceagent_vnet.link import FLOW_IDLE
from iceagent_vnet.packet import Packet


async def pair(link: Link) -> tuple[VirtualUdpSocket, VirtualUdpSocket, Lan]:
    lan = Lan("10.0.0.0/24", link=link)
    a, b = Host("a", lan), Host("b", lan)
    return await a.network.bind_udp("10.0.0.2", 1), await b.network.bind_udp("10.0.0.3", 2), lan


async def blast(sender: VirtualUdpSocket, receiver: VirtualUdpSocket, count: int, size: int = 20) -> list[int]:
    """Send `count` numbered datagrams, wait until everything in flight landed, return the numbers received."""
    for i in range(count):
        await sender.send(i.to_bytes(4, "big") + bytes(size), ("10.0.0.3", 2))
    await trio.sleep(10)
    out = []
    while receiver.pending():
        data, _ = await receiver.receive()
        out.append(int.from_bytes(data[:4], "big"))
    return out


async def test_latency_is_exact_under_the_mock_clock(autojump_clock: object) -> None:
    scenario = vnet(rtt=0.080, lan_latency=0.005)
    server = await scenario.server_network.bind_udp("198.51.100.1", 3478)
    sock = await scenario.network_a.bind_udp("0.0.0.0", 0)
    await trio.sleep(3)
    start = trio.current_time()
    await sock.send(b"x", ("198.51.100.1", 3478))
    _, mapped = await server.receive()
    assert trio.current_time() - start == pytest.approx(0.045)  # LAN 5 ms + internet 40 ms
    await server.send(b"y", mapped)
    await sock.receive()
    assert trio.current_time() - start == pytest.approx(0.090)


async def test_a_long_scenario_runs_in_no_time(autojump_clock: object) -> None:
    import time

    sa, sb, _ = await pair(Link(latency=0.5))
    wall = time.perf_counter()
    for _ in range(600):  # ten virtual minutes of one datagram a second
        await sa.send(b"tick", ("10.0.0.3", 2))
        await trio.sleep(1)
    assert sb.pending() == 600
    assert time.perf_counter() - wall < 5


async def test_jitter_delays_within_bounds_and_keeps_order(autojump_clock: object) -> None:
    sa, sb, _ = await pair(Link(latency=0.010, jitter=0.020, seed=3))
    arrivals = []

    async def receive_all() -> None:
        for _ in range(200):
            data, _ = await sb.receive()
            arrivals.append((int.from_bytes(data, "big"), trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive_all)
        sent = {}
        for i in range(200):
            sent[i] = trio.current_time()
            await sa.send(i.to_bytes(4, "big"), ("10.0.0.3", 2))
            await trio.sleep(0.005)
    assert [i for i, _ in arrivals] == list(range(200))
    delays = [t - sent[i] for i, t in arrivals]
    assert all(0.010 - 1e-9 <= d for d in delays)
    assert max(delays) > 0.020  # jitter happened


async def test_loss_rate_is_near_the_setting_and_repeats_for_a_seed(autojump_clock: object) -> None:
    runs = []
    for seed in (1, 1, 2):
        sa, sb, lan = await pair(Link(loss=0.2, seed=seed))
        received = await blast(sa, sb, 5000)
        runs.append(received)
        assert abs(len(received) / 5000 - 0.8) < 0.025
        assert lan.drops["loss"] == 5000 - len(received)
    assert runs[0] == runs[1]  # same seed: the very same datagrams lost
    assert runs[0] != runs[2]


async def test_a_flows_outcome_does_not_depend_on_other_flows(autojump_clock: object) -> None:
    """Randomness is per flow, so interleaving with other traffic does not change what a flow loses."""

    async def received_by_a(other_traffic: bool) -> list[int]:
        lan = Lan("10.0.0.0/24", link=Link(loss=0.3, seed=9))
        a, b, c = Host("a", lan), Host("b", lan), Host("c", lan)
        sa = await a.network.bind_udp("10.0.0.2", 1)
        sb = await b.network.bind_udp("10.0.0.3", 2)
        sc = await c.network.bind_udp("10.0.0.4", 3)
        for i in range(300):
            if other_traffic:
                await sc.send(b"noise", ("10.0.0.3", 2))
            await sa.send(i.to_bytes(4, "big"), ("10.0.0.3", 2))
        await trio.sleep(1)
        out = []
        while sb.pending():
            data, source = await sb.receive()
            if source[0] == "10.0.0.2":
                out.append(int.from_bytes(data, "big"))
        return out

    assert await received_by_a(False) == await received_by_a(True)


def test_idle_flows_are_forgotten_and_start_afresh() -> None:
    """A new flow every second for an hour (a NAT rebinding all the time): the link keeps the flows of the
    last two minutes or so, not all 3600; a flow that comes back after idling loses exactly what a new
    flow with the same seed would."""
    link = Link(loss=0.5, seed=3)

    def fate(port: int, now: float) -> list[bool]:
        return [link.transit(Packet("udp", ("10.0.0.2", port), ("10.0.0.3", 9), b"x"), now + i) == "loss"
                for i in range(20)]

    first = fate(1, 0.0)
    for second in range(3600):
        link.transit(Packet("udp", ("10.0.0.2", 2000 + second), ("10.0.0.3", 9), b"x"), float(second))
    assert link.flows <= 2 * FLOW_IDLE + 1
    assert fate(1, 3600.0) == first  # forgotten after idling, so it starts from the seed again


async def test_duplication(autojump_clock: object) -> None:
    sa, sb, lan = await pair(Link(duplicate=0.1, seed=4))
    received = await blast(sa, sb, 2000)
    extra = len(received) - 2000
    assert 140 < extra < 260
    assert lan.link.stats["duplicated"] == extra
    assert sorted(set(received)) == list(range(2000))


async def test_reordering(autojump_clock: object) -> None:
    sa, sb, lan = await pair(Link(latency=0.001, reorder=0.1, reorder_delay=0.01, seed=5))
    received = []

    async def receive_all() -> None:
        for _ in range(1000):
            data, _ = await sb.receive()
            received.append(int.from_bytes(data[:4], "big"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive_all)
        for i in range(1000):
            await sa.send(i.to_bytes(4, "big"), ("10.0.0.3", 2))
            await trio.sleep(0.002)
    assert sorted(received) == list(range(1000))
    late = sum(1 for x, y in itertools.pairwise(received) if x > y)
    assert 60 < late < 150
    assert lan.link.stats["reordered"] > 60


async def test_mtu_drops_oversized_datagrams(autojump_clock: object) -> None:
    lan = Lan("10.0.0.0/24", "fd00::/64", link=Link(mtu=1500))
    a, b = Host("a", lan), Host("b", lan)
    sa = await a.network.bind_udp("0.0.0.0", 1)
    sb = await b.network.bind_udp("0.0.0.0", 2)
    sa6 = await a.network.bind_udp("::", 1)
    sb6 = await b.network.bind_udp("::", 2)
    await sa.send(bytes(1472), ("10.0.0.3", 2))  # 1472 + 8 + 20 = 1500: fits
    await sa.send(bytes(1473), ("10.0.0.3", 2))
    await sa6.send(bytes(1452), ("fd00::3", 2))  # 1452 + 8 + 40 = 1500: fits
    await sa6.send(bytes(1453), ("fd00::3", 2))
    await sa.send(bytes(70000), ("10.0.0.3", 2))  # bigger than any UDP datagram
    await trio.sleep(1)
    assert sb.pending() == 1 and sb6.pending() == 1
    assert lan.drops["mtu"] == 2
    assert a.drops["mtu"] == 1


async def test_link_settings_can_change_during_a_run(autojump_clock: object) -> None:
    sa, sb, lan = await pair(Link())
    assert len(await blast(sa, sb, 100)) == 100
    lan.link.loss = 1.0
    assert await blast(sa, sb, 100) == []
    lan.link.loss = 0.0
    lan.link.latency = 2.0
    start = trio.current_time()
    await sa.send(b"slow", ("10.0.0.3", 2))
    await sb.receive()
    assert trio.current_time() - start == pytest.approx(2.0)


async def test_scenario_loss_applies_to_the_internet(autojump_clock: object) -> None:
    scenario = vnet(loss=0.5, seed=7)
    server = await scenario.server_network.bind_udp("198.51.100.1", 3478)
    sock = await scenario.network_a.bind_udp("0.0.0.0", 0)
    for _ in range(1000):
        await sock.send(b"x", ("198.51.100.1", 3478))
    await trio.sleep(1)
    assert 430 < server.pending() < 570
    assert scenario.drops()["loss"] == 1000 - server.pending()
    assert scenario.internet.drops["loss"] == scenario.drops()["loss"]


def test_link_defaults() -> None:
    link = Link()
    assert (link.latency, link.loss, link.mtu) == (0.0, 0.0, 1500)
    assert Internet().link.mtu == 1500
