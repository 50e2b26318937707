"""vnet multicast: delivered within a LAN to sockets that joined the group, never across a router."""

from __future__ import annotations

import errno

import pytest
import trio
from iceagent_vnet import Host, Internet, Lan, Router

MDNS4 = ("224.0.0.251", 5353)
MDNS6 = ("ff02::fb", 5353)


async def test_multicast_reaches_members_of_the_lan_only(autojump_clock: object) -> None:
    internet = Internet()
    lan = Lan("192.168.1.0/24", "fd00:1::/64")
    other_lan = Lan("192.168.2.0/24")
    Router(internet, lan, nat="eim-eif")
    Router(internet, other_lan, nat="eim-eif")
    sender, member, lazy, owner = (Host(n, lan) for n in ("sender", "member", "lazy", "owner"))
    far = Host("far", other_lan)
    public = Host("public", internet)

    socks = {}
    for host in (sender, member, lazy, owner, far, public):
        sock = await host.network.bind_udp("0.0.0.0", 5353, reuse=True)
        if host is not lazy:
            await host.network.join_multicast(sock, MDNS4[0], host.address)
        socks[host.name] = sock
    # a socket on a unicast address does not receive multicast (as on Linux)
    unicast = await owner.network.bind_udp(owner.address, 5353, reuse=True)
    await owner.network.join_multicast(unicast, MDNS4[0], owner.address)

    await socks["sender"].send(b"query", MDNS4)
    await trio.sleep(1)
    source = (sender.address, 5353)
    assert await socks["member"].receive() == (b"query", source)
    assert await socks["owner"].receive() == (b"query", source)
    assert await socks["sender"].receive() == (b"query", source)  # IP_MULTICAST_LOOP, as on Linux
    for name in ("lazy", "far", "public"):
        assert socks[name].pending() == 0, name
    assert unicast.pending() == 0


async def test_ipv6_multicast(autojump_clock: object) -> None:
    lan = Lan("192.168.1.0/24", "fd00:1::/64")
    a, b = Host("a", lan), Host("b", lan)
    sa = await a.network.bind_udp("::", 5353, reuse=True)
    sb = await b.network.bind_udp("::", 5353, reuse=True)
    await b.network.join_multicast(sb, MDNS6[0], "fd00:1::3")
    await sa.send(b"v6 query", MDNS6)
    assert await sb.receive() == (b"v6 query", ("fd00:1::2", 5353))
    assert sa.pending() == 0  # a did not join


async def test_members_answer_by_unicast(autojump_clock: object) -> None:
    lan = Lan("10.0.0.0/24")
    a, b = Host("a", lan), Host("b", lan)
    sa = await a.network.bind_udp("0.0.0.0", 5353, reuse=True)
    sb = await b.network.bind_udp("0.0.0.0", 5353, reuse=True)
    for host, sock in ((a, sa), (b, sb)):
        await host.network.join_multicast(sock, MDNS4[0], "0.0.0.0")
    await sa.send(b"who?", MDNS4)
    await sa.receive()  # our own
    _data, source = await sb.receive()
    await sb.send(b"me", source)
    assert await sa.receive() == (b"me", ("10.0.0.3", 5353))


async def test_join_errors(autojump_clock: object) -> None:
    lan = Lan("10.0.0.0/24")
    a, b = Host("a", lan), Host("b", lan)
    sock = await a.network.bind_udp("0.0.0.0", 5353)
    with pytest.raises(OSError) as info:
        await a.network.join_multicast(sock, "10.0.0.9", "10.0.0.2")
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        await a.network.join_multicast(sock, "224.0.0.251", "10.0.0.3")
    assert info.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(OSError) as info:
        await a.network.join_multicast(sock, "ff02::fb", "10.0.0.2")
    assert info.value.errno == errno.EINVAL
    await a.network.join_multicast(sock, "224.0.0.251", "10.0.0.2")
    with pytest.raises(OSError) as info:
        await a.network.join_multicast(sock, "224.0.0.251", "10.0.0.2")
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(TypeError):
        await b.network.join_multicast(sock, "224.0.0.251", "10.0.0.3")
    sock.close()
    with pytest.raises(trio.ClosedResourceError):
        await a.network.join_multicast(sock, "224.0.0.252", "10.0.0.2")
