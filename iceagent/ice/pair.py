"""Candidate pairs, their states and priorities (RFC 8445 6.1.2)."""

from __future__ import annotations

import enum

import attrs

from ..stun.transaction import RtoEstimator
from .candidate import Candidate
from .priority import pair_priority, prflx_priority

__all__ = ["CandidatePair", "PairState", "check_priority"]

Address = tuple[str, int]


class PairState(enum.Enum):
    """RFC 8445 6.1.2.6."""

    FROZEN = "frozen"
    WAITING = "waiting"
    IN_PROGRESS = "in-progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def check_priority(candidate: Candidate) -> int:
    """The PRIORITY of a check sent from `candidate`: its priority with the prflx type preference (7.2.2)."""
    return prflx_priority(candidate.priority)


@attrs.define(eq=False)
class CandidatePair:
    """A local and a remote candidate checked together (RFC 8445 6.1.2).

    Read-only for everyone but the IceSession that owns it: the session (iceagent.ice) changes its state
    and counters through the underscored fields, the agent counts application data with `count_sent` /
    `count_received`. The constructor takes the public names (`CandidatePair(local=..., remote=...,
    state=...)`). `base` is the local base the pair sends from (the local candidate itself for host and
    relay candidates; a srflx/prflx local candidate of a valid pair sends from its base, 7.2.5.3.2).
    """

    _local: Candidate
    _remote: Candidate
    _state: PairState = PairState.FROZEN
    _nominated: bool = False
    _rtt: float | None = None
    _requests_sent: int = 0
    _requests_received: int = 0
    _responses_sent: int = 0
    _responses_received: int = 0
    _bytes_sent: int = 0
    _bytes_received: int = 0
    _last_consent: float | None = None
    _base: Candidate = attrs.field(default=attrs.Factory(lambda self: self._local, takes_self=True))
    _priority: int = 0
    _valid: bool = False
    _retransmissions_sent: int = 0
    _consent_requests_sent: int = 0
    #: The pair's RTO estimator (RFC 8489 6.2.1, RFC 6298), made by its first check: kept on the pair, so it
    #: goes when the pair goes and no per-session table has to be pruned.
    _rto_estimator: RtoEstimator | None = attrs.field(default=None, repr=False)

    @property
    def local(self) -> Candidate:
        """The local candidate."""
        return self._local

    @property
    def remote(self) -> Candidate:
        """The remote candidate."""
        return self._remote

    @property
    def state(self) -> PairState:
        """Where its checks are (RFC 8445 6.1.2.6)."""
        return self._state

    @property
    def nominated(self) -> bool:
        """Nomination concluded on it (RFC 8445 8.1.1, 7.3.1.5)."""
        return self._nominated

    @property
    def rtt(self) -> float | None:
        """The last round-trip time of a check or consent check not retransmitted (s), or None."""
        return self._rtt

    @property
    def requests_sent(self) -> int:
        """Binding requests sent on it (checks, retransmissions and consent checks)."""
        return self._requests_sent

    @property
    def requests_received(self) -> int:
        """Checks received on it."""
        return self._requests_received

    @property
    def responses_sent(self) -> int:
        """Answers to checks sent on it."""
        return self._responses_sent

    @property
    def responses_received(self) -> int:
        """Answers to its requests received."""
        return self._responses_received

    @property
    def bytes_sent(self) -> int:
        """Application data sent on it (bytes)."""
        return self._bytes_sent

    @property
    def bytes_received(self) -> int:
        """Application data received on it (bytes)."""
        return self._bytes_received

    @property
    def last_consent(self) -> float | None:
        """Trio time of the last successful check or consent response (RFC 7675)."""
        return self._last_consent

    @property
    def base(self) -> Candidate:
        """The local base it sends from (RFC 8445 7.2.5.3.2)."""
        return self._base

    @property
    def priority(self) -> int:
        """Pair priority for the current roles (RFC 8445 6.1.2.3)."""
        return self._priority

    @property
    def valid(self) -> bool:
        """In the valid list (RFC 8445 7.2.5.3.2)."""
        return self._valid

    @property
    def retransmissions_sent(self) -> int:
        """Retransmitted requests (RFC 8489 6.2.1), also counted in `requests_sent`."""
        return self._retransmissions_sent

    @property
    def consent_requests_sent(self) -> int:
        """Consent freshness requests (RFC 7675), also counted in `requests_sent`."""
        return self._consent_requests_sent

    @property
    def rto_estimator(self) -> RtoEstimator | None:
        """The pair's RTO estimator, once a check was sent on it."""
        return self._rto_estimator

    def count_sent(self, size: int) -> None:
        """The agent sent `size` bytes of application data on the pair."""
        self._bytes_sent += size

    def count_received(self, size: int) -> None:
        """The agent received `size` bytes of application data on the pair."""
        self._bytes_received += size

    @property
    def foundation(self) -> str:
        """The pair foundation: local and remote foundations joined (RFC 8445 6.1.2.6)."""
        return f"{self.local.foundation}:{self.remote.foundation}"

    @property
    def remote_address(self) -> Address:
        """Where the pair's packets go."""
        return (self.remote.address, self.remote.port)

    @property
    def route(self) -> tuple[Candidate, Address]:
        """(base, remote transport address): the path packets of this pair take."""
        return (self.base, self.remote_address)

    def compute_priority(self, controlling: bool) -> int:
        """Recompute and store the pair priority for our role (RFC 8445 6.1.2.3)."""
        local, remote = self._local.priority, self._remote.priority
        self._priority = pair_priority(local, remote) if controlling else pair_priority(remote, local)
        return self._priority

    def __repr__(self) -> str:
        lo, re_ = self.local, self.remote
        return (
            f"<CandidatePair {lo.type} {lo.transport} {lo.address}:{lo.port} -> "
            f"{re_.type} {re_.address}:{re_.port} {self.state.value}"
            f"{' valid' if self.valid else ''}{' nominated' if self.nominated else ''}>"
        )
