"""The check list (RFC 8445 6.1.2): pairing, pruning, priorities, states, triggered queue, valid list."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from iceagent.ice.candidate import Candidate
from iceagent.ice.checklist import CheckList, can_pair, pairing_candidate
from iceagent.ice.pair import CandidatePair, PairState, check_priority

HOST = 2130706431  # host, local pref 65535, component 1
SRFLX = 1694498815  # srflx, 65535, 1
RELAY = 16777215  # relay, 65535, 1


def cand(
    address: str,
    port: int,
    *,
    type: str = "host",
    priority: int | None = None,
    foundation: str | None = None,
    transport: str = "udp",
    component: int = 1,
    tcptype: str | None = None,
) -> Candidate:
    if priority is None:
        priority = {"host": HOST, "srflx": SRFLX, "relay": RELAY, "prflx": 1862270975}[type]
    return Candidate(
        foundation=foundation or f"{type}{address.replace('.', '').replace(':', '')}",
        component=component,
        transport=transport,
        priority=priority,
        address=address,
        port=port,
        type=type,
        tcptype=tcptype,
    )


def states(checklist: CheckList) -> list[tuple[str, int, PairState]]:
    return [(p.remote.address, p.remote.port, p.state) for p in checklist.pairs]


# ---- pairing rules (6.1.2.2) ----


def test_can_pair_same_component_transport_family() -> None:
    local = cand("10.0.0.1", 1000)
    assert can_pair(local, local, cand("10.0.0.2", 2000))
    assert not can_pair(local, local, cand("10.0.0.2", 2000, component=2))
    assert not can_pair(local, local, cand("10.0.0.2", 2000, transport="tcp", tcptype="passive"))
    assert not can_pair(local, local, cand("2001:db8::2", 2000))
    v6 = cand("2001:db8::1", 1000)
    assert can_pair(v6, v6, cand("2001:db8::2", 2000))
    assert not can_pair(v6, v6, cand("10.0.0.2", 2000))


def test_can_pair_skips_mdns_names() -> None:
    local = cand("10.0.0.1", 1000)
    assert not can_pair(local, local, cand("f4c1e0b2-1111-2222-3333-444455556666.local", 2000))


def test_can_pair_link_local_only_with_link_local() -> None:
    ll = cand("fe80::1", 1000)
    assert can_pair(ll, ll, cand("fe80::2", 2000))
    assert not can_pair(ll, ll, cand("2001:db8::2", 2000))
    glob = cand("2001:db8::1", 1000)
    assert not can_pair(glob, glob, cand("fe80::2", 2000))


def test_can_pair_uses_the_base_family_for_mdns_locals() -> None:
    base = cand("10.0.0.1", 1000)
    mdns = cand("a.local", 1000)
    assert can_pair(mdns, base, cand("10.0.0.2", 2000))


def test_can_pair_tcp_types() -> None:
    def tcp(address: str, tcptype: str) -> Candidate:
        return cand(address, 9 if tcptype == "active" else 5000, transport="tcp", tcptype=tcptype)

    pairs = {
        (lt, rt): can_pair(tcp("10.0.0.1", lt), tcp("10.0.0.1", lt), tcp("10.0.0.2", rt))
        for lt in ("active", "passive", "so")
        for rt in ("active", "passive", "so")
    }
    assert {k for k, ok in pairs.items() if ok} == {("active", "passive"), ("so", "so")}


def test_pairing_candidate_replaces_srflx_by_base() -> None:
    base = cand("10.0.0.1", 1000)
    srflx = cand("198.51.100.1", 40000, type="srflx")
    assert pairing_candidate(srflx, base) is base
    assert pairing_candidate(base, base) is base
    assert pairing_candidate(cand("198.51.100.1", 40001, type="prflx"), base) is None
    relay = cand("203.0.113.1", 50000, type="relay")
    assert pairing_candidate(relay, relay) is relay


# ---- priorities (6.1.2.3) ----


def test_pair_priority_controlling_and_controlled() -> None:
    local = cand("10.0.0.1", 1000, priority=100)
    remote = cand("10.0.0.2", 2000, priority=200)
    cl = CheckList(controlling=True)
    (pair,) = cl.pair_up([(local, local)], [remote])
    # G = 100 (ours, controlling), D = 200: 2^32*100 + 2*200 + 0
    assert pair.priority == (100 << 32) + 400
    cl = CheckList(controlling=False)
    (pair,) = cl.pair_up([(local, local)], [remote])
    # G = 200 (theirs), D = 100: 2^32*100 + 2*200 + 1
    assert pair.priority == (100 << 32) + 401


def test_set_role_recomputes_and_resorts() -> None:
    l1 = cand("10.0.0.1", 1000, priority=100)
    r1 = cand("10.0.0.2", 2000, priority=200, foundation="a")
    r2 = cand("10.0.0.3", 2000, priority=100, foundation="b")
    cl = CheckList(controlling=True)
    cl.pair_up([(l1, l1)], [r1, r2])
    # controlling: (l1,r1)=2^32*100+400, (l1,r2)=2^32*100+200
    assert [p.remote for p in cl.pairs] == [r1, r2]
    cl.set_role(False)
    assert [p.priority for p in cl.pairs] == [(100 << 32) + 401, (100 << 32) + 200]
    valid = cl.pairs[1]
    cl.add_valid(valid)
    cl.set_role(True)
    assert valid.priority == (100 << 32) + 200


def test_check_priority_is_prflx_type_preference() -> None:
    assert check_priority(cand("10.0.0.1", 1, priority=HOST)) == (110 << 24) | (65535 << 8) | 255
    assert check_priority(cand("10.0.0.1", 1, type="relay")) == (110 << 24) | (65535 << 8) | 255
    assert check_priority(cand("10.0.0.1", 1, priority=(126 << 24) | (7 << 8) | 254)) == ((110 << 24) | (7 << 8) | 254)


# ---- pairing and pruning (6.1.2.4, 6.1.2.5) ----


def test_pairs_sorted_by_priority() -> None:
    host = cand("10.0.0.1", 1000)
    relay = cand("203.0.113.1", 50000, type="relay")
    r_host = cand("10.0.0.2", 2000)
    r_srflx = cand("198.51.100.2", 3000, type="srflx")
    cl = CheckList(controlling=True)
    added = cl.pair_up([(host, host), (relay, relay)], [r_host, r_srflx])
    assert len(added) == 4
    prios = [p.priority for p in cl.pairs]
    assert prios == sorted(prios, reverse=True)
    assert (cl.pairs[0].local, cl.pairs[0].remote) == (host, r_host)
    assert (cl.pairs[-1].local, cl.pairs[-1].remote) == (relay, r_srflx)


def test_srflx_local_is_replaced_by_base_and_pruned() -> None:
    host = cand("10.0.0.1", 1000)
    srflx = cand("198.51.100.1", 40000, type="srflx")
    remote = cand("10.0.0.2", 2000)
    cl = CheckList(controlling=True)
    cl.pair_up([(host, host), (srflx, host)], [remote])
    assert len(cl.pairs) == 1
    (pair,) = cl.pairs
    assert pair.local == host and pair.base == host


def test_srflx_first_then_host_gives_one_pair() -> None:
    host = cand("10.0.0.1", 1000)
    srflx = cand("198.51.100.1", 40000, type="srflx")
    remote = cand("10.0.0.2", 2000)
    cl = CheckList(controlling=True)
    assert len(cl.pair_up([(srflx, host)], [remote])) == 1
    assert cl.pair_up([(host, host)], [remote]) == []
    assert len(cl.pairs) == 1 and cl.pairs[0].local == host


def test_prflx_locals_are_not_paired() -> None:
    host = cand("10.0.0.1", 1000)
    prflx = cand("198.51.100.1", 40000, type="prflx")
    cl = CheckList(controlling=True)
    assert cl.pair_up([(prflx, host)], [cand("10.0.0.2", 2000)]) == []


def test_redundant_route_keeps_higher_priority_candidates() -> None:
    base = cand("10.0.0.1", 1000)
    mdns_low = cand("x.local", 1000, priority=HOST - 1000)
    remote = cand("10.0.0.2", 2000)
    cl = CheckList(controlling=True)
    cl.pair_up([(mdns_low, base)], [remote])
    (pair,) = cl.pairs
    low = pair.priority
    assert cl.pair_up([(base, base)], [remote]) == []
    assert len(cl.pairs) == 1 and cl.pairs[0] is pair
    assert pair.local == base and pair.priority > low


def test_max_pairs_drops_the_lowest_priority() -> None:
    local = cand("10.0.0.1", 1000)
    remotes = [cand(f"10.0.1.{i}", 2000, priority=1000 + i, foundation=f"r{i}") for i in range(5)]
    cl = CheckList(controlling=True, max_pairs=3)
    cl.pair_up([(local, local)], remotes)
    assert [p.remote.priority for p in cl.pairs] == [1004, 1003, 1002]
    # a lower one is refused, a higher one pushes out the lowest
    assert cl.pair_up([(local, local)], [cand("10.0.2.1", 2000, priority=1, foundation="x")]) == []
    added = cl.pair_up([(local, local)], [cand("10.0.2.2", 2000, priority=5000, foundation="y")])
    assert len(added) == 1
    assert [p.remote.priority for p in cl.pairs] == [5000, 1004, 1003]


def test_max_pairs_keeps_in_progress_and_valid_pairs() -> None:
    local = cand("10.0.0.1", 1000)
    cl = CheckList(controlling=True, max_pairs=2)
    cl.pair_up([(local, local)], [cand("10.0.1.1", 2000, priority=10, foundation="a")])
    cl.pair_up([(local, local)], [cand("10.0.1.2", 2000, priority=20, foundation="b")])
    low, high = cl.pairs[1], cl.pairs[0]
    cl.set_state(low, PairState.IN_PROGRESS)
    cl.pair_up([(local, local)], [cand("10.0.1.3", 2000, priority=30, foundation="c")])
    assert low in cl.pairs and high not in cl.pairs
    assert len(cl.pairs) == 2


def test_add_returns_existing_pair_for_a_taken_route() -> None:
    local = cand("10.0.0.1", 1000)
    remote = cand("10.0.0.2", 2000)
    cl = CheckList(controlling=True)
    (pair,) = cl.pair_up([(local, local)], [remote])
    other = CandidatePair(local=local, remote=cand("10.0.0.2", 2000, type="prflx"))
    assert cl.add(other, PairState.WAITING) is pair
    assert cl.find(local, ("10.0.0.2", 2000)) is pair
    assert cl.find(local, ("10.0.0.2", 2001)) is None


def test_remove_takes_pair_off_list_and_queue() -> None:
    local = cand("10.0.0.1", 1000)
    cl = CheckList(controlling=True)
    (pair,) = cl.pair_up([(local, local)], [cand("10.0.0.2", 2000)])
    cl.enqueue_triggered(pair)
    cl.remove(pair)
    assert cl.pairs == [] and list(cl.triggered) == [] and pair not in cl


def test_replace_remote_updates_pairs() -> None:
    local = cand("10.0.0.1", 1000)
    prflx = cand("10.0.0.2", 2000, type="prflx", foundation="prflx1")
    cl = CheckList(controlling=True)
    pair = cl.add(CandidatePair(local=local, remote=prflx), PairState.WAITING)
    assert pair is not None
    host = cand("10.0.0.2", 2000)
    cl.replace_remote(prflx, host)
    assert pair.remote == host
    assert pair.priority == (HOST << 32) + 2 * HOST


# ---- initial states (6.1.2.6) and unfreezing ----


def test_initial_states_one_waiting_per_foundation() -> None:
    local = cand("10.0.0.1", 1000, foundation="L")
    r1 = cand("10.0.0.2", 2000, priority=300, foundation="a")
    r2 = cand("10.0.0.3", 2000, priority=200, foundation="a")
    r3 = cand("10.0.0.4", 2000, priority=100, foundation="b")
    cl = CheckList(controlling=True)
    cl.pair_up([(local, local)], [r3, r2, r1])  # order of arrival does not matter within a batch
    assert states(cl) == [
        ("10.0.0.2", 2000, PairState.WAITING),
        ("10.0.0.3", 2000, PairState.FROZEN),
        ("10.0.0.4", 2000, PairState.WAITING),
    ]


def test_trickled_pair_is_frozen_behind_a_waiting_one_and_waiting_after_success() -> None:
    local = cand("10.0.0.1", 1000, foundation="L")
    cl = CheckList(controlling=True)
    (first,) = cl.pair_up([(local, local)], [cand("10.0.0.2", 2000, foundation="a")])
    (second,) = cl.pair_up([(local, local)], [cand("10.0.0.3", 2000, foundation="a")])
    assert (first.state, second.state) == (PairState.WAITING, PairState.FROZEN)
    cl.set_state(first, PairState.SUCCEEDED)
    (third,) = cl.pair_up([(local, local)], [cand("10.0.0.4", 2000, foundation="a")])
    assert third.state is PairState.WAITING


def test_foundation_of_a_pair() -> None:
    pair = CandidatePair(local=cand("10.0.0.1", 1, foundation="x"), remote=cand("10.0.0.2", 2, foundation="y"))
    assert pair.foundation == "x:y"
    assert pair.base is pair.local
    assert pair.route == (pair.local, ("10.0.0.2", 2))


def test_unfreeze_foundation_on_success() -> None:
    local = cand("10.0.0.1", 1000, foundation="L")
    changes: list[tuple[PairState, PairState]] = []
    cl = CheckList(controlling=True, on_state_change=lambda p, o, n: changes.append((o, n)))
    cl.pair_up(
        [(local, local)],
        [
            cand("10.0.0.2", 2000, priority=300, foundation="a"),
            cand("10.0.0.3", 2000, priority=200, foundation="a"),
            cand("10.0.0.4", 2000, priority=100, foundation="b"),
            cand("10.0.0.5", 2000, priority=50, foundation="b"),
        ],
    )
    cl.unfreeze_foundation("L:a")
    assert [p.state for p in cl.pairs] == [
        PairState.WAITING,
        PairState.WAITING,
        PairState.WAITING,
        PairState.FROZEN,
    ]
    assert changes == [(PairState.FROZEN, PairState.WAITING)]


def test_unfreeze_when_nothing_waits_6_1_4_2() -> None:
    local = cand("10.0.0.1", 1000, foundation="L")
    cl = CheckList(controlling=True)
    cl.pair_up(
        [(local, local)],
        [
            cand("10.0.0.2", 2000, priority=300, foundation="a"),
            cand("10.0.0.3", 2000, priority=200, foundation="a"),
            cand("10.0.0.4", 2000, priority=100, foundation="b"),
            cand("10.0.0.5", 2000, priority=50, foundation="b"),
            cand("10.0.0.6", 2000, priority=40, foundation="c"),
            cand("10.0.0.7", 2000, priority=30, foundation="c"),
        ],
    )
    a1, a2, b1, b2, c1, c2 = cl.pairs
    cl.set_state(a1, PairState.FAILED)
    cl.set_state(b1, PairState.IN_PROGRESS)
    cl.set_state(c1, PairState.FAILED)
    assert cl.next_waiting() is a2  # a2 unfrozen (no a pair busy); b2 stays frozen (b1 in progress)
    assert (a2.state, b2.state, c2.state) == (PairState.WAITING, PairState.FROZEN, PairState.WAITING)


def test_next_waiting_is_highest_priority_and_none_when_empty() -> None:
    local = cand("10.0.0.1", 1000, foundation="L")
    cl = CheckList(controlling=True)
    assert cl.next_waiting() is None
    cl.pair_up([(local, local)], [cand("10.0.0.2", 2000, priority=1, foundation="a")])
    cl.pair_up([(local, local)], [cand("10.0.0.3", 2000, priority=9, foundation="b")])
    assert cl.next_waiting() is cl.pairs[0]
    assert cl.pairs[0].remote.priority == 9
    for p in cl.pairs:
        cl.set_state(p, PairState.SUCCEEDED)
    assert cl.next_waiting() is None


def test_set_state_reports_only_changes() -> None:
    local = cand("10.0.0.1", 1000)
    seen: list[tuple[CandidatePair, PairState, PairState]] = []
    cl = CheckList(controlling=True, on_state_change=lambda p, o, n: seen.append((p, o, n)))
    (pair,) = cl.pair_up([(local, local)], [cand("10.0.0.2", 2000)])
    cl.set_state(pair, PairState.WAITING)
    cl.set_state(pair, PairState.IN_PROGRESS)
    assert seen == [(pair, PairState.WAITING, PairState.IN_PROGRESS)]


# ---- triggered queue (7.3.1.4) and valid list ----


def test_triggered_queue_is_fifo_without_duplicates() -> None:
    local = cand("10.0.0.1", 1000)
    cl = CheckList(controlling=True)
    p1, p2, p3 = cl.pair_up(
        [(local, local)],
        [cand("10.0.0.2", 1, foundation="a"), cand("10.0.0.3", 1, foundation="b"), cand("10.0.0.4", 1, foundation="c")],
    )
    cl.enqueue_triggered(p3)
    cl.enqueue_triggered(p1)
    cl.enqueue_triggered(p3)
    assert [cl.pop_triggered(), cl.pop_triggered(), cl.pop_triggered()] == [p3, p1, None]
    del p2


def test_next_waiting_skips_queued_pairs() -> None:
    local = cand("10.0.0.1", 1000)
    cl = CheckList(controlling=True)
    cl.pair_up([(local, local)], [cand("10.0.0.2", 1, foundation="a"), cand("10.0.0.3", 1, foundation="b")])
    first, second = cl.pairs
    cl.enqueue_triggered(first)
    assert cl.next_waiting() is second


def test_valid_list_in_priority_order() -> None:
    local = cand("10.0.0.1", 1000)
    cl = CheckList(controlling=True)
    cl.pair_up(
        [(local, local)],
        [cand("10.0.0.2", 1, priority=5, foundation="a"), cand("10.0.0.3", 1, priority=9, foundation="b")],
    )
    high, low = cl.pairs
    assert cl.add_valid(low) is True
    assert cl.add_valid(high) is True
    assert cl.add_valid(high) is False
    assert cl.valid == [high, low]
    assert high.valid and low.valid


def test_active_and_all_failed() -> None:
    local = cand("10.0.0.1", 1000)
    cl = CheckList(controlling=True)
    assert not cl.active and cl.all_failed
    (pair,) = cl.pair_up([(local, local)], [cand("10.0.0.2", 1)])
    assert cl.active and not cl.all_failed
    cl.set_state(pair, PairState.FAILED)
    assert not cl.active and cl.all_failed
    cl.enqueue_triggered(pair)
    assert cl.active
    cl.pop_triggered()
    cl.add_valid(pair)
    assert not cl.all_failed


# ---- the state counters behind active / all_failed / has_idle ----

_OPS = st.lists(
    st.tuples(st.sampled_from(["pair_up", "add", "set", "remove", "valid"]), st.integers(0, 7), st.integers(0, 4)),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_state_summaries_match_a_scan_after_any_operations(ops: list[tuple[str, int, int]]) -> None:
    """CheckList counts pairs per state instead of scanning; whatever happens, the answers are the scan's."""
    cl = CheckList(controlling=True, max_pairs=5)
    local = cand("10.0.0.1", 1000)
    remotes = [cand("10.0.0.2", 2000 + i, foundation=f"r{i % 3}") for i in range(8)]
    every = list(PairState)
    for op, i, j in ops:
        if op == "pair_up":
            cl.pair_up([(local, local)], [remotes[i]])
        elif op == "add":
            cl.add(CandidatePair(local=local, remote=remotes[i], base=local), every[j])
        elif cl.pairs:
            pair = cl.pairs[i % len(cl.pairs)]
            if op == "set":
                cl.set_state(pair, every[j])
            elif op == "remove":
                cl.remove(pair)
            else:
                cl.add_valid(pair)
        pairs = cl.pairs
        assert cl.has_idle == any(p.state in (PairState.FROZEN, PairState.WAITING) for p in pairs)
        assert cl.active == (
            bool(cl.triggered)
            or any(p.state in (PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS) for p in pairs)
        )
        assert cl.all_failed == (not cl.valid and all(p.state is PairState.FAILED for p in pairs))
        assert cl.busy == sum(p.state in (PairState.WAITING, PairState.IN_PROGRESS) for p in pairs)


def test_pair_up_judges_foundations_without_joining_them_per_pair(monkeypatch: object) -> None:
    """Initial states compare the two candidates' foundations (RFC 8445 6.1.2.6) without building the
    pair-foundation string for every pair on the list (pairing n pairs built it n*n times); the states are
    the same: the first pair of each foundation Waiting, the others Frozen."""
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    built: list[int] = []
    real = CandidatePair.foundation

    def counting(self: CandidatePair) -> str:
        built.append(1)
        return real.fget(self)  # type: ignore[attr-defined,no-any-return]

    monkeypatch.setattr(CandidatePair, "foundation", property(counting))
    locals_ = [(c, c) for c in (cand(f"10.0.0.{i}", 1000 + i, foundation=f"l{i % 2}") for i in range(1, 7))]
    remotes = [cand(f"10.0.1.{i}", 2000 + i, foundation=f"r{i % 2}") for i in range(1, 7)]
    cl = CheckList(controlling=True)
    added = cl.pair_up(locals_, remotes)
    assert len(added) == 36
    assert built == []
    waiting = [p for p in cl.pairs if p.state is PairState.WAITING]
    assert sorted((p.local.foundation, p.remote.foundation) for p in waiting) == [
        ("l0", "r0"), ("l0", "r1"), ("l1", "r0"), ("l1", "r1")
    ]
