"""Bounded state against an authenticated TURN user (DESIGN.md "Security defaults"): the timer heap, the
response cache and the per-user counts stay bounded whatever the number of requests, a timer pass looks
only at what is due, and the per-allocation bandwidth quota drops (and counts) what is over it."""

from __future__ import annotations

from typing import Any

from turn_server_helpers import PEER, PEER2, RELAY, Client, make_state

from iceagent.stun import Attr, MessageClass, Method
from iceagent.turn.server.state import FiveTuple, SendToClient, SendToPeer

SERVER = ("198.51.100.1", 3478)


def _timed_items(client: Client) -> int:
    stats = client.state.stats
    return stats.allocations + stats.permissions + stats.channels


def test_a_flood_of_refreshes_permissions_and_channel_binds_keeps_the_timer_heap_small() -> None:
    client = Client(make_state())
    client.allocate()
    client.permit(PEER)
    client.bind(0x4000, PEER2)
    for i in range(10_000):
        now = 1.0 + i * 0.01
        lifetime = 3600 if i % 2 else 600  # longer and shorter in turn: each move earlier adds an entry
        kind = i % 3
        if kind == 0:
            response = client.call(Method.REFRESH, [(Attr.LIFETIME, lifetime)], now)
        elif kind == 1:
            response = client.permit(PEER, now=now)
        else:
            response = client.bind(0x4000, PEER2, now=now)
        assert response.message_class is MessageClass.SUCCESS
        assert len(client.state._timers) <= 2 * _timed_items(client) + 64
    assert _timed_items(client) == 4  # the allocation, two permissions, one channel
    assert client.state.stats.timers <= 2 * 4 + 64


def test_a_timer_pass_visits_only_what_is_due() -> None:
    state = make_state(max_allocations_per_user=1000)
    clients = []
    for n in range(200):
        client = Client(state, FiveTuple(("192.0.2.10", 20000 + n), SERVER))
        client.allocate(now=float(n), relay=("198.51.100.1", 30000 + n))
        client.permit(PEER, now=float(n))
        clients.append(client)
    assert state.stats.allocations == 200
    before = state.stats.timer_visits
    state.handle_timer(250.0)  # nothing due yet (permissions end at 300 + n, allocations at 600 + n)
    assert state.stats.timer_visits == before
    state.handle_timer(300.5)  # the first permission only
    assert state.stats.timer_visits == before + 1 and state.stats.permissions == 199
    state.handle_timer(310.5)  # ten more
    assert state.stats.timer_visits == before + 11 and state.stats.permissions == 189


def test_a_deleted_allocation_leaves_no_timers() -> None:
    client = Client(make_state())
    for round_ in range(50):
        now = float(round_)
        client.allocate(now=now)
        client.permit(*[(f"203.0.113.{i}", 1) for i in range(1, 50)], now=now)
        client.bind(0x4000, PEER, now=now)
        assert len(client.request(Method.REFRESH, [(Attr.LIFETIME, 0)], now)) == 2  # CloseRelay, the answer
    assert client.state.stats.allocations == 0
    assert client.state._timers.keys == 0 and len(client.state._timers) <= 64
    assert client.state._per_user == {}


def test_the_response_cache_keeps_at_most_16_answers_per_client() -> None:
    client = Client(make_state())
    client.allocate()
    last = None
    for i in range(10_000):
        outputs = client.request(Method.REFRESH, now=1.0 + i * 0.001, tid=i.to_bytes(12, "big"))
        last = outputs[0]
    assert len(client.state._responses) <= 16
    # A retransmission of the last request still gets the very same answer (RFC 8489 6.3.1).
    again = client.request(Method.REFRESH, now=12.0, tid=(9999).to_bytes(12, "big"))
    assert again == [last]
    # Another client's answers are not pushed out by the flood.
    other = Client(client.state, FiveTuple(("192.0.2.99", 1), SERVER), user="bob", password="hunter2")
    other.allocate(now=12.0, relay=("198.51.100.1", 50001))
    assert len(client.state._responses) <= 17


# ---- the bandwidth quota (a fixed clock) ----


def test_relayed_bytes_over_the_quota_are_dropped_and_counted_in_both_directions() -> None:
    client = Client(make_state(relay_bandwidth=100_000))
    client.allocate(now=0.0)
    client.permit(PEER, now=0.0)
    state = client.state
    payload = b"x" * 10_000
    sent = [client.send_indication(PEER, payload, now=1.0) for _ in range(12)]
    assert sent[:10] == [[SendToPeer(RELAY, PEER, payload)]] * 10  # one second's worth: 100,000 bytes
    assert sent[10:] == [[], []]
    assert state.stats.dropped_by_reason == {"bandwidth": 2} and state.stats.to_peers == 10
    # 50 ms later 5,000 bytes have come back: enough for 5,000 from the peer, not for one byte more.
    assert isinstance(state.receive_from_peer(RELAY, b"y" * 5_000, PEER, 1.05), SendToClient)
    assert state.receive_from_peer(RELAY, b"y", PEER, 1.05) is None
    assert state.stats.dropped_by_reason == {"bandwidth": 3}
    # A full second refills the bucket, but not beyond its size.
    assert [client.send_indication(PEER, payload, now=5.0) for _ in range(11)][-1] == []


def test_no_quota_relays_everything() -> None:
    client = Client(make_state(relay_bandwidth=None))
    client.allocate()
    client.permit(PEER)
    for _ in range(200):
        assert client.send_indication(PEER, b"x" * 60_000, now=1.0) != []
    assert client.state.stats.dropped_by_reason == {}


class _CountingScans:
    """Wraps an allocation's cooldowns and counts full passes over them (iteration, `items()`)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.scans = 0

    def __getattr__(self, name: str) -> Any:
        if name in ("items", "values", "keys"):
            self.scans += 1
        return getattr(self.inner, name)

    def __iter__(self) -> Any:
        self.scans += 1
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)

    def __contains__(self, key: object) -> bool:
        return key in self.inner

    def __setitem__(self, key: Any, value: Any) -> None:
        self.inner[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.inner[key]


def test_channel_bind_looks_up_cooldowns_instead_of_scanning_them() -> None:
    # RFC 8656 12: an expired binding's number and peer cool down for 5 minutes; an allocation may hold up to
    # 4096 cooldowns, and each ChannelBind must not visit all of them.
    client = Client(make_state(channel_lifetime=10.0, channel_cooldown=300.0))
    client.allocate(now=0.0)
    for n in range(500):
        assert client.bind(0x4000 + n, ("203.0.113.7", 10000 + n), now=0.0).message_class is MessageClass.SUCCESS
    client.state.handle_timer(11.0)  # every channel expired: 500 cooldowns
    allocation = client.state.allocations[client.ft]
    assert len(allocation.cooldown) == 500
    counting = _CountingScans(allocation.cooldown)
    allocation.cooldown = counting
    for n in range(500, 600):  # fresh numbers and peers: allowed
        assert client.bind(0x4000 + n, ("203.0.113.8", n), now=12.0).message_class is MessageClass.SUCCESS
    # A cooled number to another peer, a cooled peer to another number: 400; the same pair again: allowed.
    assert client.bind(0x4000, ("203.0.113.9", 1), now=12.0).message_class is MessageClass.ERROR
    assert client.bind(0x4FFF, ("203.0.113.7", 10001), now=12.0).message_class is MessageClass.ERROR
    assert client.bind(0x4001, ("203.0.113.7", 10001), now=12.0).message_class is MessageClass.SUCCESS
    assert counting.scans == 0
    assert len(allocation.cooldown) == 499
