"""The sans-IO ICE session (RFC 8445 6-8): two IceSessions wired together with literal times, and each rule
on its own with hand-made STUN messages. No sockets, no clock."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from iceagent.config import IceConfig
from iceagent.ice.candidate import Candidate, IceParameters
from iceagent.ice.candidate_set import MAX_PRFLX_PER_SOURCE
from iceagent.ice.checks import RoleConflict, role_conflict, screen_request
from iceagent.ice.pair import CandidatePair, PairState
from iceagent.ice.session import (
    MAX_PENDING_TRIGGERED,
    ChecklistFailed,
    ConsentRefreshed,
    Event,
    IceSession,
    LocalCandidateLearned,
    NominationFailed,
    PairNominated,
    PairStateChanged,
    PairValid,
    RemoteCandidateLearned,
    RoleChanged,
    Transmit,
)
from iceagent.stun.attributes import Attr
from iceagent.stun.message import Message, MessageClass, Method

HOST = 2130706431  # host, local preference 65535, component 1
SRFLX = 1694498815
RELAY = 16777215
PRFLX_CHECK = (110 << 24) | (65535 << 8) | 255  # the PRIORITY of a check from a 65535/1 candidate

A_PARAMS = IceParameters(ufrag="aUfr", pwd="aPassword0123456789abcd")
B_PARAMS = IceParameters(ufrag="bUfr", pwd="bPassword0123456789abcd")
A_TB = 0x1111111111111111
B_TB = 0x0222222222222222  # smaller than A's


def cand(
    address: str,
    port: int,
    *,
    type: str = "host",
    priority: int | None = None,
    foundation: str | None = None,
    transport: str = "udp",
    tcptype: str | None = None,
    related: tuple[str, int] | None = None,
) -> Candidate:
    if priority is None:
        priority = {"host": HOST, "srflx": SRFLX, "relay": RELAY, "prflx": PRFLX_CHECK}[type]
    return Candidate(
        foundation=foundation or f"{type[0]}{address.replace('.', '').replace(':', '')}",
        component=1,
        transport=transport,
        priority=priority,
        address=address,
        port=port,
        type=type,
        related_address=related[0] if related else None,
        related_port=related[1] if related else None,
        tcptype=tcptype,
    )


def tids(prefix: int) -> Callable[[int], bytes]:
    counter = itertools.count(1)
    return lambda n: bytes([prefix]) + next(counter).to_bytes(n - 1, "big")


def session(
    params: IceParameters = A_PARAMS,
    *,
    controlling: bool = True,
    tie_breaker: int = A_TB,
    prefix: int = 0xA0,
    **config: Any,
) -> IceSession:
    return IceSession(
        local=params,
        controlling=controlling,
        tie_breaker=tie_breaker,
        config=IceConfig(**config),
        random_bytes=tids(prefix),
    )


def drain(s: IceSession) -> list[Event]:
    out = []
    while (e := s.next_event()) is not None:
        out.append(e)
    return out


def state_of(pair: CandidatePair) -> PairState:
    return pair.state  # (a function call stops mypy narrowing the state across calls that change it)


def decode(data: bytes | Transmit) -> Message:
    if isinstance(data, Transmit):
        data = data.data
    return Message.decode(data)


def feed(
    s: IceSession, data: bytes | Transmit, *, base: Candidate, remote: tuple[str, int], now: float
) -> bytes | None:
    raw = data.data if isinstance(data, Transmit) else data
    return s.handle_stun(Message.decode(raw), raw, base=base, remote=remote, now=now)


def request(
    *,
    username: str = "aUfr:bUfr",
    key: bytes | None = A_PARAMS.pwd.encode(),
    priority: int | None = PRFLX_CHECK,
    controlling: int | None = None,
    controlled: int | None = B_TB,
    use_candidate: bool = False,
    extra: list[tuple[Attr | int, Any]] | None = None,
    fingerprint: bool = True,
    tid: bytes = b"request-0001",
) -> bytes:
    """A check as B (ufrag bUfr, controlled by default) would send it to A."""
    attrs_: list[tuple[Attr | int, Any]] = [(Attr.USERNAME, username)]
    if priority is not None:
        attrs_.append((Attr.PRIORITY, priority))
    if controlling is not None:
        attrs_.append((Attr.ICE_CONTROLLING, controlling))
    if controlled is not None:
        attrs_.append((Attr.ICE_CONTROLLED, controlled))
    if use_candidate:
        attrs_.append((Attr.USE_CANDIDATE, None))
    attrs_.extend(extra or [])
    msg = Message(Method.BINDING, MessageClass.REQUEST, tid, attrs_)
    return msg.encode(integrity_key=key, fingerprint=fingerprint)


def response_to(
    t: Transmit | bytes,
    mapped: tuple[str, int],
    *,
    key: bytes | None = B_PARAMS.pwd.encode(),
    error: int | None = None,
) -> bytes:
    """B's answer to a check A sent (success with XOR-MAPPED-ADDRESS, or an error)."""
    req = decode(t)
    if error is None:
        msg = req.success_response([(Attr.XOR_MAPPED_ADDRESS, mapped)])
    else:
        msg = req.error_response(error)
    return msg.encode(integrity_key=key, fingerprint=True)


A_HOST = cand("10.0.0.1", 1000)
B_HOST = cand("10.0.0.2", 2000)
A_ADDR = ("10.0.0.1", 1000)
B_ADDR = ("10.0.0.2", 2000)


def a_with_b(**kw: Any) -> IceSession:
    """Session A (controlling) with a host candidate, B's parameters and B's host candidate."""
    a = session(**kw)
    a.add_local_candidate(A_HOST, A_HOST)
    a.set_remote_parameters(B_PARAMS)
    a.add_remote_candidate(B_HOST)
    return a


# ==== a small network to wire two sessions together ====


@attrs.define(eq=False)
class Node:
    name: str
    session: IceSession
    hosts: list[Candidate]
    #: NAT: private base address -> public address (None: no NAT); per_destination gives a symmetric NAT.
    nat: dict[tuple[str, int], tuple[str, int]] | None = None
    per_destination: bool = False
    #: Port-restricted filtering: only addresses this node sent to may come in.
    restricted: bool = False
    nominate: str | None = None  # "done": nominate the best valid pair once no check is pending
    events: list[tuple[float, Event]] = attrs.Factory(list)
    sent_to: set[tuple[tuple[str, int], tuple[str, int]]] = attrs.Factory(set)
    nominated_at: float | None = None
    tick: int = 0

    def kinds(self) -> list[tuple[float, str]]:
        return [(round(t, 6), type(e).__name__) for t, e in self.events]

    def first(self, kind: type[Any]) -> tuple[float, Any]:
        return next((round(t, 6), e) for t, e in self.events if isinstance(e, kind))


class Net:
    """Delivers Transmits between Nodes with a fixed latency, through optional NATs; each node checks every
    Ta (the first check at 0), handles its timers, and (optionally) nominates like the Trio layer would."""

    def __init__(self, *nodes: Node, latency: float = 0.01, ta: float = 0.05) -> None:
        self.nodes = nodes
        self.latency = latency
        self.ta = ta
        self.now = 0.0
        self.queue: list[tuple[float, int, Node, Candidate, tuple[str, int], bytes, Node, Transmit | None]] = []
        self.seq = itertools.count()
        self.dropped = 0
        self.log: list[tuple[float, str, str]] = []

    def _public(self, node: Node, base: Candidate, dst: tuple[str, int]) -> tuple[str, int]:
        addr = (base.address, base.port)
        if node.nat is None or addr not in node.nat:
            return addr
        public = node.nat[addr]
        if node.per_destination:
            return (public[0], public[1] + 1 + sum(dst[0].encode()) % 50 + dst[1] % 7)
        return public

    def _owner(self, addr: tuple[str, int], src: tuple[str, int]) -> tuple[Node, Candidate] | None:
        for node in self.nodes:
            for base in node.hosts:
                baddr = (base.address, base.port)
                if node.nat is None and baddr == addr:
                    return node, base
                if node.nat is not None and baddr in node.nat:
                    public = node.nat[baddr]
                    mapped = {public}
                    if node.per_destination:
                        mapped = {self._public(node, base, d) for d, _ in [(d, 0) for _, d in node.sent_to]}
                    if addr in mapped:
                        if node.restricted and (baddr, src) not in node.sent_to:
                            return None
                        return node, base
        return None

    def send(self, node: Node, base: Candidate, dst: tuple[str, int], data: bytes, t: Transmit | None) -> None:
        node.sent_to.add(((base.address, base.port), dst))
        src = self._public(node, base, dst)
        owner = self._owner(dst, src)
        if owner is None:
            self.dropped += 1
            return
        heapq.heappush(self.queue, (self.now + self.latency, next(self.seq), owner[0], owner[1], src, data, node, t))

    def _step_time(self) -> float:
        times = [self.queue[0][0]] if self.queue else []
        for node in self.nodes:
            times.append(node.tick * self.ta)
            timer = node.session.get_timer()
            if timer is not None:
                times.append(timer)
        return min(times)

    def run(self, until: float) -> None:
        while True:
            t = self._step_time()
            if t > until + 1e-9:
                self.now = until
                return
            self.now = max(self.now, t)
            while self.queue and self.queue[0][0] <= self.now + 1e-12:
                _, _, dst, base, src, data, _sender, _t = heapq.heappop(self.queue)
                response = dst.session.handle_stun(Message.decode(data), data, base=base, remote=src, now=self.now)
                if response is not None:
                    self.send(dst, base, src, response, None)
                self._after(dst)
            for node in self.nodes:
                timer = node.session.get_timer()
                if timer is not None and timer <= self.now:
                    for tr in node.session.handle_timer(self.now):
                        self.send(node, tr.base, tr.remote, tr.data, tr)
                    self._after(node)
                if node.tick * self.ta <= self.now + 1e-12:
                    node.tick += 1
                    check = node.session.next_check(self.now)
                    if check is not None:
                        self.send(node, check.base, check.remote, check.data, check)
                    self._after(node)

    def _after(self, node: Node) -> None:
        s = node.session
        for e in drain(s):
            node.events.append((self.now, e))
        if node.nominate == "done" and node.nominated_at is None and s.controlling:
            if s.valid_pairs and not s.checks_pending:
                assert s.nominate(s.valid_pairs[0])
                node.nominated_at = self.now


def lan_pair(**kw: Any) -> tuple[Node, Node, Net]:
    a = Node("A", session(**kw), [A_HOST], nominate="done")
    b = Node("B", session(B_PARAMS, controlling=False, tie_breaker=B_TB, prefix=0xB0, **kw), [B_HOST])
    a.session.add_local_candidate(A_HOST, A_HOST)
    b.session.add_local_candidate(B_HOST, B_HOST)
    a.session.set_remote_parameters(B_PARAMS)
    b.session.set_remote_parameters(A_PARAMS)
    a.session.add_remote_candidate(B_HOST)
    b.session.add_remote_candidate(A_HOST)
    return a, b, Net(a, b)


# ==== end to end ====


def test_lan_host_to_host_timeline() -> None:
    a, b, net = lan_pair()
    net.run(1.0)
    # Both check at 0; each gets the other's check at 0.01 while its own is in progress (7.3.1.4 re-check);
    # the first responses arrive at 0.02: valid. A nominates at once (nothing pending); the USE-CANDIDATE
    # check goes out at the next Ta (0.05), B concludes at 0.06, A at 0.07.
    assert a.kinds() == [
        (0.0, "PairStateChanged"),  # WAITING -> IN_PROGRESS
        (0.01, "PairStateChanged"),  # IN_PROGRESS -> WAITING (triggered re-check)
        (0.02, "PairStateChanged"),  # -> SUCCEEDED
        (0.02, "PairValid"),
        (0.07, "PairNominated"),
    ]
    assert b.kinds() == [
        (0.0, "PairStateChanged"),
        (0.01, "PairStateChanged"),
        (0.02, "PairStateChanged"),
        (0.02, "PairValid"),
        (0.06, "PairNominated"),
    ]
    assert a.nominated_at == pytest.approx(0.02)
    (pa,) = a.session.pairs
    (pb,) = b.session.pairs
    assert pa.nominated and pb.nominated
    assert a.session.valid_pairs == [pa] and a.session.nominated_pairs == [pa]
    assert pa.rtt == pytest.approx(0.02)
    assert pa.requests_sent == 2 and pa.responses_received == 2
    assert pa.requests_received == 1 and pa.responses_sent == 1  # B skipped its re-check: already valid
    assert pb.requests_sent == 1 and pb.requests_received == 2
    assert a.session.completed and b.session.completed
    assert not a.session.checks_pending and not b.session.checks_pending
    assert a.session.get_timer() is None and b.session.get_timer() is None


def test_lan_events_carry_states_in_order() -> None:
    a, _b, net = lan_pair()
    net.run(1.0)
    changes = [(e.old, e.new) for _, e in a.events if isinstance(e, PairStateChanged)]
    assert changes == [
        (PairState.WAITING, PairState.IN_PROGRESS),
        (PairState.IN_PROGRESS, PairState.WAITING),
        (PairState.WAITING, PairState.SUCCEEDED),
    ]


def test_zero_latency_single_check_each_way() -> None:
    a, b, net = lan_pair()
    net.latency = 0.0
    net.run(1.0)
    # A's check at 0 is answered at once; B's triggered check (queued by A's request) goes out at B's tick 0,
    # A has nothing left: A nominates at 0 and sends USE-CANDIDATE at 0.05.
    assert a.first(PairValid)[0] == 0.0
    assert b.first(PairValid)[0] == 0.0
    assert a.first(PairNominated)[0] == 0.05
    assert b.first(PairNominated)[0] == 0.05


def test_check_bytes_carry_the_rfc_attributes() -> None:
    a = a_with_b()
    t = a.next_check(0.0)
    assert t is not None
    assert t.base == A_HOST and t.remote == B_ADDR and t.pair is a.pairs[0]
    msg = decode(t)
    assert msg.method is Method.BINDING and msg.message_class is MessageClass.REQUEST
    assert msg.transaction_id == bytes([0xA0]) + (1).to_bytes(11, "big")
    assert msg.get(Attr.USERNAME) == "bUfr:aUfr"
    assert msg.get(Attr.PRIORITY) == PRFLX_CHECK
    assert msg.get(Attr.ICE_CONTROLLING) == A_TB
    assert Attr.ICE_CONTROLLED not in msg
    assert Attr.USE_CANDIDATE not in msg
    assert msg.verify_integrity(B_PARAMS.pwd.encode())
    assert not msg.verify_integrity(A_PARAMS.pwd.encode())
    assert msg.verify_fingerprint()
    assert [a for a, _ in msg.attributes][-2:] == [Attr.MESSAGE_INTEGRITY, Attr.FINGERPRINT]


def test_controlled_check_carries_ice_controlled() -> None:
    b = session(B_PARAMS, controlling=False, tie_breaker=B_TB)
    b.add_local_candidate(B_HOST, B_HOST)
    b.set_remote_parameters(A_PARAMS)
    b.add_remote_candidate(A_HOST)
    t = b.next_check(0.0)
    assert t is not None
    msg = decode(t)
    assert msg.get(Attr.ICE_CONTROLLED) == B_TB and Attr.ICE_CONTROLLING not in msg
    assert msg.get(Attr.USERNAME) == "aUfr:bUfr"


def test_success_response_bytes() -> None:
    a = a_with_b()
    resp = feed(a, request(), base=A_HOST, remote=("192.0.2.7", 5555), now=0.0)
    assert resp is not None
    msg = decode(resp)
    assert msg.message_class is MessageClass.SUCCESS
    assert msg.transaction_id == b"request-0001"
    assert msg.get(Attr.XOR_MAPPED_ADDRESS) == ("192.0.2.7", 5555)
    assert msg.verify_integrity(A_PARAMS.pwd.encode())
    assert msg.verify_fingerprint()


def test_nat_srflx_valid_pair_differs_from_checked_pair() -> None:
    # A behind a full-cone NAT: 10.0.0.1:1000 <-> 198.51.100.1:40000; B public at 203.0.113.2:2000.
    b_host = cand("203.0.113.2", 2000)
    a_srflx = cand("198.51.100.1", 40000, type="srflx", related=A_ADDR)
    a = Node("A", session(), [A_HOST], nat={A_ADDR: ("198.51.100.1", 40000)}, nominate="done")
    b = Node("B", session(B_PARAMS, controlling=False, tie_breaker=B_TB, prefix=0xB0), [b_host])
    a.session.add_local_candidate(A_HOST, A_HOST)
    a.session.add_local_candidate(a_srflx, A_HOST)
    b.session.add_local_candidate(b_host, b_host)
    a.session.set_remote_parameters(B_PARAMS)
    b.session.set_remote_parameters(A_PARAMS)
    a.session.add_remote_candidate(b_host)
    for c in (A_HOST, a_srflx):
        b.session.add_remote_candidate(c)
    assert len(a.session.pairs) == 1  # srflx pruned (6.1.2.4)
    assert len(b.session.pairs) == 2
    net = Net(a, b)
    net.run(2.0)
    (checked,) = a.session.pairs
    (valid,) = a.session.valid_pairs
    assert valid is not checked
    assert valid.local == a_srflx and valid.base == A_HOST and valid.remote == b_host
    assert checked.state is PairState.SUCCEEDED and not checked.valid
    assert valid.nominated and a.first(PairNominated)[1].pair is valid
    assert a.first(PairValid)[1].pair is valid
    assert not any(isinstance(e, LocalCandidateLearned) for _, e in a.events)
    # the Trio layer finds the valid pair for the route (base, remote)
    assert a.session.find_pair(A_HOST, ("203.0.113.2", 2000)) is valid
    # B: the pair to A's srflx is valid and nominated, the one to A's private host address failed
    b_valid = b.session.valid_pairs
    assert [p.remote for p in b_valid] == [a_srflx]
    assert b_valid[0].nominated
    states = {p.remote.type: p.state for p in b.session.pairs}
    assert states["srflx"] is PairState.SUCCEEDED
    assert states["host"] in (PairState.IN_PROGRESS, PairState.WAITING, PairState.FROZEN)


def test_symmetric_nat_learns_prflx_both_ways() -> None:
    b_host = cand("203.0.113.2", 2000)
    a_srflx = cand("198.51.100.1", 40000, type="srflx", related=A_ADDR)
    a = Node("A", session(), [A_HOST], nat={A_ADDR: ("198.51.100.1", 40000)}, per_destination=True, nominate="done")
    b = Node("B", session(B_PARAMS, controlling=False, tie_breaker=B_TB, prefix=0xB0), [b_host])
    a.session.add_local_candidate(A_HOST, A_HOST)
    a.session.add_local_candidate(a_srflx, A_HOST)
    b.session.add_local_candidate(b_host, b_host)
    a.session.set_remote_parameters(B_PARAMS)
    b.session.set_remote_parameters(A_PARAMS)
    a.session.add_remote_candidate(b_host)
    b.session.add_remote_candidate(A_HOST)
    b.session.add_remote_candidate(a_srflx)
    net = Net(a, b)
    net.run(2.0)
    t, learned = b.first(RemoteCandidateLearned)
    assert t == 0.01
    mapped = net._public(a, A_HOST, ("203.0.113.2", 2000))
    assert learned.candidate.type == "prflx"
    assert (learned.candidate.address, learned.candidate.port) == mapped
    assert learned.candidate.priority == PRFLX_CHECK
    assert learned.candidate.foundation == "prflx1"
    assert learned.candidate in b.session.remote_candidates
    t, local = a.first(LocalCandidateLearned)
    assert t == 0.02
    assert local.base == A_HOST and local.candidate.type == "prflx"
    assert (local.candidate.address, local.candidate.port) == mapped
    assert local.candidate.priority == PRFLX_CHECK
    assert local.candidate.related_address == "10.0.0.1"
    assert local.candidate in a.session.local_candidates
    assert a.session.base_of(local.candidate) == A_HOST
    (valid,) = a.session.valid_pairs
    assert valid.local == local.candidate and valid.nominated
    assert [p.remote for p in b.session.valid_pairs] == [learned.candidate]
    assert b.session.valid_pairs[0].nominated


def test_unreachable_peer_fails_at_39_5() -> None:
    a = a_with_b()
    a.local_gathering_done()
    a.add_remote_candidate(None)
    t = a.next_check(0.0)
    assert t is not None
    assert a.get_timer() == 0.5
    sent = [0.0]
    while (timer := a.get_timer()) is not None:
        for r in a.handle_timer(timer):
            assert r.data == t.data and r.remote == B_ADDR and r.base == A_HOST
            sent.append(timer)
        if timer < 39.5:
            assert drain(a) == [PairStateChanged(a.pairs[0], PairState.WAITING, PairState.IN_PROGRESS)] * (timer == 0.5)
    assert sent == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    (pair,) = a.pairs
    assert pair.state is PairState.FAILED
    assert drain(a) == [PairStateChanged(pair, PairState.IN_PROGRESS, PairState.FAILED), ChecklistFailed()]
    assert a.failed
    assert pair.requests_sent == 7 and pair.retransmissions_sent == 6
    assert a.next_check(40.0) is None and drain(a) == []


def test_failure_waits_for_gathering_and_end_of_candidates() -> None:
    a = a_with_b(rc=1, rm=1)
    assert a.next_check(0.0) is not None
    a.handle_timer(0.5)
    assert a.pairs[0].state is PairState.FAILED
    assert not any(isinstance(e, ChecklistFailed) for e in drain(a))
    a.local_gathering_done()
    assert drain(a) == []
    a.add_remote_candidate(None)
    assert drain(a) == [ChecklistFailed()]
    a.local_gathering_done()
    assert drain(a) == []  # once


def test_no_pairs_at_all_fails_when_both_sides_are_done() -> None:
    a = session()
    a.add_local_candidate(A_HOST, A_HOST)
    a.add_remote_candidate(cand("2001:db8::2", 2000))  # no IPv6 local: no pair
    a.add_remote_candidate(None)
    assert drain(a) == []
    a.local_gathering_done()
    assert drain(a) == [ChecklistFailed()]


def test_failed_list_revives_with_a_new_candidate_and_can_fail_again() -> None:
    a = a_with_b(rc=1, rm=1)
    a.local_gathering_done()
    a.add_remote_candidate(None)
    a.next_check(0.0)
    a.handle_timer(0.5)
    assert ChecklistFailed() in drain(a)
    a.add_remote_candidate(cand("10.0.0.3", 3000))  # late (trickled after end-of-candidates)
    assert not a.failed
    t = a.next_check(1.0)
    assert t is not None and t.remote == ("10.0.0.3", 3000)
    a.handle_timer(1.5)
    assert drain(a)[-1] == ChecklistFailed()


def test_failed_list_revives_with_an_incoming_check() -> None:
    a = a_with_b(rc=1, rm=1)
    a.local_gathering_done()
    a.add_remote_candidate(None)
    a.next_check(0.0)
    a.handle_timer(0.5)
    drain(a)
    assert feed(a, request(), base=A_HOST, remote=B_ADDR, now=1.0) is not None
    (pair,) = a.pairs
    assert pair.state is PairState.WAITING and not a.failed
    assert drain(a) == [PairStateChanged(pair, PairState.FAILED, PairState.WAITING)]
    t = a.next_check(1.0)
    assert t is not None and t.pair is pair
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=B_ADDR, now=1.01)
    assert pair.valid


# ==== incoming requests (7.3) ====


def test_request_without_fingerprint_is_dropped() -> None:
    a = a_with_b()
    assert feed(a, request(fingerprint=False), base=A_HOST, remote=B_ADDR, now=0.0) is None
    assert a.pairs[0].requests_received == 0 and drain(a) == []


def error_of(resp: bytes | None) -> tuple[int, bool]:
    assert resp is not None
    msg = decode(resp)
    assert msg.message_class is MessageClass.ERROR and msg.verify_fingerprint()
    code = msg.get(Attr.ERROR_CODE)
    assert code is not None
    return code[0], msg.verify_integrity(A_PARAMS.pwd.encode())


def test_wrong_ufrag_is_400_and_changes_nothing() -> None:
    a = a_with_b()
    resp = feed(a, request(username="other:bUfr"), base=A_HOST, remote=("192.0.2.9", 9), now=0.0)
    assert error_of(resp) == (400, False)
    assert drain(a) == [] and len(a.remote_candidates) == 1


def test_username_without_colon_is_400() -> None:
    a = a_with_b()
    assert error_of(feed(a, request(username="aUfr"), base=A_HOST, remote=B_ADDR, now=0.0))[0] == 400


def test_missing_integrity_is_400() -> None:
    a = a_with_b()
    resp = feed(a, request(key=None), base=A_HOST, remote=B_ADDR, now=0.0)
    assert error_of(resp) == (400, False)


def test_bad_integrity_is_401_and_changes_nothing() -> None:
    a = a_with_b()
    resp = feed(
        a,
        request(key=b"wrong", controlling=1 << 63, controlled=None, use_candidate=True),
        base=A_HOST,
        remote=("192.0.2.9", 9),
        now=0.0,
    )
    assert error_of(resp) == (401, False)
    assert drain(a) == []
    assert a.controlling and len(a.remote_candidates) == 1 and len(a.pairs) == 1
    assert a.pairs[0].requests_received == 0


def test_unknown_required_attribute_is_420() -> None:
    a = a_with_b()
    resp = feed(a, request(extra=[(0x0777, b"x")]), base=A_HOST, remote=B_ADDR, now=0.0)
    assert error_of(resp) == (420, True)
    assert decode(resp).get(Attr.UNKNOWN_ATTRIBUTES) == [0x0777]  # type: ignore[arg-type]
    assert drain(a) == []


def test_unknown_optional_attribute_is_fine() -> None:
    a = a_with_b()
    resp = feed(a, request(extra=[(0x8777, b"x")]), base=A_HOST, remote=B_ADDR, now=0.0)
    assert resp is not None and decode(resp).message_class is MessageClass.SUCCESS


def test_missing_priority_is_400() -> None:
    a = a_with_b()
    assert error_of(feed(a, request(priority=None), base=A_HOST, remote=B_ADDR, now=0.0)) == (400, True)


def test_binding_indication_is_ignored() -> None:
    a = a_with_b()
    ind = Message(Method.BINDING, MessageClass.INDICATION, b"indication01").encode(fingerprint=True)
    assert feed(a, ind, base=A_HOST, remote=B_ADDR, now=0.0) is None
    assert drain(a) == []


def test_other_methods_are_ignored() -> None:
    a = a_with_b()
    data = Message(Method.ALLOCATE, MessageClass.REQUEST, b"allocate0001").encode(fingerprint=True)
    assert feed(a, data, base=A_HOST, remote=B_ADDR, now=0.0) is None


def test_prflx_remote_learned_from_unknown_source() -> None:
    a = a_with_b()
    src = ("192.0.2.50", 6000)
    resp = feed(a, request(priority=12345), base=A_HOST, remote=src, now=0.0)
    assert resp is not None and decode(resp).get(Attr.XOR_MAPPED_ADDRESS) == src
    events = drain(a)
    learned = events[0]
    assert isinstance(learned, RemoteCandidateLearned)
    c = learned.candidate
    assert (c.type, c.address, c.port, c.priority, c.transport, c.component) == (
        "prflx",
        "192.0.2.50",
        6000,
        12345,
        "udp",
        1,
    )
    pair = a.find_pair(A_HOST, src)
    assert pair is not None and pair.remote == c and pair.state is PairState.WAITING
    assert pair.requests_received == 1 and pair.responses_sent == 1
    assert a.is_remote_candidate(A_HOST, src)
    # the triggered check goes out first, before the ordinary WAITING pair to B
    t = a.next_check(0.0)
    assert t is not None and t.remote == src and t.pair is pair


def test_prflx_foundations_are_unique() -> None:
    a = a_with_b()
    a.add_remote_candidate(cand("10.9.9.9", 1, foundation="prflx1"))
    feed(a, request(), base=A_HOST, remote=("192.0.2.50", 6000), now=0.0)
    (learned,) = [e for e in drain(a) if isinstance(e, RemoteCandidateLearned)]
    assert learned.candidate.foundation == "prflx2"


def test_signalled_candidate_replaces_a_learned_prflx() -> None:
    a = a_with_b()
    src = ("10.0.0.3", 3000)
    feed(a, request(), base=A_HOST, remote=src, now=0.0)
    pair = a.find_pair(A_HOST, src)
    assert pair is not None and pair.remote.type == "prflx"
    host = cand("10.0.0.3", 3000)
    a.add_remote_candidate(host)
    assert a.find_pair(A_HOST, src) is pair
    assert pair.remote == host
    assert [c.type for c in a.remote_candidates] == ["host", "host"]
    a.add_remote_candidate(host)  # a duplicate changes nothing
    assert len(a.remote_candidates) == 2 and len(a.pairs) == 2


def test_request_on_unknown_base_is_answered_but_pairs_nothing() -> None:
    a = a_with_b()
    other = cand("10.0.0.9", 9000)
    resp = feed(a, request(), base=other, remote=B_ADDR, now=0.0)
    assert resp is not None and decode(resp).message_class is MessageClass.SUCCESS
    assert len(a.pairs) == 1 and a.find_pair(other, B_ADDR) is None


def test_request_before_remote_parameters_is_answered_and_check_waits() -> None:
    b = session(B_PARAMS, controlling=False, tie_breaker=B_TB, prefix=0xB0)
    b.add_local_candidate(B_HOST, B_HOST)
    check = Message(
        Method.BINDING,
        MessageClass.REQUEST,
        b"a-check-0001",
        [(Attr.USERNAME, "bUfr:aUfr"), (Attr.PRIORITY, PRFLX_CHECK), (Attr.ICE_CONTROLLING, A_TB)],
    ).encode(integrity_key=B_PARAMS.pwd.encode(), fingerprint=True)
    resp = feed(b, check, base=B_HOST, remote=A_ADDR, now=0.0)
    assert resp is not None and decode(resp).message_class is MessageClass.SUCCESS
    assert decode(resp).verify_integrity(B_PARAMS.pwd.encode())
    (learned,) = drain(b)
    assert isinstance(learned, RemoteCandidateLearned)
    assert b.next_check(0.05) is None  # no remote password yet
    assert b.checks_pending
    b.set_remote_parameters(A_PARAMS)
    t = b.next_check(0.1)
    assert t is not None and t.remote == A_ADDR
    assert decode(t).verify_integrity(A_PARAMS.pwd.encode())


def test_pending_triggered_checks_are_capped_before_remote_parameters() -> None:
    b = session(B_PARAMS, controlling=False, tie_breaker=B_TB, prefix=0xB0, max_pairs=200)
    b.add_local_candidate(B_HOST, B_HOST)
    for i in range(MAX_PENDING_TRIGGERED + 10):
        check = request(username="bUfr:aUfr", key=B_PARAMS.pwd.encode(), controlling=A_TB, controlled=None)
        # one source IP each: from a single IP a base learns only MAX_PRFLX_PER_SOURCE prflx candidates
        feed(b, check, base=B_HOST, remote=(f"10.1.0.{i + 1}", 1000 + i), now=0.0)
    b.set_remote_parameters(A_PARAMS)
    sent: list[int] = []
    while (t := b.next_check(1.0)) is not None and len(sent) < 200:
        sent.append(t.remote[1])
    # the first 64 sources as triggered checks, in arrival order; the rest as ordinary WAITING pairs
    assert sent[:MAX_PENDING_TRIGGERED] == [1000 + i for i in range(MAX_PENDING_TRIGGERED)]
    assert len(sent) == MAX_PENDING_TRIGGERED + 10


def test_learned_prflx_remotes_are_capped() -> None:
    a = a_with_b(max_pairs=5)
    for i in range(20):
        feed(a, request(), base=A_HOST, remote=("10.1.0.1", 1000 + i), now=0.0)
    learned = [e for e in drain(a) if isinstance(e, RemoteCandidateLearned)]
    assert len(learned) == 5
    assert len(a.remote_candidates) == 6
    assert len(a.pairs) <= 5


def test_prflx_remotes_from_one_ip_on_one_base_are_capped() -> None:
    """Two NATs that map per destination port chase each other's new ports (each triggered check opens a
    new mapping, learnt by the other side as a new prflx candidate): learning stops at MAX_PRFLX_PER_SOURCE
    per source IP and base over UDP, so the triggered queue drains and the ordinary (relayed) pairs run.
    The checks are still answered; other IPs and other bases learn as before."""
    a = a_with_b()
    relay = cand("198.51.100.3", 50000, type="relay")
    a.add_local_candidate(relay, relay)
    for i in range(MAX_PRFLX_PER_SOURCE + 5):
        resp = feed(a, request(tid=b"chase-%04d.." % i), base=A_HOST, remote=("203.0.113.2", 1000 + i), now=0.0)
        assert resp is not None and decode(resp).message_class is MessageClass.SUCCESS
    learned = [e.candidate for e in drain(a) if isinstance(e, RemoteCandidateLearned)]
    assert [c.port for c in learned] == [1000 + i for i in range(MAX_PRFLX_PER_SOURCE)]
    # another IP, and the same IP on another base (e.g. the relay), still teach prflx candidates
    feed(a, request(tid=b"other-ip-001"), base=A_HOST, remote=("203.0.113.9", 1000), now=0.0)
    feed(a, request(tid=b"via-relay-01"), base=relay, remote=("203.0.113.2", 5000), now=0.0)
    learned = [e.candidate for e in drain(a) if isinstance(e, RemoteCandidateLearned)]
    assert [(c.address, c.port) for c in learned] == [("203.0.113.9", 1000), ("203.0.113.2", 5000)]


# ==== role conflicts (7.3.1.1, 7.2.5.1) ====


def test_both_controlling_smaller_tie_breaker_switches() -> None:
    a = a_with_b(tie_breaker=5)
    resp = feed(a, request(controlling=10, controlled=None), base=A_HOST, remote=B_ADDR, now=0.0)
    assert resp is not None and decode(resp).message_class is MessageClass.SUCCESS
    assert not a.controlling
    events = drain(a)
    assert events[0] == RoleChanged(False)
    (pair,) = a.pairs
    # priorities recomputed for the controlled role: G = theirs (HOST), D = ours (HOST) -> G > D false
    assert pair.priority == (HOST << 32) + 2 * HOST
    t = a.next_check(0.0)
    assert t is not None and decode(t).get(Attr.ICE_CONTROLLED) == 5


def test_both_controlling_larger_or_equal_tie_breaker_answers_487() -> None:
    for theirs in (4, 5):
        a = a_with_b(tie_breaker=5)
        resp = feed(a, request(controlling=theirs, controlled=None), base=A_HOST, remote=B_ADDR, now=0.0)
        assert error_of(resp) == (487, True)
        assert a.controlling and drain(a) == [] and a.pairs[0].requests_received == 0


def test_both_controlled_larger_or_equal_tie_breaker_switches_to_controlling() -> None:
    for theirs in (4, 5):
        a = a_with_b(controlling=False, tie_breaker=5)
        resp = feed(a, request(controlled=theirs), base=A_HOST, remote=B_ADDR, now=0.0)
        assert resp is not None and decode(resp).message_class is MessageClass.SUCCESS
        assert a.controlling and drain(a)[0] == RoleChanged(True)


def test_both_controlled_smaller_tie_breaker_answers_487() -> None:
    a = a_with_b(controlling=False, tie_breaker=5)
    resp = feed(a, request(controlled=6), base=A_HOST, remote=B_ADDR, now=0.0)
    assert error_of(resp) == (487, True)
    assert not a.controlling


def test_no_conflict_when_roles_differ() -> None:
    a = a_with_b(tie_breaker=5)
    feed(a, request(controlled=1 << 60), base=A_HOST, remote=B_ADDR, now=0.0)
    assert a.controlling and not any(isinstance(e, RoleChanged) for e in drain(a))


def test_487_response_switches_role_and_retries_as_triggered() -> None:
    a = a_with_b()
    t = a.next_check(0.0)
    assert t is not None
    drain(a)
    feed(a, response_to(t, A_ADDR, error=487), base=A_HOST, remote=B_ADDR, now=0.02)
    (pair,) = a.pairs
    assert not a.controlling
    assert drain(a) == [RoleChanged(False), PairStateChanged(pair, PairState.IN_PROGRESS, PairState.WAITING)]
    retry = a.next_check(0.05)
    assert retry is not None and retry.pair is pair
    msg = decode(retry)
    assert msg.get(Attr.ICE_CONTROLLED) == A_TB and Attr.ICE_CONTROLLING not in msg
    assert msg.transaction_id != decode(t).transaction_id


def test_487_after_the_role_already_switched_does_not_switch_back() -> None:
    a = a_with_b()
    t = a.next_check(0.0)
    assert t is not None
    feed(a, request(controlling=1 << 63, controlled=None), base=A_HOST, remote=B_ADDR, now=0.01)
    assert not a.controlling
    drain(a)
    feed(a, response_to(t, A_ADDR, error=487), base=A_HOST, remote=B_ADDR, now=0.02)
    assert not a.controlling
    assert not any(isinstance(e, RoleChanged) for e in drain(a))


def test_end_to_end_role_conflict_both_controlling() -> None:
    a, b, net = lan_pair()
    b.session._set_role(True)  # misconfigured: both start controlling
    drain(b.session)
    b.nominate = "done"
    net.run(2.0)
    # A has the larger tie-breaker: A stays controlling, B switches (7.3.1.1), A's nomination concludes
    assert a.session.controlling and not b.session.controlling
    assert b.first(RoleChanged)[1] == RoleChanged(False)
    assert a.session.nominated_pairs and b.session.nominated_pairs


# ==== responses (7.2.5) ====


def test_response_with_bad_integrity_is_discarded() -> None:
    a = a_with_b()
    t = a.next_check(0.0)
    assert t is not None
    drain(a)
    feed(a, response_to(t, A_ADDR, key=b"nope"), base=A_HOST, remote=B_ADDR, now=0.01)
    (pair,) = a.pairs
    assert pair.state is PairState.IN_PROGRESS and drain(a) == [] and pair.responses_received == 0
    assert a.get_timer() == 0.5  # still retransmitting
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=B_ADDR, now=0.02)
    assert pair.valid


def test_response_with_unknown_transaction_is_ignored() -> None:
    a = a_with_b()
    a.next_check(0.0)
    drain(a)
    data = response_to(request(tid=b"not-ours-123"), A_ADDR)
    feed(a, data, base=A_HOST, remote=B_ADDR, now=0.01)
    assert drain(a) == [] and a.pairs[0].state is PairState.IN_PROGRESS


def test_asymmetric_response_fails_the_pair() -> None:
    a = a_with_b()
    t = a.next_check(0.0)
    assert t is not None
    drain(a)
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=("10.0.0.99", 2000), now=0.01)
    (pair,) = a.pairs
    assert pair.state is PairState.FAILED and not pair.valid
    assert drain(a) == [PairStateChanged(pair, PairState.IN_PROGRESS, PairState.FAILED)]
    assert a.get_timer() is None


def test_response_on_another_base_fails_the_pair() -> None:
    a = a_with_b()
    t = a.next_check(0.0)
    assert t is not None
    feed(a, response_to(t, A_ADDR), base=cand("10.0.0.1", 1001), remote=B_ADDR, now=0.01)
    assert a.pairs[0].state is PairState.FAILED


def test_error_response_fails_the_pair() -> None:
    a = a_with_b()
    t = a.next_check(0.0)
    assert t is not None
    drain(a)
    feed(a, response_to(t, A_ADDR, error=400), base=A_HOST, remote=B_ADDR, now=0.01)
    (pair,) = a.pairs
    assert pair.state is PairState.FAILED and pair.responses_received == 1


def test_unauthenticated_error_response_is_discarded_over_udp() -> None:
    a = a_with_b()
    t = a.next_check(0.0)
    assert t is not None
    feed(a, response_to(t, A_ADDR, key=None, error=401), base=A_HOST, remote=B_ADDR, now=0.01)
    assert a.pairs[0].state is PairState.IN_PROGRESS


def test_success_without_mapped_address_fails() -> None:
    a = a_with_b()
    t = a.next_check(0.0)
    assert t is not None
    data = decode(t).success_response().encode(integrity_key=B_PARAMS.pwd.encode(), fingerprint=True)
    feed(a, data, base=A_HOST, remote=B_ADDR, now=0.01)
    assert a.pairs[0].state is PairState.FAILED


def test_success_events_and_rtt() -> None:
    a = a_with_b()
    t = a.next_check(1.0)
    assert t is not None
    drain(a)
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=B_ADDR, now=1.125)
    (pair,) = a.pairs
    assert drain(a) == [PairStateChanged(pair, PairState.IN_PROGRESS, PairState.SUCCEEDED), PairValid(pair)]
    assert pair.rtt == 0.125 and pair.last_consent == 1.125 and pair.responses_received == 1
    assert a.get_timer() is None
    assert not a.completed  # valid, not nominated


def test_rtt_not_measured_after_a_retransmission() -> None:
    a = a_with_b()
    t = a.next_check(0.0)
    assert t is not None
    assert len(a.handle_timer(0.5)) == 1
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=B_ADDR, now=0.6)
    assert a.pairs[0].valid and a.pairs[0].rtt is None


def test_duplicate_response_is_ignored() -> None:
    a = a_with_b()
    t = a.next_check(0.0)
    assert t is not None
    resp = response_to(t, A_ADDR)
    feed(a, resp, base=A_HOST, remote=B_ADDR, now=0.01)
    drain(a)
    feed(a, resp, base=A_HOST, remote=B_ADDR, now=0.02)
    assert drain(a) == [] and a.pairs[0].responses_received == 1


def test_success_unfreezes_the_foundation() -> None:
    a = session()
    a.add_local_candidate(A_HOST, A_HOST)
    a.set_remote_parameters(B_PARAMS)
    r1 = cand("10.0.0.2", 2000, foundation="rf")
    r2 = cand("10.0.0.3", 2000, foundation="rf", priority=HOST - 1)
    a.add_remote_candidate(r1)
    a.add_remote_candidate(r2)
    p1, p2 = a.pairs
    assert (p1.state, p2.state) == (PairState.WAITING, PairState.FROZEN)
    t = a.next_check(0.0)
    assert t is not None and t.pair is p1
    assert a.next_check(0.05) is None  # p2 frozen behind the in-progress pair of its foundation
    drain(a)
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=("10.0.0.2", 2000), now=0.06)
    assert drain(a)[-1] == PairStateChanged(p2, PairState.FROZEN, PairState.WAITING)
    t2 = a.next_check(0.1)
    assert t2 is not None and t2.pair is p2


def test_failure_lets_the_next_frozen_pair_of_the_foundation_go() -> None:
    a = session(rc=1, rm=1)
    a.add_local_candidate(A_HOST, A_HOST)
    a.set_remote_parameters(B_PARAMS)
    a.add_remote_candidate(cand("10.0.0.2", 2000, foundation="rf"))
    a.add_remote_candidate(cand("10.0.0.3", 2000, foundation="rf", priority=HOST - 1))
    p1, p2 = a.pairs
    assert a.next_check(0.0) is not None
    assert a.next_check(0.05) is None
    a.handle_timer(0.5)
    assert p1.state is PairState.FAILED
    t = a.next_check(0.5)  # 6.1.4.2: nothing waits, no pair of the foundation busy -> unfreeze p2
    assert t is not None and t.pair is p2


# ==== triggered checks (7.3.1.4) ====


def test_triggered_check_cancels_in_progress_and_rechecks() -> None:
    a = a_with_b()
    t1 = a.next_check(0.0)
    assert t1 is not None
    (pair,) = a.pairs
    drain(a)
    feed(a, request(), base=A_HOST, remote=B_ADDR, now=0.2)
    assert pair.state is PairState.WAITING
    assert drain(a) == [PairStateChanged(pair, PairState.IN_PROGRESS, PairState.WAITING)]
    assert a.handle_timer(0.5) == []  # the old transaction retransmits no more
    t2 = a.next_check(0.25)
    assert t2 is not None and t2.pair is pair
    assert decode(t2).transaction_id != decode(t1).transaction_id
    assert state_of(pair) is PairState.IN_PROGRESS
    assert a.get_timer() == 0.75  # the new transaction's first retransmission
    # the old transaction's response is still accepted
    feed(a, response_to(t1, A_ADDR), base=A_HOST, remote=B_ADDR, now=0.3)
    assert pair.valid and state_of(pair) is PairState.SUCCEEDED


def test_cancelled_transaction_timing_out_does_not_fail_the_pair() -> None:
    a = a_with_b()
    t1 = a.next_check(0.0)
    feed(a, request(), base=A_HOST, remote=B_ADDR, now=0.2)
    t2 = a.next_check(0.25)
    assert t1 is not None and t2 is not None
    feed(a, response_to(t2, A_ADDR), base=A_HOST, remote=B_ADDR, now=0.3)
    (pair,) = a.pairs
    assert pair.valid
    while (timer := a.get_timer()) is not None:
        a.handle_timer(timer)
    assert timer is None and pair.state is PairState.SUCCEEDED


def test_triggered_check_on_a_frozen_pair() -> None:
    a = session()
    a.add_local_candidate(A_HOST, A_HOST)
    a.set_remote_parameters(B_PARAMS)
    a.add_remote_candidate(cand("10.0.0.2", 2000, foundation="rf"))
    a.add_remote_candidate(cand("10.0.0.3", 2000, foundation="rf", priority=HOST - 1))
    _p1, p2 = a.pairs
    assert p2.state is PairState.FROZEN
    drain(a)
    feed(a, request(), base=A_HOST, remote=("10.0.0.3", 2000), now=0.0)
    assert drain(a) == [PairStateChanged(p2, PairState.FROZEN, PairState.WAITING)]
    t = a.next_check(0.0)
    assert t is not None and t.pair is p2  # the triggered queue goes first


def test_incoming_check_on_a_succeeded_pair_triggers_nothing() -> None:
    a = a_with_b()
    t = a.next_check(0.0)
    assert t is not None
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=B_ADDR, now=0.01)
    drain(a)
    feed(a, request(), base=A_HOST, remote=B_ADDR, now=0.1)
    assert drain(a) == []
    assert a.next_check(0.15) is None
    assert a.pairs[0].requests_received == 1


def test_triggered_queue_is_fifo() -> None:
    a = a_with_b()
    sources = [("10.0.0.7", 7), ("10.0.0.5", 5), ("10.0.0.6", 6)]
    for src in sources:
        feed(a, request(), base=A_HOST, remote=src, now=0.0)
    sent = [t.remote for t in iter(lambda: a.next_check(0.0), None)]
    assert sent == [*sources, B_ADDR]


# ==== nomination (8.1.1, 7.3.1.5) ====


def valid_a() -> tuple[IceSession, CandidatePair]:
    a = a_with_b()
    t = a.next_check(0.0)
    assert t is not None
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=B_ADDR, now=0.01)
    drain(a)
    return a, a.pairs[0]


def test_controlling_nomination() -> None:
    a, pair = valid_a()
    assert a.nominate(pair) is True
    assert a.checks_pending
    t = a.next_check(0.05)
    assert t is not None and t.pair is pair
    msg = decode(t)
    assert Attr.USE_CANDIDATE in msg and msg.get(Attr.ICE_CONTROLLING) == A_TB
    assert pair.state is PairState.SUCCEEDED and not pair.nominated
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=B_ADDR, now=0.06)
    assert drain(a) == [PairNominated(pair)]
    assert pair.nominated and a.completed and a.nominated_pairs == [pair]
    assert a.nominate(pair) is True and a.next_check(0.1) is None  # already nominated: nothing more


def test_nominate_refuses_invalid_pairs_and_the_controlled_role() -> None:
    a = a_with_b()
    assert a.nominate(a.pairs[0]) is False
    b, pair = valid_a()
    b._set_role(False)
    assert b.nominate(pair) is False


def test_nomination_failure_is_reported() -> None:
    a, pair = valid_a()
    a.nominate(pair)
    t = a.next_check(0.05)
    assert t is not None
    while (timer := a.get_timer()) is not None:
        a.handle_timer(timer)
    # no answer at all: only the nomination was lost, the pair's own check succeeded (RFC 8445 8.1.1)
    assert drain(a) == [NominationFailed(pair)]
    assert not pair.nominated and pair.valid and pair.state is PairState.SUCCEEDED
    a.nominate(pair)
    t = a.next_check(60.0)
    assert t is not None
    feed(a, response_to(t, A_ADDR, error=400), base=A_HOST, remote=B_ADDR, now=60.01)
    # an error answer fails the pair (RFC 8445 7.2.5.2.4); it stays on the valid list
    assert drain(a) == [PairStateChanged(pair, PairState.SUCCEEDED, PairState.FAILED), NominationFailed(pair)]
    assert not pair.nominated and pair.valid


def test_nomination_dropped_after_487_made_us_controlled() -> None:
    a, pair = valid_a()
    a.nominate(pair)
    t = a.next_check(0.05)
    assert t is not None
    feed(a, response_to(t, A_ADDR, error=487), base=A_HOST, remote=B_ADDR, now=0.06)
    assert not a.controlling
    # controlled now: no USE-CANDIDATE to send, and the pair already succeeded, so nothing to re-check
    assert a.next_check(0.1) is None
    assert pair.state is PairState.SUCCEEDED and not pair.nominated


def test_ordinary_checks_stop_after_nomination() -> None:
    a = a_with_b()
    a.add_remote_candidate(cand("10.0.0.3", 3000, priority=HOST - 5))
    t = a.next_check(0.0)
    assert t is not None and t.remote == B_ADDR
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=B_ADDR, now=0.01)
    a.nominate(a.valid_pairs[0])
    t = a.next_check(0.05)
    assert t is not None and Attr.USE_CANDIDATE in decode(t)
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=B_ADDR, now=0.06)
    assert a.completed
    assert a.next_check(0.1) is None  # the other pair stays WAITING (8.1.2)
    assert not a.checks_pending


def test_controlled_use_candidate_on_a_valid_pair_nominates_at_once() -> None:
    b = session(B_PARAMS, controlling=False, tie_breaker=B_TB, prefix=0xB0)
    b.add_local_candidate(B_HOST, B_HOST)
    b.set_remote_parameters(A_PARAMS)
    b.add_remote_candidate(A_HOST)
    t = b.next_check(0.0)
    assert t is not None
    b_resp = decode(t).success_response([(Attr.XOR_MAPPED_ADDRESS, B_ADDR)])
    feed(b, b_resp.encode(integrity_key=A_PARAMS.pwd.encode(), fingerprint=True), base=B_HOST, remote=A_ADDR, now=0.01)
    (pair,) = b.pairs
    assert pair.valid
    drain(b)
    nominating = request(
        username="bUfr:aUfr", key=B_PARAMS.pwd.encode(), controlling=A_TB, controlled=None, use_candidate=True
    )
    assert feed(b, nominating, base=B_HOST, remote=A_ADDR, now=0.1) is not None
    assert drain(b) == [PairNominated(pair)]
    assert pair.nominated and b.completed


def test_controlled_use_candidate_before_valid_concludes_on_success() -> None:
    b = session(B_PARAMS, controlling=False, tie_breaker=B_TB, prefix=0xB0)
    b.add_local_candidate(B_HOST, B_HOST)
    b.set_remote_parameters(A_PARAMS)
    b.add_remote_candidate(A_HOST)
    nominating = request(
        username="bUfr:aUfr", key=B_PARAMS.pwd.encode(), controlling=A_TB, controlled=None, use_candidate=True
    )
    feed(b, nominating, base=B_HOST, remote=A_ADDR, now=0.0)  # aggressive nomination on the first check
    (pair,) = b.pairs
    assert not pair.nominated
    t = b.next_check(0.0)  # the triggered check
    assert t is not None and t.pair is pair and Attr.USE_CANDIDATE not in decode(t)
    drain(b)
    resp = decode(t).success_response([(Attr.XOR_MAPPED_ADDRESS, B_ADDR)])
    feed(b, resp.encode(integrity_key=A_PARAMS.pwd.encode(), fingerprint=True), base=B_HOST, remote=A_ADDR, now=0.02)
    assert drain(b) == [
        PairStateChanged(pair, PairState.IN_PROGRESS, PairState.SUCCEEDED),
        PairValid(pair),
        PairNominated(pair),
    ]


def test_use_candidate_ignored_by_the_controlling_side() -> None:
    a = a_with_b()
    feed(a, request(use_candidate=True), base=A_HOST, remote=B_ADDR, now=0.0)
    t = a.next_check(0.0)
    assert t is not None
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=B_ADDR, now=0.01)
    assert not a.pairs[0].nominated


# ==== consent (RFC 7675) ====


def test_consent_check_and_refresh() -> None:
    a, pair = valid_a()
    t = a.consent_check(pair, 10.0)
    assert t.pair is pair and t.base == A_HOST and t.remote == B_ADDR
    msg = decode(t)
    assert Attr.USE_CANDIDATE not in msg and msg.get(Attr.USERNAME) == "bUfr:aUfr"
    assert msg.verify_integrity(B_PARAMS.pwd.encode())
    assert pair.consent_requests_sent == 1 and pair.requests_sent == 2
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=B_ADDR, now=10.25)
    assert drain(a) == [ConsentRefreshed(pair, 10.25)]
    assert pair.last_consent == 10.25 and pair.rtt == 0.25
    assert pair.state is PairState.SUCCEEDED


def test_consent_timeout_does_not_fail_the_pair() -> None:
    a, pair = valid_a()
    t = a.consent_check(pair, 10.0)
    sends = []
    while (timer := a.get_timer()) is not None:
        sends += [timer for r in a.handle_timer(timer) if r.data == t.data]
    assert sends == [10.5, 11.5, 13.5, 17.5, 25.5, 41.5]
    assert drain(a) == [] and pair.state is PairState.SUCCEEDED


def test_consent_error_changes_nothing() -> None:
    a, pair = valid_a()
    t = a.consent_check(pair, 10.0)
    feed(a, response_to(t, A_ADDR, error=400), base=A_HOST, remote=B_ADDR, now=10.1)
    assert drain(a) == [] and pair.state is PairState.SUCCEEDED


def test_consent_check_does_not_change_state() -> None:
    a, pair = valid_a()
    a.consent_check(pair, 10.0)
    assert pair.state is PairState.SUCCEEDED and not a.checks_pending


def test_consent_before_remote_parameters_raises() -> None:
    a = session()
    a.add_local_candidate(A_HOST, A_HOST)
    a.add_remote_candidate(B_HOST)
    with pytest.raises(ValueError):
        a.consent_check(a.pairs[0], 0.0)


# ==== retransmissions and timers ====


def test_check_retransmissions_use_config_rto() -> None:
    a = a_with_b(rto=0.1, rc=3, rm=2)
    t = a.next_check(5.0)
    assert t is not None
    times = []
    while (timer := a.get_timer()) is not None:
        out = a.handle_timer(timer)
        times.append((round(timer, 9), len(out)))
    assert times == [(5.1, 1), (5.3, 1), (5.5, 0)]
    assert a.pairs[0].state is PairState.FAILED


def test_handle_timer_before_due_does_nothing() -> None:
    a = a_with_b()
    a.next_check(0.0)
    assert a.handle_timer(0.4) == []
    assert a.get_timer() == 0.5


def test_get_timer_is_the_earliest_transaction() -> None:
    a = a_with_b()
    a.add_remote_candidate(cand("10.0.0.3", 3000, priority=HOST - 1))
    a.next_check(0.0)
    a.next_check(0.05)
    assert a.get_timer() == 0.5
    a.handle_timer(0.5)
    assert a.get_timer() == 0.55


def test_tcp_checks_are_sent_once_and_time_out_after_39_5() -> None:
    local = cand("10.0.0.1", 9, transport="tcp", tcptype="active")
    remote = cand("10.0.0.2", 5000, transport="tcp", tcptype="passive")
    a = session()
    a.add_local_candidate(local, local)
    a.set_remote_parameters(B_PARAMS)
    a.add_remote_candidate(remote)
    t = a.next_check(0.0)
    assert t is not None and t.remote == ("10.0.0.2", 5000) and t.base == local
    assert a.get_timer() == 39.5
    assert a.handle_timer(39.5) == []
    assert a.pairs[0].state is PairState.FAILED


def test_tcp_success_keeps_the_local_candidate() -> None:
    local = cand("10.0.0.1", 9, transport="tcp", tcptype="active")
    remote = cand("10.0.0.2", 5000, transport="tcp", tcptype="passive")
    a = session()
    a.add_local_candidate(local, local)
    a.set_remote_parameters(B_PARAMS)
    a.add_remote_candidate(remote)
    t = a.next_check(0.0)
    assert t is not None
    feed(a, response_to(t, ("10.0.0.1", 51234)), base=local, remote=("10.0.0.2", 5000), now=0.01)
    assert a.valid_pairs == a.pairs
    assert not any(isinstance(e, LocalCandidateLearned) for e in drain(a))


def test_tcp_passive_learns_active_prflx_and_pairs_it() -> None:
    passive = cand("10.0.0.1", 5000, transport="tcp", tcptype="passive")
    a = session()
    a.add_local_candidate(passive, passive)
    a.set_remote_parameters(B_PARAMS)
    feed(a, request(), base=passive, remote=("10.0.0.2", 40000), now=0.0)
    (learned,) = [e for e in drain(a) if isinstance(e, RemoteCandidateLearned)]
    assert learned.candidate.transport == "tcp" and learned.candidate.tcptype == "active"
    t = a.next_check(0.0)
    assert t is not None and t.base == passive and t.remote == ("10.0.0.2", 40000)


# ==== queries for the Trio layer ====


def test_is_remote_candidate_and_find_pair() -> None:
    a, pair = valid_a()
    assert a.is_remote_candidate(A_HOST, B_ADDR)
    assert not a.is_remote_candidate(A_HOST, ("10.0.0.2", 2001))
    tcp_base = cand("10.0.0.1", 1000, transport="tcp", tcptype="passive")
    assert not a.is_remote_candidate(tcp_base, B_ADDR)
    assert a.find_pair(A_HOST, B_ADDR) is pair
    assert a.find_pair(A_HOST, ("10.0.0.2", 2001)) is None


def test_base_of_and_candidate_lists() -> None:
    a = session()
    srflx = cand("198.51.100.1", 40000, type="srflx", related=A_ADDR)
    a.add_local_candidate(A_HOST, A_HOST)
    a.add_local_candidate(srflx, A_HOST)
    a.add_local_candidate(srflx, A_HOST)  # duplicate
    assert a.local_candidates == [A_HOST, srflx]
    assert a.base_of(srflx) == A_HOST and a.base_of(A_HOST) == A_HOST
    assert a.base_of(B_HOST) is None
    a.add_remote_candidate(B_HOST)
    a.add_remote_candidate(cand("0f0e0d0c-aaaa-bbbb-cccc-ddddeeeeffff.local", 2000))
    assert a.remote_candidates == [B_HOST]


def test_mdns_local_candidate_pairs_through_its_base() -> None:
    base = A_HOST
    mdns = cand("0f0e0d0c-aaaa-bbbb-cccc-ddddeeeeffff.local", 1000)
    a = session()
    a.add_local_candidate(mdns, base)
    a.set_remote_parameters(B_PARAMS)
    a.add_remote_candidate(B_HOST)
    (pair,) = a.pairs
    assert pair.local == mdns and pair.base == base
    t = a.next_check(0.0)
    assert t is not None and t.base == base
    feed(a, response_to(t, A_ADDR), base=base, remote=B_ADDR, now=0.01)
    assert a.valid_pairs == [pair]
    assert not any(isinstance(e, LocalCandidateLearned) for e in drain(a))
    # an incoming check on the base pairs with the mDNS candidate too
    feed(a, request(), base=base, remote=("10.0.0.3", 3000), now=0.1)
    p = a.find_pair(base, ("10.0.0.3", 3000))
    assert p is not None and p.local == mdns


def test_relay_candidate_is_its_own_base() -> None:
    relay = cand("203.0.113.9", 50000, type="relay")
    a = session()
    a.add_local_candidate(relay, relay)
    a.set_remote_parameters(B_PARAMS)
    a.add_remote_candidate(B_HOST)
    t = a.next_check(0.0)
    assert t is not None and t.base == relay
    assert decode(t).get(Attr.PRIORITY) == PRFLX_CHECK  # prflx type pref, the relay's local pref
    feed(a, response_to(t, ("203.0.113.9", 50000)), base=relay, remote=B_ADDR, now=0.05)
    assert a.valid_pairs == a.pairs


def test_pairs_and_valid_pairs_are_copies_in_priority_order() -> None:
    a = a_with_b()
    a.add_remote_candidate(cand("10.0.0.3", 3000, priority=HOST + 5))
    pairs = a.pairs
    assert [p.remote.port for p in pairs] == [3000, 2000]
    pairs.clear()
    assert len(a.pairs) == 2 and a.valid_pairs == []


def test_remote_candidates_capped() -> None:
    a = session(max_pairs=2)
    a.add_local_candidate(A_HOST, A_HOST)
    for i in range(20):
        a.add_remote_candidate(cand("10.2.0.1", 1000 + i))
    assert len(a.remote_candidates) == 8
    assert len(a.pairs) == 2


def test_request_events_in_order_role_then_prflx() -> None:
    a = a_with_b(tie_breaker=5)
    src = ("192.0.2.60", 6000)
    feed(a, request(priority=777, controlling=10, controlled=None), base=A_HOST, remote=src, now=0.0)
    events = drain(a)
    assert [type(e) for e in events] == [RoleChanged, RemoteCandidateLearned]  # a new pair: no state event
    pair = a.find_pair(A_HOST, src)
    assert pair is not None and pair.state is PairState.WAITING
    # controlled now: G = the peer's candidate (777), D = ours (HOST)
    assert pair.priority == (777 << 32) + 2 * HOST


def test_use_candidate_while_in_progress_concludes_with_the_cancelled_transaction() -> None:
    b = session(B_PARAMS, controlling=False, tie_breaker=B_TB, prefix=0xB0)
    b.add_local_candidate(B_HOST, B_HOST)
    b.set_remote_parameters(A_PARAMS)
    b.add_remote_candidate(A_HOST)
    t = b.next_check(0.0)
    assert t is not None
    nominating = request(
        username="bUfr:aUfr", key=B_PARAMS.pwd.encode(), controlling=A_TB, controlled=None, use_candidate=True
    )
    feed(b, nominating, base=B_HOST, remote=A_ADDR, now=0.01)
    (pair,) = b.pairs
    assert pair.state is PairState.WAITING and not pair.nominated
    drain(b)
    resp = decode(t).success_response([(Attr.XOR_MAPPED_ADDRESS, B_ADDR)])
    feed(b, resp.encode(integrity_key=A_PARAMS.pwd.encode(), fingerprint=True), base=B_HOST, remote=A_ADDR, now=0.02)
    assert drain(b) == [
        PairStateChanged(pair, PairState.WAITING, PairState.SUCCEEDED),
        PairValid(pair),
        PairNominated(pair),
    ]
    assert b.next_check(0.05) is None  # the queued re-check is not needed any more
    assert not b.checks_pending


def test_checks_pending_follows_the_list() -> None:
    a = session()
    assert not a.checks_pending
    a.add_local_candidate(A_HOST, A_HOST)
    a.add_remote_candidate(B_HOST)
    assert a.checks_pending  # a WAITING pair
    a.set_remote_parameters(B_PARAMS)
    t = a.next_check(0.0)
    assert t is not None and a.checks_pending  # in flight
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=B_ADDR, now=0.01)
    assert not a.checks_pending
    a.nominate(a.pairs[0])
    assert a.checks_pending  # the USE-CANDIDATE check is queued


def test_nominating_a_valid_pair_checks_the_pair_that_produced_it() -> None:
    # A behind a NAT: the check on (host, B) produces the valid pair (srflx, B); nominating it repeats the
    # check on (host, B) with USE-CANDIDATE (RFC 8445 8.1.1), and the valid pair gets nominated.
    srflx = cand("198.51.100.1", 40000, type="srflx", related=A_ADDR)
    a = a_with_b()
    a.add_local_candidate(srflx, A_HOST)
    (checked,) = a.pairs
    t = a.next_check(0.0)
    assert t is not None
    feed(a, response_to(t, ("198.51.100.1", 40000)), base=A_HOST, remote=B_ADDR, now=0.01)
    (valid,) = a.valid_pairs
    assert valid.local == srflx and valid is not checked
    assert valid.priority < checked.priority  # srflx local: lower priority than the host pair
    drain(a)
    assert a.nominate(valid)
    t = a.next_check(0.05)
    assert t is not None and t.pair is checked and Attr.USE_CANDIDATE in decode(t)
    feed(a, response_to(t, ("198.51.100.1", 40000)), base=A_HOST, remote=B_ADDR, now=0.06)
    assert drain(a) == [PairNominated(valid)]
    assert valid.nominated and not checked.nominated
    assert a.find_pair(A_HOST, B_ADDR) is valid
    # consent on the valid pair goes out through its base
    c = a.consent_check(valid, 5.0)
    assert c.base == A_HOST and c.pair is valid


@pytest.mark.parametrize(
    ("controlling", "ours", "attr", "theirs", "expected"),
    [
        (True, 5, Attr.ICE_CONTROLLING, 4, RoleConflict.REJECT),
        (True, 5, Attr.ICE_CONTROLLING, 5, RoleConflict.REJECT),
        (True, 5, Attr.ICE_CONTROLLING, 6, RoleConflict.SWITCH),
        (True, 5, Attr.ICE_CONTROLLED, 9, RoleConflict.NONE),
        (False, 5, Attr.ICE_CONTROLLED, 4, RoleConflict.SWITCH),
        (False, 5, Attr.ICE_CONTROLLED, 5, RoleConflict.SWITCH),
        (False, 5, Attr.ICE_CONTROLLED, 6, RoleConflict.REJECT),
        (False, 5, Attr.ICE_CONTROLLING, 1, RoleConflict.NONE),
    ],
)
def test_role_conflict_rule(controlling: bool, ours: int, attr: Attr, theirs: int, expected: RoleConflict) -> None:
    msg = Message(Method.BINDING, MessageClass.REQUEST, b"tid-tid-tid-", [(attr, theirs)])
    assert role_conflict(msg, controlling=controlling, tie_breaker=ours) is expected


def test_screen_request_accepts_a_good_check() -> None:
    assert screen_request(decode(request()), A_PARAMS) is None
