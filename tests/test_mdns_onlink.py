"""mDNS answers and queries from sources off the local link are ignored and counted (RFC 6762 5.5, 11):
sans-IO, and on the vnet with a host beyond a router (MockClock; multicast stays in the virtual LAN)."""

from __future__ import annotations

import pytest
import trio
from dnslib import DNSRecord
from iceagent_vnet import Host, Internet, Lan, Router

from iceagent.mdns import MdnsResolveError, MdnsResolver, ResolverCore, Zone, open_responder
from iceagent.mdns.link import LocalLink
from iceagent.mdns.wire import MDNS_PORT, QTYPE_A, build_query, build_response
from iceagent.net.base import Interface
from iceagent.net.os import OSNetwork

NAME = "0b5e4e2c-6f0e-4d7d-9d69-8a2f6f9d3a11.local"


def lan() -> LocalLink:
    """The link of a host with 192.168.1.2/24 and fd00:1::2/64."""
    return LocalLink([
        Interface("lo", ("127.0.0.1", "::1"), loopback=True, networks=("127.0.0.0/8", "::1/128")),
        Interface("eth0", ("192.168.1.2", "fd00:1::2"), networks=("192.168.1.0/24", "fd00:1::/64")),
    ])


@pytest.mark.parametrize(
    ("source", "on_link"),
    [
        ("192.168.1.77", True),  # the subnet
        ("fd00:1::9", True),
        ("fe80::1234", True),  # IPv6 link-local is on the link by definition
        ("169.254.3.4", True),  # IPv4 link-local (RFC 3927)
        ("127.0.0.1", True),  # this host
        ("192.168.2.77", False),  # beyond a router
        ("203.0.113.9", False),
        ("fd00:2::9", False),
        ("not an address", False),
    ],
)
def test_local_link_is_the_subnets_of_the_interfaces(source: str, on_link: bool) -> None:
    assert (source in lan()) is on_link


def test_without_subnets_every_source_is_on_link() -> None:
    """A Network that does not report subnets (Interface.networks empty) cannot tell: nothing is dropped."""
    link = LocalLink([Interface("eth0", ("192.168.1.2",))])
    assert not link.known and "203.0.113.9" in link


def test_os_network_reports_the_subnets_of_its_interfaces() -> None:
    loopback = [i for i in OSNetwork().interfaces() if i.loopback]
    assert loopback and "127.0.0.0/8" in loopback[0].networks
    assert "127.0.0.1" in LocalLink(OSNetwork().interfaces())


def test_responder_ignores_queries_from_off_link_sources() -> None:
    zone = Zone(link=lan())
    name = zone.publish("192.168.1.2")
    legacy = bytes(DNSRecord.question(name, "A").pack())
    assert zone.handle(legacy, ("203.0.113.9", 40000), 4, 0.0) == []  # legacy unicast (6.7) from afar
    qu = build_query([name], [QTYPE_A], unicast=True)
    assert zone.handle(qu, ("192.168.2.7", MDNS_PORT), 4, 0.0) == []  # a QU question (5.4) from afar
    assert zone.stats.off_link == 2 and zone.stats.answered_unicast == 0
    (reply,) = zone.handle(legacy, ("192.168.1.3", 40000), 4, 0.0)
    assert reply.to == ("192.168.1.3", 40000)


def test_resolver_ignores_answers_from_off_link_sources_and_other_ports() -> None:
    core = ResolverCore(link=lan())
    core.want(NAME)
    forged = build_response([(NAME, "203.0.113.66")])
    assert core.feed(forged, 0.0, ("203.0.113.9", MDNS_PORT)) == {}
    assert core.feed(forged, 0.0, ("fd00:2::9", MDNS_PORT)) == {}
    assert core.feed(forged, 0.0, ("192.168.1.3", 40000)) == {}  # responses come from port 5353 (6)
    assert (core.stats.off_link, core.stats.ignored, core.cache_size) == (2, 1, 0)
    assert core.feed(build_response([(NAME, "192.168.1.3")]), 0.0, ("fe80::3", MDNS_PORT)) == {NAME: "192.168.1.3"}


def routed_lan() -> tuple[Host, Host, Host]:
    """A host and a neighbour on 192.168.1.0/24, and a host on the internet beyond a router (no NAT)."""
    internet = Internet()
    lan = Lan("192.168.1.0/24")
    Router(internet, lan, nat=None)
    return Host("a", lan), Host("neighbour", lan), Host("remote", internet)


async def test_off_link_host_gets_no_answer_to_unicast_queries(autojump_clock: object) -> None:
    ha, neighbour, remote = routed_lan()
    with trio.fail_after(30):
        async with open_responder(ha.network) as responder:
            name = await responder.publish(ha.address)
            query = bytes(DNSRecord.question(name, "A").pack())
            far = await remote.network.bind_udp("0.0.0.0", 0)
            far5353 = await remote.network.bind_udp("0.0.0.0", MDNS_PORT)
            await far.send(query, (ha.address, MDNS_PORT))  # legacy unicast (RFC 6762 6.7)
            await far5353.send(build_query([name], [QTYPE_A], unicast=True), (ha.address, MDNS_PORT))  # QU (5.4)
            with trio.move_on_after(5):
                await far.receive()
                pytest.fail("the off-link host learned the address behind the name")
            with trio.move_on_after(1):
                await far5353.receive()
                pytest.fail("the off-link host learned the address behind the name")
            assert responder.zone.stats.off_link == 2
            near = await neighbour.network.bind_udp("0.0.0.0", 0)
            await near.send(query, (ha.address, MDNS_PORT))
            data, _ = await near.receive()  # the same query from the link is answered
            assert str(DNSRecord.parse(data).rr[0].rdata) == ha.address
            far.close()
            far5353.close()
            near.close()


async def test_forged_unicast_answers_from_off_link_do_not_resolve_names(autojump_clock: object) -> None:
    ha, neighbour, remote = routed_lan()
    forged = build_response([(NAME, "203.0.113.66")])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            resolver = MdnsResolver(ha.network)
            await nursery.start(resolver.run, [ha.address])
            far = await remote.network.bind_udp("0.0.0.0", MDNS_PORT)

            async def spoof() -> None:
                while True:
                    await far.send(forged, (ha.address, MDNS_PORT))  # unicast: multicast stays on its LAN
                    await trio.sleep(0.1)

            nursery.start_soon(spoof)
            with pytest.raises(MdnsResolveError):
                await resolver.resolve(NAME, 2.0)
            assert resolver.core.stats.off_link >= 10
            near = await neighbour.network.bind_udp("0.0.0.0", MDNS_PORT)
            async with trio.open_nursery() as inner:
                inner.start_soon(resolver.resolve, NAME, 2.0)
                await trio.sleep(0.5)
                await near.send(build_response([(NAME, neighbour.address)]), (ha.address, MDNS_PORT))
            assert resolver.core.cached(NAME, trio.current_time()) == neighbour.address  # from the link: taken
            nursery.cancel_scope.cancel()
        far.close()
        near.close()
