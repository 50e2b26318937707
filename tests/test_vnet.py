"""vnet basics: the Network seam of a virtual host, binding rules, UDP delivery, names, configuration errors."""

from __future__ import annotations

import errno
import socket

import pytest
import trio
from iceagent_vnet import (
    PRESETS,
    Host,
    Internet,
    Lan,
    Link,
    NatBehavior,
    Router,
    VirtualNetwork,
    nat_preset,
    vnet,
)

from iceagent.net.base import Network, TcpListener, UdpSocket
from iceagent.plugins import create_plugin_manager


def test_plugin_registers_the_vnet_factory() -> None:
    pm = create_plugin_manager()
    factories: dict[str, object] = {}
    for result in pm.hook.iceagent_networks():
        factories.update(result)
    assert factories["vnet"] is vnet


async def test_network_satisfies_the_protocols(autojump_clock: object) -> None:
    scenario = vnet()
    net = scenario.network_a
    assert isinstance(net, Network)
    assert isinstance(net, VirtualNetwork)
    sock = await net.bind_udp("192.168.1.2", 0)
    listener = await net.listen_tcp("192.168.1.2", 0)
    assert isinstance(sock, UdpSocket)
    assert isinstance(listener, TcpListener)
    sock.close()
    listener.close()


def test_interfaces_list_loopback_and_attachments() -> None:
    lan = Lan("10.0.0.0/24", "fd00:1::/64")
    host = Host("h", lan)
    interfaces = host.network.interfaces()
    assert [i.name for i in interfaces] == ["lo", "eth0"]
    assert interfaces[0].loopback and interfaces[0].addresses == ("127.0.0.1", "::1")
    assert interfaces[1].addresses == ("10.0.0.2", "fd00:1::2")
    assert not interfaces[1].loopback


async def test_bind_errors_are_the_os_errors(autojump_clock: object) -> None:
    net = Host("h", Lan("10.0.0.0/24")).network
    with pytest.raises(OSError) as info:
        await net.bind_udp("10.0.0.99", 0)
    assert info.value.errno == errno.EADDRNOTAVAIL
    sock = await net.bind_udp("10.0.0.2", 4000)
    assert sock.local_address == ("10.0.0.2", 4000)
    with pytest.raises(OSError) as info:
        await net.bind_udp("10.0.0.2", 4000)
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as info:
        await net.bind_udp("0.0.0.0", 4000)  # the wildcard overlaps the specific address
    assert info.value.errno == errno.EADDRINUSE
    await net.bind_udp("127.0.0.1", 4000)  # another address: no conflict
    await net.bind_udp("::", 4000)  # another family: no conflict
    sock.close()
    again = await net.bind_udp("10.0.0.2", 4000)  # free again after close
    again.close()
    with pytest.raises(OverflowError):
        await net.bind_udp("10.0.0.2", 70000)


async def test_reuse_allows_sharing_a_port_and_the_last_bound_gets_unicast(autojump_clock: object) -> None:
    lan = Lan("10.0.0.0/24")
    a, b = Host("a", lan), Host("b", lan)
    first = await a.network.bind_udp("0.0.0.0", 5353, reuse=True)
    second = await a.network.bind_udp("0.0.0.0", 5353, reuse=True)
    with pytest.raises(OSError):
        await a.network.bind_udp("0.0.0.0", 5353)  # without reuse
    sender = await b.network.bind_udp("10.0.0.3", 0)
    await sender.send(b"x", ("10.0.0.2", 5353))
    assert await second.receive() == (b"x", ("10.0.0.3", sender.local_address[1]))
    assert first.pending() == 0


async def test_ephemeral_ports_are_distinct(autojump_clock: object) -> None:
    net = Host("h", Lan("10.0.0.0/24")).network
    socks = [await net.bind_udp("10.0.0.2") for _ in range(50)]
    ports = {s.local_address[1] for s in socks}
    assert len(ports) == 50
    assert all(32768 <= p <= 60999 for p in ports)


async def test_udp_between_two_hosts_on_a_lan(autojump_clock: object) -> None:
    lan = Lan("10.0.0.0/24", link=Link(latency=0.002))
    a, b = Host("a", lan), Host("b", lan)
    sa = await a.network.bind_udp("10.0.0.2", 1000)
    sb = await b.network.bind_udp("0.0.0.0", 2000)
    start = trio.current_time()
    await sa.send(b"ping", ("10.0.0.3", 2000))
    data, source = await sb.receive()
    assert (data, source) == (b"ping", ("10.0.0.2", 1000))
    assert trio.current_time() - start == pytest.approx(0.002)
    await sb.send(b"pong", source)  # a wildcard socket answers from the right address
    assert await sa.receive() == (b"pong", ("10.0.0.3", 2000))
    assert a.counters["sent"] == 1 and b.counters["received"] == 1


async def test_loopback_and_own_addresses(autojump_clock: object) -> None:
    host = Host("h", Lan("10.0.0.0/24"))
    lo = await host.network.bind_udp("127.0.0.1", 7)
    eth = await host.network.bind_udp("10.0.0.2", 8)
    await eth.send(b"to lo", ("127.0.0.1", 7))
    assert await lo.receive() == (b"to lo", ("10.0.0.2", 8))
    await lo.send(b"to eth", ("10.0.0.2", 8))
    assert await eth.receive() == (b"to eth", ("127.0.0.1", 7))
    await lo.send(b"nowhere", ("203.0.113.9", 8))  # a loopback socket reaches only its host
    assert host.drops["no_route"] == 1


async def test_closed_socket(autojump_clock: object) -> None:
    net = Host("h", Lan("10.0.0.0/24")).network
    sock = await net.bind_udp("10.0.0.2", 9)

    async def close_soon() -> None:
        await trio.sleep(1)
        sock.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_soon)
        with pytest.raises(trio.ClosedResourceError):
            await sock.receive()
    with pytest.raises(trio.ClosedResourceError):
        await sock.send(b"x", ("10.0.0.3", 9))
    sock.close()  # idempotent


async def test_unreachable_destinations_are_counted_not_raised(autojump_clock: object) -> None:
    scenario = vnet()
    sock = await scenario.network_a.bind_udp("192.168.1.2", 0)
    await sock.send(b"x", ("192.168.2.2", 1))  # B's private address: not routed on the internet
    await sock.send(b"x", ("198.51.100.1", 1))  # the server host, no socket there
    await sock.send(b"x", ("::1", 1))  # the other family
    await trio.sleep(1)
    drops = scenario.drops()
    assert drops["no_route"] == 2
    assert drops["no_listener"] == 1


async def test_resolve(autojump_clock: object) -> None:
    scenario = vnet(ipv6=True)
    net = scenario.network_a
    assert await net.resolve("198.51.100.1", 3478) == [("198.51.100.1", 3478)]
    assert await net.resolve("2001:DB8::0:1", 1) == [("2001:db8::1", 1)]
    assert await net.resolve("localhost", 80) == [("127.0.0.1", 80), ("::1", 80)]
    assert await net.resolve("stun.vnet", 3478) == [("198.51.100.1", 3478), ("2001:db8:100::1", 3478)]
    scenario.register_name("peer.example", "2001:db8::9", "203.0.113.9")
    assert await net.resolve("PEER.example.", 1) == [("203.0.113.9", 1), ("2001:db8::9", 1)]
    scenario.host_b.register_name("only-b", "10.1.1.1")
    assert await scenario.network_b.resolve("only-b", 1) == [("10.1.1.1", 1)]
    with pytest.raises(socket.gaierror):
        await net.resolve("only-b", 1)
    with pytest.raises(OSError):
        await net.resolve("nowhere.invalid", 1)


async def test_send_to_a_registered_name(autojump_clock: object) -> None:
    scenario = vnet()
    server = await scenario.server_network.bind_udp("198.51.100.1", 3478)
    sock = await scenario.network_a.bind_udp("0.0.0.0", 0)
    await sock.send(b"hi", ("stun.vnet", 3478))
    assert (await server.receive())[0] == b"hi"


def test_impossible_configurations_raise_clear_errors() -> None:
    lan = Lan("10.0.0.0/24")
    Host("a", lan, "10.0.0.5")
    with pytest.raises(ValueError, match=r"10\.0\.0\.5 is already used on .* by a/eth0"):
        Host("b", lan, "10.0.0.5")
    with pytest.raises(ValueError, match="not in"):
        Host("c", lan, "10.9.9.9")
    with pytest.raises(ValueError, match="no IPv6 subnet"):
        Host("d", lan, "fd00::1")
    with pytest.raises(ValueError, match="multicast"):
        Host("e", lan, "224.0.0.1")
    inet = Internet()
    Router(inet, lan)
    with pytest.raises(ValueError, match="already has a gateway"):
        Router(inet, lan)
    with pytest.raises(ValueError) as info:
        nat_preset("cone")
    assert "full-cone" in str(info.value) and "apdm-apdf" in str(info.value)
    with pytest.raises(ValueError):
        vnet(nat_a="bogus")
    with pytest.raises(ValueError):
        Link(loss=1.5)
    with pytest.raises(ValueError):
        Link(mtu=10)
    with pytest.raises(ValueError):
        NatBehavior(mapping="sideways")
    with pytest.raises(ValueError):
        Lan("fd00::/64")
    Host("pub", inet, "198.51.100.7")
    with pytest.raises(ValueError, match="already used"):
        Host("pub2", inet, "198.51.100.7")


def test_presets() -> None:
    assert PRESETS["none"] is None
    combos = [f"{m}-{f}" for m in ("eim", "adm", "apdm") for f in ("eif", "adf", "apdf")]
    for name in combos:
        behavior = PRESETS[name]
        assert behavior is not None and behavior.name == name
    assert PRESETS["full-cone"] == PRESETS["eim-eif"]
    assert PRESETS["restricted-cone"] == PRESETS["eim-adf"]
    assert PRESETS["port-restricted"] == PRESETS["eim-apdf"]
    assert PRESETS["symmetric"] == PRESETS["apdm-apdf"]
    custom = nat_preset("symmetric", hairpinning=False, mapping_lifetime=30)
    assert custom is not None and not custom.hairpinning and custom.mapping_lifetime == 30
    assert NatBehavior(mapping="adm", filtering="address-dependent").name == "adm-adf"
