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
    """A local and a remote candidate checked together; mutable state owned by the IceSession.

    `base` is the local base the pair sends from (the local candidate itself for host and relay
    candidates; a srflx/prflx local candidate of a valid pair sends from its base, RFC 8445 7.2.5.3.2).
    """

    local: Candidate
    remote: Candidate
    state: PairState = PairState.FROZEN
    nominated: bool = False
    rtt: float | None = None
    requests_sent: int = 0
    requests_received: int = 0
    responses_sent: int = 0
    responses_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    last_consent: float | None = None  # Trio time of the last successful consent/check response
    base: Candidate = attrs.field(default=attrs.Factory(lambda self: self.local, takes_self=True))
    #: Pair priority for the current roles (RFC 8445 6.1.2.3); kept up to date by the check list.
    priority: int = 0
    #: True once the pair is in the valid list (RFC 8445 7.2.5.3.2).
    valid: bool = False
    #: Retransmitted requests (RFC 8489 6.2.1); `requests_sent` counts every request sent, these included.
    retransmissions_sent: int = 0
    #: Consent freshness requests sent on the pair (RFC 7675; also counted in `requests_sent`).
    consent_requests_sent: int = 0
    #: The pair's RTO estimator (RFC 8489 6.2.1, RFC 6298), made by its first check: kept on the pair, so it
    #: goes when the pair goes and no per-session table has to be pruned.
    rto_estimator: RtoEstimator | None = attrs.field(default=None, repr=False)

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
        local, remote = self.local.priority, self.remote.priority
        self.priority = pair_priority(local, remote) if controlling else pair_priority(remote, local)
        return self.priority

    def __repr__(self) -> str:
        lo, re_ = self.local, self.remote
        return (
            f"<CandidatePair {lo.type} {lo.transport} {lo.address}:{lo.port} -> "
            f"{re_.type} {re_.address}:{re_.port} {self.state.value}"
            f"{' valid' if self.valid else ''}{' nominated' if self.nominated else ''}>"
        )
