"""A triggered check made moot (RFC 8445 7.3.1.4): when the cancelled check of a pair is answered after all, the
pair is Succeeded and its queued triggered check is taken off the queue at once, so no timer is set for it."""

from __future__ import annotations

from test_session import cand

from iceagent.config import IceConfig
from iceagent.ice.candidate import IceParameters
from iceagent.ice.checks import check_request
from iceagent.ice.generation import IceGeneration
from iceagent.ice.pacing import GlobalPacer
from iceagent.ice.pair import CandidatePair, PairState
from iceagent.stun.message import Message

CONFIG = IceConfig(global_pacing=False)


def _pair(pacer: GlobalPacer | None = None) -> tuple[tuple[IceGeneration, object], tuple[IceGeneration, object]]:
    pa = IceParameters(ufrag="aaaa", pwd="aPassword0123456789abcd")
    pb = IceParameters(ufrag="bbbb", pwd="bPassword0123456789abcd")
    config = CONFIG if pacer is None else IceConfig(global_pacing=True)
    a = IceGeneration(local=pa, controlling=True, tie_breaker=1, config=config, pacer=pacer)
    b = IceGeneration(local=pb, controlling=False, tie_breaker=2, config=config, pacer=pacer)
    ca, cb = cand("127.0.0.1", 10000), cand("127.0.0.1", 20000)
    for gen, local in ((a, ca), (b, cb)):
        gen.add_local_candidate(local, local)
        gen.gathering_done()
    a.set_remote_parameters(pb)
    b.set_remote_parameters(pa)
    a.add_remote_candidate(cb)
    a.add_remote_candidate(None)
    b.add_remote_candidate(ca)
    b.add_remote_candidate(None)
    return (a, ca), (b, cb)


def _deliver(to: IceGeneration, base: object, transmit: object, now: float) -> None:
    data = transmit.data  # type: ignore[attr-defined]
    to.receive(Message.decode(data), data, transmit.base.addr, base, now)  # type: ignore[attr-defined, arg-type]


def test_a_cancelled_check_answered_after_all_leaves_no_triggered_check_queued() -> None:
    (a, ca), (b, cb) = _pair()
    now = 1.0
    (b_check,) = b.datagrams_to_send(now)  # b's ordinary check is in flight
    (a_check,) = a.datagrams_to_send(now)
    _deliver(b, cb, a_check, now)  # b cancels its check, queues a triggered one (7.3.1.4), answers a
    (b_answer,) = b.datagrams_to_send(now)
    (b_pair,) = b.session.pairs
    assert b_pair in b.session._checklist.triggered
    _deliver(a, ca, b_check, now)  # a answers b's cancelled check
    a_out = a.datagrams_to_send(now)
    a_answer = next(t for t in a_out if t.data[:2] == b"\x01\x01")
    _deliver(b, cb, a_answer, now + 0.001)  # ... and the answer makes b's pair Succeeded
    _deliver(a, ca, b_answer, now + 0.001)
    assert b_pair.state is PairState.SUCCEEDED
    assert b_pair not in b.session._checklist.triggered
    timer = b.get_timer()
    assert timer is None or timer > now + 1, timer  # no wake-up at Ta for a check that would not be sent
    assert b.datagrams_to_send(now + 0.06) == []


def _nominating_a_then_role_flip(pacer: GlobalPacer | None) -> tuple[IceGeneration, CandidatePair, float]:
    """a (controlling) queues a USE-CANDIDATE check for its valid pair, then a check claiming ICE-CONTROLLING
    with a larger tie-breaker makes it controlled (RFC 8445 7.3.1.1) before that check goes."""
    (a, ca), (b, cb) = _pair(pacer)
    now = 1.0
    (a_check,) = a.datagrams_to_send(now)
    _deliver(b, cb, a_check, now)
    for t in b.datagrams_to_send(now):
        if t.data[:2] == b"\x01\x01":
            _deliver(a, ca, t, now + 0.01)
    (pair,) = a.session.pairs
    assert pair.valid and a.session.nominate(pair)
    assert pair in a.session._checklist.triggered
    pa, pb = a.session.local_parameters, b.session.local_parameters
    conflict = check_request(b"\x07" * 12, pb, pa, 1853824767, True, 2**64 - 1, False, None, pa.pwd.encode())
    a.receive(Message.decode(conflict), conflict, cb.addr, ca, now + 0.02)  # type: ignore[arg-type]
    assert not a.session.controlling
    a.datagrams_to_send(now + 0.02)  # the answer
    return a, pair, now + 0.02


def test_a_role_switch_drops_a_nomination_check_that_became_moot() -> None:
    a, pair, now = _nominating_a_then_role_flip(None)
    assert pair not in a.session._checklist.triggered
    timer = a.get_timer()
    assert timer is None or timer > now + 1, timer  # no Ta wake-up for a check next_check would skip


def test_a_pacer_ticket_taken_for_a_check_that_does_not_go_is_given_back() -> None:
    pacer = GlobalPacer()
    a, pair, now = _nominating_a_then_role_flip(pacer)
    a.session._checklist.triggered.append(pair)  # as if still queued: may_send takes a ticket, next_check skips
    later = now + 0.1
    assert a.datagrams_to_send(later) == []
    assert a.scheduler._sending is None
    assert pacer.due(pacer.reserve(later)) <= later  # the ticket went back: the next transaction may go at once
