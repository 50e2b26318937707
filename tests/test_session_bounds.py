"""Every per-pair and per-candidate table of the sans-IO session stays within its documented bound
(docs/security.md "Agent-side bounds") however many candidates, prflx sources and checks a peer sends,
and nothing is kept about a pair once it is gone. No sockets, no clock: literal times."""

from __future__ import annotations

import math

from test_session import B_PARAMS, PRFLX_CHECK, cand, decode, drain, feed, request, response_to, session

from iceagent.ice.candidate import unusable_reason
from iceagent.ice.events import PairRemoved, PairValid, RemoteCandidateLearned
from iceagent.ice.pair import CandidatePair
from iceagent.ice.session import REMOTE_CANDIDATES_PER_PAIR, IceSession
from iceagent.stun.attributes import Attr

P = 8  # max_pairs
TA = 0.05
LIFETIME = 39.5  # RFC 8489 6.2.1 with the default rto, Rc and Rm
LOCALS = [cand(f"10.0.0.{i}", 1000 + i) for i in (1, 2, 3)]


def bounds(gathered: int) -> dict[str, int]:
    """The documented bound of each table with max_pairs = P (docs/security.md)."""
    return {
        "pairs": P,
        "routes": P,
        "valid": P,
        "triggered": 2 * P,
        "generated": 2 * P,
        "use_candidate": 2 * P,
        "peer_nominated": P,
        "remote_candidates": (REMOTE_CANDIDATES_PER_PAIR + 1) * P,
        "local_candidates": gathered + P,
        "prflx_sources": P,
        "from_mdns": (REMOTE_CANDIDATES_PER_PAIR + 1) * P,
        "requests": math.ceil(LIFETIME / TA) + 1,
    }


def live(s: IceSession) -> set[int]:
    return {id(p) for p in [*s.pairs, *s.valid_pairs]}


def assert_bounded(s: IceSession) -> dict[str, int]:
    sizes = s.table_sizes()
    for name, bound in bounds(len(LOCALS)).items():
        assert sizes[name] <= bound, (name, sizes[name], bound)
    # nothing refers to a pair that is on neither list (it would keep it, and its RTO state, alive)
    alive = live(s)
    kept: list[CandidatePair] = [r.pair for r in s._requests._by_id.values()]
    kept += [*s._generated, *s._generated.values(), *s._use_candidate, *s._use_candidate.values()]
    kept += [*s._peer_nominated, *s._checklist.triggered]
    assert all(id(p) in alive for p in kept)
    return sizes


def controlled_session() -> IceSession:
    s = session(B_PARAMS, controlling=False, prefix=0xB0, max_pairs=P)
    for local in LOCALS:
        s.add_local_candidate(local, local)
    s.local_gathering_done()
    s.set_remote_parameters(session().local_parameters)
    return s


def test_tables_stay_bounded_under_candidates_prflx_sources_and_churn() -> None:
    """A peer signals 50 times more candidates than max_pairs, each better than the last (so pairs keep
    being evicted by the cap), sends authenticated USE-CANDIDATE checks from 3000 source addresses, and
    answers our checks with ever new mapped addresses (new local prflx candidates, new valid pairs)."""
    s = controlled_session()
    now = 0.0
    removed = valid = 0
    peak: dict[str, int] = {}
    signalled: list[tuple[str, int]] = []
    for i in range(3000):
        if i < 50 * P:  # signalled, each better than the last: churn through the capped check list
            c = cand(f"192.0.2.{i % 250 + 1}", 2000 + i, priority=2_000_000_000 + i, foundation=f"r{i}")
            s.add_remote_candidate(c)
            signalled.append(c.addr)
        base = LOCALS[i % len(LOCALS)]
        if i % 2:  # from a signalled address, nominating a pair that may not be valid yet (7.3.1.5)
            source = signalled[(i // 2) % len(signalled)]
        else:  # from a new address each time: peer-reflexive learning (7.3.1.3)
            source = (f"198.51.{i // 250}.{i % 250 + 1}", 3000 + i)
        check = request(username=f"{B_PARAMS.ufrag}:aUfr", key=B_PARAMS.pwd.encode(), controlling=7,
                        controlled=None, use_candidate=bool(i % 2), tid=b"hostile%05d" % i)
        feed(s, check, base=base, remote=source, now=now)
        t = s.next_check(now)
        if t is not None:  # answered, from a new mapped address each time
            mapped = (f"203.0.113.{i % 250 + 1}", 4000 + i)
            feed(s, response_to(t, mapped, key=b"aPassword0123456789abcd"), base=t.base, remote=t.remote, now=now)
        s.handle_timer(now)
        events = drain(s)
        removed += sum(isinstance(e, PairRemoved) for e in events)
        valid += sum(isinstance(e, PairValid) for e in events)
        for name, size in assert_bounded(s).items():
            peak[name] = max(peak.get(name, 0), size)
        now += TA
    # the run did push the caps: pairs were evicted, both lists were full, prflx learning hit its cap
    assert removed > 5 * P and valid > P
    assert peak["pairs"] == P and peak["valid"] == P and peak["prflx_sources"] >= 1
    assert peak["remote_candidates"] >= REMOTE_CANDIDATES_PER_PAIR * P
    assert peak["local_candidates"] == len(LOCALS) + P, peak
    # let every transaction end: only what the lists hold is left
    for _ in range(int(LIFETIME / TA) + 2):
        now += TA
        s.handle_timer(now)
        drain(s)
    assert_bounded(s)
    assert all(id(r.pair) in live(s) for r in s._requests._by_id.values())


def test_dropped_pair_is_forgotten_and_its_late_response_ignored() -> None:
    """A pair evicted by the cap while a check of it is still in flight (cancelled by a triggered check,
    7.3.1.4): PairRemoved, its transaction gone, and the response that comes later changes nothing (it
    used to make the pair, on neither list any more, succeed and become valid)."""
    s = session(controlling=True, max_pairs=1)
    local = cand("10.0.0.1", 1000)
    s.add_local_candidate(local, local)
    s.set_remote_parameters(B_PARAMS)
    s.add_remote_candidate(cand("10.0.0.2", 2000, priority=100, foundation="low"))
    t = s.next_check(0.0)
    assert t is not None and t.pair is not None
    doomed = t.pair
    feed(s, request(username="aUfr:bUfr"), base=local, remote=t.remote, now=0.01)  # back to WAITING
    s.add_remote_candidate(cand("10.0.0.4", 4000, priority=300, foundation="high"))
    assert doomed not in s.pairs and s.table_sizes()["triggered"] == 0
    assert any(isinstance(e, PairRemoved) and e.pair is doomed for e in drain(s))
    assert s.table_sizes()["requests"] == 0
    feed(s, response_to(t, ("10.0.0.1", 1000)), base=local, remote=t.remote, now=0.02)
    assert s.valid_pairs == [] and drain(s) == []
    assert_bounded(s)


def test_rto_state_lives_on_the_pair() -> None:
    """No per-session RTO table: the estimator is made on the pair's first check and goes with the pair."""
    s = session(controlling=True)
    local = cand("10.0.0.1", 1000)
    s.add_local_candidate(local, local)
    s.set_remote_parameters(B_PARAMS)
    s.add_remote_candidate(cand("10.0.0.2", 2000))
    t = s.next_check(0.0)
    assert t is not None and t.pair is not None and t.pair.rto_estimator is not None
    feed(s, response_to(t, ("10.0.0.1", 1000)), base=local, remote=t.remote, now=0.02)
    assert t.pair.rto_estimator.srtt == 0.02
    assert not hasattr(s, "_rto")


def test_checks_from_unusable_sources_teach_no_prflx() -> None:
    """Sources no peer can have (port 0, broadcast, multicast, unspecified) are answered but learned as no
    peer-reflexive candidate and get no pair (RFC 8445 7.3.1.3 learns a peer's address)."""
    s = session(controlling=True)
    local = cand("10.0.0.1", 1000)
    s.add_local_candidate(local, local)
    s.set_remote_parameters(B_PARAMS)
    sources = [("198.51.100.1", 0), ("255.255.255.255", 5000), ("224.0.0.251", 5353), ("0.0.0.0", 9)]
    for i, source in enumerate(sources):
        resp = feed(s, request(priority=PRFLX_CHECK, tid=b"unusable%04d" % i), base=local, remote=source, now=0.0)
        assert resp is not None and decode(resp).get(Attr.XOR_MAPPED_ADDRESS) == source
    assert not [e for e in drain(s) if isinstance(e, RemoteCandidateLearned)]
    assert s.pairs == [] and s.remote_candidates == []


def test_session_refuses_unusable_remote_candidates() -> None:
    """The session itself pairs none of them (the agent counts them before they get there)."""
    s = session(controlling=True)
    local = cand("10.0.0.1", 1000)
    s.add_local_candidate(local, local)
    bad = [cand("0.0.0.0", 5000), cand("::", 5000), cand("239.1.2.3", 5000), cand("ff02::fb", 5353),
           cand("255.255.255.255", 5000), cand("10.0.0.2", 0), cand("::ffff:224.0.0.1", 5000)]
    assert [unusable_reason(c) for c in bad] == [
        "unspecified", "unspecified", "multicast", "multicast", "broadcast", "port-0", "multicast"]
    assert [s.add_remote_candidate(c) for c in bad] == [False] * len(bad)
    assert s.pairs == [] and s.remote_candidates == []
    active = cand("10.0.0.2", 0, transport="tcp", tcptype="active")  # RFC 6544: its port means nothing
    assert unusable_reason(active) is None and s.add_remote_candidate(active)
