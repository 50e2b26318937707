"""The mux's routing loop (`Mux._route`, which takes its decisions inline) against the sans-IO table's `route` and
the inbox rules it replaced (a differential property test, no sockets, no Trio run).

`Mux._route` reads the STUN header, a check's ufrag and the ufrag and address tables itself, and queues a
datagram for an empty inbox itself (issue 14 item 5: a call less per step of the way). Whatever the datagram,
its routing must stay what `MuxRoutes.route` decides (DESIGN.md "open_mux": checks by ufrag, responses by
transaction id, everything else by a confirmed source address) and its delivery what `_deliver` /
`_deliver_check` do: the same inbox, the same drop reason, the same tables afterwards.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from iceagent.net._mux_routes import MuxLimits, MuxRoutes, Own
from iceagent.net.mux import Mux
from iceagent.stun import Attr, Message, MessageClass, Method

L1, L2, UNKNOWN = ("192.0.2.10", 3478), ("192.0.2.11", 3478), ("192.0.2.99", 3478)
PEERS = [("198.51.100.7", 40000), ("198.51.100.8", 40001), ("203.0.113.9", 5000)]
OWNERS = ["a", "b", "c"]
UFRAGS = ["ufA", "ufB", "ufC", "ufX"]  # ufX: never registered
TIDS = [bytes([i]) * 12 for i in range(1, 7)]
#: small inboxes, so full and duplicate checks happen (and the table of waiting checks, past CHECK_SCAN = 8)
LIMITS = MuxLimits(inbox_datagrams=10, inbox_bytes=600, max_bindings_per_agent=2, max_transactions_per_agent=3,
                   transaction_ttl=5.0)


class _Port:
    """Just what `Mux._add_port` and the endpoints' transports read of a port."""

    def __init__(self, local: tuple[str, int]) -> None:
        self.locals = [local]
        self.bind_address = local[0]
        self.capacity = 10_000
        self.direct = None


def _stun(mtype: int, tid: bytes, body: bytes) -> bytes:
    return struct.pack("!HHI", mtype, len(body), 0x2112A442) + tid + body


def _attr(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)


def _check(username: str, tid: bytes, first: bool, integrity: bool) -> bytes:
    attrs: list[tuple[Attr, Any]] = [(Attr.USERNAME, username), (Attr.PRIORITY, 7)]
    msg = Message(Method.BINDING, MessageClass.REQUEST, transaction_id=tid, attributes=attrs if first else attrs[::-1])
    return msg.encode(integrity_key=b"k" * 22 if integrity else None, fingerprint=True)


usernames = st.one_of(
    st.builds(lambda u, r: f"{u}:{r}", st.sampled_from(UFRAGS), st.sampled_from(["p", "peer", ""])),
    st.sampled_from(UFRAGS),  # no colon: all of it is the ufrag
    st.just(":p"),  # an empty ufrag
)
tids = st.one_of(st.sampled_from(TIDS), st.binary(min_size=12, max_size=12))

datagrams = st.one_of(
    st.builds(_check, usernames, tids, st.booleans(), st.booleans()),
    # a check without USERNAME, one whose USERNAME runs past the end, one with USERNAME after MESSAGE-INTEGRITY
    st.builds(lambda t: _stun(0x0001, t, b""), tids),
    st.builds(lambda t, n: _stun(0x0001, t, struct.pack("!HH", 6, n) + b"ufA:"), tids, st.integers(5, 300)),
    st.builds(lambda t: _stun(0x0001, t, _attr(8, bytes(20)) + _attr(6, b"ufA:p")), tids),
    # responses (success, error) and what a peer sends unasked besides checks: indications, other requests
    st.builds(lambda t, c: _stun(c, t, _attr(0x0020, bytes(8))), tids, st.sampled_from([0x0101, 0x0111, 0x0103])),
    st.builds(lambda t, c: _stun(c, t, b""), tids, st.sampled_from([0x0011, 0x0003, 0x0016, 0x0002])),
    # not STUN, or nearly: application data, a wrong cookie, a length that does not match or is not a multiple of 4
    st.binary(max_size=80),
    st.builds(lambda d: b"\x17\xfe\xfd" + d, st.binary(max_size=60)),
    st.builds(lambda t: struct.pack("!HHI", 1, 0, 0x2112A443) + t, tids),
    st.builds(lambda t, n, m: struct.pack("!HHI", 0x0101, n, 0x2112A442) + t + bytes(m), tids,
              st.sampled_from([4, 6, 8, 10]), st.sampled_from([4, 6, 8, 10])),
)

operations = st.one_of(
    st.tuples(st.just("datagram"), datagrams, st.sampled_from([L1, L2, UNKNOWN]), st.sampled_from(PEERS)),
    st.tuples(st.just("batch"), st.lists(st.tuples(datagrams, st.sampled_from([L1, L2]), st.sampled_from(PEERS)),
                                          max_size=12)),
    st.tuples(st.just("transaction"), st.sampled_from(OWNERS), st.sampled_from(TIDS)),
    st.tuples(st.just("own"), st.sampled_from(TIDS)),
    st.tuples(st.just("confirm"), st.sampled_from(OWNERS), st.sampled_from([L1, L2]), st.sampled_from(PEERS)),
    st.tuples(st.just("ufrag"), st.sampled_from(OWNERS), st.sampled_from(UFRAGS[:3]), st.booleans()),
    st.tuples(st.just("drain"), st.sampled_from(OWNERS), st.sampled_from([0, 1])),
    st.tuples(st.just("later"), st.floats(0.0, 4.0)),
    st.tuples(st.just("close"), st.sampled_from(OWNERS)),
)


@dataclass
class _Model:
    """The reference: the table's `route` and the inbox rules of `_deliver` / `_deliver_check`."""

    routes: MuxRoutes[str]
    inboxes: dict[tuple[str, int], list[tuple[bytes, tuple[str, int]]]] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    routed: int = 0

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def route(self, data: bytes, local: tuple[str, int], remote: tuple[str, int], now: float) -> None:
        if local not in (L1, L2):
            self.drop("unknown_local")
            return
        kind_check = data[:2] == b"\x00\x01" and len(data) >= 20 and data[4:8] == b"\x21\x12\xa4\x42" and (
            len(data) - 20 == int.from_bytes(data[2:4], "big") and not data[3] & 3)
        owner = self.routes.route(data, local, remote, now)
        if owner is None:
            return
        if owner is Own.MUX:
            self.drop("stun_stray")  # no shared binding waits for it here
            return
        inbox = self.inboxes.setdefault((owner, [L1, L2].index(local)), [])
        item = (data, remote)
        if kind_check and item in inbox:
            self.drop("duplicate_check")
        elif inbox and (len(inbox) >= LIMITS.inbox_datagrams
                        or sum(len(d) for d, _ in inbox) + len(data) > LIMITS.inbox_bytes):
            self.drop("inbox_full")
        else:
            inbox.append(item)
            self.routed += 1


@settings(max_examples=400, deadline=None)
@given(st.lists(operations, max_size=40))
def test_the_routing_loop_decides_as_the_table_and_the_inbox_rules(ops: list[tuple[Any, ...]]) -> None:
    mux = Mux(LIMITS)
    mux._add_port(_Port(L1))  # type: ignore[arg-type]
    mux._add_port(_Port(L2))  # type: ignore[arg-type]
    endpoints = {name: mux.register(name) for name in OWNERS}
    model = _Model(MuxRoutes(LIMITS))
    for name in OWNERS:
        model.routes.add_owner(name)
    now = 100.0
    closed: set[str] = set()
    for op in ops:
        if op[0] in ("transaction", "confirm", "ufrag", "close") and op[1] in closed:
            continue  # (a closed endpoint's registrations raise; what is routed to it is what counts)
        if op[0] in ("datagram", "batch"):
            rows = [op[1:]] if op[0] == "datagram" else op[1]
            mux._route([((data, remote), local) for data, local, remote in rows], now)
            for data, local, remote in rows:
                model.route(data, local, remote, now)
        elif op[0] == "transaction":
            mux._routes.add_transaction(endpoints[op[1]], op[2], now)
            model.routes.add_transaction(op[1], op[2], now)
        elif op[0] == "own":
            mux._routes.add_own_transaction(op[1])
            model.routes.add_own_transaction(op[1])
        elif op[0] == "confirm":
            endpoints[op[1]].transport(op[2]).confirm(op[3])
            model.routes.confirm(op[1], op[2], op[3])
        elif op[0] == "ufrag":
            name, ufrag, add = op[1:]
            for routes, owner in ((mux._routes, endpoints[name]), (model.routes, name)):
                try:
                    if add:
                        routes.add_ufrag(owner, ufrag)  # type: ignore[arg-type]
                    else:
                        routes.remove_ufrag(owner, ufrag)  # type: ignore[arg-type]
                except Exception as exc:  # another owner's ufrag: both refuse alike
                    assert type(exc).__name__ == "MuxError"
        elif op[0] == "close":
            endpoints[op[1]].close()
            model.routes.remove_owner(op[1])
            closed.add(op[1])
            for index in (0, 1):
                model.inboxes.pop((op[1], index), None)
        elif op[0] == "drain":
            if op[1] in closed:
                continue
            endpoints[op[1]].transports[op[2]].receive_now(1000)
            model.inboxes.pop((op[1], op[2]), None)
        else:
            now += op[1]
        # the same inboxes (the very tuples queued), drops, tables
        for name, endpoint in endpoints.items():
            for index, transport in enumerate(endpoint.transports):
                expected = model.inboxes.get((name, index)) or None
                assert transport._items == expected
                assert transport._bytes == sum(len(d) for d, _ in expected or [])
            assert mux._routes.owner_counts(endpoint) == model.routes.owner_counts(name)
        dropped = dict(model.routes.dropped)
        for reason, count in model.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        assert mux.stats()["dropped"] == dropped
        assert mux.stats()["routed"] == model.routed
        assert mux._routes.sizes() == model.routes.sizes()


def test_a_check_with_username_first_or_later_routes_alike() -> None:
    """The loop reads the ufrag in place when USERNAME is the first attribute and walks the attributes
    otherwise (`local_ufrag`): both find the same agent."""
    mux = Mux(LIMITS)
    mux._add_port(_Port(L1))  # type: ignore[arg-type]
    a = mux.register("a")
    a.add_ufrag("ufA")
    first, later = _check("ufA:p", TIDS[0], True, True), _check("ufA:p", TIDS[1], False, True)
    assert first[20:22] == b"\x00\x06" and later[20:22] != b"\x00\x06"
    mux._route([((first, PEERS[0]), L1), ((later, PEERS[0]), L1)], 0.0)
    assert [d for d, _ in a.transports[0].receive_now()] == [first, later]
