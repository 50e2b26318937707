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
from iceagent.turn.server_state import FiveTuple, SendToClient, SendToPeer, TurnServerConfig

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


def test_ipv4_mapped_peers_do_not_dodge_denied_peers() -> None:
    client = _client6(denied_peers=["10.0.0.0/8"])
    assert error_code(client.permit(("::ffff:10.1.2.3", 5000))) == 403
    assert client.permit(("::ffff:192.0.2.7", 5000)).message_class is MessageClass.SUCCESS


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


def test_a_wildcard_listener_is_on_every_local_ip() -> None:
    state = make_state(server_addresses=[("0.0.0.0", 3478)], allow_loopback_peers=True)
    state.policy.add_local_ips(["198.51.100.1"])  # the relay IP (the Trio layer adds it, and the interfaces')
    client = Client(state)
    client.allocate()
    client.permit(("198.51.100.1", 1), ("127.0.0.1", 1), ("203.0.113.9", 1))
    assert client.send_indication(("198.51.100.1", 3478), b"x") == []
    assert client.send_indication(("127.0.0.1", 3478), b"x") == []
    assert state.stats.dropped_by_reason == {"own-address": 2}
    # Another host's port 3478 is not ours.
    assert client.send_indication(("203.0.113.9", 3478), b"x") == [SendToPeer(RELAY, ("203.0.113.9", 3478), b"x")]


async def test_a_wildcard_server_on_vnet_knows_its_interface_addresses(autojump_clock: object) -> None:
    vnet = pytest.importorskip("iceagent_vnet")
    scenario = vnet.vnet("eim-apdf", "apdm-apdf")
    network = scenario.server_network  # eth0: 198.51.100.1, .2, .3
    async with open_turn_server(network, ["0.0.0.0:3478"], users={"a": "b"}, relay_address="198.51.100.3") as server:
        own = server.state.policy.own
        assert own(("198.51.100.1", 3478)) and own(("198.51.100.2", 3478)) and own(("198.51.100.3", 3478))
        assert own(("::ffff:198.51.100.1", 3478)) and own(("127.0.0.1", 3478))
        assert not own(("198.51.100.1", 3479)) and not own(("203.0.113.1", 3478))


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
