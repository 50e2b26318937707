"""The mux's sans-IO routing table (iceagent/net/_mux_routes.py): literal datagrams and times, no Trio."""

from __future__ import annotations

import pytest

from iceagent.net._mux_routes import (
    MuxError,
    MuxFull,
    MuxLimits,
    MuxRoutes,
    Own,
    local_ufrag,
    request_transaction_id,
)
from iceagent.stun import Attr, Message, MessageClass, Method

L = ("192.0.2.10", 3478)  # the mux address
L2 = ("192.0.2.11", 3478)
PEER = ("198.51.100.7", 40000)
PEER2 = ("198.51.100.8", 40001)
TID = bytes(range(12))
TID2 = bytes(range(1, 13))


def check(username: str, tid: bytes = TID, *, pwd: bytes | None = b"pwd-of-a-0123456789abc") -> bytes:
    """A connectivity check (RFC 8445 7.2.2): USERNAME "local:remote", MESSAGE-INTEGRITY, FINGERPRINT."""
    msg = Message(Method.BINDING, MessageClass.REQUEST, transaction_id=tid,
                  attributes=[(Attr.USERNAME, username), (Attr.PRIORITY, 1)])
    return msg.encode(integrity_key=pwd, fingerprint=True)


def response(tid: bytes, cls: MessageClass = MessageClass.SUCCESS) -> bytes:
    if cls is MessageClass.SUCCESS:
        attrs: list[tuple[Attr, object]] = [(Attr.XOR_MAPPED_ADDRESS, PEER)]
    else:
        attrs = [(Attr.ERROR_CODE, (487, "Role Conflict"))]
    return Message(Method.BINDING, cls, transaction_id=tid, attributes=attrs).encode(fingerprint=True)


def indication() -> bytes:
    return Message(Method.BINDING, MessageClass.INDICATION, transaction_id=TID).encode(fingerprint=True)


def routes(**limits: int | float) -> MuxRoutes[str]:
    r: MuxRoutes[str] = MuxRoutes(MuxLimits(**limits))  # type: ignore[arg-type]
    for name in ("a", "b"):
        r.add_owner(name)
    return r


def test_local_ufrag_is_username_before_the_colon() -> None:
    assert local_ufrag(check("ufA:remote")) == b"ufA"
    assert local_ufrag(check("noColon")) == b"noColon"
    bare = Message(Method.BINDING, MessageClass.REQUEST, transaction_id=TID).encode(fingerprint=True)
    assert local_ufrag(bare) is None
    # USERNAME after MESSAGE-INTEGRITY does not count (RFC 8489 14.5)
    head = check("x:y", pwd=None)[:20]
    after_mi = bytes.fromhex("0008 0014") + bytes(20) + bytes.fromhex("0006 0004") + b"evil"
    forged = head[:2] + len(after_mi).to_bytes(2, "big") + head[4:] + after_mi
    assert local_ufrag(forged) is None
    # an attribute claiming more bytes than there are ends the walk
    short = head[:2] + (8).to_bytes(2, "big") + head[4:] + bytes.fromhex("0006 00ff") + b"ufA:"
    assert local_ufrag(short) is None


def test_request_transaction_id_only_for_requests() -> None:
    assert request_transaction_id(check("a:b")) == TID
    assert request_transaction_id(response(TID)) is None
    assert request_transaction_id(indication()) is None
    assert request_transaction_id(b"\x00" * 40) is None


def test_checks_route_by_local_ufrag_two_agents_one_port() -> None:
    r = routes()
    r.add_ufrag("a", "ufA")
    r.add_ufrag("b", "ufB")
    assert r.route(check("ufA:peer"), L, PEER, 0.0) == "a"
    assert r.route(check("ufB:peer"), L, PEER, 0.0) == "b"  # same source, other agent: by ufrag
    assert r.route(check("ufC:peer"), L, PEER, 0.0) is None
    bare = Message(Method.BINDING, MessageClass.REQUEST, transaction_id=TID).encode(fingerprint=True)
    assert r.route(bare, L, PEER, 0.0) is None
    assert r.dropped == {"unknown_ufrag": 1, "no_username": 1}


def test_two_generations_of_one_agent_stay_routable_until_removed() -> None:
    r = routes()
    r.add_ufrag("a", "gen0")
    r.add_ufrag("a", "gen1")
    assert r.route(check("gen0:p"), L, PEER, 0.0) == "a"
    assert r.route(check("gen1:p"), L, PEER, 0.0) == "a"
    r.remove_ufrag("a", "gen0")
    assert r.route(check("gen0:p"), L, PEER, 0.0) is None
    assert r.route(check("gen1:p"), L, PEER, 0.0) == "a"


def test_a_ufrag_belongs_to_one_agent() -> None:
    r = routes()
    r.add_ufrag("a", "same")
    with pytest.raises(MuxError, match="already registered"):
        r.add_ufrag("b", "same")
    r.remove_ufrag("b", "same")  # not b's: ignored
    assert r.route(check("same:p"), L, PEER, 0.0) == "a"
    with pytest.raises(ValueError, match="ufrag"):
        r.add_ufrag("a", "has:colon")
    with pytest.raises(MuxError, match="not registered"):
        r.add_ufrag("nobody", "x")


def test_responses_route_by_transaction_id_once() -> None:
    r = routes()
    r.add_transaction("a", TID, 10.0)
    r.add_transaction("b", TID2, 10.0)
    assert r.route(response(TID2, MessageClass.ERROR), L, PEER, 11.0) == "b"
    assert r.route(response(TID), L, PEER2, 11.0) == "a"  # by id, whatever the source
    assert r.route(response(TID), L, PEER, 11.0) is None  # answered: forgotten
    assert r.dropped == {"unknown_transaction": 1}
    assert r.sizes()["transactions"] == 0


def test_the_muxs_own_transactions_route_to_it_until_removed_and_are_bounded() -> None:
    """Responses to the mux's shared STUN binding go to `Own.MUX` by id, every one (the mux checks the
    source), until the mux removes the id; at most `max_stun_bindings` ids, the oldest goes."""
    r = routes(max_stun_bindings=2)
    r.add_own_transaction(TID)
    r.add_transaction("a", TID2, 0.0)
    assert r.route(response(TID), L, PEER, 0.0) is Own.MUX
    assert r.route(response(TID, MessageClass.ERROR), L, PEER2, 0.0) is Own.MUX  # not consumed by a stray
    assert r.route(response(TID2), L, PEER, 0.0) == "a"  # the agents' own ids are untouched
    r.remove_own_transaction(TID)
    assert r.route(response(TID), L, PEER, 0.0) is None
    for tid in (TID, TID2, bytes(12)):
        r.add_own_transaction(tid)
    assert r.own_transactions() == 2 and r.route(response(TID), L, PEER, 0.0) is None
    assert r.dropped == {"unknown_transaction": 2, "transaction_evicted": 1}


def test_transactions_expire_after_the_ttl() -> None:
    r = routes(transaction_ttl=40.0)
    r.add_transaction("a", TID, 100.0)
    assert r.route(response(TID), L, PEER, 140.0) is None
    r.add_transaction("a", TID2, 100.0)
    r.add_transaction("a", TID2, 130.0)  # a retransmission refreshes it
    assert r.route(response(TID2), L, PEER, 160.0) == "a"
    r.add_transaction("a", TID, 200.0)
    r.expire(240.0)
    assert r.sizes()["transactions"] == 0 and r.owner_counts("a")["transactions"] == 0


def test_transaction_tables_are_bounded_oldest_goes() -> None:
    r = routes(max_transactions=4, max_transactions_per_agent=3)
    tids = [bytes([i]) * 12 for i in range(6)]
    for tid in tids[:4]:
        r.add_transaction("a", tid, 0.0)
    assert r.owner_counts("a")["transactions"] == 3
    assert r.route(response(tids[0]), L, PEER, 1.0) is None  # evicted
    r.add_transaction("b", tids[4], 0.0)
    r.add_transaction("b", tids[5], 0.0)
    assert r.sizes()["transactions"] == 4  # the global bound: a's oldest went
    assert r.route(response(tids[1]), L, PEER, 1.0) is None
    assert r.route(response(tids[5]), L, PEER, 1.0) == "b"
    assert r.dropped["transaction_evicted"] == 2


def test_data_routes_only_by_a_confirmed_address() -> None:
    r = routes()
    r.add_ufrag("a", "ufA")
    assert r.route(b"\x17\xfe\xfd data", L, PEER, 0.0) is None  # nothing bound yet
    assert r.route(indication(), L, PEER, 0.0) is None
    r.route(check("ufA:p"), L, PEER, 0.0)  # a check alone binds nothing
    assert r.route(b"data", L, PEER, 0.0) is None
    r.confirm("a", L, PEER)
    assert r.route(b"data", L, PEER, 0.0) == "a"
    assert r.route(indication(), L, PEER, 0.0) == "a"  # keepalives follow the binding
    assert r.route(b"data", L2, PEER, 0.0) is None  # per mux address
    assert r.route(b"data", L, PEER2, 0.0) is None
    assert r.dropped["unbound_address"] == 5


def test_latest_confirm_wins() -> None:
    r = routes()
    r.confirm("a", L, PEER)
    r.confirm("b", L, PEER)
    assert r.route(b"data", L, PEER, 0.0) == "b"
    assert r.owner_counts("a")["bindings"] == 0
    r.confirm("a", L, PEER)
    assert r.route(b"data", L, PEER, 0.0) == "a"
    r.remove_owner("b")
    assert r.route(b"data", L, PEER, 0.0) == "a"  # b's leaving does not take a's binding


def test_unauthenticated_stun_cannot_rebind_or_steal() -> None:
    """Only `confirm` binds: an attacker's checks (no MESSAGE-INTEGRITY, or b's ufrag) from a's bound
    address go by their ufrag and leave the binding alone."""
    r = routes()
    r.add_ufrag("a", "ufA")
    r.add_ufrag("b", "ufB")
    r.confirm("a", L, PEER)
    assert r.route(check("ufB:x", pwd=None), L, PEER, 0.0) == "b"  # b will reject it (no integrity)
    assert r.route(check("ufX:x", pwd=None), L, PEER, 0.0) is None
    assert r.route(response(TID2), L, PEER, 0.0) is None  # a response nobody asked for
    assert r.route(b"data", L, PEER, 0.0) == "a"
    assert r.bound_owner(L, PEER) == "a"


def test_binding_tables_are_bounded_least_recent_goes() -> None:
    r = routes(max_bindings=3, max_bindings_per_agent=2)
    peers = [("198.51.100.1", 1000 + i) for i in range(4)]
    r.confirm("a", L, peers[0])
    r.confirm("a", L, peers[1])
    r.confirm("a", L, peers[0])  # refreshed: peers[1] is now a's oldest
    r.confirm("a", L, peers[2])
    assert [r.bound_owner(L, p) for p in peers[:3]] == ["a", None, "a"]
    r.confirm("b", L, peers[1])
    r.confirm("b", L, peers[3])
    assert r.sizes()["bindings"] == 3  # the global bound: the least recently confirmed (a's peers[0]) went
    assert [r.bound_owner(L, p) for p in peers] == [None, "b", "a", "b"]
    assert r.owner_counts("a")["bindings"] == 1


def test_removing_an_owner_unbinds_everything_at_once() -> None:
    r = routes()
    r.add_ufrag("a", "ufA")
    r.add_transaction("a", TID, 0.0)
    r.confirm("a", L, PEER)
    r.remove_owner("a")
    assert r.route(check("ufA:p"), L, PEER, 1.0) is None
    assert r.route(response(TID), L, PEER, 1.0) is None
    assert r.route(b"data", L, PEER, 1.0) is None
    assert r.sizes() == {"agents": 1, "ufrags": 0, "transactions": 0, "bindings": 0}
    r.add_owner("a")  # the name is free again
    r.add_ufrag("a", "ufA")


def test_registration_bounds_raise() -> None:
    r: MuxRoutes[str] = MuxRoutes(MuxLimits(max_agents=1, max_ufrags_per_agent=2))
    r.add_owner("a")
    with pytest.raises(MuxFull, match="max_agents"):
        r.add_owner("b")
    with pytest.raises(MuxError, match="already registered"):
        r.add_owner("a")
    r.add_ufrag("a", "g0")
    r.add_ufrag("a", "g1")
    r.add_ufrag("a", "g1")  # again: no new entry
    with pytest.raises(MuxFull, match="max_ufrags_per_agent"):
        r.add_ufrag("a", "g2")
    with pytest.raises(ValueError, match="inbox_bytes"):
        MuxLimits(inbox_bytes=0)
