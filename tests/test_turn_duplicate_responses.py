"""A retransmitted request answered twice, and a response that comes after a retransmission was queued: the sans-IO
TURN client takes the first response and ignores the second harmlessly (RFC 8489 6.3: a response is matched to
its transaction, which ends with it; RFC 8656 7-12: a retransmitted TURN request may be answered once per
transmission). Literal bytes and times."""

from __future__ import annotations

from test_turn_client import PEER, RELAYED, allocate_ok, allocated, challenge, events, one, success

from iceagent.stun import Attr, Message, MessageClass, Method
from iceagent.turn import (
    Allocated,
    AllocationState,
    ChannelBound,
    PermissionInstalled,
    Refreshed,
    Released,
    TurnClient,
)

USER, PASSWORD = "alice", "secret"


def _retransmitted(client: TurnClient) -> Message:
    """The one request the client sends now, after its retransmission at the first RTO (RFC 8489 6.2.1)."""
    request = one(client)
    at = client.get_timer()
    assert at is not None
    client.handle_timer(at)
    (again,) = client.datagrams_to_send()
    assert Message.decode(again).transaction_id == request.transaction_id
    return request


def _quiet(client: TurnClient) -> None:
    """Nothing to send and nothing happened."""
    assert client.datagrams_to_send() == []
    assert events(client) == []


def test_allocate_challenged_twice_is_retried_once() -> None:
    """Both transmissions of the first Allocate get a 401: one retry with the credential, not two."""
    client = TurnClient(USER, PASSWORD)
    client.allocate(0.0)
    first = _retransmitted(client)
    client.receive(challenge(first), 0.6)
    retry = one(client)
    assert retry.transaction_id != first.transaction_id and Attr.MESSAGE_INTEGRITY in retry
    client.receive(challenge(first), 0.7)
    _quiet(client)
    assert client.requests_sent == {"Allocate": 2}
    client.receive(success(retry, allocate_ok()), 0.8)
    assert events(client) == [Allocated(RELAYED, ("192.0.2.10", 40000), 600)]


def test_allocate_answered_twice_allocates_once() -> None:
    """The second success to a retransmitted Allocate changes nothing (not the lifetime, not the state)."""
    client = TurnClient(USER, PASSWORD)
    client.allocate(0.0)
    client.receive(challenge(one(client)), 0.0)
    request = _retransmitted(client)
    client.receive(success(request, allocate_ok(600)), 0.6)
    assert [type(e) for e in events(client)] == [Allocated]
    client.receive(success(request, allocate_ok(30)), 0.7)
    _quiet(client)
    assert client.state is AllocationState.ALLOCATED and client.lifetime == 600 and client.expires_at == 600.6


def test_permission_answered_twice_installs_and_flushes_once() -> None:
    """The data held for the permission goes once, and one ChannelBind, after the first of two successes."""
    client = allocated()
    assert client.send(b"held", PEER, 1.0) is None
    request = _retransmitted(client)
    assert request.method == Method.CREATE_PERMISSION
    client.receive(success(request), 1.6)
    assert events(client) == [PermissionInstalled(PEER[0])]
    flushed = [Message.decode(d) for d in client.datagrams_to_send()]
    assert [(m.method, m.message_class) for m in flushed] == [
        (Method.SEND, MessageClass.INDICATION),
        (Method.CHANNEL_BIND, MessageClass.REQUEST),
    ]
    client.receive(success(request), 1.7)
    _quiet(client)
    assert client.requests_sent == {"Allocate": 2, "CreatePermission": 1, "ChannelBind": 1}


def test_channel_bind_answered_twice_binds_once() -> None:
    client = allocated()
    number = client.bind_channel(PEER, 1.0)
    request = _retransmitted(client)
    client.receive(success(request), 1.6)
    assert events(client) == [ChannelBound(PEER, number)]
    refresh_at = client._channels[PEER].refresh_at
    client.receive(success(request), 1.7)
    _quiet(client)
    assert client.channels() == {PEER: number} and client._channels[PEER].refresh_at == refresh_at


def test_refresh_answered_twice_refreshes_once() -> None:
    client = allocated()
    client.refresh(10.0)
    request = _retransmitted(client)
    client.receive(success(request, [(Attr.LIFETIME, 600)]), 10.6)
    assert events(client) == [Refreshed(600)]
    client.receive(success(request, [(Attr.LIFETIME, 0)]), 10.7)  # even one that would mean "released"
    _quiet(client)
    assert client.state is AllocationState.ALLOCATED and client.expires_at == 610.6


def test_release_answered_twice_is_released_once() -> None:
    client = allocated()
    client.deallocate(10.0)
    request = _retransmitted(client)
    client.receive(success(request, [(Attr.LIFETIME, 0)]), 10.6)
    assert events(client) == [Released()]
    client.receive(success(request, [(Attr.LIFETIME, 0)]), 10.7)
    _quiet(client)
    assert client.state is AllocationState.RELEASED and client.get_timer() is None


def test_a_response_after_the_retransmission_was_queued_ends_the_schedule() -> None:
    """The first transmission's response arrives after the timer queued a retransmission (not yet sent): the
    transaction ends there (no later retransmission, no timeout), and the queued retransmission, if the driver
    sends it, draws an answer that is ignored."""
    client = allocated()
    client.refresh(10.0)
    request = one(client)
    at = client.get_timer()
    assert at is not None
    client.handle_timer(at)  # queued, not yet taken by the driver
    client.receive(success(request, [(Attr.LIFETIME, 600)]), at)
    assert events(client) == [Refreshed(600)]
    assert [Message.decode(d).transaction_id for d in client.datagrams_to_send()] == [request.transaction_id]
    assert not client.expects_response
    timer = client.get_timer()
    assert timer is not None and timer > at + 60  # the next refresh, nothing of the finished transaction
    client.handle_timer(at + 60)
    _quiet(client)
    client.receive(success(request, [(Attr.LIFETIME, 600)]), at + 0.1)
    _quiet(client)
