"""ICE-lite in the sans-IO core (RFC 8445 2.5, 6.1.1, 7.3, 7.3.2, 8.2; RFC 7675): literal times, no Trio.

A is the lite agent here (ufrag aUfr), B the full peer whose checks come from B_ADDR (or a NAT address).
"""

from __future__ import annotations

import math
import random
from typing import Any

import attrs
import pytest
from test_session import (
    A_HOST,
    A_PARAMS,
    A_TB,
    B_ADDR,
    B_HOST,
    B_PARAMS,
    B_TB,
    PRFLX_CHECK,
    cand,
    decode,
    drain,
    feed,
    request,
    response_to,
    session,
    tids,
)
from test_session_bounds import LOCALS, P, assert_bounded

from iceagent.config import IceConfig
from iceagent.ice.events import ChecklistFailed, PairNominated, PairValid, RemoteCandidateLearned, RoleChanged
from iceagent.ice.generation import IceGeneration
from iceagent.ice.lite import LiteSession, lite_admits, two_lite_agents
from iceagent.ice.pair import CandidatePair, PairState
from iceagent.ice.supervisor import RouteLost, SendKeepalive, Supervisor
from iceagent.states import IceState
from iceagent.stun.attributes import Attr
from iceagent.stun.message import Message, MessageClass

LITE = attrs.evolve(A_PARAMS, lite=True)
NAT_ADDR = ("203.0.113.5", 40000)


def lite_generation(**config: Any) -> IceGeneration:
    gen = IceGeneration(
        local=LITE, controlling=False, tie_breaker=A_TB, config=IceConfig(**config), random_bytes=tids(0xA0)
    )
    gen.add_local_candidate(A_HOST, A_HOST)
    gen.set_remote_parameters(B_PARAMS)
    gen.add_remote_candidate(B_HOST)
    gen.add_remote_candidate(None)
    gen.gathering_done()
    return gen


def check_from(gen: IceGeneration, addr: tuple[str, int], now: float, **kw: Any) -> Message:
    """Feed B's check (controlling by default) from `addr` to the lite generation; return its answer."""
    kw.setdefault("controlling", B_TB)
    kw.setdefault("controlled", None)
    raw = request(**kw)
    gen.receive(Message.decode(raw), raw, addr, A_HOST, now)
    out = gen.datagrams_to_send(now)
    assert len(out) == 1 and out[0].pair is None and out[0].remote == addr  # the answer, nothing else
    assert len(out[0].data) <= len(raw)  # no amplification (docs/security.md)
    return decode(out[0])


def event_kinds(gen: IceGeneration) -> list[str]:
    out = []
    while (e := gen.next_event()) is not None:
        out.append(type(e).__name__)
    return out


def test_a_lite_generation_never_sends_a_check() -> None:
    """Remote parameters and a remote candidate are there, time passes: no paced check, no timer."""
    gen = lite_generation()
    assert isinstance(gen.session, LiteSession) and not gen.session.controlling
    for now in (0.0, 0.05, 1.0, 60.0):
        gen.handle_timer(now)
        assert gen.datagrams_to_send(now) == []
    assert gen.get_timer() == math.inf
    assert all(p.requests_sent == 0 for p in gen.session.pairs)


def test_checks_are_answered_and_use_candidate_nominates_at_once() -> None:
    """7.3: the check is answered with XOR-MAPPED-ADDRESS and the lite agent's integrity; no triggered
    check follows. 7.3.2: with USE-CANDIDATE the pair is valid and nominated (no rtt: nothing measured)."""
    gen = lite_generation()
    answer = check_from(gen, B_ADDR, 1.0)
    assert answer.message_class is MessageClass.SUCCESS
    assert answer.get(Attr.XOR_MAPPED_ADDRESS) == B_ADDR and answer.verify_integrity(LITE.pwd.encode())
    assert gen.nominated is None and "PairValid" not in event_kinds(gen)
    check_from(gen, B_ADDR, 2.0, use_candidate=True, tid=b"request-0002")
    assert event_kinds(gen)[-2:] == ["PairValid", "PairNominated"]
    pair = gen.nominated
    assert pair is not None and pair.valid and pair.nominated and pair.rtt is None
    assert pair.remote_address == B_ADDR and pair.last_consent == 2.0 and pair.requests_received == 2
    assert gen.session.completed
    check_from(gen, B_ADDR, 7.0, tid=b"request-0003")  # the full peer's consent check stamps the pair
    assert pair.last_consent == 7.0 and pair.requests_received == 3
    assert gen.datagrams_to_send(7.0) == []


def test_a_check_from_an_unsignalled_address_is_a_prflx_remote_and_its_data_source() -> None:
    """The full peer behind a NAT: its check comes from an address it never signalled. The lite agent
    learns it (so data from it is delivered before nomination, 12.2) and nominates its pair (7.3.2)."""
    gen = lite_generation()
    check_from(gen, NAT_ADDR, 1.0)
    learned = [e for e in iter(gen.next_event, None) if isinstance(e, RemoteCandidateLearned)]
    assert [c.candidate.type for c in learned] == ["prflx"]
    assert learned[0].candidate.priority == PRFLX_CHECK
    assert gen.session.is_remote_candidate(A_HOST, NAT_ADDR)
    assert gen.session.find_pair(A_HOST, NAT_ADDR) is not None
    check_from(gen, NAT_ADDR, 1.5, use_candidate=True, tid=b"request-0002")
    assert gen.nominated is not None and gen.nominated.remote_address == NAT_ADDR


def test_the_highest_priority_nomination_stays_selected() -> None:
    """An RFC 5245 peer nominating aggressively nominates several pairs: the selected one is the
    highest-priority nominated pair (8.1.1); a lower one after it raises no event."""
    gen = lite_generation()
    check_from(gen, B_ADDR, 1.0, use_candidate=True)  # B_HOST: a signalled host candidate
    best = gen.nominated
    event_kinds(gen)
    check_from(gen, NAT_ADDR, 1.1, use_candidate=True, tid=b"request-0002", priority=PRFLX_CHECK - 1000)
    assert "PairNominated" not in event_kinds(gen)
    assert gen.nominated is best
    lower = gen.session.find_pair(A_HOST, NAT_ADDR)
    assert lower is not None and lower.nominated and lower.priority < best.priority  # type: ignore[union-attr]


def test_unauthenticated_checks_change_nothing() -> None:
    gen = lite_generation()
    raw = request(controlling=B_TB, controlled=None, use_candidate=True, key=b"wrong password 12345678")
    gen.receive(Message.decode(raw), raw, NAT_ADDR, A_HOST, 1.0)
    (out,) = gen.datagrams_to_send(1.0)
    assert decode(out).get(Attr.ERROR_CODE)[0] == 401  # type: ignore[index]
    assert gen.nominated is None and not gen.session.is_remote_candidate(A_HOST, NAT_ADDR)


@pytest.mark.parametrize("their_tie_breaker", [A_TB - 1, A_TB + 1])
def test_a_peer_claiming_controlled_gets_487_and_the_lite_agent_stays_controlled(their_tie_breaker: int) -> None:
    """7.3.1.1 as it applies to lite: a full agent would switch to controlling when its tie-breaker is
    larger (the first case); a lite agent never controls (2.5, 6.1.1), so it answers 487 either way."""
    gen = lite_generation()
    answer = check_from(gen, B_ADDR, 1.0, controlling=None, controlled=their_tie_breaker, use_candidate=True)
    assert answer.message_class is MessageClass.ERROR and answer.get(Attr.ERROR_CODE)[0] == 487  # type: ignore[index]
    assert answer.verify_integrity(LITE.pwd.encode())
    assert not gen.session.controlling and "RoleChanged" not in event_kinds(gen)
    assert gen.nominated is None


def test_two_lite_agents_with_one_pair_select_it_without_a_check() -> None:
    """RFC 8445 8.2: between two lite agents, once both candidate lists are complete, a single pair is the
    selected pair; no check is ever sent, and its consent never lapses (no one could refresh it)."""
    gen = IceGeneration(
        local=LITE, controlling=False, tie_breaker=A_TB, config=IceConfig(), random_bytes=tids(0xA0)
    )
    gen.add_local_candidate(A_HOST, A_HOST)
    gen.set_remote_parameters(attrs.evolve(B_PARAMS, lite=True))
    gen.add_remote_candidate(B_HOST)
    assert gen.nominated is None  # the peer's list may not be complete yet
    gen.gathering_done()
    assert gen.nominated is None
    gen.add_remote_candidate(None)
    assert event_kinds(gen)[-2:] == ["PairValid", "PairNominated"]
    pair = gen.nominated
    assert pair is not None and pair.remote_address == B_ADDR and pair.rtt is None
    assert pair.last_consent == math.inf
    assert gen.datagrams_to_send(1.0) == [] and gen.get_timer() == math.inf


@pytest.mark.parametrize("remotes", [0, 2])
def test_two_lite_agents_without_exactly_one_pair_fail_with_the_reason(remotes: int) -> None:
    """More than one pair would need an updated candidate exchange (8.2) that the API does not do."""
    s = LiteSession(local=LITE, tie_breaker=A_TB, config=IceConfig(), random_bytes=tids(0xA0))
    s.add_local_candidate(A_HOST, A_HOST)
    s.set_remote_parameters(attrs.evolve(B_PARAMS, lite=True))
    for port in range(2000, 2000 + remotes):
        s.add_remote_candidate(attrs.evolve(B_HOST, port=port))
    s.local_gathering_done()
    assert not any(isinstance(e, ChecklistFailed) for e in drain(s))  # the peer's list is not complete yet
    s.add_remote_candidate(None)
    assert drain(s) == [ChecklistFailed(two_lite_agents(remotes))]
    assert s.failed and s.nominated_pairs == []
    assert "both agents are ICE-lite" in two_lite_agents(remotes) and "host_addresses" in two_lite_agents(remotes)
    s.add_remote_candidate(None)
    assert drain(s) == []  # once


def test_a_lite_agent_without_pairs_does_not_fail_by_itself() -> None:
    """A full agent's list fails when every pair failed (or there is none); a lite agent's checks come
    from addresses the peer may never have signalled, so it waits for them (its failure is the agent's
    failed_timeout or consent_timeout)."""
    s = LiteSession(local=LITE, tie_breaker=A_TB, config=IceConfig(), random_bytes=tids(0xA0))
    s.add_local_candidate(A_HOST, A_HOST)
    s.set_remote_parameters(B_PARAMS)
    s.add_remote_candidate(None)
    s.local_gathering_done()
    assert drain(s) == [] and not s.failed
    full = session(controlling=False)
    full.add_local_candidate(A_HOST, A_HOST)
    full.set_remote_parameters(B_PARAMS)
    full.add_remote_candidate(None)
    full.local_gathering_done()
    assert ChecklistFailed() in drain(full)  # the difference


def test_lite_session_refuses_what_a_lite_agent_never_does() -> None:
    with pytest.raises(ValueError, match="lite=True"):
        LiteSession(local=A_PARAMS, tie_breaker=A_TB, config=IceConfig())
    s = LiteSession(local=LITE, tie_breaker=A_TB, config=IceConfig())
    pair = CandidatePair(local=A_HOST, remote=B_HOST, state=PairState.SUCCEEDED, valid=True)
    assert s.nominate(pair) is False
    with pytest.raises(RuntimeError, match="consent"):
        s.consent_check(pair, 0.0)


def test_a_full_agent_with_a_lite_peer_takes_the_controlling_role_and_nominates() -> None:
    """6.1.1: opened controlled, it learns the peer is lite from its parameters and controls; its check
    succeeds against the lite peer's answer, and its nomination carries USE-CANDIDATE."""
    gen = IceGeneration(
        local=B_PARAMS, controlling=False, tie_breaker=B_TB, config=IceConfig(), random_bytes=tids(0xB0)
    )
    gen.add_local_candidate(B_HOST, B_HOST)
    gen.set_remote_parameters(LITE)
    assert gen.session.controlling
    assert any(isinstance(e, RoleChanged) and e.controlling for e in iter(gen.next_event, None))
    gen.add_remote_candidate(A_HOST)
    (check,) = gen.datagrams_to_send(0.0)
    first = decode(check)
    assert Attr.ICE_CONTROLLING in first and Attr.USE_CANDIDATE not in first
    answer = response_to(check, B_ADDR, key=LITE.pwd.encode())
    gen.receive(Message.decode(answer), answer, ("10.0.0.1", 1000), B_HOST, 0.01)
    assert any(isinstance(e, PairValid) for e in iter(gen.next_event, None))
    at = gen.get_timer()
    gen.handle_timer(max(at, 0.01))
    out = gen.datagrams_to_send(max(at, 0.05))
    assert [Attr.USE_CANDIDATE in decode(t) for t in out] == [True]
    nominate = response_to(out[0], B_ADDR, key=LITE.pwd.encode())
    gen.receive(Message.decode(nominate), nominate, ("10.0.0.1", 1000), B_HOST, 0.1)
    assert any(isinstance(e, PairNominated) for e in iter(gen.next_event, None))


def test_a_full_agent_with_a_full_peer_keeps_its_role() -> None:
    s = session(controlling=False)
    s.set_remote_parameters(B_PARAMS)
    assert not s.controlling and drain(s) == []


def test_lite_admits_host_candidates_and_tcp_passive_only() -> None:
    assert lite_admits(cand("10.0.0.1", 1))
    assert lite_admits(cand("10.0.0.1", 1, transport="tcp", tcptype="passive"))
    assert not lite_admits(cand("10.0.0.1", 9, transport="tcp", tcptype="active"))
    assert not lite_admits(cand("10.0.0.1", 1, transport="tcp", tcptype="so"))
    for kind in ("srflx", "relay", "prflx"):
        assert not lite_admits(cand("10.0.0.1", 1, type=kind, related=("10.0.0.9", 1)))


# ---- the supervisor in lite mode ----


def lite_supervisor(**config: Any) -> Supervisor:
    return Supervisor(IceConfig(**config), auto_restart=False, rng=random.Random(7), lite=True)


def test_lite_supervisor_sends_no_consent_and_never_goes_disconnected() -> None:
    """RFC 7675 is the full peer's job: checks every 4-6 s keep the pair, with gaps longer than
    disconnected_timeout (5 s) and no DISCONNECTED; only consent_timeout without a check loses it."""
    sup = lite_supervisor(disconnected_timeout=5.0, consent_timeout=30.0, keepalive_interval=1000.0)
    pair = CandidatePair(local=A_HOST, remote=B_HOST, state=PairState.SUCCEEDED, valid=True, nominated=True)
    pair._last_consent = 0.0
    for now in (0.0, 6.0, 12.0, 18.0):  # 6 s apart: more than disconnected_timeout
        pair._last_consent = now
        pair._requests_received += 1
        pair._responses_sent += 1
        actions, at = sup.poll(now + 5.8, state=IceState.COMPLETED, pair=pair, selected_at=0.0)
        assert actions == []  # no SendConsent, no SetState(DISCONNECTED)
        assert at == math.nextafter(now + 30.0, math.inf)  # the next poll: when the silence would be too long
    actions, _ = sup.poll(48.0, state=IceState.COMPLETED, pair=pair, selected_at=0.0)
    assert actions == []  # exactly consent_timeout: not yet
    actions, _ = sup.poll(math.nextafter(48.0, math.inf), state=IceState.COMPLETED, pair=pair, selected_at=0.0)
    assert [type(a) for a in actions] == [RouteLost]
    assert "consent_timeout=30" in actions[0].reason and "lite" in actions[0].reason  # type: ignore[union-attr]


def test_lite_supervisor_still_sends_keepalives_when_it_sent_nothing() -> None:
    """RFC 8445 11: every endpoint keeps its NAT bindings: a Binding indication (not a check) after
    keepalive_interval with nothing sent (the peer's checks stopped being answered)."""
    sup = lite_supervisor(keepalive_interval=15.0, consent_timeout=1000.0)
    pair = CandidatePair(local=A_HOST, remote=B_HOST, state=PairState.SUCCEEDED, valid=True, nominated=True)
    pair._last_consent = 0.0
    _, at = sup.poll(0.0, state=IceState.COMPLETED, pair=pair, selected_at=0.0)
    assert at == 15.0
    actions, _ = sup.poll(15.0, state=IceState.COMPLETED, pair=pair, selected_at=0.0)
    assert [type(a) for a in actions] == [SendKeepalive]


def test_a_lite_session_stays_bounded_under_nominations_from_many_sources() -> None:
    """An authenticated peer nominating from ever new addresses (3000 IPs, and many ports of one IP) on
    three bases: every table stays within the full session's documented bounds (docs/security.md)."""
    s = LiteSession(local=LITE, tie_breaker=A_TB, config=IceConfig(max_pairs=P), random_bytes=tids(0xA0))
    for local in LOCALS:
        s.add_local_candidate(local, local)
    s.set_remote_parameters(B_PARAMS)
    sources = [(f"198.51.{i // 250}.{i % 250 + 1}", 5000) for i in range(3000)]
    sources += [("203.0.113.9", 6000 + i) for i in range(200)]
    for n, source in enumerate(sources):
        raw = request(controlling=B_TB, controlled=None, use_candidate=True, tid=n.to_bytes(12, "big"))
        answer = feed(s, raw, base=LOCALS[n % 3], remote=source, now=float(n))
        assert answer is not None and decode(answer).message_class is MessageClass.SUCCESS
        if n % 100 == 0:
            drain(s)
            assert_bounded(s)
    drain(s)
    sizes = assert_bounded(s)
    assert sizes["valid"] == P and len(s.nominated_pairs) >= 1
