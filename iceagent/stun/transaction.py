"""Sans-IO STUN client transactions: the retransmission schedule of RFC 8489 6.2.

A `Transaction` is created when its request is sent for the first time (at `now`). Over UDP it asks to be
retransmitted at `now + RTO`, `now + 3*RTO`, `now + 7*RTO`, ... (the interval doubles) until Rc
transmissions have gone out, then waits Rm*RTO more before it times out (6.2.1). Over a reliable
transport it is sent once and times out after 39.5 s (6.2.2). It never reads a clock: the caller
passes `now`, sleeps until `get_timer()` and calls `handle_timer(now)`.
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["RtoEstimator", "Transaction", "TransactionState"]


class TransactionState(enum.Enum):
    """Where a client transaction is (RFC 8489 6.2)."""

    PENDING = "pending"
    DONE = "done"
    TIMED_OUT = "timed-out"


# enum members as module constants: `Enum.X` costs ~70 ns on CPython 3.11, a global ~7 ns (hot paths)
_PENDING, _DONE, _TIMED_OUT = TransactionState.PENDING, TransactionState.DONE, TransactionState.TIMED_OUT


@attrs.define
class RtoEstimator:
    """Retransmission timeout from measured round-trip times (RFC 6298 2, as allowed by RFC 8489 6.2.1).

    Unlike RFC 6298 2.4 the RTO is not rounded up to one second (RFC 8489 6.2.1); it stays within
    [`min_rto`, `max_rto`].
    """

    initial: float = 0.5
    min_rto: float = 0.0
    max_rto: float = 60.0
    granularity: float = 0.001
    srtt: float | None = None
    rttvar: float | None = None

    #: RFC 6298 2.3 smoothing factors and variance multiplier.
    ALPHA = 0.125
    BETA = 0.25
    K = 4

    def update(self, rtt: float) -> None:
        """Feed one RTT sample taken from a request that was not retransmitted (Karn, RFC 6298 3)."""
        if rtt < 0:
            return
        if self.srtt is None or self.rttvar is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = (1 - self.BETA) * self.rttvar + self.BETA * abs(self.srtt - rtt)
            self.srtt = (1 - self.ALPHA) * self.srtt + self.ALPHA * rtt

    @property
    def rto(self) -> float:
        """`initial` until a sample arrived, then SRTT + max(G, K*RTTVAR) (RFC 6298 2.2, 2.3)."""
        if self.srtt is None or self.rttvar is None:
            value = self.initial
        else:
            value = self.srtt + max(self.granularity, self.K * self.rttvar)
        return min(self.max_rto, max(self.min_rto, value))


class Transaction:
    """One STUN client transaction: retransmissions and timeout of a request (RFC 8489 6.2.1, 6.2.2).

    The first transmission happens when the transaction is created; `handle_timer` returns the request
    bytes again each time a retransmission is due and marks the transaction TIMED_OUT at the end.
    """

    __slots__ = (
        "_at",
        "finished",
        "rc",
        "reliable",
        "reliable_timeout",
        "request",
        "retransmitting",
        "rm",
        "rto",
        "started",
        "state",
        "transaction_id",
        "transmissions",
    )

    def __init__(
        self,
        request: bytes,
        transaction_id: bytes,
        now: float,
        rto: float = 0.5,
        rc: int = 7,
        rm: int = 16,
        reliable: bool = False,
        reliable_timeout: float = 39.5,
    ) -> None:
        if rto <= 0 or rc < 1 or rm < 1 or reliable_timeout <= 0:
            raise ValueError("rto and reliable_timeout must be > 0, rc and rm >= 1")
        self.request = request
        self.transaction_id = transaction_id
        self.started = now
        self.rto = rto
        self.rc = rc
        self.rm = rm
        self.reliable = reliable
        self.reliable_timeout = reliable_timeout
        self.state = _PENDING
        #: How many times the request has been sent so far (the first one at `started`).
        self.transmissions = 1
        self.finished: float | None = None
        #: False once `stop_retransmitting` was called: only the final timeout remains.
        self.retransmitting = not reliable
        #: `get_timer()`'s answer, kept up to date by every change (a session asks for it at every pump)
        self._at: float | None = now + rto if rc > 1 and not reliable else self.timeout_at  # as _deadline()

    def _deadline(self) -> float:
        if self.retransmitting and self.transmissions < self.rc:
            # transmission k (0-based) goes out at started + rto * (2**k - 1)
            return self.started + self.rto * ((1 << self.transmissions) - 1)
        return self.timeout_at

    @property
    def timeout_at(self) -> float:
        """When the transaction times out if no response arrives (RFC 8489 6.2.1: 39.5 s by default)."""
        if self.reliable:
            return self.started + self.reliable_timeout
        return self.started + self.rto * ((1 << (self.rc - 1)) - 1) + self.rm * self.rto

    def get_timer(self) -> float | None:
        """When `handle_timer` must be called next, or None once the transaction is over."""
        return self._at

    def handle_timer(self, now: float) -> bytes | None:
        """Bytes to retransmit if one is due (RFC 8489 6.2.1); None otherwise, timing out at the end."""
        at = self._at
        if at is None or now < at:
            return None
        if self.retransmitting and self.transmissions < self.rc:
            self.transmissions += 1
            self._at = self._deadline()
            return self.request
        self.state = _TIMED_OUT
        self.finished = now
        self._at = None
        return None

    def handle_response(self, now: float) -> float | None:
        """A response arrived: the transaction is DONE. Returns the RTT if the request was sent only once
        (Karn's algorithm, RFC 6298 3), else None."""
        if self.state is not _PENDING:
            return None
        self.state = _DONE
        self.finished = now
        self._at = None
        if self.transmissions == 1:
            return now - self.started
        return None

    def stop_retransmitting(self) -> None:
        """Send nothing more but still wait for a response until `timeout_at` (RFC 8445 7.3.1.4 "cancel")."""
        self.retransmitting = False
        if self._at is not None:
            self._at = self.timeout_at

    def cancel(self, now: float) -> None:
        """Stop retransmitting; the transaction is over (a late response is no longer matched)."""
        if self.state is _PENDING:
            self.state = _DONE
            self.finished = now
            self._at = None

    @property
    def done(self) -> bool:
        """A response arrived (or the transaction was cancelled)."""
        return self.state is _DONE

    @property
    def timed_out(self) -> bool:
        """No response within the schedule (RFC 8489 6.2.1)."""
        return self.state is _TIMED_OUT
