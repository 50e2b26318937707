"""What one connectivity check costs the sans-IO core in objects (issue 14/15: 1000 agent pairs in one
process): a check in flight is one object, its request and STUN client transaction together (RFC 8445
7.2.2, RFC 8489 6.2.1), and the requests-in-flight bound (docs/security.md) follows each session's config.
Counted, never timed; no sockets, no clock."""

from __future__ import annotations

import gc

from test_session import A_PARAMS, A_TB, B_PARAMS, B_TB, HOST, cand, tids

from iceagent.config import IceConfig
from iceagent.ice._requests import Request, Requests, max_in_flight
from iceagent.ice.events import Event, PairStateChanged
from iceagent.ice.generation import IceGeneration
from iceagent.ice.pair import CandidatePair, PairState
from iceagent.stun.message import Message
from iceagent.stun.transaction import Transaction, TransactionState

CONFIG = IceConfig(global_pacing=False)


def _checking() -> tuple[IceGeneration, IceGeneration]:
    """A (controlling) and B, each with one host candidate and the other's parameters and candidate."""
    a = IceGeneration(local=A_PARAMS, controlling=True, tie_breaker=A_TB, config=CONFIG, random_bytes=tids(0xA0))
    b = IceGeneration(local=B_PARAMS, controlling=False, tie_breaker=B_TB, config=CONFIG, random_bytes=tids(0xB0))
    ca, cb = cand("10.0.0.1", 1000), cand("10.0.0.2", 2000)
    a.add_local_candidate(ca, ca)
    b.add_local_candidate(cb, cb)
    a.set_remote_parameters(B_PARAMS)
    b.set_remote_parameters(A_PARAMS)
    a.add_remote_candidate(cb)
    b.add_remote_candidate(ca)
    return a, b


def test_a_check_in_flight_is_one_object_its_request_and_transaction() -> None:
    """The request a check is judged against and its retransmission schedule are one object: what the
    session keeps per check in flight is one GC-tracked object, not a request holding a transaction."""
    a, _ = _checking()
    sent = a.datagrams_to_send(0.0)
    assert len(sent) == 1
    (request,) = a.session._requests._by_id.values()
    assert isinstance(request, Transaction)
    assert request.transaction is request
    assert request.pair is sent[0].pair and request.transmissions == 1
    assert not any(isinstance(o, Transaction) for o in gc.get_referents(request))
    # the schedule is RFC 8489 6.2.1's: the same bytes again after one RTO (500 ms), counted on the pair
    at = a.get_timer()
    assert at == 0.5
    a.handle_timer(at)
    again = a.datagrams_to_send(at)
    assert [t.data for t in again] == [sent[0].data]
    assert request.transmissions == 2 and request.pair.retransmissions_sent == 1


def test_an_answered_check_leaves_nothing_in_flight() -> None:
    """The answer ends the transaction (DONE, its RTT taken: Karn, RFC 6298 3) and the table forgets it."""
    a, b = _checking()
    (t,) = a.datagrams_to_send(0.0)
    (request,) = a.session._requests._by_id.values()
    b.receive(Message.decode(t.data), t.data, t.base.addr, cand("10.0.0.2", 2000), 0.1)
    answer = b.datagrams_to_send(0.1)[0]
    a.receive(Message.decode(answer.data), answer.data, answer.base.addr, cand("10.0.0.1", 1000), 0.2)
    assert request.state is TransactionState.DONE
    assert len(a.session._requests) == 0
    assert request.pair.rtt is not None and abs(request.pair.rtt - 0.2) < 1e-9


def test_request_and_transaction_take_positional_arguments() -> None:
    """A check is built without keyword matching: Request(pair, key, priority, controlling, use_candidate,
    consent, ...) and Transaction(request, id, now, rto, rc, rm, reliable, reliable_timeout)."""
    pair = CandidatePair(local=cand("10.0.0.1", 1), remote=cand("10.0.0.2", 2))
    request = Request(pair, b"key", 7, True, False, False)
    assert (request.pair, request.key, request.priority, request.controlling) == (pair, b"key", 7, True)
    assert request.nominating is None and request.nomination is None and not request.cancelled
    tx = Transaction(b"data", b"t" * 12, 0.0, 0.1, 3, 4)  # rto 100 ms, Rc 3, Rm 4
    assert tx.get_timer() == 0.1
    assert tx.timeout_at == 0.1 * 3 + 4 * 0.1


def test_the_in_flight_bound_follows_each_sessions_config() -> None:
    """At `max_in_flight(config)` requests the oldest cancelled one is forgotten (docs/security.md); two
    sessions with different configs, used in turn, each keep their own bound."""
    small = IceConfig(rto=0.5, rc=1, rm=1, ta=0.5)  # a transaction lives 0.5 s: at most 2 in flight
    large = IceConfig()
    assert max_in_flight(small) == 2 and max_in_flight(large) > 100
    pair = CandidatePair(local=cand("10.0.0.1", 1), remote=cand("10.0.0.2", 2))
    tight, roomy = Requests(), Requests()
    for i in range(4):
        for table, config in ((tight, small), (roomy, large)):
            table.start(b"x", bytes([i]) * 12, float(i), config, Request(pair, b"k", 1, True, False, False))
            table.cancel_checks(pair)  # 7.3.1.4: each only waits for a late answer now
    assert len(tight) == 2 and tight.get(bytes([3]) * 12) is not None and tight.get(bytes([0]) * 12) is None
    assert len(roomy) == 4


def _connect(a: IceGeneration, b: IceGeneration, now: float = 0.0) -> tuple[list[Event], float]:
    """Hand datagrams between A (10.0.0.1:1000) and B (10.0.0.2:2000) until both nominated (datagrams to any
    other address are lost); returns A's events and the time."""
    bases = {("10.0.0.1", 1000): (a, cand("10.0.0.1", 1000)), ("10.0.0.2", 2000): (b, cand("10.0.0.2", 2000))}
    events: list[Event] = []
    for _ in range(200):
        moved = False
        for gen in (a, b):
            if gen.get_timer() <= now:
                gen.handle_timer(now)
            for t in gen.datagrams_to_send(now):
                if t.remote in bases:
                    moved = True
                    other, base = bases[t.remote]
                    other.receive(Message.decode(t.data), t.data, t.base.addr, base, now)
        events.extend(a.take_events())
        b.take_events()
        if not moved:
            if a.nominated is not None and b.nominated is not None:
                break
            now = max(now, min(a.get_timer(), b.get_timer()))
    return events, now


def test_pair_state_events_off_leaves_only_the_failures() -> None:
    """IceGeneration(pair_state_events=False): the connect makes the same events but PairStateChanged,
    except a pair's change to FAILED (its check timed out, RFC 8489 6.2.1); switched back on, every change
    is an event again."""
    a, b = _checking()
    loud, _ = _connect(a, b)
    assert {type(e).__name__ for e in loud} >= {"PairStateChanged", "PairValid", "PairNominated"}

    a, b = _checking()
    a = IceGeneration(
        local=A_PARAMS,
        controlling=True,
        tie_breaker=A_TB,
        config=CONFIG,
        random_bytes=tids(0xA0),
        pair_state_events=False,
    )
    assert not a.pair_state_events
    ca, cb = cand("10.0.0.1", 1000), cand("10.0.0.2", 2000)
    a.add_local_candidate(ca, ca)
    a.set_remote_parameters(B_PARAMS)
    a.add_remote_candidate(cb)
    a.add_remote_candidate(cand("10.0.0.9", 9000, foundation="lost", priority=HOST + 1))  # checked first; no answer
    quiet, now = _connect(a, b)
    assert [type(e).__name__ for e in quiet if not isinstance(e, PairStateChanged)] == [
        type(e).__name__ for e in loud if not isinstance(e, PairStateChanged)
    ]
    assert not [e for e in quiet if isinstance(e, PairStateChanged)]
    lost = next(p for p in a.session.pairs if p.remote.port == 9000)
    assert lost.requests_sent >= 1  # checked first (the best pair) and unanswered
    for _ in range(20):  # its retransmissions, then its transaction times out (39.5 s, RFC 8489 6.2.1)
        if lost.state is PairState.FAILED:
            break
        now = a.get_timer()
        a.handle_timer(now)
        a.datagrams_to_send(now)
    assert lost.state is PairState.FAILED
    failed = [e for e in a.take_events() if isinstance(e, PairStateChanged)]
    assert [(e.pair, e.new) for e in failed] == [(lost, PairState.FAILED)]

    a, b = _checking()
    a.pair_state_events = False
    a.pair_state_events = True  # switched back on before the checks
    again, _ = _connect(a, b)
    assert [(e.old, e.new) for e in again if isinstance(e, PairStateChanged)] == [
        (e.old, e.new) for e in loud if isinstance(e, PairStateChanged)
    ]
