"""The sans-IO TURN client (RFC 8656) and ChannelData framing, with literal bytes and literal times."""

from __future__ import annotations

import base64
import hashlib

import pytest

from iceagent.stun import Attr, Message, MessageClass, Method, PasswordAlgorithm, long_term_key, userhash
from iceagent.turn import (
    Allocated,
    AllocateFailed,
    AllocationLost,
    AllocationState,
    ChannelBindFailed,
    ChannelBound,
    ChannelDataError,
    PermissionFailed,
    PermissionInstalled,
    Redirected,
    Refreshed,
    Released,
    StreamDeframer,
    TurnAllocationMismatch,
    TurnAuthenticationError,
    TurnClient,
    TurnForbidden,
    TurnInsufficientCapacity,
    TurnQuotaReached,
    TurnServerError,
    TurnTimeout,
    TurnUnsupported,
    TurnUnsupportedFamily,
    decode_channel_data,
    encode_channel_data,
    is_channel_data,
)

USER, PASSWORD, REALM, NONCE = "alice", "secret", "example.org", "abcdef0123"
KEY = long_term_key(USER, REALM, PASSWORD)
RELAYED = ("198.51.100.7", 49152)
MAPPED = ("192.0.2.10", 40000)
PEER = ("203.0.113.5", 5000)
PEER2 = ("203.0.113.5", 6000)  # same IP: same permission (RFC 8656 9)


# ---- a tiny scripted server ----


def sent(client: TurnClient) -> list[Message]:
    """Decode what the client wants to send now."""
    return [Message.decode(d) for d in client.datagrams_to_send()]


def one(client: TurnClient) -> Message:
    out = sent(client)
    assert len(out) == 1, out
    return out[0]


def events(client: TurnClient) -> list[object]:
    out = []
    while (e := client.next_event()) is not None:
        out.append(e)
    return out


def challenge(req: Message, nonce: str = NONCE, code: int = 401, **extra: object) -> bytes:
    attrs: list[tuple[Attr | int, object]] = [(Attr.REALM, REALM), (Attr.NONCE, nonce)]
    attrs += list(extra.get("attributes", []))  # type: ignore[call-overload]
    return req.error_response(code, attributes=attrs).encode()


def success(req: Message, attributes: list[tuple[Attr | int, object]] = (), key: bytes = KEY) -> bytes:  # type: ignore[assignment]
    return req.success_response(list(attributes)).encode(integrity_key=key, fingerprint=True)


def error(req: Message, code: int, key: bytes | None = KEY, attributes: list[tuple[Attr | int, object]] = ()) -> bytes:  # type: ignore[assignment]
    msg = req.error_response(code, attributes=list(attributes))
    return msg.encode(integrity_key=key) if key else msg.encode()


def allocate_ok(lifetime: int = 600) -> list[tuple[Attr | int, object]]:
    return [(Attr.XOR_RELAYED_ADDRESS, RELAYED), (Attr.XOR_MAPPED_ADDRESS, MAPPED), (Attr.LIFETIME, lifetime)]


def allocated(
    now: float = 0.0, lifetime: int = 600, requested_lifetime: int | None = None, **kwargs: object
) -> TurnClient:
    """A client taken through 401 and a successful Allocate at `now`."""
    client = TurnClient(USER, PASSWORD, server_name="turn:test", lifetime=requested_lifetime, **kwargs)  # type: ignore[arg-type]
    client.allocate(now)
    first = one(client)
    assert client.receive(challenge(first), now) is None
    second = one(client)
    assert client.receive(success(second, allocate_ok(lifetime)), now) is None
    assert client.state is AllocationState.ALLOCATED
    events(client)
    return client


def with_permission(client: TurnClient, now: float, peer: tuple[str, int] = PEER) -> None:
    assert client.send(b"x", peer, now) is None  # held until the permission is installed
    req = one(client)
    assert req.method == Method.CREATE_PERMISSION
    client.receive(success(req), now)
    events(client)
    client.datagrams_to_send()  # the held datagram (Send indication) and the ChannelBind


# ---- Allocate and the long-term credential (RFC 8656 7, RFC 8489 9.2) ----


def test_first_allocate_has_no_credentials() -> None:
    client = TurnClient(USER, PASSWORD)
    client.allocate(0.0)
    data = client.datagrams_to_send()
    assert len(data) == 1
    raw = data[0]
    # header: Allocate request (0x0003), length 16: REQUESTED-TRANSPORT (8) + FINGERPRINT (8)
    assert raw[:8] == bytes.fromhex("0003 0010 2112a442")
    assert raw[20:28] == bytes.fromhex("0019 0004 11000000")  # REQUESTED-TRANSPORT UDP (17), RFC 8656 18.6
    msg = Message.decode(raw)
    assert msg.method == Method.ALLOCATE and msg.message_class is MessageClass.REQUEST
    assert Attr.USERNAME not in msg and Attr.MESSAGE_INTEGRITY not in msg
    assert msg.verify_fingerprint()
    assert client.state is AllocationState.ALLOCATING


def test_ipv6_relay_asks_for_the_address_family() -> None:
    client = TurnClient(USER, PASSWORD, family="ipv6", lifetime=300)
    client.allocate(0.0)
    raw = client.datagrams_to_send()[0]
    assert bytes.fromhex("0017 0004 02000000") in raw  # REQUESTED-ADDRESS-FAMILY IPv6 (RFC 8656 18.8)
    assert Message.decode(raw).get(Attr.LIFETIME) == 300


def test_401_then_retry_with_long_term_credential() -> None:
    client = TurnClient(USER, PASSWORD)
    client.allocate(0.0)
    first = one(client)
    assert client.receive(challenge(first), 0.1) is None
    second = one(client)
    assert second.transaction_id != first.transaction_id
    assert second.get(Attr.USERNAME) == USER
    assert second.get(Attr.REALM) == REALM
    assert second.get(Attr.NONCE) == NONCE
    assert second.get(Attr.REQUESTED_TRANSPORT) == 17
    assert second.verify_integrity(hashlib.md5(b"alice:example.org:secret").digest())
    assert Attr.MESSAGE_INTEGRITY_SHA256 not in second
    client.receive(success(second, allocate_ok()), 0.2)
    assert events(client) == [Allocated(RELAYED, MAPPED, 600)]
    assert client.relayed_address == RELAYED and client.mapped_address == MAPPED
    assert client.expires_at == 600.2


def test_unsigned_or_badly_signed_success_is_ignored() -> None:
    client = TurnClient(USER, PASSWORD)
    client.allocate(0.0)
    client.receive(challenge(one(client)), 0.0)
    req = one(client)
    client.receive(req.success_response(allocate_ok()).encode(), 0.1)  # no MESSAGE-INTEGRITY
    client.receive(success(req, allocate_ok(), key=b"wrong key"), 0.1)
    assert client.state is AllocationState.ALLOCATING and events(client) == []
    client.receive(success(req, allocate_ok()), 0.2)
    assert client.state is AllocationState.ALLOCATED


def test_wrong_credentials_are_reported() -> None:
    client = TurnClient(USER, "wrong", server_name="turn:127.0.0.1:3478?transport=udp")
    client.allocate(0.0)
    client.receive(challenge(one(client)), 0.0)
    req = one(client)
    client.receive(challenge(req), 0.1)  # the same nonce again: the credentials are wrong
    (event,) = events(client)
    assert isinstance(event, AllocateFailed)
    assert isinstance(event.error, TurnAuthenticationError)
    text = str(event.error)
    assert "turn:127.0.0.1:3478?transport=udp" in text and "'alice'" in text and "'example.org'" in text
    assert "credential=" in text
    assert client.state is AllocationState.FAILED and client.datagrams_to_send() == []


def test_401_with_a_fresh_nonce_is_retried_once_more() -> None:
    client = TurnClient(USER, PASSWORD)
    client.allocate(0.0)
    client.receive(challenge(one(client)), 0.0)
    client.receive(challenge(one(client), nonce="fresh-nonce"), 0.1)
    retry = one(client)
    assert retry.get(Attr.NONCE) == "fresh-nonce"
    client.receive(challenge(retry, nonce="fresh-nonce"), 0.2)
    assert isinstance(events(client)[0], AllocateFailed)


def test_438_stale_nonce_retries_with_the_new_nonce() -> None:
    client = allocated()
    client.refresh(10.0)
    req = one(client)
    assert req.method == Method.REFRESH and req.get(Attr.NONCE) == NONCE
    client.receive(challenge(req, nonce="nonce-2", code=438), 10.1)
    retry = one(client)
    assert retry.method == Method.REFRESH and retry.get(Attr.NONCE) == "nonce-2"
    assert Attr.LIFETIME not in retry  # the server's default again (RFC 8656 8)
    assert retry.verify_integrity(KEY)
    assert client.credential.nonce == "nonce-2"
    client.receive(success(retry, [(Attr.LIFETIME, 600)]), 10.2)
    assert events(client) == [Refreshed(600)]


def test_438_loop_is_bounded() -> None:
    client = allocated()
    client.refresh(10.0)
    for i in range(3):
        client.receive(challenge(one(client), nonce=f"n{i}", code=438), 10.0)
    client.receive(challenge(one(client), nonce="n9", code=438), 10.0)
    assert client.datagrams_to_send() == []  # given up: retried later, before the allocation expires


def _cookie_nonce(bits: int) -> str:
    return "obMatJos2" + base64.b64encode(bits.to_bytes(3, "big")).decode() + "xyz"


def test_password_algorithms_pick_sha256() -> None:
    client = TurnClient(USER, PASSWORD)
    client.allocate(0.0)
    offered = [(PasswordAlgorithm.SHA256, b""), (PasswordAlgorithm.MD5, b"")]
    nonce = _cookie_nonce(0x800000)  # security feature bit 0: password algorithms (RFC 8489 18.1)
    client.receive(challenge(one(client), nonce=nonce, attributes=[(Attr.PASSWORD_ALGORITHMS, offered)]), 0.0)
    req = one(client)
    assert req.get(Attr.PASSWORD_ALGORITHM) == (PasswordAlgorithm.SHA256, b"")
    assert req.get(Attr.PASSWORD_ALGORITHMS) == offered
    assert Attr.MESSAGE_INTEGRITY_SHA256 in req and Attr.MESSAGE_INTEGRITY not in req
    key256 = hashlib.sha256(b"alice:example.org:secret").digest()
    assert req.verify_integrity(key256)
    client.receive(req.success_response(allocate_ok()).encode(integrity_key=key256, integrity="sha256"), 0.1)
    assert client.state is AllocationState.ALLOCATED


def test_password_algorithms_ignored_without_the_nonce_cookie() -> None:
    client = TurnClient(USER, PASSWORD)
    client.allocate(0.0)
    offered = [(PasswordAlgorithm.SHA256, b"")]
    client.receive(challenge(one(client), attributes=[(Attr.PASSWORD_ALGORITHMS, offered)]), 0.0)
    req = one(client)
    assert Attr.PASSWORD_ALGORITHM not in req and req.verify_integrity(KEY)  # MD5 (RFC 8489 9.2.5)


def test_unknown_password_algorithm_is_reported() -> None:
    client = TurnClient(USER, PASSWORD)
    client.allocate(0.0)
    nonce = _cookie_nonce(0x800000)
    client.receive(challenge(one(client), nonce=nonce, attributes=[(Attr.PASSWORD_ALGORITHMS, [(9, b"")])]), 0.0)
    (event,) = events(client)
    assert isinstance(event, AllocateFailed) and isinstance(event.error, TurnUnsupported)


def test_username_anonymity_sends_userhash() -> None:
    client = TurnClient(USER, PASSWORD)
    client.allocate(0.0)
    client.receive(challenge(one(client), nonce=_cookie_nonce(0x400000)), 0.0)
    req = one(client)
    assert Attr.USERNAME not in req
    assert req.get(Attr.USERHASH) == userhash(USER, REALM)


def test_challenge_without_realm_is_an_error() -> None:
    client = TurnClient(USER, PASSWORD)
    client.allocate(0.0)
    req = one(client)
    client.receive(req.error_response(401).encode(), 0.0)
    (event,) = events(client)
    assert isinstance(event, AllocateFailed) and isinstance(event.error, TurnServerError)
    assert "REALM" in str(event.error)


def test_300_alternate_server_is_reported() -> None:
    client = TurnClient(USER, PASSWORD)
    client.allocate(0.0)
    req = one(client)
    msg = req.error_response(300, attributes=[(Attr.ALTERNATE_SERVER, ("192.0.2.99", 3479))])
    client.receive(msg.encode(), 0.0)
    assert events(client) == [Redirected(("192.0.2.99", 3479), None)]
    assert client.state is AllocationState.FAILED


def test_unsigned_300_to_an_authenticated_request_is_ignored() -> None:
    client = TurnClient(USER, PASSWORD)
    client.allocate(0.0)
    client.receive(challenge(one(client)), 0.0)
    req = one(client)
    msg = req.error_response(300, attributes=[(Attr.ALTERNATE_SERVER, ("192.0.2.99", 3479))])
    client.receive(msg.encode(), 0.0)  # RFC 8489 10: could be forged
    assert events(client) == [] and client.state is AllocationState.ALLOCATING
    client.receive(msg.encode(integrity_key=KEY), 0.0)
    assert events(client) == [Redirected(("192.0.2.99", 3479), None)]


@pytest.mark.parametrize(
    ("code", "exc", "words"),
    [
        (437, TurnAllocationMismatch, "new local port"),
        (486, TurnQuotaReached, "--user-quota"),
        (508, TurnInsufficientCapacity, "--max-port"),
        (403, TurnForbidden, "refuses"),
        (440, TurnUnsupportedFamily, "ipv4"),  # a TurnUnsupported: callers may ask for the other family
        (442, TurnUnsupported, "does not support"),
        (500, TurnServerError, "500"),
    ],
)
def test_allocate_errors_are_specific(code: int, exc: type[Exception], words: str) -> None:
    client = TurnClient(USER, PASSWORD, server_name="turn:srv")
    client.allocate(0.0)
    client.receive(challenge(one(client)), 0.0)
    client.receive(error(one(client), code), 0.1)
    (event,) = events(client)
    assert isinstance(event, AllocateFailed)
    assert type(event.error) is exc
    assert "turn:srv" in str(event.error) and f"Allocate: {code}" in str(event.error) and words in str(event.error)


def test_allocate_times_out_after_the_udp_schedule() -> None:
    client = TurnClient(USER, PASSWORD, server_name="turn:srv")
    client.allocate(0.0)
    client.datagrams_to_send()
    times = []
    while (t := client.get_timer()) is not None:
        client.handle_timer(t)
        if client.datagrams_to_send():
            times.append(t)
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # RFC 8489 6.2.1
    (event,) = events(client)
    assert isinstance(event, AllocateFailed) and isinstance(event.error, TurnTimeout)
    assert "39.5 s over UDP" in str(event.error) and "turn:srv" in str(event.error)


def test_reliable_transport_sends_once_and_waits() -> None:
    client = TurnClient(USER, PASSWORD, reliable=True, reliable_timeout=39.5)
    client.allocate(0.0)
    client.datagrams_to_send()
    assert client.get_timer() == 39.5
    client.handle_timer(39.5)
    assert client.datagrams_to_send() == []
    assert "TCP/TLS" in str(events(client)[0].error)  # type: ignore[attr-defined]


# ---- Refresh and deallocation (RFC 8656 8) ----


def test_refresh_a_minute_before_expiry() -> None:
    client = allocated(100.0, lifetime=600)
    assert client.get_timer() == 640.0
    client.handle_timer(639.9)
    assert client.datagrams_to_send() == []
    client.handle_timer(640.0)
    req = one(client)
    assert req.method == Method.REFRESH and Attr.LIFETIME not in req and req.verify_integrity(KEY)
    client.receive(success(req, [(Attr.LIFETIME, 600)]), 640.1)
    assert events(client) == [Refreshed(600)]
    assert client.expires_at == 1240.1
    assert client.get_timer() == pytest.approx(1180.1)


def test_short_lifetime_refreshes_half_way() -> None:
    client = allocated(0.0, lifetime=20, requested_lifetime=20)
    assert client.get_timer() == 10.0
    client.handle_timer(10.0)
    req = one(client)
    assert req.get(Attr.LIFETIME) == 20  # the lifetime asked for at Allocate, asked again
    client.receive(success(req, [(Attr.LIFETIME, 20)]), 10.0)
    assert client.get_timer() == 20.0


def test_allocation_expires_when_refreshes_go_unanswered() -> None:
    client = allocated(0.0, lifetime=60)
    now = 0.0
    while client.state is AllocationState.ALLOCATED:
        t = client.get_timer()
        assert t is not None
        now = t
        client.handle_timer(now)
        client.datagrams_to_send()
    assert now == 60.0
    lost = [e for e in events(client) if isinstance(e, AllocationLost)]
    assert len(lost) == 1 and "expired" in str(lost[0].error)
    assert client.send(b"x", PEER, 61.0) is None and client.dropped == 1


def test_refresh_437_means_the_allocation_is_lost() -> None:
    client = allocated()
    client.refresh(5.0)
    client.receive(error(one(client), 437), 5.0)
    (event,) = events(client)
    assert isinstance(event, AllocationLost) and "437" in str(event.error)
    assert client.state is AllocationState.LOST


def test_deallocate_sends_lifetime_zero() -> None:
    client = allocated()
    client.deallocate(30.0)
    req = one(client)
    assert req.method == Method.REFRESH and req.get(Attr.LIFETIME) == 0 and req.verify_integrity(KEY)
    assert client.state is AllocationState.DEALLOCATING
    client.receive(success(req, [(Attr.LIFETIME, 0)]), 30.1)
    assert events(client) == [Released()]
    assert client.state is AllocationState.RELEASED and client.get_timer() is None


def test_deallocate_after_stale_nonce_and_437() -> None:
    client = allocated()
    client.deallocate(30.0)
    client.receive(challenge(one(client), nonce="n2", code=438), 30.0)
    retry = one(client)
    assert retry.get(Attr.LIFETIME) == 0 and retry.get(Attr.NONCE) == "n2"
    client.receive(error(retry, 437), 30.1)  # already gone: as good as released
    assert events(client) == [Released()]


def test_deallocate_gives_up_after_the_schedule() -> None:
    client = allocated()
    client.deallocate(0.0)
    client.datagrams_to_send()
    while (t := client.get_timer()) is not None:
        client.handle_timer(t)
    (event,) = events(client)
    assert isinstance(event, Released) and isinstance(event.error, TurnTimeout)


# ---- permissions, channels and data (RFC 8656 9-12) ----


def test_send_creates_the_permission_and_holds_data_until_it_is_installed() -> None:
    client = allocated()
    assert client.send(b"one", PEER, 1.0) is None
    assert client.send(b"two", PEER2, 1.0) is None  # same IP: no second CreatePermission
    req = one(client)
    assert req.method == Method.CREATE_PERMISSION
    assert req.get_all(Attr.XOR_PEER_ADDRESS) == [("203.0.113.5", 0)]
    assert req.verify_integrity(KEY)
    assert client.permission_state("203.0.113.5") == "pending"
    client.receive(success(req), 1.1)
    assert events(client) == [PermissionInstalled("203.0.113.5")]
    out = sent(client)
    data = [m for m in out if m.method == Method.SEND]
    binds = [m for m in out if m.method == Method.CHANNEL_BIND]
    assert [(m.get(Attr.XOR_PEER_ADDRESS), m.get(Attr.DATA)) for m in data] == [(PEER, b"one"), (PEER2, b"two")]
    assert all(m.message_class is MessageClass.INDICATION and Attr.MESSAGE_INTEGRITY not in m for m in data)
    assert [(m.get(Attr.CHANNEL_NUMBER), m.get(Attr.XOR_PEER_ADDRESS)) for m in binds] == [
        (0x4000, PEER),
        (0x4001, PEER2),
    ]


def test_send_indication_bytes() -> None:
    client = allocated()
    raw = client.send_indication(b"hi", ("192.0.2.1", 32853))
    assert raw[:4] == bytes.fromhex("0016 0014")  # Send indication, 20 bytes of attributes
    # XOR-PEER-ADDRESS of 192.0.2.1:32853 (RFC 8489 14.2): port ^ 0x2112, address ^ 0x2112a442
    assert raw[20:32] == bytes.fromhex("0012 0008 0001 a147 e112a643")
    assert raw[32:40] == bytes.fromhex("0013 0002 6869 0000")  # DATA "hi" padded


def test_channel_data_once_bound() -> None:
    client = allocated()
    assert client.send(b"a", PEER, 2.0) is None
    client.receive(success(one(client)), 2.0)
    bind = next(m for m in sent(client) if m.method == Method.CHANNEL_BIND)
    # until the binding is confirmed, Send indications (RFC 8656 12: no ChannelData before the success)
    raw = client.send(b"b", PEER, 2.1)
    assert raw is not None and Message.decode(raw).method == Method.SEND
    assert client.datagrams_to_send() == []  # the ChannelBind is pending, not asked twice
    client.receive(success(bind), 2.2)
    assert ChannelBound(PEER, 0x4000) in events(client)
    assert client.send(b"hello", PEER, 2.3) == bytes.fromhex("4000 0005") + b"hello"  # RFC 8656 12.4
    assert client.channels() == {PEER: 0x4000}


def test_channel_data_is_padded_over_tcp() -> None:
    client = allocated(reliable=True)
    client.send(b"a", PEER, 0.0)
    client.receive(success(one(client)), 0.0)
    bind = next(m for m in sent(client) if m.method == Method.CHANNEL_BIND)
    client.receive(success(bind), 0.0)
    assert client.send(b"hello", PEER, 0.1) == bytes.fromhex("4000 0005") + b"hello\x00\x00\x00"  # RFC 8656 12.5
    assert client.send(b"four", PEER, 0.1) == bytes.fromhex("4000 0004") + b"four"


def test_permission_refresh_schedule() -> None:
    client = allocated(0.0, lifetime=3600, permission_refresh=240.0)
    client.send(b"a", PEER, 10.0)
    client.receive(success(one(client)), 10.0)
    for m in sent(client):
        if m.method == Method.CHANNEL_BIND:
            client.receive(error(m, 400), 10.0)  # no channel: only the permission is refreshed here
    events(client)
    assert client.get_timer() == 250.0
    client.handle_timer(250.0)
    req = one(client)
    assert req.method == Method.CREATE_PERMISSION and req.get(Attr.XOR_PEER_ADDRESS) == ("203.0.113.5", 0)
    client.receive(success(req), 250.2)
    assert events(client) == [PermissionInstalled("203.0.113.5")]
    assert client.get_timer() == pytest.approx(490.2)


def test_channel_refresh_schedule() -> None:
    client = allocated(0.0, lifetime=3600, permission_refresh=240.0, channel_refresh=540.0)
    client.send(b"a", PEER, 0.0)
    client.receive(success(one(client)), 0.0)
    bind = next(m for m in sent(client) if m.method == Method.CHANNEL_BIND)
    client.receive(success(bind), 0.5)
    events(client)
    due: dict[float, list[int]] = {}
    now = 0.5
    while now < 1200:
        t = client.get_timer()
        assert t is not None
        now = t
        client.handle_timer(now)
        for m in sent(client):
            due.setdefault(round(now, 1), []).append(m.method)
            client.receive(success(m, [(Attr.LIFETIME, 3600)] if m.method == Method.REFRESH else []), now)
    assert due[540.5] == [Method.CHANNEL_BIND]  # 540 s after the binding (RFC 8656 12: 10 minutes)
    assert due[1080.5] == [Method.CHANNEL_BIND]
    assert due[240.0] == [Method.CREATE_PERMISSION] and due[480.0] == [Method.CREATE_PERMISSION]
    assert client.channels() == {PEER: 0x4000}


def test_permission_refused_drops_held_data_and_retries_later() -> None:
    client = allocated()
    client.send(b"a", PEER, 1.0)
    client.send(b"b", PEER, 1.0)
    client.receive(error(one(client), 403), 1.1)
    (event,) = events(client)
    assert isinstance(event, PermissionFailed) and isinstance(event.error, TurnForbidden)
    assert "--allow-loopback-peers" in str(event.error)
    assert client.datagrams_to_send() == [] and client.dropped == 2
    assert client.send(b"c", PEER, 2.0) is None and client.datagrams_to_send() == []  # not yet
    assert client.send(b"d", PEER, 6.2) is None  # 5 s later: asks again
    assert one(client).method == Method.CREATE_PERMISSION


def test_channel_bind_failure_keeps_send_indications() -> None:
    client = allocated()
    client.send(b"a", PEER, 0.0)
    client.receive(success(one(client)), 0.0)
    bind = next(m for m in sent(client) if m.method == Method.CHANNEL_BIND)
    client.receive(error(bind, 400), 0.1)
    assert any(isinstance(e, ChannelBindFailed) for e in events(client))
    raw = client.send(b"x", PEER, 0.2)
    assert raw is not None and Message.decode(raw).method == Method.SEND
    assert client.datagrams_to_send() == []  # no new ChannelBind until 30 s later


def test_data_to_other_family_is_dropped() -> None:
    client = allocated()
    assert client.send(b"x", ("2001:db8::1", 5000), 0.0) is None
    assert client.datagrams_to_send() == [] and client.dropped == 1


def test_held_data_is_bounded() -> None:
    client = allocated(max_queued=2)
    for i in range(5):
        client.send(bytes([i]), PEER, 0.0)
    client.receive(success(one(client)), 0.0)
    assert [m.get(Attr.DATA) for m in sent(client) if m.method == Method.SEND] == [b"\x00", b"\x01"]
    assert client.dropped == 3


def test_receive_data_indication_and_channel_data() -> None:
    client = allocated()
    with_permission(client, 0.0)
    data = Message(
        Method.DATA, MessageClass.INDICATION, attributes=[(Attr.XOR_PEER_ADDRESS, PEER), (Attr.DATA, b"payload")]
    ).encode()
    assert client.receive(data, 0.1) == (b"payload", PEER)
    stranger = Message(
        Method.DATA,
        MessageClass.INDICATION,
        attributes=[(Attr.XOR_PEER_ADDRESS, ("192.0.2.77", 1)), (Attr.DATA, b"spoof")],
    ).encode()
    assert client.receive(stranger, 0.1) is None  # no permission for it (RFC 8656 11.6)
    # the ChannelBind of with_permission is pending: its ChannelData is accepted already
    assert client.receive(bytes.fromhex("4000 0003") + b"abc\x00", 0.2) == (b"abc", PEER)
    assert client.receive(bytes.fromhex("4000 0003") + b"abc", 0.2) == (b"abc", PEER)
    assert client.receive(bytes.fromhex("4005 0003") + b"abc", 0.2) is None  # unknown channel
    assert client.receive(bytes.fromhex("4000 0009") + b"abc", 0.2) is None  # truncated
    assert client.receive(b"\xff\x00", 0.2) is None and client.receive(b"", 0.2) is None


def test_late_duplicate_response_is_ignored() -> None:
    client = allocated()
    client.refresh(1.0)
    req = one(client)
    client.receive(success(req, [(Attr.LIFETIME, 600)]), 1.0)
    client.receive(success(req, [(Attr.LIFETIME, 5)]), 1.1)
    assert events(client) == [Refreshed(600)]


def test_create_permission_before_the_allocation_waits_for_it() -> None:
    client = TurnClient(USER, PASSWORD)
    client.create_permission("203.0.113.5", 0.0)
    client.allocate(0.0)
    assert [m.method for m in sent(client)] == [Method.ALLOCATE]
    # (the permission request goes out once the allocation exists)


def test_channel_numbers_are_reused_for_the_same_peer() -> None:
    client = allocated()
    assert client.bind_channel(PEER, 0.0) == 0x4000
    assert client.bind_channel(PEER, 0.0) == 0x4000  # pending: the same request
    assert client.bind_channel(PEER2, 0.0) == 0x4001
    reqs = [m for m in sent(client) if m.method == Method.CHANNEL_BIND]
    assert len(reqs) == 2
    client.receive(error(reqs[0], 400), 0.0)
    assert client.bind_channel(PEER, 0.0) == 0x4000  # again with the same number (RFC 8656 12)


# ---- ChannelData framing and the stream de-framer (RFC 8656 12.4-12.6) ----


def test_channel_data_encoding() -> None:
    assert encode_channel_data(0x4000, b"hello") == bytes.fromhex("4000 0005 68656c6c6f")
    assert encode_channel_data(0x4FFF, b"hello", pad=True) == bytes.fromhex("4fff 0005 68656c6c6f 000000")
    assert encode_channel_data(0x4001, b"", pad=True) == bytes.fromhex("4001 0000")
    assert encode_channel_data(0x4001, b"abcd", pad=True) == bytes.fromhex("4001 0004 61626364")
    with pytest.raises(ChannelDataError, match="0x3fff"):
        encode_channel_data(0x3FFF, b"x")
    with pytest.raises(ChannelDataError, match="0x5000"):
        encode_channel_data(0x5000, b"x")


def test_channel_data_decoding() -> None:
    assert decode_channel_data(bytes.fromhex("4000 0005 68656c6c6f 000000")) == (0x4000, b"hello")
    assert decode_channel_data(bytes.fromhex("4abc 0000")) == (0x4ABC, b"")
    with pytest.raises(ChannelDataError, match="overruns"):
        decode_channel_data(bytes.fromhex("4000 0005 6868"))
    with pytest.raises(ChannelDataError, match="shorter"):
        decode_channel_data(b"\x40\x00")
    with pytest.raises(ChannelDataError, match="outside"):
        decode_channel_data(bytes.fromhex("5000 0000"))
    assert is_channel_data(bytes.fromhex("4000 0000")) and not is_channel_data(bytes.fromhex("0001 0000"))


def _stun(n_attr_bytes: int = 8) -> bytes:
    msg = Message(
        Method.BINDING,
        MessageClass.SUCCESS,
        transaction_id=b"t" * 12,
        attributes=[(Attr.XOR_MAPPED_ADDRESS, ("192.0.2.1", 1))],
    )
    return msg.encode()


def test_deframer_several_frames_in_one_read() -> None:
    stun = _stun()
    cd1 = encode_channel_data(0x4000, b"hello", pad=True)
    cd2 = encode_channel_data(0x4001, b"abcd", pad=True)
    d = StreamDeframer()
    d.feed(stun + cd1 + cd2 + stun)
    assert d.next_frame() == stun
    assert d.next_frame() == bytes.fromhex("4000 0005") + b"hello"  # padding removed
    assert d.next_frame() == cd2
    assert d.next_frame() == stun
    assert d.next_frame() is None and d.buffered == 0 and d.discarded == 0


def test_deframer_partial_frames_byte_by_byte() -> None:
    stream = encode_channel_data(0x4000, b"xyz", pad=True) + _stun() + encode_channel_data(0x4002, b"", pad=True)
    d = StreamDeframer()
    frames = []
    for i in range(len(stream)):
        d.feed(stream[i : i + 1])
        while (f := d.next_frame()) is not None:
            frames.append(f)
    assert frames == [bytes.fromhex("4000 0003") + b"xyz", _stun(), bytes.fromhex("4002 0000")]
    assert d.buffered == 0


def test_deframer_waits_for_padding() -> None:
    d = StreamDeframer()
    d.feed(bytes.fromhex("4000 0005") + b"hello")  # padding not arrived yet
    assert d.next_frame() is None
    d.feed(b"\x00\x00\x00")
    assert d.next_frame() == bytes.fromhex("4000 0005") + b"hello"


def test_deframer_skips_garbage() -> None:
    stun = _stun()
    d = StreamDeframer()
    # 0x80.. and 0xff cannot start a frame; a STUN-looking header without the magic cookie neither
    d.feed(b"\x80\xff\xfe" + bytes.fromhex("0001 0000 deadbeef") + stun + b"\x90")
    assert d.next_frame() == stun
    assert d.next_frame() is None
    assert d.discarded == 3 + 8
    assert d.buffered == 1
    d.feed(b"\x91\x92\x93" + encode_channel_data(0x4000, b"ok", pad=True))
    assert d.next_frame() == bytes.fromhex("4000 0002") + b"ok"
    assert d.discarded == 3 + 8 + 4


def test_keepalive_over_udp_keeps_nat_mappings() -> None:
    client = allocated(0.0, lifetime=600, keepalive=15.0)
    assert client.get_timer() == 15.0
    client.handle_timer(15.0)
    (raw,) = client.datagrams_to_send()
    msg = Message.decode(raw)
    assert (msg.method, msg.message_class) == (Method.BINDING, MessageClass.INDICATION)  # no answer expected
    assert msg.verify_fingerprint()
    client.refresh(20.0)  # any request to the server counts
    client.receive(success(one(client), [(Attr.LIFETIME, 600)]), 20.0)
    assert client.get_timer() == 35.0


def test_no_keepalive_over_tcp() -> None:
    client = allocated(0.0, lifetime=600, keepalive=15.0, reliable=True)
    assert client.get_timer() == 540.0
