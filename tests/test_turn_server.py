"""The embedded TURN server (RFC 8656): the sans-IO core with literal times, then the Trio layer on real loopback
sockets (UDP, TCP, TLS), on vnet, and against aioice's TURN client."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from functools import partial
from typing import Any

import pytest
import trio
from ipv6 import needs_ipv6
from turn_server_helpers import (
    CLIENT,
    FT,
    PEER,
    PEER2,
    REALM,
    RELAY,
    SERVER,
    USERS,
    Attrs,
    Client,
    RawClient,
    decode,
    error_code,
    iceagent_serve,
    make_state,
    only_response,
    turn_udp_address,
)

from iceagent.cli import main
from iceagent.net.base import Address, UdpSocket
from iceagent.net.os import OSNetwork
from iceagent.stun import Attr, Message, MessageClass, Method, PasswordAlgorithm, long_term_key
from iceagent.turn.server import TurnServer, open_turn_server, serve_turn
from iceagent.turn.server.auth import NONCE_COOKIE
from iceagent.turn.server.state import (
    CloseRelay,
    FiveTuple,
    OpenRelay,
    SendToClient,
    SendToPeer,
    TurnServerConfig,
    TurnServerState,
    split_stream,
)

# ---- authentication (RFC 8489 9.2) ----


def test_unauthenticated_request_gets_401_with_realm_nonce_and_algorithms() -> None:
    state = make_state()
    request = Message(Method.ALLOCATE, MessageClass.REQUEST, b"t" * 12, [(Attr.REQUESTED_TRANSPORT, 17)])
    response = only_response(state.receive_from_client(request.encode(fingerprint=True), FT, 0.0))
    assert response.message_class is MessageClass.ERROR and response.transaction_id == b"t" * 12
    assert error_code(response) == 401
    assert response.get(Attr.REALM) == REALM
    nonce = response.get(Attr.NONCE)
    assert nonce is not None and nonce.startswith(NONCE_COOKIE + "wAAA")  # password algorithms + anonymity
    assert response.get(Attr.PASSWORD_ALGORITHMS) == [(PasswordAlgorithm.SHA256, b""), (PasswordAlgorithm.MD5, b"")]
    assert Attr.MESSAGE_INTEGRITY not in response and response.verify_fingerprint()
    assert Attr.SOFTWARE not in response  # unauthenticated: nothing more than RFC 8489 9.2.4 asks
    assert state.stats.allocations == 0 and state.stats.errors == 1


def test_allocate_after_the_challenge() -> None:
    state = make_state()
    client = Client(state)
    response = client.allocate(now=5.0)
    assert response.message_class is MessageClass.SUCCESS and response.method is Method.ALLOCATE
    assert response.get(Attr.XOR_RELAYED_ADDRESS) == RELAY
    assert response.get(Attr.XOR_MAPPED_ADDRESS) == CLIENT
    assert response.get(Attr.LIFETIME) == 600
    assert Attr.MESSAGE_INTEGRITY in response and Attr.MESSAGE_INTEGRITY_SHA256 not in response
    allocation = state.allocation(FT, 5.0)
    assert allocation is not None and allocation.relay == RELAY and allocation.username == "alice"
    assert allocation.expires == 605.0
    assert state.stats.allocations == 1 and state.stats.allocations_created == 1


def test_sha256_password_algorithm_and_integrity() -> None:
    state = make_state()
    client = Client(state)
    offered = [(PasswordAlgorithm.SHA256, b""), (PasswordAlgorithm.MD5, b"")]
    key = long_term_key("alice", REALM, "secret", "sha256")
    extra = [(Attr.PASSWORD_ALGORITHMS, offered), (Attr.PASSWORD_ALGORITHM, (PasswordAlgorithm.SHA256, b""))]
    response = client.allocate(extra_auth=extra, key=key, integrity="sha256")
    assert response.message_class is MessageClass.SUCCESS
    assert Attr.MESSAGE_INTEGRITY_SHA256 in response and Attr.MESSAGE_INTEGRITY not in response
    assert response.verify_integrity(key)


@pytest.mark.parametrize(
    "extra",
    [
        [(Attr.PASSWORD_ALGORITHM, (PasswordAlgorithm.MD5, b""))],  # without the list
        [(Attr.PASSWORD_ALGORITHMS, [(PasswordAlgorithm.MD5, b"")]), (Attr.PASSWORD_ALGORITHM, (1, b""))],
        [
            (Attr.PASSWORD_ALGORITHMS, [(PasswordAlgorithm.SHA256, b""), (PasswordAlgorithm.MD5, b"")]),
            (Attr.PASSWORD_ALGORITHM, (3, b"")),
        ],
    ],
    ids=["algorithm-alone", "list-differs", "not-in-list"],
)
def test_password_algorithm_mismatch_is_400(extra: Attrs) -> None:
    client = Client(make_state())
    response = client.call(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, 17)], extra_auth=extra)
    assert response.get(Attr.ERROR_CODE) == (400, "Bad Request")


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("mallory", "x")])
def test_wrong_credentials_are_401(user: str, password: str) -> None:
    client = Client(make_state(), user=user, password=password)
    response = client.call(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, 17)])
    assert response.get(Attr.ERROR_CODE) == (401, "Unauthenticated")
    assert response.get(Attr.NONCE) and response.get(Attr.REALM) == REALM
    assert Attr.MESSAGE_INTEGRITY not in response


def test_wrong_realm_is_401_and_missing_nonce_is_400() -> None:
    state = make_state()
    key = long_term_key("alice", "other.org", "secret")
    bad_realm = Message(
        Method.ALLOCATE,
        MessageClass.REQUEST,
        None,
        [(Attr.USERNAME, "alice"), (Attr.REALM, "other.org"), (Attr.NONCE, state.auth.nonce(CLIENT, "udp", 0))],
    )
    response = only_response(state.receive_from_client(bad_realm.encode(integrity_key=key), FT, 0.0))
    assert response.get(Attr.ERROR_CODE) == (401, "Unauthenticated")
    no_nonce = Message(Method.ALLOCATE, MessageClass.REQUEST, None, [(Attr.USERNAME, "alice"), (Attr.REALM, REALM)])
    response = only_response(state.receive_from_client(no_nonce.encode(integrity_key=key), FT, 0.0))
    assert response.get(Attr.ERROR_CODE) == (400, "Bad Request")


def test_userhash_instead_of_username() -> None:
    client = Client(make_state())
    assert client.allocate(username=False).message_class is MessageClass.SUCCESS


def test_stale_nonce_is_438_then_the_new_nonce_works() -> None:
    state = make_state(nonce_lifetime=10)
    client = Client(state)
    client.allocate(now=0.0)
    assert client.call(Method.REFRESH, now=9.9).message_class is MessageClass.SUCCESS
    stale = client.call(Method.REFRESH, now=10.0)
    assert error_code(stale) == 438 and stale.get(Attr.REALM) == REALM
    assert stale.get(Attr.NONCE) != client.nonce and Attr.PASSWORD_ALGORITHMS in stale
    client.nonce = stale.get(Attr.NONCE)
    assert client.call(Method.REFRESH, now=10.0).message_class is MessageClass.SUCCESS


def test_a_nonce_is_bound_to_its_client() -> None:
    state = make_state()
    alice = Client(state)
    alice.allocate()
    other = Client(state, FiveTuple(("192.0.2.99", 1234), SERVER, "udp"))
    other.nonce = alice.nonce  # replayed from another address
    assert error_code(other.call(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, 17)])) == 438


def test_no_password_algorithms_offered_gives_a_plain_nonce() -> None:
    state = make_state(password_algorithms=())
    request = Message(Method.ALLOCATE, MessageClass.REQUEST)
    response = only_response(state.receive_from_client(request.encode(), FT, 0.0))
    assert Attr.PASSWORD_ALGORITHMS not in response
    assert not response.get(Attr.NONCE).startswith(NONCE_COOKIE)
    assert Client(state).allocate().message_class is MessageClass.SUCCESS


# ---- Allocate (RFC 8656 7.2) ----


def test_allocation_mismatch_and_retransmission() -> None:
    state = make_state()
    client = Client(state)
    tid = os.urandom(12)
    first = client.allocate(tid=tid)
    again = client.request(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, 17)], 1.0, tid=tid)
    assert len(again) == 1 and decode(again[0]) == first  # the same response, not a second allocation
    mismatch = client.call(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, 17)], 1.0)
    assert error_code(mismatch) == 437 and "already has an allocation" in mismatch.get(Attr.ERROR_CODE)[1]
    assert state.stats.allocations == 1


@pytest.mark.parametrize(
    ("attributes", "code"),
    [
        ([(Attr.REQUESTED_TRANSPORT, 6)], 442),
        ([], 400),
        ([(Attr.REQUESTED_TRANSPORT, 17), (Attr.DONT_FRAGMENT, None)], 420),
        ([(Attr.REQUESTED_TRANSPORT, 17), (Attr.REQUESTED_ADDRESS_FAMILY, 3)], 440),
        ([(Attr.REQUESTED_TRANSPORT, 17), (Attr.EVEN_PORT, True)], 508),
        ([(Attr.REQUESTED_TRANSPORT, 17), (Attr.RESERVATION_TOKEN, b"12345678")], 508),
        ([(Attr.REQUESTED_TRANSPORT, 17), (Attr.RESERVATION_TOKEN, b"12345678"), (Attr.EVEN_PORT, False)], 400),
        ([(Attr.REQUESTED_TRANSPORT, 17), (0x7FFF, b"x")], 420),
    ],
    ids=["tcp", "no-transport", "dont-fragment", "family-3", "even-port-r", "token", "token-and-even", "unknown"],
)
def test_allocate_errors(attributes: Attrs, code: int) -> None:
    state = make_state()
    response = Client(state).call(Method.ALLOCATE, attributes)
    assert error_code(response) == code
    assert response.get(Attr.ERROR_CODE)[1]  # a reason a user can act on
    if code == 420:
        assert response.get(Attr.UNKNOWN_ATTRIBUTES) in ([int(Attr.DONT_FRAGMENT)], [0x7FFF])
    assert state.stats.allocations == 0 and not state._pending


def test_ipv6_relay_only_when_the_server_has_one() -> None:
    v4_only = TurnServerState(realm=REALM, users=USERS, relay_families=(4,))
    six = [(Attr.REQUESTED_TRANSPORT, 17), (Attr.REQUESTED_ADDRESS_FAMILY, 2)]
    response = Client(v4_only).call(Method.ALLOCATE, six)
    assert error_code(response) == 440 and "IPv6" in response.get(Attr.ERROR_CODE)[1]
    both = make_state()
    out = Client(both).request(Method.ALLOCATE, six)
    assert out == [OpenRelay(FT, 6)]


def test_even_port_without_r_asks_the_io_layer_for_an_even_port() -> None:
    out = Client(make_state()).request(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, 17), (Attr.EVEN_PORT, False)])
    assert out == [OpenRelay(FT, 4, even_port=True)]


def test_relay_failure_is_508_and_frees_the_pending_allocation() -> None:
    state = make_state()
    client = Client(state)
    assert len(client.request(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, 17)])) == 1
    response = only_response(state.relay_failed(FT, "no ports left", 0.0))
    assert error_code(response) == 508 and "no ports left" in response.get(Attr.ERROR_CODE)[1]
    assert client.allocate().message_class is MessageClass.SUCCESS


def test_quota_per_user_is_486_and_total_is_508() -> None:
    state = make_state(max_allocations_per_user=2, max_allocations=3)
    for port in (1, 2):
        ft = FiveTuple(("192.0.2.10", port), SERVER, "udp")
        assert Client(state, ft).allocate(relay=("198.51.100.1", port)).message_class is MessageClass.SUCCESS
    third = Client(state, FiveTuple(("192.0.2.10", 3), SERVER, "udp")).allocate()
    assert error_code(third) == 486 and "'alice' has 2 allocations" in third.get(Attr.ERROR_CODE)[1]
    bob = Client(state, FiveTuple(("192.0.2.11", 1), SERVER, "udp"), "bob", "hunter2")
    assert bob.allocate(relay=("198.51.100.1", 3)).message_class is MessageClass.SUCCESS
    bob2 = Client(state, FiveTuple(("192.0.2.11", 2), SERVER, "udp"), "bob", "hunter2")
    assert error_code(bob2.allocate()) == 508


@pytest.mark.parametrize(("requested", "granted"), [(None, 600), (60, 600), (1200, 1200), (99999, 3600)])
def test_lifetime_is_clamped_between_default_and_max(requested: int | None, granted: int) -> None:
    attributes = [] if requested is None else [(Attr.LIFETIME, requested)]
    assert Client(make_state()).allocate(attributes=attributes).get(Attr.LIFETIME) == granted


# ---- Refresh and expiry (RFC 8656 6, 8) ----


def test_refresh_extends_and_lifetime_zero_deletes() -> None:
    state = make_state()
    client = Client(state)
    client.allocate(now=0.0)
    response = client.call(Method.REFRESH, [(Attr.LIFETIME, 1800)], now=100.0)
    assert response.get(Attr.LIFETIME) == 1800 and state.allocation(FT, 1899.0) is not None
    tid = os.urandom(12)
    outputs = client.request(Method.REFRESH, [(Attr.LIFETIME, 0)], 200.0, tid=tid)
    assert len(outputs) == 2 and outputs[0] == CloseRelay(FT, RELAY, "deleted by the client (Refresh LIFETIME 0)")
    deleted = decode(outputs[1])
    assert deleted.message_class is MessageClass.SUCCESS and deleted.get(Attr.LIFETIME) == 0
    retransmitted = client.request(Method.REFRESH, [(Attr.LIFETIME, 0)], 201.0, tid=tid)
    assert [decode(o) for o in retransmitted] == [deleted]  # answered from the cache, not 437
    assert error_code(client.call(Method.REFRESH, now=202.0)) == 437
    assert state.stats.allocations == 0 and state.stats.allocations_deleted == 1


def test_refresh_of_another_users_allocation_is_441_and_wrong_family_443() -> None:
    state = make_state()
    Client(state).allocate()
    bob = Client(state, FT, "bob", "hunter2")
    assert error_code(bob.call(Method.REFRESH)) == 441
    alice = Client(state)
    assert error_code(alice.call(Method.REFRESH, [(Attr.REQUESTED_ADDRESS_FAMILY, 2)])) == 443


def test_allocation_expires_and_its_relay_is_closed() -> None:
    state = make_state()
    client = Client(state)
    client.allocate(now=0.0)
    assert state.get_timer() == 600.0
    assert state.handle_timer(599.9) == []
    assert state.handle_timer(600.0) == [CloseRelay(FT, RELAY, "the allocation expired (not refreshed)")]
    assert state.stats.allocations == 0 and state.stats.allocations_expired == 1
    assert state.receive_from_peer(RELAY, b"late", PEER, 600.0) is None
    assert error_code(client.call(Method.REFRESH, now=601.0)) == 437
    assert client.allocate(now=601.0).message_class is MessageClass.SUCCESS  # the 5-tuple is free again


def test_an_expired_allocation_is_gone_before_the_timer_runs() -> None:
    state = make_state(default_lifetime=10, max_lifetime=10)
    client = Client(state)
    client.allocate(now=0.0)
    client.permit(PEER, now=0.0)
    assert state.receive_from_peer(RELAY, b"x", PEER, 10.0) is None
    assert error_code(client.call(Method.CREATE_PERMISSION, [(Attr.XOR_PEER_ADDRESS, PEER)], 10.0)) == 437


def test_closing_a_tcp_connection_deletes_its_allocation() -> None:
    state = make_state()
    ft = FiveTuple(CLIENT, SERVER, "tcp")
    Client(state, ft).allocate()
    assert state.client_closed(ft, 1.0) == [CloseRelay(ft, RELAY, "the client's connection closed")]
    assert state.client_closed(ft, 1.0) == []


# ---- permissions, Send and Data (RFC 8656 9, 10, 11) ----


def test_no_permission_no_relaying_either_way() -> None:
    state = make_state()
    client = Client(state)
    client.allocate()
    assert client.send_indication(PEER, b"hello") == []
    assert state.receive_from_peer(RELAY, b"hi", PEER, 1.0) is None
    assert state.stats.dropped == 2 and state.stats.to_peers == 0


def test_send_and_data_indications_through_a_permission() -> None:
    state = make_state()
    client = Client(state)
    client.allocate()
    assert client.permit(PEER, PEER2, now=1.0).message_class is MessageClass.SUCCESS
    assert client.send_indication(PEER, b"hello", 2.0) == [SendToPeer(RELAY, PEER, b"hello")]
    other_port = (PEER[0], 9999)  # permissions are per IP address (RFC 8656 9)
    out = state.receive_from_peer(RELAY, b"back", other_port, 3.0)
    assert out is not None and out.five_tuple == FT
    data = Message.decode(out.data)
    assert data.method is Method.DATA and data.message_class is MessageClass.INDICATION
    assert data.get(Attr.XOR_PEER_ADDRESS) == other_port and data.get(Attr.DATA) == b"back"
    assert state.stats.permissions == 2 and state.stats.to_peers == 1 and state.stats.to_clients == 1


def test_permissions_expire_after_300_s_unless_refreshed() -> None:
    state = make_state()
    client = Client(state)
    client.allocate(now=0.0)
    client.permit(PEER, PEER2, now=0.0)
    client.permit(PEER, now=200.0)  # refresh one
    assert state.receive_from_peer(RELAY, b"x", PEER2, 299.9) is not None
    assert state.receive_from_peer(RELAY, b"x", PEER2, 300.0) is None
    assert state.receive_from_peer(RELAY, b"x", PEER, 499.9) is not None
    assert client.send_indication(PEER, b"x", 500.0) == []
    state.handle_timer(500.0)
    assert state.stats.permissions == 0


def test_create_permission_errors() -> None:
    state = make_state(denied_peers=["10.0.0.0/8"])
    client = Client(state)
    client.allocate()
    assert error_code(client.call(Method.CREATE_PERMISSION)) == 400
    mismatch = client.permit(("2001:db8::1", 5))
    assert error_code(mismatch) == 443
    forbidden = client.permit(PEER, ("10.1.2.3", 5))
    assert error_code(forbidden) == 403 and "10.1.2.3" in forbidden.get(Attr.ERROR_CODE)[1]
    assert state.stats.permissions == 0  # all or nothing


def test_allowed_peers_policy_and_permission_quota() -> None:
    state = make_state(allowed_peers=["203.0.113.0/24"], max_permissions=1)
    client = Client(state)
    client.allocate()
    assert error_code(client.permit(("192.0.2.1", 1))) == 403
    assert client.permit(PEER).message_class is MessageClass.SUCCESS
    assert error_code(client.permit(PEER2)) == 508


def test_send_indication_is_dropped_without_data_or_with_dont_fragment() -> None:
    state = make_state()
    client = Client(state)
    client.allocate()
    client.permit(PEER)
    no_data = Message(Method.SEND, MessageClass.INDICATION, None, [(Attr.XOR_PEER_ADDRESS, PEER)])
    df = Message(
        Method.SEND,
        MessageClass.INDICATION,
        None,
        [(Attr.XOR_PEER_ADDRESS, PEER), (Attr.DATA, b"x"), (Attr.DONT_FRAGMENT, None)],
    )
    assert client.send(no_data, 0.0) == [] and client.send(df, 0.0) == []


# ---- channels (RFC 8656 11, 12) ----


def test_channel_bind_and_channel_data_both_ways_with_literal_bytes() -> None:
    state = make_state()
    client = Client(state)
    client.allocate()
    assert client.bind(0x4000, PEER).message_class is MessageClass.SUCCESS
    # ChannelBind installs the permission too.
    assert client.send(bytes.fromhex("4000 0003 616263 00"), 1.0) == [SendToPeer(RELAY, PEER, b"abc")]
    out = state.receive_from_peer(RELAY, b"xyz", PEER, 1.0)
    assert out == SendToClient(FT, bytes.fromhex("4000 0003 78797a"))
    # From the same IP but another port: no channel for that transport address, so a Data indication.
    out = state.receive_from_peer(RELAY, b"xyz", (PEER[0], 1), 1.0)
    assert out is not None and Message.decode(out.data).method is Method.DATA
    assert state.stats.channels == 1


def test_channel_data_over_tcp_is_padded() -> None:
    state = make_state()
    ft = FiveTuple(CLIENT, SERVER, "tcp")
    client = Client(state, ft)
    client.allocate()
    client.bind(0x4FFF, PEER)
    assert state.receive_from_peer(RELAY, b"xyzzy", PEER, 1.0) == SendToClient(
        ft, bytes.fromhex("4fff 0005 78797a7a79 000000")
    )


@pytest.mark.parametrize("number", [0x3FFF, 0x5000, 0x0000])
def test_channel_number_out_of_range_is_400(number: int) -> None:
    client = Client(make_state())
    client.allocate()
    response = client.bind(number, PEER)
    assert error_code(response) == 400 and "0x4000-0x4FFF" in response.get(Attr.ERROR_CODE)[1]


def test_channel_rebinding_rules() -> None:
    state = make_state()
    client = Client(state)
    client.allocate(now=0.0)
    client.bind(0x4000, PEER, now=0.0)
    assert error_code(client.bind(0x4000, PEER2)) == 400  # the number to another peer
    assert error_code(client.bind(0x4001, PEER)) == 400  # the peer to another number
    assert client.bind(0x4000, PEER, now=500.0).message_class is MessageClass.SUCCESS  # refresh
    assert error_code(client.call(Method.CHANNEL_BIND, [(Attr.CHANNEL_NUMBER, 0x4002)])) == 400
    client.call(Method.REFRESH, [(Attr.LIFETIME, 3600)], now=500.0)
    client.permit(PEER, now=1000.0)
    state.handle_timer(1100.0)  # the channel expired at 1100
    assert state.stats.channels == 0
    assert client.send(bytes.fromhex("4000 0001 61 000000"), 1100.0) == []
    assert error_code(client.bind(0x4000, PEER2, now=1200.0)) == 400  # cooling down for 5 minutes
    assert error_code(client.bind(0x4001, PEER, now=1200.0)) == 400
    assert client.bind(0x4000, PEER, now=1200.0).message_class is MessageClass.SUCCESS  # the same pair is fine
    assert client.bind(0x4001, PEER2, now=1200.0).message_class is MessageClass.SUCCESS


def test_cooldown_ends_after_five_minutes() -> None:
    state = make_state()
    client = Client(state)
    client.allocate(now=0.0, attributes=[(Attr.LIFETIME, 3600)])
    client.bind(0x4000, PEER, now=0.0)
    assert error_code(client.bind(0x4000, PEER2, now=600.0)) == 400  # expired but not swept: still cooling
    state.handle_timer(899.0)
    assert error_code(client.bind(0x4000, PEER2, now=899.0)) == 400
    state.handle_timer(900.0)
    assert client.bind(0x4000, PEER2, now=900.0).message_class is MessageClass.SUCCESS


def test_channel_data_that_is_short_or_unbound_is_dropped() -> None:
    state = make_state()
    client = Client(state)
    client.allocate()
    client.bind(0x4000, PEER)
    assert client.send(bytes.fromhex("4001 0001 61000000"), 0.0) == []  # unbound number
    assert client.send(bytes.fromhex("4000 0008 6161"), 0.0) == []  # length beyond the datagram
    assert client.send(bytes.fromhex("4000 0000"), 0.0) == [SendToPeer(RELAY, PEER, b"")]


# ---- other messages ----


def test_binding_needs_no_credentials() -> None:
    state = make_state()
    request = Message(Method.BINDING, MessageClass.REQUEST)
    response = only_response(state.receive_from_client(request.encode(fingerprint=True), FT, 0.0))
    assert response.message_class is MessageClass.SUCCESS and response.get(Attr.XOR_MAPPED_ADDRESS) == CLIENT
    assert response.verify_fingerprint()


def test_junk_responses_unknown_methods_and_bad_fingerprints() -> None:
    state = make_state()
    assert state.receive_from_client(b"\xff" * 30, FT, 0.0) == []
    assert state.receive_from_client(Message(Method.BINDING, MessageClass.SUCCESS).encode(), FT, 0.0) == []
    assert state.receive_from_client(Message(Method.DATA, MessageClass.INDICATION).encode(), FT, 0.0) == []
    bad = bytearray(Message(Method.BINDING, MessageClass.REQUEST).encode(fingerprint=True))
    bad[-1] ^= 1
    assert state.receive_from_client(bytes(bad), FT, 0.0) == []
    unknown = only_response(state.receive_from_client(Message(0x00A, MessageClass.REQUEST).encode(), FT, 0.0))
    assert unknown.get(Attr.ERROR_CODE) == (400, "Bad Request")
    assert state.stats.dropped == 4


def test_split_stream_frames_stun_and_padded_channel_data() -> None:
    stun = Message(Method.BINDING, MessageClass.REQUEST, b"x" * 12).encode()
    channel = bytes.fromhex("4000 0005 6868686868 000000")
    buffer = bytearray(stun + channel + stun[:7])
    assert split_stream(buffer) == [stun, channel]
    assert buffer == stun[:7]
    buffer += stun[7:]
    assert split_stream(buffer) == [stun] and not buffer
    with pytest.raises(ValueError, match="neither STUN nor ChannelData"):
        split_stream(bytearray(b"\x80\x00\x00\x00"))


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="default_lifetime"):
        TurnServerConfig(default_lifetime=7200)
    with pytest.raises(ValueError, match="not an IP network"):
        TurnServerConfig(denied_peers=["bogus"])
    with pytest.raises(ValueError, match="must be positive"):
        TurnServerConfig(permission_lifetime=0)
    with pytest.raises(ValueError, match="must include 'md5'"):
        TurnServerState(realm=REALM, users=USERS, config=TurnServerConfig(password_algorithms=("sha256",)))


# ---- the Trio layer on real loopback sockets ----

NET = OSNetwork()
SHORT = TurnServerConfig(default_lifetime=600)
LOOPBACK_PEERS = TurnServerConfig(allow_loopback_peers=True)  # peers on 127.x, as coturn's --allow-loopback-peers


async def _nothing_arrives(sock: UdpSocket, seconds: float = 0.2) -> bool:
    with trio.move_on_after(seconds):
        await sock.receive()
        return False
    return True


async def test_udp_401_dance_allocate_and_send_data_round_trip() -> None:
    with trio.fail_after(10):
        async with open_turn_server(NET, ["127.0.0.1:0"], users=USERS, realm=REALM, config=LOOPBACK_PEERS) as server:
            sock = await NET.bind_udp("127.0.0.1", 0)
            peer = await NET.bind_udp("127.0.0.1", 0)
            try:
                client = RawClient(sock, server.address)
                first = await client.exchange(Message(Method.ALLOCATE, MessageClass.REQUEST))
                assert error_code(first) == 401 and first.get(Attr.REALM) == REALM
                response = await client.allocate()
                assert response.message_class is MessageClass.SUCCESS, response
                relay = response.get(Attr.XOR_RELAYED_ADDRESS)
                assert relay[0] == "127.0.0.1" and relay[1] not in (0, server.address[1])
                assert response.get(Attr.XOR_MAPPED_ADDRESS) == sock.local_address
                assert response.get(Attr.LIFETIME) == 600
                assert server.stats.allocations == 1

                # Without a permission nothing passes, either way.
                await client.send_indication(peer.local_address, b"too early")
                assert await _nothing_arrives(peer)
                await peer.send(b"unsolicited", relay)
                assert await _nothing_arrives(sock)

                permit = [(Attr.XOR_PEER_ADDRESS, peer.local_address)]
                assert (await client.call(Method.CREATE_PERMISSION, permit)).message_class is MessageClass.SUCCESS
                await client.send_indication(peer.local_address, b"hello peer")
                data, source = await peer.receive()
                assert (data, source) == (b"hello peer", relay)
                await peer.send(b"hello client", relay)
                assert await client.receive_relayed() == (b"hello client", peer.local_address)
                assert server.stats.to_peers == 1 and server.stats.to_clients == 1
                assert server.stats.dropped >= 2
            finally:
                sock.close()
                peer.close()


async def test_channel_bind_and_channel_data_both_ways() -> None:
    with trio.fail_after(10):
        async with open_turn_server(NET, users=USERS, realm=REALM, config=LOOPBACK_PEERS) as server:
            sock = await NET.bind_udp("127.0.0.1", 0)
            peer = await NET.bind_udp("127.0.0.1", 0)
            try:
                client = RawClient(sock, server.address)
                relay = (await client.allocate()).get(Attr.XOR_RELAYED_ADDRESS)
                bound = await client.call(
                    Method.CHANNEL_BIND, [(Attr.CHANNEL_NUMBER, 0x4001), (Attr.XOR_PEER_ADDRESS, peer.local_address)]
                )
                assert bound.message_class is MessageClass.SUCCESS
                await sock.send(bytes.fromhex("4001 0004") + b"ping", server.address)
                assert await peer.receive() == (b"ping", relay)
                await peer.send(b"pong", relay)
                assert await client.receive_relayed() == (b"pong", 0x4001)
                rebind = await client.call(
                    Method.CHANNEL_BIND, [(Attr.CHANNEL_NUMBER, 0x4002), (Attr.XOR_PEER_ADDRESS, peer.local_address)]
                )
                assert error_code(rebind) == 400
                assert server.stats.channels == 1 and server.stats.permissions == 1
            finally:
                sock.close()
                peer.close()



@needs_ipv6
async def test_ipv6_relay_requested_over_ipv4() -> None:
    with trio.fail_after(10):
        async with open_turn_server(
            NET, users=USERS, realm=REALM, relay_address=["127.0.0.1", "::1"], config=LOOPBACK_PEERS
        ) as server:
            assert server.relay_addresses == {4: "127.0.0.1", 6: "::1"}
            sock = await NET.bind_udp("127.0.0.1", 0)
            peer = await NET.bind_udp("::1", 0)
            try:
                client = RawClient(sock, server.address)
                response = await client.allocate((Attr.REQUESTED_ADDRESS_FAMILY, 2))
                relay = response.get(Attr.XOR_RELAYED_ADDRESS)
                assert relay is not None and relay[0] == "::1", response
                v4 = await client.call(Method.CREATE_PERMISSION, [(Attr.XOR_PEER_ADDRESS, ("127.0.0.1", 9))])
                assert error_code(v4) == 443
                permit = [(Attr.XOR_PEER_ADDRESS, peer.local_address)]
                assert (await client.call(Method.CREATE_PERMISSION, permit)).message_class is MessageClass.SUCCESS
                await client.send_indication(peer.local_address, b"over six")
                assert await peer.receive() == (b"over six", relay)
                await peer.send(b"back", relay)
                assert await client.receive_relayed() == (b"back", peer.local_address)
            finally:
                sock.close()
                peer.close()


async def test_even_port_is_honoured() -> None:
    with trio.fail_after(10):
        async with open_turn_server(NET, users=USERS, realm=REALM) as server:
            sock = await NET.bind_udp("127.0.0.1", 0)
            try:
                response = await RawClient(sock, server.address).allocate((Attr.EVEN_PORT, False))
                relay = response.get(Attr.XOR_RELAYED_ADDRESS)
                assert relay is not None and relay[1] % 2 == 0, response
            finally:
                sock.close()


async def test_errors_437_438_442_486_on_the_wire() -> None:
    config = TurnServerConfig(nonce_lifetime=0.3, max_allocations_per_user=1, allow_loopback_peers=True)
    with trio.fail_after(10):
        async with open_turn_server(NET, users=USERS, realm=REALM, config=config) as server:
            a = await NET.bind_udp("127.0.0.1", 0)
            b = await NET.bind_udp("127.0.0.1", 0)
            try:
                client = RawClient(a, server.address)
                assert error_code(await client.call(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, 6)])) == 442
                assert (await client.allocate()).message_class is MessageClass.SUCCESS
                assert error_code(await client.allocate()) == 437
                other = RawClient(b, server.address)
                quota = await other.allocate()
                assert error_code(quota) == 486 and "alice" in quota.get(Attr.ERROR_CODE)[1]
                # 438: the nonce goes stale; the client sees it and retries with the fresh one.
                nonce = client.nonce
                await trio.sleep(0.4)
                auth = [(Attr.USERNAME, "alice"), (Attr.REALM, REALM), (Attr.NONCE, nonce)]
                stale = await client.exchange(
                    Message(Method.REFRESH, MessageClass.REQUEST, None, auth), integrity_key=client.key
                )
                assert error_code(stale) == 438 and stale.get(Attr.NONCE) != nonce
                assert (await client.call(Method.REFRESH)).message_class is MessageClass.SUCCESS
            finally:
                a.close()
                b.close()


async def test_refresh_delete_and_expiry_close_the_relay_socket() -> None:
    config = TurnServerConfig(default_lifetime=0.3, max_lifetime=0.3, allow_loopback_peers=True)
    with trio.fail_after(10):
        async with open_turn_server(NET, users=USERS, realm=REALM, config=config) as server:
            sock = await NET.bind_udp("127.0.0.1", 0)
            try:
                client = RawClient(sock, server.address)
                response = await client.allocate((Attr.LIFETIME, 3600))
                assert response.get(Attr.LIFETIME) == 1  # 0.3 s, rounded up on the wire
                relay = response.get(Attr.XOR_RELAYED_ADDRESS)
                deleted = await client.call(Method.REFRESH, [(Attr.LIFETIME, 0)])
                assert deleted.message_class is MessageClass.SUCCESS and deleted.get(Attr.LIFETIME) == 0
                assert server.stats.allocations == 0
                _assert_port_free(relay)

                relay = (await client.allocate()).get(Attr.XOR_RELAYED_ADDRESS)
                assert server.stats.allocations == 1
                await trio.sleep(0.5)
                assert server.stats.allocations == 0 and server.stats.allocations_expired == 1
                _assert_port_free(relay)
                assert error_code(await client.call(Method.REFRESH)) == 437
            finally:
                sock.close()


def _assert_port_free(address: Address) -> None:
    """The relay socket was closed: its port can be bound again."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(address)


async def test_server_exit_closes_every_relay() -> None:
    relays = []
    with trio.fail_after(10):
        async with open_turn_server(NET, users=USERS, realm=REALM, config=LOOPBACK_PEERS) as server:
            socks = [await NET.bind_udp("127.0.0.1", 0) for _ in range(3)]
            try:
                for sock in socks:
                    relays.append((await RawClient(sock, server.address).allocate()).get(Attr.XOR_RELAYED_ADDRESS))
                assert server.stats.allocations == 3
            finally:
                for sock in socks:
                    sock.close()
    for relay in relays:
        _assert_port_free(relay)


async def test_serve_turn_in_a_nursery() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server: TurnServer = await nursery.start(partial(serve_turn, NET, ["127.0.0.1:0"], users=USERS))
            sock = await NET.bind_udp("127.0.0.1", 0)
            try:
                response = await RawClient(sock, server.address).exchange(Message(Method.BINDING, MessageClass.REQUEST))
                assert response.get(Attr.XOR_MAPPED_ADDRESS) == sock.local_address
            finally:
                sock.close()
            nursery.cancel_scope.cancel()


async def test_bad_options_raise_before_serving() -> None:
    with pytest.raises(ValueError, match="at least one user"):
        async with open_turn_server(NET, users={}):
            pass
    with pytest.raises(ValueError, match="relay_address"):
        async with open_turn_server(NET, ["0.0.0.0:0"], users=USERS):
            pass
    with pytest.raises(ValueError, match="ssl_context"):
        async with open_turn_server(NET, users=USERS, tls_listen=["127.0.0.1:0"]):
            pass
    async with open_turn_server(NET, users=USERS) as server:
        with pytest.raises(OSError, match=r"cannot open the TURN server on 127\.0\.0\.1"):
            async with open_turn_server(NET, [server.address], users=USERS):
                pass


# ---- TCP and TLS (RFC 8656 12.5 framing) ----


class StreamClient:
    """A raw TURN client on a TCP or TLS stream: STUN and padded ChannelData framed back to back."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.key = long_term_key("alice", REALM, "secret")
        self.nonce: str | None = None

    async def frame(self) -> bytes:
        while True:
            frames = split_stream(self.buffer)
            if frames:
                rest = b"".join(frames[1:])
                self.buffer[:0] = rest
                return frames[0]
            chunk = await self.stream.receive_some(65536)
            assert chunk, "the server closed the connection"
            self.buffer += chunk

    async def call(self, method: Method, attributes: Attrs = ()) -> Message:
        if self.nonce is None:
            await self.stream.send_all(Message(method, MessageClass.REQUEST).encode())
            self.nonce = Message.decode(await self.frame()).get(Attr.NONCE)
        auth = [(Attr.USERNAME, "alice"), (Attr.REALM, REALM), (Attr.NONCE, self.nonce)]
        await self.stream.send_all(
            Message(method, MessageClass.REQUEST, None, [*attributes, *auth]).encode(integrity_key=self.key)
        )
        response = Message.decode(await self.frame())
        assert response.verify_integrity(self.key)
        return response


async def _stream_round_trip(server: TurnServer, stream: trio.abc.Stream) -> None:
    client = StreamClient(stream)
    peer = await NET.bind_udp("127.0.0.1", 0)
    try:
        response = await client.call(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, 17)])
        assert response.message_class is MessageClass.SUCCESS, response
        relay = response.get(Attr.XOR_RELAYED_ADDRESS)
        bound = await client.call(
            Method.CHANNEL_BIND, [(Attr.CHANNEL_NUMBER, 0x4000), (Attr.XOR_PEER_ADDRESS, peer.local_address)]
        )
        assert bound.message_class is MessageClass.SUCCESS
        # Two ChannelData messages in one write, padded to 4 bytes (RFC 8656 12.5).
        await stream.send_all(bytes.fromhex("4000 0001 61 000000 4000 0002 6262 0000"))
        assert await peer.receive() == (b"a", relay)
        assert await peer.receive() == (b"bb", relay)
        await peer.send(b"ccc", relay)
        assert await client.frame() == bytes.fromhex("4000 0003 636363 00")
        assert server.stats.allocations == 1
    finally:
        peer.close()
    await stream.aclose()
    for _ in range(500):  # the allocation ends with its connection (RFC 8656 5)
        if not server.stats.allocations:
            break
        await trio.sleep(0.01)
    assert server.stats.allocations == 0
    _assert_port_free(relay)


async def test_tcp_allocation_with_padded_channel_data() -> None:
    with trio.fail_after(10):
        async with open_turn_server(NET, users=USERS, realm=REALM, tcp=True, config=LOOPBACK_PEERS) as server:
            assert server.tcp_addresses == server.addresses
            stream, _ = await NET.connect_tcp(server.tcp_addresses[0])
            await _stream_round_trip(server, stream)
            assert server.stats.allocations_deleted == 1


async def test_tls_allocation() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with trio.fail_after(10):
        async with open_turn_server(
            NET, users=USERS, realm=REALM, tls_listen=["127.0.0.1:0"], ssl_context=server_context, config=LOOPBACK_PEERS
        ) as server:
            assert server.uris()[-1] == f"turns:127.0.0.1:{server.tls_addresses[0][1]}?transport=tcp"
            raw, _ = await NET.connect_tcp(server.tls_addresses[0])
            stream = trio.SSLStream(raw, client_context, server_hostname="127.0.0.1")
            await _stream_round_trip(server, stream)


async def test_a_stream_of_junk_is_closed() -> None:
    with trio.fail_after(10):
        async with open_turn_server(NET, users=USERS, tcp=True) as server:
            stream, _ = await NET.connect_tcp(server.tcp_addresses[0])
            async with stream:
                await stream.send_all(bytes.fromhex("16030100a5010000a10303") + bytes(20))  # a TLS ClientHello
                assert await stream.receive_some(100) == b""


async def test_idle_connection_closes_unless_it_holds_an_allocation() -> None:
    config = TurnServerConfig(tcp_idle_timeout=0.2)
    with trio.fail_after(10):
        async with open_turn_server(NET, users=USERS, realm=REALM, tcp=True, config=config) as server:
            idle, _ = await NET.connect_tcp(server.tcp_addresses[0])
            busy, _ = await NET.connect_tcp(server.tcp_addresses[0])
            async with idle, busy:
                client = StreamClient(busy)
                allocated = await client.call(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, 17)])
                assert allocated.message_class is MessageClass.SUCCESS
                assert await idle.receive_some(100) == b""  # closed by the server after 0.2 s
                await trio.sleep(0.4)
                assert (await client.call(Method.REFRESH)).message_class is MessageClass.SUCCESS
                assert server.stats.allocations == 1


# ---- on the virtual network ----


async def test_relay_through_nats_on_vnet(autojump_clock: object) -> None:
    vnet = pytest.importorskip("iceagent_vnet")
    scenario = vnet.vnet("eim-apdf", "apdm-apdf", rtt=0.05)
    host, port = scenario.turn_address
    async with open_turn_server(scenario.server_network, [(host, port)], users=USERS, realm=REALM) as server:
        sock = await scenario.network_a.bind_udp("192.168.1.2", 0)
        peer = await scenario.network_b.bind_udp("192.168.2.2", 0)
        try:
            with trio.fail_after(30):
                client = RawClient(sock, server.address)
                response = await client.allocate()
                relay = response.get(Attr.XOR_RELAYED_ADDRESS)
                mapped = response.get(Attr.XOR_MAPPED_ADDRESS)
                assert relay[0] == host and mapped[0] == "203.0.113.1"  # nat_a's public address
                # The peer, behind a symmetric NAT, speaks first; its mapped address gets the permission.
                await peer.send(b"knock", relay)
                await trio.sleep(1)
                assert server.stats.dropped >= 1
                ok = await client.call(Method.CREATE_PERMISSION, [(Attr.XOR_PEER_ADDRESS, ("203.0.113.2", 1))])
                assert ok.message_class is MessageClass.SUCCESS
                await peer.send(b"knock again", relay)
                data, peer_public = await client.receive_relayed()
                assert data == b"knock again" and peer_public[0] == "203.0.113.2"
                await client.send_indication(peer_public, b"welcome")
                assert await peer.receive() == (b"welcome", relay)
        finally:
            sock.close()
            peer.close()


# ---- interop: aioice's TURN client against this server ----


def _aioice_exchange(server: Address, peer_port: int) -> dict[str, Any]:
    """In a thread of its own: aioice allocates over UDP, sends through a channel to a plain UDP peer,
    gets the echo back, and deletes the allocation."""
    import aioice.turn

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        received: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        echoed: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        lost = loop.create_future()

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                received.put_nowait((data, addr))

            def connection_lost(self, exc: Exception | None) -> None:
                if not lost.done():
                    lost.set_result(exc)

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                echoed.put_nowait((data, addr))
                self.transport.sendto(b"echo:" + data, addr)

        peer_transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", peer_port))
        try:
            turn, _ = await asyncio.wait_for(aioice.turn.create_turn_endpoint(Receiver, server, "alice", "secret"), 10)
            relay = turn.get_extra_info("sockname")
            mapped = turn.get_extra_info("related_address")
            peer = peer_transport.get_extra_info("sockname")
            try:
                results = []
                for i in range(5):
                    turn.sendto(b"hello %d" % i, peer)
                    at_peer = await asyncio.wait_for(echoed.get(), 10)
                    back = await asyncio.wait_for(received.get(), 10)
                    results.append((at_peer, back))
            finally:
                turn.close()
                await asyncio.wait_for(lost, 10)
        finally:
            peer_transport.close()
        return {"relay": relay, "mapped": mapped, "peer": peer, "results": results}

    return asyncio.run(main())


@pytest.mark.interop
async def test_aioice_turn_client_allocates_and_relays() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        peer_port = s.getsockname()[1]
    with trio.fail_after(30):
        async with open_turn_server(NET, users=USERS, realm=REALM, config=LOOPBACK_PEERS) as server:
            outcome = await trio.to_thread.run_sync(_aioice_exchange, server.address, peer_port)
            stats = server.stats
    relay = tuple(outcome["relay"])
    assert relay[0] == "127.0.0.1" and outcome["mapped"][0] == "127.0.0.1"
    for i, ((at_peer, source), (back, via)) in enumerate(outcome["results"]):
        assert at_peer == b"hello %d" % i and tuple(source) == relay
        assert back == b"echo:hello %d" % i and tuple(via) == tuple(outcome["peer"])
    assert stats.allocations == 0 and stats.allocations_created == 1 and stats.allocations_deleted == 1
    assert stats.to_peers == 5 and stats.to_clients == 5


# ---- `iceagent serve --turn` ----

async def test_cli_serve_turn_until_ctrl_c() -> None:
    with trio.fail_after(30):
        args = ["--turn", "127.0.0.1:0", "--user", "alice:secret", "--tcp", "--realm", REALM]
        async with iceagent_serve(*args) as run:
            assert any(line.startswith("TURN tcp ") for line in run.lines), run.lines
            assert f"TURN realm {REALM} users alice relay 127.0.0.1" in run.lines
            sock = await NET.bind_udp("127.0.0.1", 0)
            try:
                response = await RawClient(sock, turn_udp_address(run.lines)).allocate()
                assert response.message_class is MessageClass.SUCCESS, response
            finally:
                sock.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--turn", "127.0.0.1:0"], "--turn needs at least one --user NAME, --users-file"),
        (["serve", "--turn", "127.0.0.1:0", "--user", "alice"], "has no password"),
        (["serve", "--stun", "127.0.0.1:0", "--user", "a:b"], "need --turn"),
        (["serve", "--turn", "127.0.0.1:0", "--user", "a:b", "--deny-peer", "nope"], "not an IP network"),
        (["serve", "--turn", "0.0.0.0:0", "--user", "a:b"], "give relay_address"),
    ],
)
def test_cli_serve_turn_bad_input_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
