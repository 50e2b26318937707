"""The vnet scenario factory (the `iceagent_networks` hook's "vnet"), custom topologies, statistics."""

from __future__ import annotations

import time

import pytest
import trio
from iceagent_vnet import APDF, EIM, Host, Internet, Lan, Router, Scenario, collect_drops, nat_preset, vnet


def test_default_scenario() -> None:
    scenario = vnet()
    assert isinstance(scenario, Scenario)
    assert scenario.stun_addresses == [("198.51.100.1", 3478), ("198.51.100.2", 3478)]
    assert scenario.turn_address == ("198.51.100.3", 3478)
    assert scenario.nat_a is not None and scenario.nat_b is not None
    assert scenario.nat_a.nat == nat_preset("eim-apdf")
    assert scenario.nat_a.nat is not None and scenario.nat_a.nat.mapping is EIM
    assert scenario.nat_a.nat.filtering is APDF
    assert scenario.host_a.addresses == ("192.168.1.2",)
    assert scenario.host_b.addresses == ("192.168.2.2",)
    assert scenario.nat_a.public_address != scenario.nat_b.public_address
    assert scenario.server.addresses == ("198.51.100.1", "198.51.100.2", "198.51.100.3")
    assert (scenario.loss, scenario.rtt, scenario.seed) == (0.0, 0.0, 0)
    assert "eim-apdf" in scenario.describe()


def test_scenario_options() -> None:
    scenario = vnet(
        "symmetric", "none", loss=0.01, rtt=0.2, seed=5, jitter=0.01, mtu=1280, mapping_lifetime=30, hairpinning=False
    )
    assert scenario.nat_b is None and scenario.lan_b is None
    assert scenario.host_b.attachments[0].segment is scenario.internet
    assert scenario.nat_a is not None and scenario.nat_a.nat is not None
    assert scenario.nat_a.nat.name == "apdm-apdf"
    assert scenario.nat_a.nat.mapping_lifetime == 30 and not scenario.nat_a.nat.hairpinning
    assert scenario.link.latency == pytest.approx(0.1)
    assert (scenario.link.loss, scenario.link.jitter, scenario.link.mtu, scenario.link.seed) == (0.01, 0.01, 1280, 5)
    assert scenario.internet.link is scenario.link
    assert "no NAT" in scenario.describe()


def test_same_lan_and_ipv6() -> None:
    scenario = vnet(same_lan=True, ipv6=True)
    assert scenario.nat_a is scenario.nat_b and scenario.lan_a is scenario.lan_b
    assert scenario.host_a.addresses == ("192.168.1.2", "fd00:1::2")
    assert scenario.host_b.addresses == ("192.168.1.3", "fd00:1::3")
    assert scenario.stun_addresses_v6 == [("2001:db8:100::1", 3478), ("2001:db8:100::2", 3478)]
    assert scenario.nat_a is not None and len(scenario.nat_a.public_addresses) == 2
    with pytest.raises(ValueError):
        vnet(nat_a="none", same_lan=True)


async def test_both_hosts_reach_the_stun_addresses(autojump_clock: object) -> None:
    scenario = vnet("full-cone", "symmetric", rtt=0.05)
    servers = [await scenario.server_network.bind_udp(ip, port) for ip, port in scenario.stun_addresses]
    for net, router in ((scenario.network_a, scenario.nat_a), (scenario.network_b, scenario.nat_b)):
        sock = await net.bind_udp("0.0.0.0", 0)
        seen = []
        for server, address in zip(servers, scenario.stun_addresses, strict=True):
            await sock.send(b"binding", address)
            _, source = await server.receive()
            seen.append(source)
            await server.send(b"response", source)
            assert await sock.receive() == (b"response", address)
        assert router is not None and router.nat is not None
        assert (seen[0] == seen[1]) == (router.nat.mapping is EIM)


async def test_a_and_b_punch_through_port_restricted_nats(autojump_clock: object) -> None:
    """The ICE idea in miniature: both learn their mapping, send to each other, and get through."""
    scenario = vnet(rtt=0.04)
    stun = await scenario.server_network.bind_udp(*scenario.stun_addresses[0])
    sa = await scenario.network_a.bind_udp("0.0.0.0", 0)
    sb = await scenario.network_b.bind_udp("0.0.0.0", 0)
    await sa.send(b"?", scenario.stun_addresses[0])
    _, ma = await stun.receive()
    await sb.send(b"?", scenario.stun_addresses[0])
    _, mb = await stun.receive()
    await sa.send(b"a->b 1", mb)  # filtered at B's NAT (B has not sent to ma yet), but opens A's filter
    await trio.sleep(1)
    assert scenario.drops()["filtered"] == 1
    await sb.send(b"b->a 1", ma)  # passes A's NAT
    assert await sa.receive() == (b"b->a 1", mb)
    await sa.send(b"a->b 2", mb)
    assert await sb.receive() == (b"a->b 2", ma)
    assert scenario.drops()["filtered"] == 1


async def test_reboot_handle_through_the_scenario(autojump_clock: object) -> None:
    scenario = vnet("full-cone", "full-cone")
    stun = await scenario.server_network.bind_udp(*scenario.stun_addresses[0])
    sock = await scenario.network_a.bind_udp("0.0.0.0", 0)
    await sock.send(b"?", scenario.stun_addresses[0])
    _, before = await stun.receive()
    assert scenario.nat_a is not None
    scenario.nat_a.reboot(new_public_address="203.0.113.200")
    await stun.send(b"lost", before)
    await sock.send(b"?", scenario.stun_addresses[0])
    _, after = await stun.receive()
    assert after[0] == "203.0.113.200"
    assert scenario.drops()["no_route"] == 1  # the old public address is gone from the internet


def test_custom_topology_and_collect_drops() -> None:
    internet = Internet()
    office = Lan("10.1.0.0/16", name="office")
    router = Router(internet, office, nat="apdm-eif", public="192.0.2.1")
    hosts = [Host(f"pc{i}", office) for i in range(3)]
    assert [h.address for h in hosts] == ["10.1.0.2", "10.1.0.3", "10.1.0.4"]
    assert router.lan_addresses == ("10.1.0.1",)
    assert collect_drops([internet, office, router, *hosts]) == {}


async def test_many_datagrams_flow(autojump_clock: object) -> None:
    """A throughput smoke test: 20k datagrams through a NAT with latency, in well under a second each way."""
    scenario = vnet(rtt=0.02)
    server = await scenario.server_network.bind_udp("198.51.100.1", 3478)
    sock = await scenario.network_a.bind_udp("0.0.0.0", 0)
    count = 20_000
    received = 0
    wall = time.perf_counter()

    async def drain() -> None:
        nonlocal received
        while received < count:
            await server.receive()
            received += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        for _ in range(count):
            await sock.send(b"x" * 200, ("198.51.100.1", 3478))
    assert received == count
    assert time.perf_counter() - wall < 20  # generous: CI machines vary; measured ~0.8 s
