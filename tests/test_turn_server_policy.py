"""Which peers the embedded TURN server relays to (DESIGN.md "Security defaults"; CVE-2020-26262): loopback,
unspecified, link-local, multicast and broadcast peers are refused by default, the server's own listening
address never gets a datagram, relay-to-relay and private ranges keep working."""

from __future__ import annotations

import pytest
import trio
from turn_server_helpers import (
    RELAY,
    SERVER,
    Client,
    RawClient,
    error_code,
    iceagent_serve,
    make_state,
    turn_udp_address,
)

from iceagent.net.os import OSNetwork
from iceagent.stun import Attr, Message, MessageClass, Method
from iceagent.turn.server import open_turn_server
from iceagent.turn.server.state import FiveTuple, SendToClient, SendToPeer, TurnServerConfig

REFUSED = {
    "127.0.0.1": "loopback",
    "127.1.2.3": "loopback",
    "0.0.0.0": "unspecified",
    "0.1.2.3": "unspecified",
    "169.254.169.254": "link-local",  # the cloud metadata service
    "224.0.0.251": "multicast",
    "239.1.2.3": "multicast",
    "255.255.255.255": "broadcast",
}
REFUSED6 = {
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "ff02::1": "multicast",
    "::ffff:127.0.0.1": "loopback",  # IPv4-mapped: reaches 127.0.0.1 through a dual-stack relay
    "::ffff:169.254.169.254": "link-local",
    # IPv6 addresses that embed an IPv4 one reach it through a translator or relay: judged as both.
    "64:ff9b::7f00:1": "loopback",  # NAT64 well-known prefix (RFC 6052)
    "64:ff9b::a9fe:a9fe": "link-local",
    "64:ff9b:1::7f00:1": "loopback",  # NAT64 local-use prefix (RFC 8215), /96 layout
    "2002:7f00:1::1": "loopback",  # 6to4 (RFC 3056)
    "2002:a9fe:a9fe::1": "link-local",
    "::127.0.0.1": "loopback",  # IPv4-compatible (RFC 4291 2.5.5.1, deprecated)
    "::ffff:0:7f00:1": "loopback",  # IPv4-translated (RFC 2765)
    "64:ff9b::e000:fb": "multicast",
    "fd00:ec2::254": "link-local",  # the IPv6 cloud metadata service (AWS), a ULA: like 169.254.169.254
}


def _client(**config: object) -> Client:
    client = Client(make_state(**config))  # type: ignore[arg-type]
    client.allocate()
    return client


def _client6(**config: object) -> Client:
    client = Client(make_state(**config))  # type: ignore[arg-type]
    client.allocate(attributes=[(Attr.REQUESTED_ADDRESS_FAMILY, 2)], relay=("2001:db8::1", 50000))
    return client


@pytest.mark.parametrize("ip", [*REFUSED, *REFUSED6])
def test_create_permission_and_channel_bind_to_refused_peers_are_403(ip: str) -> None:
    reason = {**REFUSED, **REFUSED6}[ip]
    client = _client6() if ":" in ip else _client()
    response = client.permit((ip, 5000))
    assert error_code(response) == 403 and reason in response.get(Attr.ERROR_CODE)[1]
    assert error_code(client.bind(0x4000, (ip, 5000))) == 403
    stats = client.state.stats
    assert stats.forbidden_by_reason == {reason: 2} and stats.permissions == 0 and stats.channels == 0
    # A Send indication toward it is dropped, and counted under the same reason.
    assert client.send_indication((ip, 5000), b"x") == []
    assert client.state.stats.dropped_by_reason == {reason: 1}


def test_private_ranges_stay_allowed_unless_denied() -> None:
    client = _client()
    for ip in ("10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1"):
        assert client.permit((ip, 5000)).message_class is MessageClass.SUCCESS
        assert client.send_indication((ip, 5000), b"x") == [SendToPeer(RELAY, (ip, 5000), b"x")]
    denied = _client(denied_peers=["10.0.0.0/8"])
    assert error_code(denied.permit(("10.1.2.3", 5000))) == 403
    assert denied.state.stats.forbidden_by_reason == {"denied": 1}


@pytest.mark.parametrize("ip", ["::ffff:10.1.2.3", "64:ff9b::a01:203", "2002:a01:203::1", "::ffff:0:a01:203"])
def test_ipv6_forms_of_an_ipv4_address_do_not_dodge_denied_peers(ip: str) -> None:
    client = _client6(denied_peers=["10.0.0.0/8"])
    assert error_code(client.permit((ip, 5000))) == 403
    assert client.state.stats.forbidden_by_reason == {"denied": 1}
    assert client.permit(("::ffff:192.0.2.7", 5000)).message_class is MessageClass.SUCCESS
    assert client.permit(("64:ff9b::c000:207", 5000)).message_class is MessageClass.SUCCESS


def test_allow_loopback_peers_lifts_loopback_only() -> None:
    client = _client(allow_loopback_peers=True)
    assert client.permit(("127.0.0.1", 5000)).message_class is MessageClass.SUCCESS
    assert client.send_indication(("127.0.0.1", 5000), b"x") == [SendToPeer(RELAY, ("127.0.0.1", 5000), b"x")]
    for ip in ("169.254.169.254", "0.0.0.0", "224.0.0.1", "255.255.255.255"):
        assert error_code(client.permit((ip, 5000))) == 403
    assert _client(allow_link_local_peers=True).permit(("169.254.169.254", 80)).message_class is MessageClass.SUCCESS
    # allowed_peers narrows the policy; it does not lift it.
    assert error_code(_client(allowed_peers=["127.0.0.0/8"]).permit(("127.0.0.1", 5000))) == 403


def test_the_servers_own_listening_address_never_gets_a_datagram() -> None:
    # The server listens on 127.0.0.1:3478; even with loopback peers allowed, no relay sends there.
    own = ("127.0.0.1", 3478)
    client = Client(make_state(server_addresses=[own], allow_loopback_peers=True))
    client.allocate()
    assert client.permit(own).message_class is MessageClass.SUCCESS  # permissions are per IP (RFC 8656 9)
    assert client.send_indication(own, b"loop") == []
    assert client.state.stats.dropped_by_reason == {"own-address": 1}
    assert client.send_indication(("127.0.0.1", 3479), b"ok") == [SendToPeer(RELAY, ("127.0.0.1", 3479), b"ok")]
    response = client.bind(0x4000, own)
    assert error_code(response) == 403 and "own-address" in response.get(Attr.ERROR_CODE)[1]


def test_a_wildcard_listeners_port_is_own_on_every_ip() -> None:
    # Which IPs are this host's changes at run time (and `iceagent serve --stun 0.0.0.0` adds a wildcard STUN
    # listener beside a TURN server on one IP), so a wildcard port is refused on every IP, including
    # addresses the server never heard of when it started.
    state = make_state(server_addresses=[("198.51.100.1", 3479)], allow_loopback_peers=True)
    state.policy.add_own_addresses([("0.0.0.0", 3478)])
    client = Client(state)
    client.allocate()
    client.permit(("198.51.100.1", 1), ("127.0.0.1", 1), ("10.0.0.5", 1), ("203.0.113.9", 1))
    for ip in ("198.51.100.1", "127.0.0.1", "10.0.0.5", "203.0.113.9"):
        assert client.send_indication((ip, 3478), b"x") == []
    assert state.stats.dropped_by_reason == {"own-address": 4}
    assert error_code(client.bind(0x4000, ("10.0.0.5", 3478))) == 403
    # Other ports stay open; a specific listener's port only on its own IP.
    assert client.send_indication(("10.0.0.5", 3479), b"x") == [SendToPeer(RELAY, ("10.0.0.5", 3479), b"x")]


def test_datagrams_from_the_servers_own_listener_are_dropped() -> None:
    state = make_state(server_addresses=[SERVER])
    client = Client(state)
    client.allocate()
    assert client.permit((SERVER[0], 1)).message_class is MessageClass.SUCCESS  # relay-to-relay: per IP
    assert state.receive_from_peer(RELAY, b"from our own listener", SERVER, 0.0) is None
    assert state.stats.dropped_by_reason == {"own-address": 1}
    assert isinstance(state.receive_from_peer(RELAY, b"another port", (SERVER[0], 50002), 0.0), SendToClient)


def test_requests_forged_from_our_own_relay_address_are_dropped() -> None:
    # A client whose source is one of our relays would chain allocations (a relay never sends to the server).
    state = make_state(server_addresses=[SERVER])
    Client(state).allocate()
    forged = Client(state, FiveTuple(RELAY, SERVER, "udp"), user="bob", password="hunter2")
    allocate = Message(Method.ALLOCATE, MessageClass.REQUEST, attributes=[(Attr.REQUESTED_TRANSPORT, 17)])
    assert forged.send(allocate, 0.0) == []
    assert state.stats.dropped_by_reason == {"own-address": 1} and state.stats.allocations == 1


async def test_a_wildcard_server_on_vnet_knows_its_interface_addresses(autojump_clock: object) -> None:
    vnet = pytest.importorskip("iceagent_vnet")
    scenario = vnet.vnet("eim-apdf", "apdm-apdf")
    network = scenario.server_network  # eth0: 198.51.100.1, .2, .3
    async with open_turn_server(network, ["0.0.0.0:3478"], users={"a": "b"}, relay_address="198.51.100.3") as server:
        own = server.state.policy.own
        assert own(("198.51.100.1", 3478)) and own(("198.51.100.2", 3478)) and own(("198.51.100.3", 3478))
        assert own(("::ffff:198.51.100.1", 3478)) and own(("127.0.0.1", 3478)) and own(("203.0.113.1", 3478))
        assert not own(("198.51.100.1", 3479))


def test_relay_to_relay_between_two_clients_of_the_same_server() -> None:
    state = make_state(server_addresses=[SERVER])
    relay_b = ("198.51.100.1", 50002)  # the same IP as the server and RELAY
    a = Client(state)
    a.allocate()
    b = Client(state, FiveTuple(("192.0.2.20", 40000), SERVER, "udp"), user="bob", password="hunter2")
    b.allocate(relay=relay_b)
    assert a.permit(relay_b).message_class is MessageClass.SUCCESS
    assert b.permit(RELAY).message_class is MessageClass.SUCCESS
    assert a.send_indication(relay_b, b"to b") == [SendToPeer(RELAY, relay_b, b"to b")]
    delivered = state.receive_from_peer(relay_b, b"to b", RELAY, 0.0)
    assert isinstance(delivered, SendToClient) and delivered.five_tuple == b.ft


# ---- on loopback sockets, and `iceagent serve` ----

NET = OSNetwork()


async def _permission_code(server_address: tuple[str, int], peer: tuple[str, int]) -> int | None:
    """Allocate as alice:secret on a fresh socket and ask for a permission to `peer`: the error code or None."""
    sock = await NET.bind_udp("127.0.0.1", 0)
    try:
        client = RawClient(sock, server_address)
        assert (await client.allocate()).message_class is MessageClass.SUCCESS
        return error_code(await client.call(Method.CREATE_PERMISSION, [(Attr.XOR_PEER_ADDRESS, peer)]))
    finally:
        sock.close()


async def test_the_default_server_refuses_loopback_peers_and_its_own_address() -> None:
    with trio.fail_after(10):
        async with open_turn_server(NET, ["127.0.0.1:0"], users={"alice": "secret"}, realm="example.org") as server:
            assert await _permission_code(server.address, ("127.0.0.1", 9)) == 403
        allow = TurnServerConfig(allow_loopback_peers=True)
        async with open_turn_server(
            NET, ["127.0.0.1:0"], users={"alice": "secret"}, realm="example.org", config=allow
        ) as server:
            assert await _permission_code(server.address, ("127.0.0.1", 9)) is None
            # A Send indication to the server's own port is dropped: nothing comes back to the sender from it.
            sock = await NET.bind_udp("127.0.0.1", 0)
            try:
                client = RawClient(sock, server.address)
                await client.allocate()
                await client.call(Method.CREATE_PERMISSION, [(Attr.XOR_PEER_ADDRESS, server.address)])
                await client.send_indication(server.address, Message(Method.BINDING, MessageClass.REQUEST).encode())
                await client.call(Method.REFRESH)  # a round trip: the indication was handled before this answer
                assert server.stats.dropped_by_reason == {"own-address": 1}
                assert server.stats.to_peers == 0
            finally:
                sock.close()


@pytest.mark.parametrize(("flags", "code"), [([], 403), (["--allow-loopback-peers"], None)])
async def test_iceagent_serve_refuses_loopback_peers_out_of_the_box(flags: list[str], code: int | None) -> None:
    args = ["--turn", "127.0.0.1:0", "--users-file", "/dev/stdin", "--realm", "example.org", *flags]
    with trio.fail_after(30):
        async with iceagent_serve(*args, stdin=b"alice:secret\n") as run:
            assert await _permission_code(turn_udp_address(run.lines), ("127.0.0.1", 9)) == code
