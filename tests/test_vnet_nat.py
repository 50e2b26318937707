"""RFC 4787 NAT behaviour of vnet routers, checked with raw UDP sockets through the Network API."""

from __future__ import annotations

import pytest
import trio
from iceagent_vnet import (
    ADF,
    APDF,
    APDM,
    EIF,
    EIM,
    PRESETS,
    Dependency,
    Host,
    Internet,
    Lan,
    NatBehavior,
    Router,
    VirtualUdpSocket,
    nat_preset,
)
from iceagent_vnet.nat import NatTable

from iceagent.net.base import Address

S1, S2 = "198.51.100.1", "198.51.100.2"
P1, P2 = 3478, 3479
COMBOS = [f"{m}-{f}" for m in ("eim", "adm", "apdm") for f in ("eif", "adf", "apdf")]


class Topology:
    """A private host behind a NAT; a server host with two addresses (S1, S2) and two ports each."""

    def __init__(self, nat: NatBehavior | str | None) -> None:
        self.internet = Internet()
        self.lan = Lan("192.168.1.0/24")
        self.router = Router(self.internet, self.lan, nat=nat, public="203.0.113.1")
        self.client = Host("client", self.lan)
        self.server = Host("server", self.internet, S1, S2)
        self.servers: dict[Address, VirtualUdpSocket] = {}

    async def open(self) -> VirtualUdpSocket:
        for ip in (S1, S2):
            for port in (P1, P2):
                self.servers[(ip, port)] = await self.server.network.bind_udp(ip, port)
        return await self.client.network.bind_udp("192.168.1.2", 5000)

    async def mapped(self, sock: VirtualUdpSocket, server: Address) -> Address:
        """Send from `sock` to `server`; return the source address the server saw (the mapping)."""
        await sock.send(b"probe", server)
        data, source = await self.servers[server].receive()
        assert data == b"probe"
        return source

    async def inbound_passes(self, sock: VirtualUdpSocket, server: Address, mapped: Address) -> bool:
        """Send from `server` to the mapped address; True if it reached `sock`."""
        await self.servers[server].send(b"inbound", mapped)
        await trio.sleep(1)
        if sock.pending():
            assert (await sock.receive()) == (b"inbound", server)
            return True
        return False


@pytest.mark.parametrize("name", COMBOS)
async def test_mapping_behaviour(name: str, autojump_clock: object) -> None:
    """RFC 4787 4.1: which destinations share a mapping."""
    topo = Topology(name)
    sock = await topo.open()
    m11 = await topo.mapped(sock, (S1, P1))
    m12 = await topo.mapped(sock, (S1, P2))
    m21 = await topo.mapped(sock, (S2, P1))
    assert m11[0] == m12[0] == m21[0] == "203.0.113.1"
    mapping = topo.router.nat.mapping if topo.router.nat else None
    if mapping is EIM:
        assert m11 == m12 == m21
    elif mapping is Dependency.ADDRESS_DEPENDENT:
        assert m11 == m12 and m11 != m21
    else:
        assert len({m11, m12, m21}) == 3
    again = await topo.mapped(sock, (S1, P1))
    assert again == m11  # a mapping is reused while it lives
    assert topo.router.mapping_table() == {m: ("192.168.1.2", 5000) for m in {m11, m12, m21}}


@pytest.mark.parametrize("name", COMBOS)
async def test_filtering_behaviour(name: str, autojump_clock: object) -> None:
    """RFC 4787 5: after sending to S1:P1 only, who may send back to the mapping."""
    topo = Topology(name)
    sock = await topo.open()
    mapped = await topo.mapped(sock, (S1, P1))
    behavior = topo.router.nat
    assert behavior is not None
    assert await topo.inbound_passes(sock, (S1, P1), mapped)
    assert await topo.inbound_passes(sock, (S1, P2), mapped) == (behavior.filtering in (EIF, ADF))
    assert await topo.inbound_passes(sock, (S2, P1), mapped) == (behavior.filtering is EIF)
    assert await topo.inbound_passes(sock, (S2, P2), mapped) == (behavior.filtering is EIF)
    expected_filtered = {EIF: 0, ADF: 2, APDF: 3}[behavior.filtering]
    assert topo.router.drops["filtered"] == expected_filtered


async def test_unsolicited_inbound_without_a_mapping_is_dropped(autojump_clock: object) -> None:
    topo = Topology("full-cone")
    sock = await topo.open()
    await topo.servers[(S1, P1)].send(b"hello?", ("203.0.113.1", 5000))
    await trio.sleep(1)
    assert sock.pending() == 0
    assert topo.router.drops["no_mapping"] == 1


async def test_ground_truth_accessor() -> None:
    behavior = NatBehavior(mapping=APDM, filtering=ADF, hairpinning=False)
    topo = Topology(behavior)
    assert topo.router.nat is behavior
    assert Topology("none").router.nat is None
    assert Topology("symmetric").router.nat == PRESETS["apdm-apdf"]


async def test_plain_routing_keeps_addresses(autojump_clock: object) -> None:
    topo = Topology(None)
    sock = await topo.open()
    assert await topo.mapped(sock, (S1, P1)) == ("192.168.1.2", 5000)
    assert await topo.inbound_passes(sock, (S2, P2), ("192.168.1.2", 5000))  # routed, nothing filters
    assert topo.router.mappings() == []


class SameLan:
    """Two hosts on one LAN behind one NAT (for hairpinning), and a server on the internet."""

    def __init__(self, behavior: NatBehavior) -> None:
        internet = Internet()
        lan = Lan("192.168.1.0/24")
        self.router = Router(internet, lan, nat=behavior, public="203.0.113.1")
        self.a = Host("a", lan)
        self.b = Host("b", lan)
        self.server = Host("server", internet, S1)

    async def mappings(self) -> tuple[VirtualUdpSocket, VirtualUdpSocket, Address, Address]:
        server = await self.server.network.bind_udp(S1, P1)
        sa = await self.a.network.bind_udp("192.168.1.2", 4000)
        sb = await self.b.network.bind_udp("192.168.1.3", 4000)
        await sa.send(b"a", (S1, P1))
        _, ma = await server.receive()
        await sb.send(b"b", (S1, P1))
        _, mb = await server.receive()
        return sa, sb, ma, mb


@pytest.mark.parametrize("name", ["eim-eif", "eim-apdf"])
async def test_hairpinning_on(name: str, autojump_clock: object) -> None:
    """RFC 4787 6: a packet to the NAT's own mapping comes back in, from the sender's mapping."""
    behavior = nat_preset(name)
    assert behavior is not None and behavior.hairpinning
    site = SameLan(behavior)
    sa, sb, ma, mb = await site.mappings()
    assert ma != mb  # two internal endpoints never share a mapping (no port overloading, REQ-3)
    if behavior.filtering is APDF:
        await sb.send(b"open", ma)  # B opens its filter for A's mapping (as an ICE check does) ...
        await trio.sleep(1)
        assert sa.pending() == 0  # ... but A's filter has not seen B's mapping yet: filtered
        assert site.router.drops["filtered"] == 1
    await sa.send(b"via hairpin", mb)
    assert await sb.receive() == (b"via hairpin", ma)
    assert site.router.counters["hairpinned"] >= 1


async def test_hairpinning_off(autojump_clock: object) -> None:
    behavior = nat_preset("full-cone", hairpinning=False)
    assert behavior is not None
    site = SameLan(behavior)
    sa, sb, _ma, mb = await site.mappings()
    await sa.send(b"via hairpin", mb)
    await trio.sleep(1)
    assert sb.pending() == 0
    assert site.router.drops["hairpin"] == 1


async def test_mapping_expires_after_its_lifetime_without_traffic(autojump_clock: object) -> None:
    """RFC 4787 4.3: a mapping lives `mapping_lifetime` seconds after the last outbound packet."""
    topo = Topology(nat_preset("full-cone", mapping_lifetime=120))
    sock = await topo.open()
    mapped = await topo.mapped(sock, (S1, P1))
    await trio.sleep(118)
    assert await topo.inbound_passes(sock, (S2, P1), mapped)  # at 119 s: alive (inbound does not refresh)
    await trio.sleep(1.5)
    assert not await topo.inbound_passes(sock, (S2, P1), mapped)  # at 121.5 s: gone
    assert topo.router.drops["no_mapping"] == 1
    assert topo.router.mappings() == []
    fresh = await topo.mapped(sock, (S1, P1))
    assert fresh != mapped  # a new mapping (a new random port)


async def test_outbound_traffic_refreshes_the_mapping(autojump_clock: object) -> None:
    topo = Topology(nat_preset("eim-apdf", mapping_lifetime=120))
    sock = await topo.open()
    mapped = await topo.mapped(sock, (S1, P1))
    for _ in range(5):  # 5 minutes, a keepalive every 60 s
        await trio.sleep(60)
        assert await topo.mapped(sock, (S1, P1)) == mapped
    assert await topo.inbound_passes(sock, (S1, P1), mapped)
    (mapping,) = topo.router.mappings()
    assert mapping.expires == pytest.approx(trio.current_time() - 1 + 120)


async def test_inbound_refresh_when_enabled(autojump_clock: object) -> None:
    topo = Topology(nat_preset("full-cone", mapping_lifetime=120, inbound_refresh=True))
    sock = await topo.open()
    mapped = await topo.mapped(sock, (S1, P1))
    for _ in range(4):
        await trio.sleep(59)
        assert await topo.inbound_passes(sock, (S1, P1), mapped)  # each refreshes the mapping


def test_expired_mappings_are_purged_without_a_reboot() -> None:
    """A symmetric NAT makes a mapping per destination; one new destination a second for an hour, never
    rebooted and never asked for its mappings: the table holds those of the last lifetime or two (RFC
    4787 4.3), not all 3600."""
    table = NatTable(NatBehavior(mapping=APDM, filtering=APDF, mapping_lifetime=120.0), ["203.0.113.1"])
    for second in range(3600):
        assert table.outbound("udp", ("192.168.1.2", 5000), ("198.51.100.1", 1000 + second), float(second))
    assert len(table._by_key) == len(table._by_external) <= 2 * 120 + 1
    assert len(table.mappings(3600.0)) == 119  # those made after 3480 s


async def test_reboot_drops_all_mappings(autojump_clock: object) -> None:
    topo = Topology("full-cone")
    sock = await topo.open()
    mapped = await topo.mapped(sock, (S1, P1))
    topo.router.reboot()
    assert topo.router.mappings() == []
    assert not await topo.inbound_passes(sock, (S1, P1), mapped)
    assert topo.router.counters["reboots"] == 1


async def test_reboot_with_a_new_public_address(autojump_clock: object) -> None:
    topo = Topology("eim-apdf")
    sock = await topo.open()
    before = await topo.mapped(sock, (S1, P1))
    topo.router.reboot(new_public_address="203.0.113.77")
    after = await topo.mapped(sock, (S1, P1))
    assert before[0] == "203.0.113.1" and after[0] == "203.0.113.77"
    assert topo.router.public_addresses == ("203.0.113.77",)
    assert topo.internet.owner("203.0.113.1") is None
    topo.router.change_public_address("203.0.113.78")
    assert (await topo.mapped(sock, (S1, P1)))[0] == "203.0.113.78"
    with pytest.raises(ValueError, match="already used"):
        topo.router.change_public_address(S1)


@pytest.mark.parametrize("preserve", [True, False])
async def test_port_preservation(preserve: bool, autojump_clock: object) -> None:
    """RFC 4787 4.2.1: with port preservation the first mapping of a port keeps it; never overloaded."""
    behavior = nat_preset("eim-apdf", port_preservation=preserve)
    assert behavior is not None
    site = SameLan(behavior)
    _sa, _sb, ma, mb = await site.mappings()  # both use internal port 4000
    if preserve:
        assert ma == ("203.0.113.1", 4000)
        assert mb[1] != 4000
    else:
        assert ma[1] != 4000 and mb[1] != 4000
    assert ma != mb


async def test_symmetric_nat_gives_each_destination_its_own_port_even_with_preservation(
    autojump_clock: object,
) -> None:
    topo = Topology(nat_preset("symmetric", port_preservation=True))
    sock = await topo.open()
    first = await topo.mapped(sock, (S1, P1))
    second = await topo.mapped(sock, (S1, P2))
    assert first == ("203.0.113.1", 5000) and second[1] != 5000


async def test_nested_nat(autojump_clock: object) -> None:
    """A carrier-grade NAT in front of a home NAT: the server sees the outer public address."""
    internet = Internet()
    isp = Lan("100.64.0.0/24", name="isp")
    home = Lan("192.168.1.0/24", name="home")
    cgn = Router(internet, isp, nat="apdm-apdf", public="203.0.113.50")
    home_router = Router(isp, home, nat="eim-eif")
    assert home_router.public_address == "100.64.0.2"
    host = Host("h", home)
    server = Host("s", internet, S1)
    srv = await server.network.bind_udp(S1, P1)
    sock = await host.network.bind_udp("192.168.1.2", 1234)
    await sock.send(b"x", (S1, P1))
    _, seen = await srv.receive()
    assert seen[0] == "203.0.113.50"
    await srv.send(b"y", seen)
    assert await sock.receive() == (b"y", (S1, P1))
    assert next(iter(cgn.mapping_table().values()))[0] == "100.64.0.2"


async def test_ipv6_through_the_nat(autojump_clock: object) -> None:
    internet = Internet(ipv6_pool="2001:db8:ff::/64")
    lan = Lan("192.168.1.0/24", "fd00:1::/64")
    router = Router(internet, lan, nat="eim-apdf")
    assert router.public_addresses == ("203.0.113.1", "2001:db8:ff::1")
    host = Host("h", lan)
    server = Host("s", internet, "2001:db8:100::1")
    srv = await server.network.bind_udp("2001:db8:100::1", P1)
    sock = await host.network.bind_udp("::", 0)
    await sock.send(b"v6", ("2001:db8:100::1", P1))
    _data, seen = await srv.receive()
    assert seen[0] == "2001:db8:ff::1"
    await srv.send(b"back", seen)
    assert await sock.receive() == (b"back", ("2001:db8:100::1", P1))
