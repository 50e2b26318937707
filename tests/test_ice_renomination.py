"""Renomination (draft-thatcher-ice-renomination) in the sans-IO core: when the NOMINATION attribute is sent
and accepted, the controlled side's highest-value rule, the controlling side's policy (IceGeneration and
its nomination controller), and RFC 8445's final nomination without the option. Literal times, no Trio."""

from __future__ import annotations

import itertools
from typing import Any

from test_session import (
    A_ADDR,
    A_HOST,
    A_PARAMS,
    A_TB,
    B_ADDR,
    B_HOST,
    B_PARAMS,
    B_TB,
    cand,
    decode,
    drain,
    feed,
    request,
    response_to,
    session,
    tids,
)

from iceagent.config import IceConfig
from iceagent.ice.candidate import IceParameters
from iceagent.ice.events import PairNominated, Transmit
from iceagent.ice.generation import IceGeneration
from iceagent.ice.lite import LiteSession
from iceagent.ice.pair import CandidatePair, PairState
from iceagent.ice.parameters import RENOMINATION
from iceagent.ice.session import IceSession
from iceagent.stun.attributes import Attr
from iceagent.stun.message import Message

A_RENOM = A_PARAMS.with_option(RENOMINATION)
B_RENOM = B_PARAMS.with_option(RENOMINATION)
B_RELAY = cand("10.0.0.9", 9000, type="relay")
B_RELAY_ADDR = ("10.0.0.9", 9000)
A_OTHER = cand("10.0.0.5", 1500)
A_OTHER_ADDR = ("10.0.0.5", 1500)


# ---- the controlling side (A, host 10.0.0.1; B has a host and a relayed candidate) ----


def controlling(remote: IceParameters = B_RENOM, local: IceParameters = A_RENOM) -> IceSession:
    a = session(local)
    a.add_local_candidate(A_HOST, A_HOST)
    a.set_remote_parameters(remote)
    a.add_remote_candidate(B_HOST)
    a.add_remote_candidate(B_RELAY)
    return a


def checks(a: IceSession, now: float) -> dict[tuple[str, int], Transmit]:
    """The first check of every pair, by remote address."""
    out = {}
    while (t := a.next_check(now)) is not None:
        out[t.remote] = t
    return out


def answer(a: IceSession, t: Transmit, now: float) -> None:
    feed(a, response_to(t, A_ADDR), base=A_HOST, remote=t.remote, now=now)


def pair_to(s: IceSession, remote: tuple[str, int]) -> CandidatePair:
    return next(p for p in s.valid_pairs if p.remote_address == remote)


def nominating_check(a: IceSession, now: float) -> Transmit:
    t = a.next_check(now)
    assert t is not None and Attr.USE_CANDIDATE in decode(t)
    return t


def relay_nominated_first(a: IceSession) -> tuple[CandidatePair, Transmit]:
    """The relayed pair becomes valid and is nominated while the direct pair's check is unanswered."""
    sent = checks(a, 0.0)
    answer(a, sent[B_RELAY_ADDR], 0.1)
    relay = pair_to(a, B_RELAY_ADDR)
    assert a.nominate(relay)
    answer(a, nominating_check(a, 0.2), 0.3)
    assert relay.nominated
    return relay, sent[B_ADDR]


def test_nomination_carries_a_value_only_when_both_sides_announce_renomination() -> None:
    for remote, expected in ((B_RENOM, 1), (B_PARAMS, None)):
        a = controlling(remote)
        answer(a, checks(a, 0.0)[B_ADDR], 0.1)
        assert a.nominate(pair_to(a, B_ADDR))
        message = decode(nominating_check(a, 0.2))
        assert message.get(Attr.NOMINATION) == expected
        assert a.renomination is (expected is not None)


def test_controlling_side_moves_to_a_direct_pair_after_the_relayed_one_without_a_restart() -> None:
    a = controlling()
    relay, direct_check = relay_nominated_first(a)
    assert [e for e in drain(a) if isinstance(e, PairNominated)] == [PairNominated(relay)]
    answer(a, direct_check, 0.4)  # the direct pair becomes valid after nomination
    direct = pair_to(a, B_ADDR)
    assert a.nominate(direct)
    t = nominating_check(a, 0.5)
    assert decode(t).get(Attr.NOMINATION) == 2  # higher than the first nomination's 1
    drain(a)
    answer(a, t, 0.6)
    assert [e for e in drain(a) if isinstance(e, PairNominated)] == [PairNominated(direct, relay)]
    assert direct.nominated and not relay.nominated
    assert a.nominated_pairs == [direct]
    assert a.local_parameters.ufrag == A_RENOM.ufrag  # the same generation


def test_without_renomination_a_concluded_nomination_is_final() -> None:
    a = controlling(B_PARAMS)
    relay, direct_check = relay_nominated_first(a)
    answer(a, direct_check, 0.4)
    direct = pair_to(a, B_ADDR)
    assert not a.nominate(direct)  # RFC 8445 8.1.1
    assert a.next_check(0.5) is None  # and ordinary checks stopped (8.1.2)
    assert relay.nominated and not direct.nominated


def test_checks_go_on_after_nomination_when_renomination_is_negotiated() -> None:
    """The pairs a later nomination may move to must become valid: a trickled candidate is still checked."""
    for remote, checked in ((B_RENOM, True), (B_PARAMS, False)):
        a = controlling(remote)
        relay_nominated_first(a)
        a.add_remote_candidate(cand("10.0.0.7", 7000))
        t = a.next_check(1.0)
        assert (t is not None and t.remote == ("10.0.0.7", 7000)) is checked


def test_a_late_answer_to_an_older_nomination_does_not_undo_a_newer_one() -> None:
    a = controlling()
    sent = checks(a, 0.0)
    answer(a, sent[B_RELAY_ADDR], 0.1)
    answer(a, sent[B_ADDR], 0.1)
    relay, direct = pair_to(a, B_RELAY_ADDR), pair_to(a, B_ADDR)
    assert a.nominate(relay)
    first = nominating_check(a, 0.2)
    assert a.nominate(direct)
    second = nominating_check(a, 0.25)
    assert [decode(first).get(Attr.NOMINATION), decode(second).get(Attr.NOMINATION)] == [1, 2]
    drain(a)
    answer(a, second, 0.3)
    answer(a, first, 0.35)  # value 1 answered after value 2 concluded: stale
    assert [e for e in drain(a) if isinstance(e, PairNominated)] == [PairNominated(direct)]
    assert direct.nominated and not relay.nominated


# ---- the controlled side (B, host 10.0.0.2; A has two host candidates) ----


def controlled(local: IceParameters = B_RENOM, remote: IceParameters = A_RENOM) -> IceSession:
    b = session(local, controlling=False, tie_breaker=B_TB, prefix=0xB0)
    b.add_local_candidate(B_HOST, B_HOST)
    b.set_remote_parameters(remote)
    b.add_remote_candidate(A_HOST)
    b.add_remote_candidate(A_OTHER)
    sent: dict[tuple[str, int], Transmit] = {}
    while (t := b.next_check(0.0)) is not None:
        sent[t.remote] = t
    for remote_address, t in sent.items():
        reply = response_to(t, B_ADDR, key=A_PARAMS.pwd.encode())
        feed(b, reply, base=B_HOST, remote=remote_address, now=0.1)
    assert len(b.valid_pairs) == 2
    drain(b)
    return b


def nominate_b(b: IceSession, source: tuple[str, int], value: int | None, *, use_candidate: bool = True) -> list[Any]:
    """A's check from `source` with USE-CANDIDATE and/or NOMINATION=value; returns B's PairNominated events."""
    extra: list[tuple[Attr | int, Any]] = [] if value is None else [(Attr.NOMINATION, value)]
    check = request(
        username="bUfr:aUfr",
        key=B_PARAMS.pwd.encode(),
        controlling=A_TB,
        controlled=None,
        use_candidate=use_candidate,
        extra=extra,
        tid=bytes([value or 0]) * 12,
    )
    assert feed(b, check, base=B_HOST, remote=source, now=1.0) is not None
    return [e for e in drain(b) if isinstance(e, PairNominated)]


def test_controlled_side_follows_the_highest_nomination_value() -> None:
    b = controlled()
    first, other = pair_to(b, A_ADDR), pair_to(b, A_OTHER_ADDR)
    assert nominate_b(b, A_ADDR, 2) == [PairNominated(first)]
    assert nominate_b(b, A_OTHER_ADDR, 1) == []  # lower than 2: late, ignored
    assert nominate_b(b, A_OTHER_ADDR, 2) == []  # equal, on another pair: ignored
    assert nominate_b(b, A_ADDR, 2) == []  # the same nomination retransmitted: nothing new
    assert nominate_b(b, A_OTHER_ADDR, 3) == [PairNominated(other, first)]
    assert other.nominated and not first.nominated
    assert nominate_b(b, A_ADDR, 1) == []  # it does not move back


def test_nomination_attribute_is_ignored_without_the_option_on_both_sides() -> None:
    for local, remote in ((B_PARAMS, A_RENOM), (B_RENOM, A_PARAMS)):
        b = controlled(local, remote)
        first = pair_to(b, A_ADDR)
        assert nominate_b(b, A_ADDR, 5, use_candidate=False) == []  # NOMINATION alone: not a nomination
        assert nominate_b(b, A_ADDR, 5) == [PairNominated(first)]  # USE-CANDIDATE: RFC 8445 7.3.1.5


def test_nomination_without_use_candidate_counts_when_negotiated() -> None:
    """libwebrtc sends NOMINATION without USE-CANDIDATE when it renominates."""
    b = controlled()
    assert nominate_b(b, A_ADDR, 1, use_candidate=False) == [PairNominated(pair_to(b, A_ADDR))]


def test_use_candidate_alone_counts_below_every_nomination_value() -> None:
    """A check with USE-CANDIDATE and no NOMINATION is a regular nomination while nothing was accepted
    (an offerer that has not seen the answer yet); after that only a NOMINATION value moves the pair."""
    b = controlled()
    first, other = pair_to(b, A_ADDR), pair_to(b, A_OTHER_ADDR)
    assert nominate_b(b, A_ADDR, None) == [PairNominated(first)]
    assert nominate_b(b, A_OTHER_ADDR, None) == []
    assert nominate_b(b, A_OTHER_ADDR, 1) == [PairNominated(other, first)]


def test_a_pending_nomination_superseded_before_its_pair_is_valid_does_not_conclude() -> None:
    b = session(B_RENOM, controlling=False, tie_breaker=B_TB, prefix=0xB0)
    b.add_local_candidate(B_HOST, B_HOST)
    b.set_remote_parameters(A_RENOM)
    b.add_remote_candidate(A_HOST)
    t = b.next_check(0.0)
    assert t is not None
    feed(b, response_to(t, B_ADDR, key=A_PARAMS.pwd.encode()), base=B_HOST, remote=A_ADDR, now=0.1)
    first = pair_to(b, A_ADDR)
    drain(b)
    # nomination 2 from an address not checked yet (a peer-reflexive pair, valid only after its check)
    assert nominate_b(b, A_OTHER_ADDR, 2) == []
    assert nominate_b(b, A_ADDR, 3) == [PairNominated(first)]
    triggered = b.next_check(1.1)
    assert triggered is not None and triggered.remote == A_OTHER_ADDR
    feed(b, response_to(triggered, B_ADDR, key=A_PARAMS.pwd.encode()), base=B_HOST, remote=A_OTHER_ADDR, now=1.2)
    assert [e for e in drain(b) if isinstance(e, PairNominated)] == []
    assert first.nominated and b.nominated_pairs == [first]


def test_a_lite_agent_follows_the_highest_value_not_the_priority() -> None:
    """With renomination a lite agent (RFC 8445 2.5) takes the highest NOMINATION value, where otherwise
    it keeps the highest-priority nominated pair."""
    for local, moved in ((B_RENOM, True), (B_PARAMS, False)):
        b = LiteSession(
            local=IceParameters(local.ufrag, local.pwd, lite=True, options=local.options),
            tie_breaker=B_TB,
            config=IceConfig(),
            random_bytes=tids(0xB0),
        )
        b.add_local_candidate(B_HOST, B_HOST)
        b.set_remote_parameters(A_RENOM)
        b.add_remote_candidate(A_HOST)
        b.add_remote_candidate(cand("10.0.0.5", 1500, priority=100))  # lower priority than A_HOST
        nominate_b(b, A_ADDR, 1)
        events = nominate_b(b, A_OTHER_ADDR, 2)
        assert bool(events) is moved
        assert b.nominated_pairs[0].remote_address == (A_OTHER_ADDR if moved else A_ADDR)


# ---- the controlling side's policy (IceGeneration: its nomination controller) ----


def generation(remote: IceParameters = B_RENOM, **config: Any) -> IceGeneration:
    gen = IceGeneration(
        local=A_PARAMS,
        controlling=True,
        tie_breaker=A_TB,
        config=IceConfig(renomination=True, global_pacing=False, rto=10.0, **config),  # no retransmission in the way
        random_bytes=tids(0xA0),
    )
    gen.add_local_candidate(A_HOST, A_HOST)
    gen.set_remote_parameters(remote)
    gen.add_remote_candidate(B_HOST)
    gen.add_remote_candidate(B_RELAY)
    return gen


def run_until(gen: IceGeneration, now: float) -> list[Transmit]:
    """What the Trio layer does at `now`: handle the timers, then send."""
    gen.handle_timer(now)
    return gen.datagrams_to_send(now)


def receive(gen: IceGeneration, data: bytes, remote: tuple[str, int], now: float) -> None:
    gen.receive(Message.decode(data), data, remote, A_HOST, now)


def events_of(gen: IceGeneration) -> list[Any]:
    out = []
    while (e := gen.next_event()) is not None:
        out.append(e)
    return out


def first_checks(gen: IceGeneration) -> dict[tuple[str, int], Transmit]:
    sent: dict[tuple[str, int], Transmit] = {}
    for now in (0.0, 0.05):
        for t in run_until(gen, now):
            sent[t.remote] = t
    assert set(sent) == {B_ADDR, B_RELAY_ADDR}
    return sent


def nominations(out: list[Transmit]) -> list[tuple[tuple[str, int], int | None]]:
    return [(t.remote, decode(t).get(Attr.NOMINATION)) for t in out if Attr.USE_CANDIDATE in decode(t)]


def relay_nominated_gen(gen: IceGeneration) -> Transmit:
    """The relayed pair is valid first and nominated after nomination_delay; returns the direct check."""
    sent = first_checks(gen)
    receive(gen, response_to(sent[B_RELAY_ADDR], A_ADDR), B_RELAY_ADDR, 0.1)
    deadline = gen.get_timer()
    assert deadline == 0.1 + 0.5  # a better pair is still being checked: nomination_delay
    out = run_until(gen, 0.6)
    assert nominations(out) == [(B_RELAY_ADDR, 1)]
    receive(gen, response_to(out[-1], A_ADDR), B_RELAY_ADDR, 0.7)
    assert gen.nominated is not None and gen.nominated.remote_address == B_RELAY_ADDR
    return sent[B_ADDR]


def test_the_agent_announces_renomination_when_configured() -> None:
    assert RENOMINATION in generation().session.local_parameters.options
    plain = IceGeneration(local=A_PARAMS, controlling=True, tie_breaker=A_TB, config=IceConfig())
    assert plain.session.local_parameters.options == ()


def test_policy_renominates_a_higher_priority_pair_that_becomes_valid_after_nomination() -> None:
    gen = generation()
    direct_check = relay_nominated_gen(gen)
    relay = gen.nominated
    events_of(gen)
    receive(gen, response_to(direct_check, A_ADDR), B_ADDR, 1.0)  # the direct pair is valid at last
    assert gen.get_timer() == float("-inf")  # renominate now
    out = run_until(gen, 1.0)
    assert nominations(out) == [(B_ADDR, 2)]
    receive(gen, response_to(out[-1], A_ADDR), B_ADDR, 1.1)
    (event,) = [e for e in events_of(gen) if isinstance(e, PairNominated)]
    assert event.previous is relay and event.pair.remote_address == B_ADDR
    assert gen.nominated is event.pair


def test_policy_does_not_renominate_without_the_option() -> None:
    gen = generation(B_PARAMS)
    direct_check = relay_nominated_gen_plain(gen)
    receive(gen, response_to(direct_check, A_ADDR), B_ADDR, 1.0)
    assert nominations(run_until(gen, 1.0)) == []
    assert gen.nominated is not None and gen.nominated.remote_address == B_RELAY_ADDR


def relay_nominated_gen_plain(gen: IceGeneration) -> Transmit:
    sent = first_checks(gen)
    receive(gen, response_to(sent[B_RELAY_ADDR], A_ADDR), B_RELAY_ADDR, 0.1)
    out = run_until(gen, 0.6)
    assert nominations(out) == [(B_RELAY_ADDR, None)]
    receive(gen, response_to(out[-1], A_ADDR), B_RELAY_ADDR, 0.7)
    return sent[B_ADDR]


def test_policy_renominates_the_next_best_pair_when_the_nominated_route_fails() -> None:
    gen = generation()
    direct_check = relay_nominated_gen(gen)
    receive(gen, response_to(direct_check, A_ADDR), B_ADDR, 1.0)
    out = run_until(gen, 1.0)
    receive(gen, response_to(out[-1], A_ADDR), B_ADDR, 1.1)
    direct = gen.nominated
    assert direct is not None and direct.remote_address == B_ADDR
    gen.route_failed(A_HOST, B_ADDR)  # the route under the nominated pair is gone
    out = run_until(gen, 2.0)
    assert nominations(out) == [(B_RELAY_ADDR, 3)]
    receive(gen, response_to(out[-1], A_ADDR), B_RELAY_ADDR, 2.1)
    assert gen.nominated is not None and gen.nominated.remote_address == B_RELAY_ADDR
    assert direct.state is PairState.FAILED
    assert nominations(run_until(gen, 3.0)) == []  # it does not move back to the failed pair


def test_an_explicit_renomination_sticks_until_a_better_pair_becomes_valid() -> None:
    gen = generation()
    sent = first_checks(gen)
    receive(gen, response_to(sent[B_ADDR], A_ADDR), B_ADDR, 0.1)
    receive(gen, response_to(sent[B_RELAY_ADDR], A_ADDR), B_RELAY_ADDR, 0.1)
    out = run_until(gen, 0.1)  # nothing better pending: nominates the direct pair at once
    assert nominations(out) == [(B_ADDR, 1)]
    receive(gen, response_to(out[-1], A_ADDR), B_ADDR, 0.2)
    relay = next(p for p in gen.session.valid_pairs if p.remote_address == B_RELAY_ADDR)
    assert gen.renominate(relay)  # the application's choice (the roaming work's hook)
    out = run_until(gen, 0.3)
    assert nominations(out) == [(B_RELAY_ADDR, 2)]
    receive(gen, response_to(out[-1], A_ADDR), B_RELAY_ADDR, 0.4)
    assert gen.nominated is relay
    assert nominations(run_until(gen, 1.0)) == []  # the policy does not undo it


def test_renominate_is_refused_without_the_option() -> None:
    gen = generation(B_PARAMS)
    direct_check = relay_nominated_gen_plain(gen)
    receive(gen, response_to(direct_check, A_ADDR), B_ADDR, 1.0)
    direct = next(p for p in gen.session.valid_pairs if p.remote_address == B_ADDR)
    assert not gen.renomination and not gen.renominate(direct)
    assert nominations(run_until(gen, 1.1)) == []


def both_valid_direct_nominated(gen: IceGeneration) -> CandidatePair:
    """Both pairs valid at 0.1, the direct one nominated at once and concluded at 0.2; returns the relayed."""
    sent = first_checks(gen)
    receive(gen, response_to(sent[B_ADDR], A_ADDR), B_ADDR, 0.1)
    receive(gen, response_to(sent[B_RELAY_ADDR], A_ADDR), B_RELAY_ADDR, 0.1)
    out = run_until(gen, 0.1)
    receive(gen, response_to(out[-1], A_ADDR), B_ADDR, 0.2)
    assert gen.nominated is not None and gen.nominated.remote_address == B_ADDR
    return next(p for p in gen.session.valid_pairs if p.remote_address == B_RELAY_ADDR)


def consent_checks_until(gen: IceGeneration, end: float, *, answer: bool) -> list[float]:
    """Drive the generation's timers up to `end`; the times of the consent checks it started on the relayed
    pair (retransmissions not counted; answered when `answer`)."""
    times = []
    seen = set()
    while (at := gen.get_timer()) <= end:
        for t in run_until(gen, at):
            message = decode(t)
            if t.remote == B_RELAY_ADDR and message.message_class.name == "REQUEST":
                assert Attr.USE_CANDIDATE not in message
                if message.transaction_id in seen:
                    continue
                seen.add(message.transaction_id)
                times.append(at)
                if answer:
                    receive(gen, response_to(t, A_ADDR), B_RELAY_ADDR, at + 0.05)
    return times


def test_other_valid_pairs_keep_consent_while_renomination_is_negotiated() -> None:
    """draft-thatcher-tsvwg-renomination 3: a pair kept for a later nomination needs consent (RFC 7675), so
    a move after the selected route is lost goes to a pair known to work."""
    gen = generation(consent_interval=5.0)
    relay = both_valid_direct_nominated(gen)
    times = consent_checks_until(gen, 60.0, answer=True)
    assert len(times) >= 10 and all(4.0 <= b - a <= 6.0 for a, b in itertools.pairwise(times))  # 0.8-1.2 x 5 s
    assert relay.last_consent is not None and relay.last_consent > 55.0


def test_an_alternate_whose_consent_expired_is_left_alone() -> None:
    gen = generation(consent_interval=5.0, consent_timeout=30.0)
    both_valid_direct_nominated(gen)
    times = consent_checks_until(gen, 120.0, answer=False)
    assert times and max(times) <= 0.1 + 30.0 + 6.0  # none once its last answer (0.1) is 30 s old


def test_no_consent_on_other_pairs_without_renomination() -> None:
    gen = generation(B_PARAMS, consent_interval=5.0)
    both_valid_direct_nominated(gen)
    assert consent_checks_until(gen, 60.0, answer=True) == []


def test_a_lost_renomination_of_a_dead_pair_is_not_repeated_forever() -> None:
    """A higher-priority pair valid after nomination whose path then dies: the renomination's check gets no
    answer at all. The nominated pair still works, so nothing is stranded: the dead pair fails (RFC 8445
    7.2.5.2.1's timeout) and the controller stops renominating it, instead of one more 39.5 s transaction
    to it every 39.5 s for as long as the session lives."""
    gen = IceGeneration(
        local=A_PARAMS,
        controlling=True,
        tie_breaker=A_TB,
        config=IceConfig(renomination=True, global_pacing=False),
        random_bytes=tids(0xA0),
    )
    gen.add_local_candidate(A_HOST, A_HOST)
    gen.set_remote_parameters(B_RENOM)
    gen.add_remote_candidate(B_HOST)
    gen.add_remote_candidate(B_RELAY)
    sent = first_checks(gen)
    receive(gen, response_to(sent[B_RELAY_ADDR], A_ADDR), B_RELAY_ADDR, 0.1)
    (nominating,) = [t for t in run_until(gen, 0.6) if Attr.USE_CANDIDATE in decode(t)]
    receive(gen, response_to(nominating, A_ADDR), B_RELAY_ADDR, 0.7)
    relay = gen.nominated
    assert relay is not None and relay.remote_address == B_RELAY_ADDR
    receive(gen, response_to(sent[B_ADDR], A_ADDR), B_ADDR, 1.0)  # valid, then its path dies
    transactions = set()
    now = 1.0
    while now < 400.0:
        for t in run_until(gen, now):
            message = decode(t)
            if Attr.USE_CANDIDATE in message and t.remote == B_ADDR:
                transactions.add(message.transaction_id)
            elif t.remote == B_RELAY_ADDR and Attr.USE_CANDIDATE not in message:
                receive(gen, response_to(t, A_ADDR), B_RELAY_ADDR, now)  # the relay answers its consent
        now = max(now + 0.05, min(gen.get_timer(), now + 5.0))
    assert len(transactions) == 1
    assert gen.nominated is relay
    direct = next(p for p in gen.session.valid_pairs if p.remote_address == B_ADDR)
    assert direct.state is PairState.FAILED


def _consent_checks_across_a_move(switch_at: float, seed: int) -> dict[tuple[str, int], list[float]]:
    """A controlling generation with the direct pair nominated and the relay pair kept fresh as an alternate,
    driven with a Supervisor for 60 s, the peer answering every check 50 ms later; at `switch_at` the relay pair
    is renominated. Per remote address: the times of its checks, a nominating check as a negative time."""
    import random

    from iceagent.ice.supervisor import SendConsent, Supervisor
    from iceagent.states import IceState

    gen = generation(consent_interval=5.0)
    relay = both_valid_direct_nominated(gen)
    sup = Supervisor(IceConfig(consent_interval=5.0), auto_restart=False, rng=random.Random(seed))
    pending: list[tuple[float, Transmit]] = []
    sent: dict[tuple[str, int], list[float]] = {B_ADDR: [], B_RELAY_ADDR: []}
    now, selected, selected_at, switched, poll_at = 0.2, gen.nominated, 0.2, False, 0.2
    while now < 60:
        for at, t in sorted([p for p in pending if p[0] <= now], key=lambda p: p[0]):
            receive(gen, response_to(t, A_ADDR), t.remote, at)
            pending.remove((at, t))
        while gen.next_event() is not None:
            pass
        if gen.nominated is not selected:
            selected, selected_at = gen.nominated, now
        if not switched and now >= switch_at:
            switched = True
            assert gen.renominate(relay)
        actions, poll_at = sup.poll(now, state=IceState.COMPLETED, pair=selected, selected_at=selected_at)
        for action in actions:
            if isinstance(action, SendConsent):
                gen.consent_check(action.pair, now)
        for t in run_until(gen, now):
            message = decode(t)
            if message.message_class.name == "REQUEST" and all(abs(x) != now for x in sent[t.remote]):
                sent[t.remote].append(-now if Attr.USE_CANDIDATE in message else now)
                pending.append((now + 0.05, t))
        timers = [gen.get_timer(), poll_at, *(at for at, _ in pending)] + ([] if switched else [switch_at])
        now = max(now + 1e-6, min(t for t in timers if t is not None))
    return sent


def test_consent_checks_stay_0_8_to_1_2_intervals_apart_across_a_renomination() -> None:
    """RFC 7675 5.1: each pair's consent checks 4-6 s apart (0.8-1.2 x 5 s), also when renomination moves the
    selected pair: the deselected pair is not checked again at the alternates' next refresh (that came 3.85 s
    after its last check before), and the newly selected one goes on from its last answer (an interval from the
    move itself made gaps of up to 8.1 s). A nominating check counts as a check (it refreshes consent too)."""
    for seed in range(8):
        for switch_at in (20.0, 21.3, 22.7, 24.1):
            for remote, times in _consent_checks_across_a_move(switch_at, seed).items():
                gaps = [b - a for a, b in itertools.pairwise(times) if a > 0 and b > 0]
                assert len(gaps) >= 8, (seed, switch_at, remote, times)
                assert all(4.0 - 1e-6 <= g <= 6.0 + 1e-6 for g in gaps), (seed, switch_at, remote, times)
