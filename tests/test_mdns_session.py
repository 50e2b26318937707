"""The sans-IO session and mDNS candidates (draft-ietf-mmusic-mdns-ice-candidates 3.1.1, 3.2, 3.3.2):
`.local` local candidates over an IP base, pending remote names, prflx replacement, no relay pairing."""

from __future__ import annotations

from test_session import B_PARAMS, PRFLX_CHECK, cand, drain, feed, request, response_to, session

from iceagent.ice.pair import PairState
from iceagent.ice.session import ChecklistFailed, IceSession, PairValid

NAME = "1f0c8c51-6b1e-4d4e-9c1a-2f0b8e1c9d77.local"
A_BASE = cand("10.0.0.1", 1000, priority=0)  # the socket: its address is what the name hides
A_NAMED = cand(NAME, 1000)  # the host candidate handed out
B_ADDR = ("10.0.0.2", 2000)
B_RESOLVED = cand("10.0.0.2", 2000, foundation="bhost")


def named_a() -> IceSession:
    a = session()
    a.set_remote_parameters(B_PARAMS)
    a.add_local_candidate(A_NAMED, A_BASE)
    return a


def test_local_name_pairs_over_its_base_and_checks_from_it() -> None:
    a = named_a()
    a.add_remote_candidate(B_RESOLVED)
    (pair,) = a.pairs
    assert pair.local == A_NAMED and pair.base == A_BASE and pair.remote == B_RESOLVED
    t = a.next_check(0.0)
    assert t is not None and t.base == A_BASE and t.remote == B_ADDR
    feed(a, response_to(t, ("10.0.0.1", 1000)), base=A_BASE, remote=B_ADDR, now=0.01)
    (valid,) = a.valid_pairs
    assert valid.local == A_NAMED  # mapped == base: the name, not the address (RFC 8445 7.2.5.3.1)


def test_incoming_check_pairs_the_name_not_the_base() -> None:
    a = named_a()
    feed(a, request(), base=A_BASE, remote=B_ADDR, now=0.0)
    pair = a.find_pair(A_BASE, B_ADDR)
    assert pair is not None and pair.local == A_NAMED


def test_pending_remote_name_holds_back_checklist_failed() -> None:
    a = named_a()
    a.local_gathering_done()
    a.add_pending_remote()
    a.add_remote_candidate(None)  # end-of-candidates while the name is resolving
    assert drain(a) == [] and not a.failed and a.pending_remote == 1
    a.settle_pending_remote(None)  # it did not resolve: now nothing is left
    assert drain(a) == [ChecklistFailed()]
    assert a.pending_remote == 0


def test_resolved_name_replaces_the_prflx_candidate_and_the_pair_keeps_its_state() -> None:
    """B's checks arrive before its name resolves: a prflx remote, a triggered check, a valid pair; then
    the name resolves to the same address and the host candidate takes the prflx one's place (draft 3.2.1)."""
    a = named_a()
    a.add_pending_remote()
    feed(a, request(priority=PRFLX_CHECK), base=A_BASE, remote=B_ADDR, now=0.0)
    pair = a.find_pair(A_BASE, B_ADDR)
    assert pair is not None and pair.remote.type == "prflx"
    t = a.next_check(0.0)
    assert t is not None and t.pair is pair
    feed(a, response_to(t, ("10.0.0.1", 1000)), base=A_BASE, remote=B_ADDR, now=0.01)
    assert pair.state is PairState.SUCCEEDED and pair.valid
    drain(a)
    a.settle_pending_remote(B_RESOLVED)
    assert a.find_pair(A_BASE, B_ADDR) is pair
    assert pair.remote == B_RESOLVED and pair.state is PairState.SUCCEEDED and pair.valid
    assert [c.type for c in a.remote_candidates] == ["host"]
    assert a.is_from_mdns(B_RESOLVED)
    assert not any(isinstance(e, PairValid) for e in drain(a))  # no second "valid"


def test_resolved_name_is_never_paired_with_a_relay_candidate() -> None:
    a = named_a()
    relay = cand("198.51.100.3", 50000, type="relay")
    a.add_local_candidate(relay, relay)
    a.add_pending_remote()
    a.settle_pending_remote(B_RESOLVED)
    assert [(p.local.type, p.remote.address) for p in a.pairs] == [("host", "10.0.0.2")]
    relay2 = cand("198.51.100.3", 50002, type="relay", foundation="r2")
    a.add_local_candidate(relay2, relay2)  # a relay gathered later pairs with it neither
    assert [p.local.type for p in a.pairs] == ["host"]
    a.add_remote_candidate(cand("10.0.0.3", 3000))  # a signalled IP candidate pairs with the relays
    assert sorted(p.local.type for p in a.pairs if p.remote.address == "10.0.0.3") == ["host", "relay", "relay"]


def test_learned_local_prflx_hides_the_base_behind_the_name() -> None:
    a = named_a()
    a.add_remote_candidate(B_RESOLVED)
    t = a.next_check(0.0)
    assert t is not None
    feed(a, response_to(t, ("203.0.113.7", 40000)), base=A_BASE, remote=B_ADDR, now=0.01)
    local = next(c for c in a.local_candidates if c.type == "prflx")
    assert (local.address, local.port) == ("203.0.113.7", 40000)
    assert (local.related_address, local.related_port) == ("0.0.0.0", 9)  # not 10.0.0.1:1000
    assert a.base_of(local) == A_BASE


def test_srflx_of_a_named_base_adds_no_pair_of_its_own() -> None:
    a = named_a()
    srflx = cand("203.0.113.7", 40000, type="srflx", related=("0.0.0.0", 9))
    a.add_local_candidate(srflx, A_BASE)
    a.add_remote_candidate(B_RESOLVED)
    (pair,) = a.pairs
    assert pair.local == A_NAMED  # the base never shows up as a local candidate
