"""The ICE policy in the sans-IO core (DESIGN.md "Concurrency"): the pacing check scheduler, the nomination
controller, the keepalive/consent/restart supervisor and the IceGeneration that joins them, each driven
with literal times. No Trio, no sockets, no clock."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest
from test_session import (
    A_ADDR,
    A_HOST,
    A_PARAMS,
    A_TB,
    B_ADDR,
    B_HOST,
    B_PARAMS,
    cand,
    request,
    response_to,
    tids,
)

from iceagent.config import IceConfig
from iceagent.ice.events import GatherTimedOut, PairNominated, PairValid
from iceagent.ice.generation import IceGeneration
from iceagent.ice.pacing import GLOBAL_INTERVAL, CheckScheduler, GlobalPacer, effective_ta
from iceagent.ice.pair import CandidatePair, PairState
from iceagent.ice.supervisor import (
    Fail,
    Restart,
    RouteLost,
    SendConsent,
    SendKeepalive,
    SetState,
    Supervisor,
    SupervisorAction,
)
from iceagent.states import IceState
from iceagent.stun.attributes import Attr
from iceagent.stun.message import Message, MessageClass, Method

# ---- the pacing check scheduler (RFC 8445 14.2) ----


def test_global_pacer_spaces_slots_5ms_apart() -> None:
    pacer = GlobalPacer()
    slots = [pacer.reserve(1.0) for _ in range(3)]
    assert slots == pytest.approx([1.0, 1.0 + GLOBAL_INTERVAL, 1.0 + 2 * GLOBAL_INTERVAL])
    assert pacer.reserve(2.0) == 2.0  # idle again: at once


def test_first_check_at_once_then_one_per_ta() -> None:
    s = CheckScheduler()
    assert s.may_send(0.0, True)
    s.sent(0.0, 0.05)
    assert not s.may_send(0.04, True)
    assert s.deadline(True) == 0.05
    assert s.deadline(False) == math.inf  # nothing to send: no reason to wake
    assert s.may_send(0.05, True)


def test_a_shared_pacer_delays_the_second_agent_to_the_next_slot() -> None:
    pacer = GlobalPacer()
    first, second = CheckScheduler(pacer), CheckScheduler(pacer)
    assert first.may_send(0.0, True)
    assert not second.may_send(0.0, True)  # its slot is 5 ms later
    assert second.deadline(True) == GLOBAL_INTERVAL
    assert second.may_send(GLOBAL_INTERVAL, True)


def test_both_sides_pace_at_the_larger_ta_and_silence_means_50ms() -> None:
    """RFC 8445 14.2 / RFC 8839 4.4: a peer that signals no a=ice-pacing paces at 50 ms, so our lower Ta
    applies only when the peer signals one as low."""
    assert effective_ta(0.05, None) == 0.05
    slow = B_PARAMS.__class__(ufrag=B_PARAMS.ufrag, pwd=B_PARAMS.pwd, pacing=200)
    assert effective_ta(0.05, slow) == 0.2
    fast = B_PARAMS.__class__(ufrag=B_PARAMS.ufrag, pwd=B_PARAMS.pwd, pacing=10)
    assert effective_ta(0.05, fast) == 0.05
    assert effective_ta(0.005, fast) == 0.01
    assert effective_ta(0.005, B_PARAMS) == 0.05  # the peer signalled no pacing
    assert effective_ta(0.005, B_PARAMS.__class__(ufrag="bUfr", pwd=B_PARAMS.pwd, pacing=5)) == 0.005


# ---- the generation (aioquic shape) ----


def generation(*, controlling: bool = True, pacer: GlobalPacer | None = None, **config: Any) -> IceGeneration:
    return IceGeneration(
        local=A_PARAMS,
        controlling=controlling,
        tie_breaker=A_TB,
        config=IceConfig(**config),
        pacer=pacer,
        random_bytes=tids(0xA0),
    )


def events(gen: IceGeneration) -> list[Any]:
    out = []
    while (e := gen.next_event()) is not None:
        out.append(e)
    return out


def test_checks_are_paced_by_ta_and_retransmitted_by_the_timer() -> None:
    gen = generation(ta=0.05, rto=0.5)
    gen.add_local_candidate(A_HOST, A_HOST)
    gen.set_remote_parameters(B_PARAMS)
    gen.add_remote_candidate(B_HOST)
    gen.add_remote_candidate(cand("10.0.0.3", 3000))
    assert gen.get_timer() <= 0.0  # the first check goes at once
    first = gen.datagrams_to_send(0.0)
    assert [t.remote for t in first] == [B_ADDR]
    assert gen.get_timer() == pytest.approx(0.05)  # the next pair waits Ta
    assert gen.datagrams_to_send(0.01) == []
    second = gen.datagrams_to_send(0.05)
    assert [t.remote for t in second] == [("10.0.0.3", 3000)]
    assert gen.get_timer() == pytest.approx(0.5)  # no pair left: the first retransmission
    gen.handle_timer(0.5)
    again = gen.datagrams_to_send(0.5)
    assert [t.data for t in again] == [first[0].data]


def test_a_check_rto_grows_with_the_waiting_and_in_progress_pairs() -> None:
    """RFC 8445 14.3: RTO = MAX(500 ms, Ta x (Num-Waiting + Num-In-Progress)), so every pending check goes out
    once before any is retransmitted (14.1). 20 pairs in distinct foundations are all Waiting: at Ta = 50 ms
    the first check is retransmitted after 1 s, not after the 500 ms a lone check waits."""
    gen = generation(ta=0.05, rto=0.5)
    gen.add_local_candidate(A_HOST, A_HOST)
    gen.set_remote_parameters(B_PARAMS)
    for i in range(20):
        gen.add_remote_candidate(cand(f"10.0.1.{i + 1}", 3000, foundation=f"f{i}"))
    assert sum(p.state is PairState.WAITING for p in gen.session.pairs) == 20
    first = gen.datagrams_to_send(0.0)[0].data
    sent = [first]
    while (now := gen.get_timer()) < 0.99:  # one new check per Ta; no retransmission at 0.5 s
        gen.handle_timer(now)
        sent += [t.data for t in gen.datagrams_to_send(now)]
    assert sent.count(first) == 1
    assert len(set(sent)) == 20  # every pair checked once
    assert gen.get_timer() == pytest.approx(1.0)
    gen.handle_timer(1.0)
    assert first in [t.data for t in gen.datagrams_to_send(1.0)]  # 20 x 50 ms: the first retransmission


def test_requests_in_flight_stay_bounded_when_the_rto_grows() -> None:
    """docs/security.md: at most 39.5 s / Ta + 1 checks in flight (791 at 50 ms). 40 Waiting pairs stretch
    a check's RTO to 2 s (RFC 8445 14.3), so its transaction would live 158 s; a peer whose checks arrive
    every Ta on our in-progress pairs cancels each and triggers a new one (7.3.1.4). Over 200 s the oldest
    cancelled checks are forgotten instead of piling up."""
    gen = generation(ta=0.05)
    gen.add_local_candidate(A_HOST, A_HOST)
    gen.set_remote_parameters(B_PARAMS)
    remotes = [cand(f"10.0.1.{i + 1}", 3000, foundation=f"f{i}") for i in range(40)]
    for remote in remotes:
        gen.add_remote_candidate(remote)
    sizes = []
    for step in range(4000):
        now = step * 0.05
        remote = remotes[step % len(remotes)]
        raw = request(tid=step.to_bytes(12, "big"))
        gen.receive(Message.decode(raw), raw, (remote.address, remote.port), A_HOST, now)
        gen.handle_timer(now)
        gen.datagrams_to_send(now)
        sizes.append(gen.session.table_sizes()["requests"])
    assert max(sizes) <= math.ceil(39.5 / 0.05) + 1
    assert sizes[-1] > 700  # the flood does fill it (without the bound: 2789 at 200 s)


def test_a_request_is_answered_by_the_next_datagrams_to_send() -> None:
    gen = generation(controlling=False)
    gen.add_local_candidate(A_HOST, A_HOST)
    raw = request(controlled=None, controlling=0x0222222222222222)
    gen.receive(Message.decode(raw), raw, B_ADDR, A_HOST, 1.0)
    assert gen.get_timer() == -math.inf  # something to send now
    out = gen.datagrams_to_send(1.0)
    answer = Message.decode(out[0].data)
    assert out[0].pair is None and answer.message_class is MessageClass.SUCCESS
    assert answer.transaction_id == b"request-0001"


def test_gather_timeout_is_an_event_at_its_time() -> None:
    gen = generation(gather_timeout=10.0)
    gen.start_gathering(100.0)
    assert gen.get_timer() == 110.0
    gen.handle_timer(109.9)
    assert events(gen) == []
    gen.handle_timer(110.0)
    assert events(gen) == [GatherTimedOut()]
    assert gen.get_timer() == math.inf
    gen.start_gathering(200.0)
    gen.gathering_done()
    assert gen.get_timer() == math.inf  # done before the timeout: no event


def test_keepalive_is_a_fingerprinted_indication_with_a_fresh_transaction_id() -> None:
    gen = generation()
    pair = CandidatePair(local=A_HOST, remote=B_HOST)
    gen.keepalive(pair)
    gen.keepalive(pair)
    out = gen.datagrams_to_send(0.0)
    msgs = [Message.decode(t.data) for t in out]
    assert all(m.method is Method.BINDING and m.message_class is MessageClass.INDICATION for m in msgs)
    assert all(m.verify_fingerprint() and Attr.MESSAGE_INTEGRITY not in m for m in msgs)
    assert msgs[0].transaction_id != msgs[1].transaction_id


# ---- the nomination controller (RFC 8445 8.1.1) ----


def _valid_after_check(gen: IceGeneration, now: float) -> Any:
    """Send A's first check and answer it at `now`: that pair becomes valid."""
    (check,) = gen.datagrams_to_send(0.0)
    raw = response_to(check, A_ADDR)
    gen.receive(Message.decode(raw), raw, check.remote, A_HOST, now)
    return check


def test_nomination_waits_for_a_better_pair_still_being_checked() -> None:
    gen = generation(nomination_delay=0.5, rto=10.0)
    gen.add_local_candidate(A_HOST, A_HOST)
    gen.set_remote_parameters(B_PARAMS)
    gen.add_remote_candidate(B_HOST)  # the better pair: checked first, never answered
    gen.add_remote_candidate(cand("10.0.0.9", 9000, priority=1000))
    (better,) = gen.datagrams_to_send(0.0)
    assert better.remote == B_ADDR
    (poor,) = gen.datagrams_to_send(0.05)
    raw = response_to(poor, A_ADDR)
    gen.receive(Message.decode(raw), raw, poor.remote, A_HOST, 0.07)
    assert any(isinstance(e, PairValid) for e in events(gen))
    assert gen.nomination.first_valid_at == 0.07
    assert gen.get_timer() == pytest.approx(0.57)  # the better pair may still succeed until then
    gen.handle_timer(0.56)
    assert gen.datagrams_to_send(0.56) == []
    at = gen.get_timer()
    gen.handle_timer(at)
    (nominating,) = gen.datagrams_to_send(at)
    msg = Message.decode(nominating.data)
    assert Attr.USE_CANDIDATE in msg and nominating.remote == ("10.0.0.9", 9000)


def test_nomination_at_once_when_no_better_pair_is_pending_and_not_when_controlled() -> None:
    gen = generation(nomination_delay=0.5)
    gen.add_local_candidate(A_HOST, A_HOST)
    gen.set_remote_parameters(B_PARAMS)
    gen.add_remote_candidate(B_HOST)
    _valid_after_check(gen, 0.01)
    assert gen.nomination.deadline(gen.session) == -math.inf
    gen.handle_timer(0.01)
    (nominating,) = gen.datagrams_to_send(0.05)
    raw = response_to(nominating, A_ADDR)
    gen.receive(Message.decode(raw), raw, B_ADDR, A_HOST, 0.06)
    assert [type(e) for e in events(gen) if isinstance(e, PairNominated)] == [PairNominated]
    assert gen.nominated is not None and gen.nomination.deadline(gen.session) == math.inf

    controlled = generation(controlling=False)
    controlled.add_local_candidate(A_HOST, A_HOST)
    controlled.set_remote_parameters(B_PARAMS)
    controlled.add_remote_candidate(B_HOST)
    _valid_after_check(controlled, 0.01)
    assert controlled.nomination.deadline(controlled.session) == math.inf


def test_a_lost_nomination_is_repeated_on_the_pair_that_works() -> None:
    """RFC 8445 8.1.1: the nominating check (USE-CANDIDATE) gets no answer at all (Rc = 2 transmissions, RTO
    0.5 s: it times out at 0.5 + 4 x 0.5 = 2.5 s after it was sent). The pair's own check succeeded, so the
    pair stays Succeeded and valid, and the controller nominates it again with a new transaction; the answer
    to that one concludes nomination."""
    gen = generation(rc=2, rm=4)
    gen.add_local_candidate(A_HOST, A_HOST)
    gen.set_remote_parameters(B_PARAMS)
    gen.add_remote_candidate(B_HOST)
    gen.add_remote_candidate(None)
    gen.gathering_done()
    _valid_after_check(gen, 0.01)
    gen.handle_timer(0.01)
    (first,) = gen.datagrams_to_send(0.05)
    assert Attr.USE_CANDIDATE in Message.decode(first.data)
    sent, now = [], 0.05
    while (now := max(now, gen.get_timer())) < 5.0:
        gen.handle_timer(now)
        sent += [(now, Message.decode(t.data)) for t in gen.datagrams_to_send(now)]
    (pair,) = gen.session.valid_pairs
    assert pair.state is PairState.SUCCEEDED and gen.nominated is None
    again = [(at, m) for at, m in sent if Attr.USE_CANDIDATE in m and m.transaction_id != first.data[8:20]]
    assert again and again[0][0] == pytest.approx(2.55)  # at the first one's timeout, a new transaction
    raw = response_to(again[0][1].encode(), A_ADDR)
    gen.receive(Message.decode(raw), raw, B_ADDR, A_HOST, 5.0)
    assert gen.nominated is pair


# ---- the supervisor (RFC 7675, RFC 8445 11, DESIGN.md auto_restart) ----


def supervisor(*, auto_restart: bool = False, **config: Any) -> Supervisor:
    return Supervisor(IceConfig(**config), auto_restart=auto_restart, rng=random.Random(7))


def valid_pair() -> CandidatePair:
    return CandidatePair(local=A_HOST, remote=B_HOST, state=PairState.SUCCEEDED, valid=True)


def kinds(actions: list[SupervisorAction]) -> list[str]:
    return [type(a).__name__ for a in actions]


def test_failed_timeout_counts_from_checking() -> None:
    sup = supervisor(failed_timeout=30.0)
    sup.checking_started(5.0)
    assert sup.poll(10.0, state=IceState.CHECKING, pair=None, selected_at=0.0) == ([], 35.0)
    actions, _ = sup.poll(35.0, state=IceState.CHECKING, pair=None, selected_at=0.0)
    assert isinstance(actions[0], Fail) and "failed_timeout=30" in actions[0].reason
    assert sup.poll(35.0, state=IceState.NEW, pair=None, selected_at=0.0) == ([], math.inf)


def test_consent_checks_randomized_and_consent_lost_after_timeout() -> None:
    sup = supervisor(consent_interval=5.0, consent_timeout=30.0, disconnected_timeout=100.0, keepalive_interval=1000.0)
    pair = valid_pair()
    sent = []
    now = 0.0
    actions, at = sup.poll(now, state=IceState.CONNECTED, pair=pair, selected_at=0.0)
    while at < 30.0:
        now = at
        actions, at = sup.poll(now, state=IceState.CONNECTED, pair=pair, selected_at=0.0)
        if any(isinstance(a, SendConsent) for a in actions):
            sent.append(now)
            pair._last_consent = now  # answered
            pair._responses_received += 1
    gaps = [b - a for a, b in itertools.pairwise([0.0, *sent])]
    assert len(sent) >= 5 and all(4.0 - 1e-9 <= g <= 6.0 + 1e-9 for g in gaps)  # 0.8-1.2 x 5 s (RFC 7675 5.1)
    assert len({round(g, 6) for g in gaps}) > 1  # randomized
    last = sent[-1]
    actions, _ = sup.poll(last + 29.999, state=IceState.CONNECTED, pair=pair, selected_at=0.0)
    assert not any(isinstance(a, RouteLost) for a in actions)  # within consent_timeout: not yet
    actions, _ = sup.poll(last + 30.001, state=IceState.CONNECTED, pair=pair, selected_at=0.0)
    assert kinds(actions) == ["RouteLost"] and "RFC 7675" in actions[0].reason  # type: ignore[union-attr]


def test_disconnected_after_silence_and_back_on_traffic() -> None:
    sup = supervisor(disconnected_timeout=5.0, consent_interval=100.0, keepalive_interval=1000.0)
    pair = valid_pair()
    sup.poll(0.0, state=IceState.CONNECTED, pair=pair, selected_at=0.0)
    pair.count_received(10)
    sup.poll(1.0, state=IceState.CONNECTED, pair=pair, selected_at=0.0)
    assert sup.poll(6.0, state=IceState.CONNECTED, pair=pair, selected_at=0.0)[0] == []
    actions, _ = sup.poll(6.01, state=IceState.CONNECTED, pair=pair, selected_at=0.0)
    assert SetState(IceState.DISCONNECTED) in actions
    pair.count_received(10)
    pair._nominated = True
    actions, _ = sup.poll(7.0, state=IceState.DISCONNECTED, pair=pair, selected_at=0.0)
    assert SetState(IceState.COMPLETED) in actions


def test_a_silent_pair_gets_its_consent_checks_early_in_the_window() -> None:
    """After half of disconnected_timeout in silence the next consent check goes at 0.8-0.9 x the interval
    instead of 0.8-1.2 x, so an idle but live pair is not declared DISCONNECTED between two checks."""
    sup = supervisor(
        disconnected_timeout=5.0, consent_interval=5.0, keepalive_interval=1000.0, consent_timeout=1000.0
    )
    pair = valid_pair()
    _, at = sup.poll(0.0, state=IceState.CONNECTED, pair=pair, selected_at=0.0)
    sent: list[float] = []
    while len(sent) < 6:
        actions, next_at = sup.poll(at, state=IceState.CONNECTED, pair=pair, selected_at=0.0)
        if any(isinstance(a, SendConsent) for a in actions):
            sent.append(at)
        at = next_at
    assert 4.0 - 1e-9 <= sent[0] <= 4.5 + 1e-9  # 0.8-0.9 x 5 s (randomized too)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert all(4.0 - 1e-9 <= g <= 4.5 + 1e-9 for g in gaps), gaps


def test_keepalive_when_nothing_was_sent_for_keepalive_interval() -> None:
    sup = supervisor(
        keepalive_interval=15.0, consent_interval=100.0, disconnected_timeout=1000.0, consent_timeout=1000.0
    )
    pair = valid_pair()
    sup.poll(0.0, state=IceState.COMPLETED, pair=pair, selected_at=0.0)
    actions, at = sup.poll(10.0, state=IceState.COMPLETED, pair=pair, selected_at=0.0)
    assert actions == [] and at <= 15.0
    actions, _ = sup.poll(15.0, state=IceState.COMPLETED, pair=pair, selected_at=0.0)
    assert actions == [SendKeepalive(pair)]
    pair.count_sent(100)  # data went out: no keepalive needed
    actions, _ = sup.poll(30.0, state=IceState.COMPLETED, pair=pair, selected_at=0.0)
    assert actions == []


def test_restart_backoff_doubles_up_to_sixteen_times_and_only_with_auto_restart() -> None:
    assert supervisor().poll(0.0, state=IceState.FAILED, pair=None, selected_at=0.0) == ([], math.inf)
    sup = supervisor(auto_restart=True, restart_backoff=1.0)
    now, waits = 0.0, []
    for _ in range(7):
        actions, at = sup.poll(now, state=IceState.FAILED, pair=None, selected_at=0.0)
        assert actions == []
        waits.append(at - now)
        actions, _ = sup.poll(at, state=IceState.FAILED, pair=None, selected_at=0.0)
        assert actions == [Restart()]
        now = at
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
    sup.poll(now, state=IceState.CONNECTED, pair=valid_pair(), selected_at=now)  # a pair works: back-off resets
    _, at = sup.poll(now + 1, state=IceState.FAILED, pair=None, selected_at=0.0)
    assert at == now + 2.0


def test_route_lost_and_fail_are_terminal() -> None:
    sup = supervisor(consent_timeout=30.0)
    pair = valid_pair()
    pair._last_consent = 0.0
    actions, at = sup.poll(31.0, state=IceState.COMPLETED, pair=pair, selected_at=0.0)
    assert len(actions) == 1 and isinstance(actions[0], RouteLost) and at == math.inf


class CountingPacer(GlobalPacer):
    """A process-wide pacer that counts the slots taken."""

    def __init__(self) -> None:
        super().__init__()
        self.reserved = 0

    def reserve(self, now: float) -> float:
        self.reserved += 1
        return super().reserve(now)


def test_a_frozen_pair_behind_a_busy_foundation_takes_no_slot_and_no_wakeup() -> None:
    """Two remote candidates with one foundation: the second pair stays Frozen while the first is In-Progress
    (RFC 8445 6.1.4.2), so there is nothing to send until that check ends: no pacer slot is taken and the
    next deadline is the first check's retransmission, not the next Ta."""
    pacer = CountingPacer()
    gen = generation(pacer=pacer, rto=0.5)
    gen.add_local_candidate(A_HOST, A_HOST)
    gen.set_remote_parameters(B_PARAMS)
    gen.add_remote_candidate(cand("10.0.0.2", 2000, foundation="same"))
    gen.add_remote_candidate(cand("10.0.0.2", 2001, foundation="same", priority=1000))
    (first,) = gen.datagrams_to_send(0.0)
    assert first.remote == ("10.0.0.2", 2000) and pacer.reserved == 1
    assert gen.get_timer() == pytest.approx(0.5)
    for now in (0.05, 0.1, 0.25):
        assert gen.datagrams_to_send(now) == []
    assert pacer.reserved == 1


def test_a_triggered_check_takes_the_slot_a_paced_check_waited_for() -> None:
    """Another agent holds the process-wide pacer: our next check waits for its slot, and is built only
    then, so a check triggered meanwhile (RFC 8445 7.3.1.4) goes first, and its transaction starts when it
    leaves (RFC 8489 6.2.1)."""
    pacer = CountingPacer()
    pacer.reserve(0.0)  # another agent's check at 0: ours gets the slot at 5 ms
    gen = generation(controlling=False, pacer=pacer, rto=0.5)
    gen.add_local_candidate(A_HOST, A_HOST)
    gen.set_remote_parameters(B_PARAMS)
    gen.add_remote_candidate(cand("10.0.0.9", 9000))  # an ordinary check waits for the slot
    assert gen.datagrams_to_send(0.0) == []
    assert gen.get_timer() == pytest.approx(GLOBAL_INTERVAL)
    raw = request(controlled=None, controlling=0x0222222222222222)
    gen.receive(Message.decode(raw), raw, B_ADDR, A_HOST, 0.002)  # B's check: answer now, trigger one back
    (answer,) = gen.datagrams_to_send(0.002)
    assert answer.pair is None
    (check,) = gen.datagrams_to_send(GLOBAL_INTERVAL)
    assert check.remote == B_ADDR  # the triggered check, not the one that waited
    assert gen.get_timer() == pytest.approx(GLOBAL_INTERVAL + 0.05)  # Ta from the real send
