"""Checks under loss (issue 16 item 4): an unanswered check gets company on its pair (RFC 8489 6.2: several
transactions outstanding to one server, new ones paced by RFC 8445 14.2's Ta), sans-IO with literal times."""

from __future__ import annotations

from test_session import A_HOST, B_ADDR, B_PARAMS, a_with_b, cand, decode, drain, feed, request, response_to, session

from iceagent.ice._requests import REPEATS_HEARD, REPEATS_PER_PAIR, max_in_flight
from iceagent.ice.pair import PairState
from iceagent.ice.session import ChecklistFailed, IceSession, PairValid, Transmit


def started(a: IceSession, now: float, log: list[tuple[float, bytes]]) -> list[Transmit]:
    """Everything A sends at `now`: retransmissions, then every new check (Ta is below the step here)."""
    out = a.handle_timer(now) if (timer := a.get_timer()) is not None and timer <= now else []
    while (t := a.next_check(now)) is not None:
        log.append((now, decode(t).transaction_id))
        out.append(t)
    return out


def test_an_unanswered_check_gets_company_at_each_retransmission_of_the_first() -> None:
    """Each retransmission of the pair's first check from its second on starts one more transaction, so the new
    ones follow RFC 8489's backoff (1.5, 3.5 s) up to REPEATS_PER_PAIR; when the first times out at 39.5 s the
    pair fails and the others stop (cancelled, 7.3.1.4), so the check list fails then, as with one."""
    a = a_with_b()
    a.local_gathering_done()
    a.add_remote_candidate(None)
    log: list[tuple[float, bytes]] = []
    sent = len(started(a, 0.0, log))
    failed_at = None
    while (timer := a.get_timer()) is not None:
        sent += len(started(a, timer, log))
        if ChecklistFailed() in drain(a):
            failed_at = timer
    assert [t for t, _ in log] == [0.0, 1.5, 3.5]
    assert len({tid for _, tid in log}) == REPEATS_PER_PAIR == 3
    assert failed_at == 39.5
    (pair,) = a.pairs
    assert pair.state is PairState.FAILED
    # the Rc = 7 transmissions of each (the last ones at 31.5, 33 and 35 s), nothing after the failure
    assert sent == pair.requests_sent == 3 * 7
    assert a.next_check(40.0) is None


def test_a_pair_the_peer_checked_keeps_up_to_repeats_heard_checks_live() -> None:
    """Once one of the peer's checks arrived on the pair (its path carries traffic: losses, not a dead address),
    the second retransmission of the pair's newest live check queues one more, up to REPEATS_HEARD live ones
    (RFC 8489 6.2's ten): a new transaction every 1.5 s, 28 transmissions in the first 10 s (one of them the
    cancelled first check) where a pair not heard from makes 14 (and 3 transactions in all)."""
    a = a_with_b()
    a.local_gathering_done()
    a.add_remote_candidate(None)
    log: list[tuple[float, bytes]] = []
    sent = len(started(a, 0.0, log))
    # B's check arrives at 0.1 s: A's first check is cancelled (7.3.1.4) and a triggered one starts
    assert feed(a, request(), base=A_HOST, remote=B_ADDR, now=0.1) is not None
    sent += len(started(a, 0.1, log))
    while (timer := a.get_timer()) is not None and timer <= 10.0:
        sent += len(started(a, timer, log))
    assert [t for t, _ in log] == [0.0, 0.1, 1.6, 3.1, 4.6, 6.1, 7.6, 9.1]
    (pair,) = a.pairs
    assert sent == pair.requests_sent == 28
    live_most = 0
    while (timer := a.get_timer()) is not None and timer <= 30.0:
        started(a, timer, log)
        live_most = max(live_most, sum(r.is_plain_check for r in a._requests._by_id.values()))
    assert [t for t, _ in log][8:] == [10.6, 12.1, 13.6]  # then REPEATS_HEARD are live: no more
    assert live_most == REPEATS_HEARD == 10  # the cancelled first one no longer counts


def test_repeats_on_heard_pairs_stop_at_the_sessions_bound_on_requests_in_flight() -> None:
    """100 pairs, each reached by one authenticated check of the peer, which then goes silent: RFC 8445 14.3
    stretches each transaction's life (RTO = Ta x busy pairs) and repeats are live (never evicted), so ten per
    pair would hold 1000; the session stays within `max_in_flight` (791 at Ta = 50 ms, docs/security.md)."""
    a = session()
    a.add_local_candidate(A_HOST, A_HOST)
    a.set_remote_parameters(B_PARAMS)
    addresses = [(f"10.0.{i // 200}.{i % 200 + 1}", 2000) for i in range(100)]
    for host, port in addresses:
        a.add_remote_candidate(cand(host, port))
    a.local_gathering_done()
    a.add_remote_candidate(None)
    for i, address in enumerate(addresses):  # the peer's one check from each of its addresses
        feed(a, request(tid=b"req-%08d" % i), base=A_HOST, remote=address, now=0.0)
    most = 0
    for step in range(4000):  # 200 s, a step per Ta
        now = step * 0.05
        if (timer := a.get_timer()) is not None and timer <= now:
            a.handle_timer(now)
        a.next_check(now)
        most = max(most, len(a._requests._by_id))
    assert most == max_in_flight(a.config) == 791


def test_an_answer_to_any_of_them_succeeds_the_pair_and_stops_the_others() -> None:
    a = a_with_b()
    log: list[tuple[float, bytes]] = []
    assert len(started(a, 0.0, log)) == 1
    assert len(started(a, 0.5, log)) == 1 and len(log) == 1  # the first retransmission alone
    second = started(a, 1.5, log)
    assert len(second) == 2 and len(log) == 2  # the second retransmission and a new transaction
    new = next(t for t in second if decode(t).transaction_id == log[1][1])
    feed(a, response_to(new, ("10.0.0.1", 1000)), base=A_HOST, remote=B_ADDR, now=1.55)
    (pair,) = a.pairs
    assert pair.state is PairState.SUCCEEDED
    assert PairValid(pair) in drain(a)
    after = []
    while (timer := a.get_timer()) is not None and timer < 60:
        after += started(a, timer, log)
    assert after == [] and len(log) == 2  # no retransmission, no new transaction


def test_a_pair_dropped_from_the_session_is_not_repeated() -> None:
    """A pair queued for a repeat that leaves the session (the max_pairs cap, RFC 8445 6.1.2.5) gets no check."""
    a = a_with_b()
    started(a, 0.0, [])
    (pair,) = a.pairs
    requests = a._requests
    requests.handle_timer(0.5)
    requests.handle_timer(1.5)  # the second retransmission queues a repeat
    assert requests.has_repeat
    requests.drop_pair(pair)
    assert not requests.has_repeat and requests.pop_repeat() is None
