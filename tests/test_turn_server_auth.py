"""Unauthenticated answers of the embedded TURN server stay small and alike (no amplification, RFC 8489 9.2.4),
and ephemeral credentials (the TURN REST API scheme, coturn's use-auth-secret) work, expire and rotate."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
import trio
from agent_helpers import connect_both
from turn_server_helpers import FT, REALM, SERVER, Client, error_code, make_state

from iceagent import IceServer, open_agent
from iceagent.net.os import OSNetwork
from iceagent.stun import Attr, Message, MessageClass, Method, long_term_key
from iceagent.turn.server import open_turn_server
from iceagent.turn.server.auth import LongTermAuth
from iceagent.turn.server.state import FiveTuple, OpenRelay, SendToClient, TurnServerConfig, TurnServerState

TID = b"t" * 12
BARE_ALLOCATE = Message(Method.ALLOCATE, MessageClass.REQUEST, TID, [(Attr.REQUESTED_TRANSPORT, 17)])


def _wire(state: TurnServerState, request: bytes, now: float = 0.0, unix_time: float | None = None) -> bytes:
    if unix_time is None:
        (out,) = state.receive_from_client(request, FT, now)
    else:
        (out,) = state.receive_from_client(request, FT, now, unix_time)
    assert isinstance(out, SendToClient)
    return out.data


@pytest.mark.parametrize(
    ("config", "limit"),
    [
        ({}, 100),  # SHA-256 and MD5 offered: REALM, NONCE, PASSWORD-ALGORITHMS
        ({"software": None}, 100),
        ({"password_algorithms": ()}, 72),  # MD5 only: REALM and NONCE
    ],
)
def test_the_401_to_a_bare_allocate_is_at_most_100_bytes(config: dict[str, object], limit: int) -> None:
    state = TurnServerState(realm="iceagent", users={"alice": "secret"}, config=TurnServerConfig(**config))
    request = BARE_ALLOCATE.encode()
    response = _wire(state, request)
    assert len(request) == 28 and len(response) <= limit, len(response)
    message = Message.decode(response)
    assert message.get(Attr.ERROR_CODE) == (401, "Unauthenticated") and Attr.SOFTWARE not in message
    assert {a for a, _ in message.attributes} <= {Attr.ERROR_CODE, Attr.REALM, Attr.NONCE, Attr.PASSWORD_ALGORITHMS}


def test_other_unauthenticated_answers_are_small_too() -> None:
    state = make_state(nonce_lifetime=10)
    client = Client(state)
    client.allocate(now=0.0)
    # 438 (stale nonce), 400 (no NONCE), 400 (an unknown method), 420 on Binding, the Binding answer itself.
    stale = client.request(Method.REFRESH, now=20.0)
    no_nonce = Message(Method.ALLOCATE, MessageClass.REQUEST, TID, [(Attr.USERNAME, "alice"), (Attr.REALM, REALM)])
    answers = [
        stale[0].data,  # type: ignore[union-attr]
        _wire(state, no_nonce.encode(integrity_key=client.key)),
        _wire(state, Message(0x00A, MessageClass.REQUEST, TID).encode()),
        _wire(state, Message(Method.BINDING, MessageClass.REQUEST, TID, [(0x0777, b"")]).encode()),
        _wire(state, Message(Method.BINDING, MessageClass.REQUEST, TID).encode()),
    ]
    codes = [error_code(Message.decode(a)) for a in answers]
    assert codes == [438, 400, 400, 420, None]
    assert all(len(a) <= 100 and Attr.SOFTWARE not in Message.decode(a) for a in answers), [len(a) for a in answers]


def _signed(username: str, password: str, nonce: str, realm: str = REALM) -> bytes:
    auth = [(Attr.REQUESTED_TRANSPORT, 17), (Attr.USERNAME, username), (Attr.REALM, realm), (Attr.NONCE, nonce)]
    message = Message(Method.ALLOCATE, MessageClass.REQUEST, TID, auth)
    return message.encode(integrity_key=long_term_key(username, realm, password), fingerprint=True)


def test_unknown_user_wrong_password_foreign_realm_and_expired_credentials_answer_byte_identically() -> None:
    secret = b"rest-api-secret"
    state = make_state(auth_secrets=[secret])
    nonce = state.auth.nonce(FT.client, "udp", 0.0)
    expired = "1000:alice"
    answers = {
        "unknown user": _wire(state, _signed("mallory", "x", nonce)),
        "wrong password": _wire(state, _signed("alice", "wrong", nonce)),
        "foreign realm": _wire(state, _signed("alice", "secret", nonce, realm="other.org")),
        "expired ephemeral": _wire(state, _signed(expired, _coturn_password(secret, expired), nonce), unix_time=2000),
        "ephemeral, wrong secret": _wire(state, _signed("9999:alice", _coturn_password(b"x", "9999:alice"), nonce),
                                         unix_time=2000),
    }
    # Same client, same time, same transaction id: the same nonce, so the very same bytes.
    assert len(set(answers.values())) == 1, answers
    assert error_code(Message.decode(answers["unknown user"])) == 401
    # The right password gets past authentication: a relay socket is asked for.
    (opened,) = state.receive_from_client(_signed("alice", "secret", nonce), FT, 0.0)
    assert isinstance(opened, OpenRelay)


def test_nonces_are_short_bound_to_their_client_and_survive_the_wrap() -> None:
    auth = LongTermAuth(REALM, {"alice": "secret"}, nonce_lifetime=600, secret=b"k" * 16)
    client = ("192.0.2.1", 1000)
    for now in (0.0, 123456.5, 2.0**24 / 16 - 100, 2.0**24 / 16 + 5, 9e6):  # across the 24-bit wrap
        nonce = auth.nonce(client, "udp", now)
        assert len(nonce) == 25
        assert auth.nonce_valid(nonce, client, "udp", now + 599)
        assert not auth.nonce_valid(nonce, client, "udp", now + 601)
        assert not auth.nonce_valid(nonce, ("192.0.2.1", 1001), "udp", now)
        assert not auth.nonce_valid(nonce, client, "tcp", now)
        assert not auth.nonce_valid(nonce, client, "udp", now + 2**24 / 16)  # one wrap later: the MAC says no
        tampered = nonce[:-1] + ("A" if nonce[-1] != "A" else "B")
        assert not auth.nonce_valid(tampered, client, "udp", now)
    for junk in ("", "obMatJos2wAAA", "obMatJos2wAAA" + "é" * 12, "x" * 500):
        assert not auth.nonce_valid(junk, client, "udp", 0.0)


# ---- ephemeral credentials (TURN REST API) ----


def _coturn_password(secret: bytes, username: str) -> str:
    """How coturn (use-auth-secret) and the web services that hand out its credentials make the password."""
    return base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest()).decode()


def _ephemeral_client(state: TurnServerState, username: str, password: str, unix_time: float | None) -> Client:
    client = Client(state, user=username, password=password)
    client.unix_time = unix_time
    return client


@pytest.mark.parametrize("username", ["1700003600:alice", "1700003600"])
def test_ephemeral_credentials_work_until_they_expire(username: str) -> None:
    secret = b"north"
    state = make_state(auth_secrets=[secret])
    client = _ephemeral_client(state, username, _coturn_password(secret, username), 1_700_000_000.0)
    assert client.allocate().message_class is MessageClass.SUCCESS
    assert client.call(Method.REFRESH, now=1.0).message_class is MessageClass.SUCCESS
    client.unix_time = 1_700_003_600.0  # the expiry: refused like a wrong password
    assert client.call(Method.REFRESH, now=2.0).get(Attr.ERROR_CODE) == (401, "Unauthenticated")
    client.unix_time = None  # a caller that gives no wall clock gets no ephemeral credentials
    assert error_code(client.call(Method.REFRESH, now=3.0)) == 401


def test_secret_rotation_accepts_every_listed_secret() -> None:
    old, new = b"old-secret", b"new-secret"
    state = make_state(auth_secrets=[new, old])
    for n, secret in enumerate((old, new)):
        username = f"1700003600:user{n}"
        client = _ephemeral_client(state, username, _coturn_password(secret, username), 1_700_000_000.0)
        client.ft = FiveTuple(("192.0.2.10", 41000 + n), SERVER)
        assert client.allocate().message_class is MessageClass.SUCCESS
    state.auth.set_auth_secrets([new])
    username = "1700003600:late"
    client = _ephemeral_client(state, username, _coturn_password(old, username), 1_700_000_000.0)
    client.ft = FiveTuple(("192.0.2.10", 42000), SERVER)
    assert error_code(client.allocate()) == 401


def test_static_users_are_not_mistaken_for_ephemeral_ones() -> None:
    state = make_state(auth_secrets=[b"s"])
    assert Client(state).allocate().message_class is MessageClass.SUCCESS  # alice:secret, no wall clock needed
    with pytest.raises(ValueError, match="must not be empty"):
        make_state(auth_secrets=[b""])


async def test_our_relay_gatherer_with_coturn_style_ephemeral_credentials() -> None:
    """Interop: credentials made the coturn way, used by iceagent's own TURN client (two relay-only agents)."""
    secret = b"shared with the web service"
    username = f"{int(time.time()) + 3600}:alice"
    password = _coturn_password(secret, username)
    network = OSNetwork()
    config = TurnServerConfig(allow_loopback_peers=True)  # both agents are on this host
    with trio.fail_after(30):
        async with open_turn_server(network, ["127.0.0.1:0"], users={}, auth_secrets=[secret], config=config) as server:
            ice = [IceServer(urls=server.uris(), username=username, credential=password)]
            options = {"ice_servers": ice, "host_addresses": ["127.0.0.1"], "ice_transport_policy": "relay"}
            async with open_agent(controlling=True, **options) as a, open_agent(controlling=False, **options) as b:
                sa, sb = await connect_both(a, b)
                await sa.send(b"over the relay")
                assert await sb.receive() == b"over the relay"
                assert a.selected_pair is not None and a.selected_pair.local.type == "relay"
            assert server.stats.allocations_created == 2 and server.stats.to_peers >= 1
