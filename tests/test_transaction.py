"""STUN client transactions: the RFC 8489 6.2 retransmission schedule with literal times."""

from __future__ import annotations

import pytest

from iceagent.stun.transaction import RtoEstimator, Transaction, TransactionState

REQ = b"request-bytes"
TID = b"0123456789ab"


def run_to_end(tx: Transaction) -> list[tuple[float, bytes | None]]:
    """Call handle_timer at every timer until the transaction is over; record (time, result)."""
    log = []
    while (t := tx.get_timer()) is not None:
        log.append((t, tx.handle_timer(t)))
    return log


def test_default_schedule_over_udp() -> None:
    tx = Transaction(REQ, TID, 0.0)
    assert tx.transmissions == 1 and tx.state is TransactionState.PENDING
    log = run_to_end(tx)
    assert [t for t, data in log if data is not None] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(data == REQ for _, data in log[:-1])
    assert log[-1] == (39.5, None)
    assert tx.timed_out
    assert tx.transmissions == 7
    assert tx.get_timer() is None
    assert tx.finished == 39.5


def test_schedule_starts_at_now() -> None:
    tx = Transaction(REQ, TID, 100.0)
    assert tx.get_timer() == 100.5
    assert tx.timeout_at == 139.5
    log = run_to_end(tx)
    assert [t for t, _ in log] == [100.5, 101.5, 103.5, 107.5, 115.5, 131.5, 139.5]


def test_custom_rto_rc_rm() -> None:
    tx = Transaction(REQ, TID, 0.0, rto=0.1, rc=3, rm=4)
    log = [(round(t, 9), data) for t, data in run_to_end(tx)]
    assert log == [(0.1, REQ), (0.3, REQ), (0.7, None)]
    assert tx.timed_out


def test_rc_one_sends_once_then_waits_rm_rto() -> None:
    tx = Transaction(REQ, TID, 0.0, rto=1.0, rc=1, rm=16)
    assert tx.get_timer() == 16.0
    assert tx.handle_timer(16.0) is None
    assert tx.timed_out


def test_early_timer_call_does_nothing() -> None:
    tx = Transaction(REQ, TID, 0.0)
    assert tx.handle_timer(0.49) is None
    assert tx.transmissions == 1
    assert tx.get_timer() == 0.5
    assert tx.handle_timer(0.5) == REQ
    assert tx.get_timer() == 1.5


def test_late_timer_call_sends_one_copy_and_keeps_the_schedule() -> None:
    tx = Transaction(REQ, TID, 0.0)
    assert tx.handle_timer(2.0) == REQ  # was due at 0.5
    assert tx.get_timer() == 1.5  # already past: the caller calls again
    assert tx.handle_timer(2.0) == REQ
    assert tx.get_timer() == 3.5
    assert tx.transmissions == 3


def test_reliable_sends_once_and_times_out_after_39_5() -> None:
    tx = Transaction(REQ, TID, 10.0, reliable=True)
    assert tx.get_timer() == 49.5
    assert tx.handle_timer(49.0) is None
    assert tx.handle_timer(49.5) is None
    assert tx.timed_out and tx.transmissions == 1


def test_reliable_timeout_configurable() -> None:
    tx = Transaction(REQ, TID, 0.0, reliable=True, reliable_timeout=5.0)
    assert run_to_end(tx) == [(5.0, None)]


def test_response_before_retransmission_gives_rtt() -> None:
    tx = Transaction(REQ, TID, 1.0)
    assert tx.handle_response(1.25) == 0.25
    assert tx.done and tx.get_timer() is None
    assert tx.handle_timer(2.0) is None
    assert tx.finished == 1.25


def test_response_after_retransmission_gives_no_rtt_karn() -> None:
    tx = Transaction(REQ, TID, 0.0)
    assert tx.handle_timer(0.5) == REQ
    assert tx.handle_response(0.6) is None
    assert tx.done


def test_response_after_timeout_is_ignored() -> None:
    tx = Transaction(REQ, TID, 0.0, rc=1, rm=1)
    assert tx.handle_timer(0.5) is None
    assert tx.timed_out
    assert tx.handle_response(0.6) is None
    assert tx.timed_out


def test_second_response_is_ignored() -> None:
    tx = Transaction(REQ, TID, 0.0)
    assert tx.handle_response(0.1) == 0.1
    assert tx.handle_response(0.2) is None


def test_stop_retransmitting_keeps_waiting_until_timeout() -> None:
    tx = Transaction(REQ, TID, 0.0)
    assert tx.handle_timer(0.5) == REQ
    tx.stop_retransmitting()
    assert tx.get_timer() == 39.5
    assert tx.handle_timer(1.5) is None
    assert not tx.timed_out
    assert tx.handle_response(2.0) is None  # retransmitted once: no RTT
    assert tx.done


def test_stop_retransmitting_then_timeout() -> None:
    tx = Transaction(REQ, TID, 0.0)
    tx.stop_retransmitting()
    assert run_to_end(tx) == [(39.5, None)]
    assert tx.timed_out and tx.transmissions == 1


def test_cancel_ends_the_transaction() -> None:
    tx = Transaction(REQ, TID, 0.0)
    tx.cancel(0.2)
    assert tx.done and tx.get_timer() is None
    assert tx.handle_response(0.3) is None


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Transaction(REQ, TID, 0.0, rto=0)
    with pytest.raises(ValueError):
        Transaction(REQ, TID, 0.0, rc=0)
    with pytest.raises(ValueError):
        Transaction(REQ, TID, 0.0, rm=0)


def test_transaction_keeps_request_and_id() -> None:
    tx = Transaction(REQ, TID, 0.0)
    assert tx.request == REQ and tx.transaction_id == TID and tx.started == 0.0


# ---- RTO estimator (RFC 6298) ----


def test_estimator_initial() -> None:
    est = RtoEstimator()
    assert est.rto == 0.5
    assert RtoEstimator(initial=1.0).rto == 1.0


def test_estimator_first_sample() -> None:
    est = RtoEstimator()
    est.update(0.2)
    assert est.srtt == 0.2
    assert est.rttvar == 0.1
    assert est.rto == pytest.approx(0.2 + 4 * 0.1)


def test_estimator_second_sample() -> None:
    est = RtoEstimator()
    est.update(0.2)
    est.update(0.4)
    # RTTVAR = 3/4 * 0.1 + 1/4 * |0.2 - 0.4| = 0.125; SRTT = 7/8 * 0.2 + 1/8 * 0.4 = 0.225
    assert est.rttvar == pytest.approx(0.125)
    assert est.srtt == pytest.approx(0.225)
    assert est.rto == pytest.approx(0.225 + 0.5)


def test_estimator_granularity_and_bounds() -> None:
    est = RtoEstimator(granularity=0.01)
    est.update(0.0)
    assert est.rto == pytest.approx(0.01)  # SRTT 0 + max(G, 0)
    est = RtoEstimator(min_rto=0.3)
    est.update(0.001)
    assert est.rto == 0.3
    est = RtoEstimator(max_rto=2.0)
    est.update(10.0)
    assert est.rto == 2.0


def test_estimator_not_rounded_to_a_second() -> None:
    est = RtoEstimator()
    est.update(0.01)
    assert est.rto == pytest.approx(0.03)  # RFC 8489 6.2.1: no rounding up to 1 s


def test_estimator_ignores_negative_samples() -> None:
    est = RtoEstimator()
    est.update(-1.0)
    assert est.srtt is None and est.rto == 0.5


def test_transaction_with_estimated_rto() -> None:
    est = RtoEstimator()
    est.update(0.05)
    tx = Transaction(REQ, TID, 0.0, rto=est.rto)
    assert tx.get_timer() == pytest.approx(0.15)
    assert tx.timeout_at == pytest.approx(0.15 * 63 + 16 * 0.15)
