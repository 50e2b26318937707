"""Candidate pairs, their states and priorities (RFC 8445 6.1.2)."""

from __future__ import annotations

import enum
from operator import attrgetter
from typing import cast

import attrs

from ..stun.transaction import RtoEstimator
from ._fields import ReadOnly
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
    `count_received` (its stream's per-datagram paths add to `_bytes_sent` / `_bytes_received` directly,
    saving a call per datagram). The constructor takes the public names (`CandidatePair(local=...,
    remote=..., state=...)`). `base` is the local base the pair sends from (the local candidate itself for host and
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
    #: None given: the local candidate (set by __attrs_post_init__, without a Factory's extra call per pair)
    _base: Candidate = attrs.field(default=cast(Candidate, None))
    _priority: int = 0
    _valid: bool = False
    _retransmissions_sent: int = 0
    _consent_requests_sent: int = 0
    #: The pair's RTO state (RFC 8489 6.2.1, RFC 6298 2): the initial RTO, set by its first check (None: none
    #: sent), and SRTT and RTTVAR from its first RTT sample on. Floats on the pair rather than an RtoEstimator
    #: object: one GC-tracked object less per pair for the cyclic collector, and it goes when the pair goes.
    _rto_initial: float | None = attrs.field(default=None, init=False, repr=False)
    _srtt: float | None = attrs.field(default=None, init=False, repr=False)
    _rttvar: float | None = attrs.field(default=None, init=False, repr=False)
    #: the remote transport address, fixed for the pair's life: a remote candidate is only ever replaced by
    #: one at the same address (RFC 8838 11.4), a redundant pair only by one on the same route (6.1.2.4)
    _remote_address: Address = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self._base is None:
            self._base = self._local
        remote = self._remote
        self._remote_address = (remote.address, remote.port)

    local = ReadOnly[Candidate](attrgetter("_local"), doc="The local candidate.")
    remote = ReadOnly[Candidate](attrgetter("_remote"), doc="The remote candidate.")
    state = ReadOnly[PairState](attrgetter("_state"), doc="Where its checks are (RFC 8445 6.1.2.6).")
    nominated = ReadOnly[bool](attrgetter("_nominated"), doc="Nomination concluded on it (RFC 8445 8.1.1, 7.3.1.5).")
    rtt = ReadOnly[float | None](
        attrgetter("_rtt"), doc="The last round-trip time of a check or consent check not retransmitted (s), or None."
    )
    requests_sent = ReadOnly[int](
        attrgetter("_requests_sent"), doc="Binding requests sent on it (checks, retransmissions and consent checks)."
    )
    requests_received = ReadOnly[int](attrgetter("_requests_received"), doc="Checks received on it.")
    responses_sent = ReadOnly[int](attrgetter("_responses_sent"), doc="Answers to checks sent on it.")
    responses_received = ReadOnly[int](attrgetter("_responses_received"), doc="Answers to its requests received.")
    bytes_sent = ReadOnly[int](attrgetter("_bytes_sent"), doc="Application data sent on it (bytes).")
    bytes_received = ReadOnly[int](attrgetter("_bytes_received"), doc="Application data received on it (bytes).")
    last_consent = ReadOnly[float | None](
        attrgetter("_last_consent"), doc="Trio time of the last successful check or consent response (RFC 7675)."
    )
    base = ReadOnly[Candidate](attrgetter("_base"), doc="The local base it sends from (RFC 8445 7.2.5.3.2).")
    priority = ReadOnly[int](attrgetter("_priority"), doc="Pair priority for the current roles (RFC 8445 6.1.2.3).")
    valid = ReadOnly[bool](attrgetter("_valid"), doc="In the valid list (RFC 8445 7.2.5.3.2).")
    retransmissions_sent = ReadOnly[int](
        attrgetter("_retransmissions_sent"), doc="Retransmitted requests (RFC 8489 6.2.1), in `requests_sent` too."
    )
    consent_requests_sent = ReadOnly[int](
        attrgetter("_consent_requests_sent"), doc="Consent freshness requests (RFC 7675), in `requests_sent` too."
    )
    @property
    def rto_estimator(self) -> RtoEstimator | None:
        """The pair's RTO estimator as it stands (RFC 8489 6.2.1, RFC 6298), once a check was sent on it, else
        None: a copy made on each read (the pair keeps the state itself; changing the copy changes nothing)."""
        initial = self._rto_initial
        if initial is None:
            return None
        return RtoEstimator(initial, srtt=self._srtt, rttvar=self._rttvar)

    def count_sent(self, size: int) -> None:
        """The agent sent `size` bytes of application data on the pair."""
        self._bytes_sent += size

    def count_received(self, size: int) -> None:
        """The agent received `size` bytes of application data on the pair."""
        self._bytes_received += size

    @property
    def foundation(self) -> str:
        """The pair foundation: local and remote foundations joined (RFC 8445 6.1.2.6)."""
        return f"{self._local.foundation}:{self._remote.foundation}"

    @property
    def route(self) -> tuple[Candidate, Address]:
        """(base, remote transport address): the path packets of this pair take. Made on each read (the
        session's hot paths compare `_base` and `_remote_address`): no tuple kept per pair."""
        return (self._base, self._remote_address)

    remote_address = ReadOnly[Address](attrgetter("_remote_address"), doc="Where the pair's packets go.")

    def compute_priority(self, controlling: bool) -> int:
        """Recompute and store the pair priority for our role (RFC 8445 6.1.2.3)."""
        local, remote = self._local.priority, self._remote.priority
        self._priority = pair_priority(local, remote) if controlling else pair_priority(remote, local)
        return self._priority

    def __repr__(self) -> str:
        lo, re_ = self._local, self._remote
        return (
            f"<CandidatePair {lo.type} {lo.transport} {lo.address}:{lo.port} -> "
            f"{re_.type} {re_.address}:{re_.port} {self._state.value}"
            f"{' valid' if self.valid else ''}{' nominated' if self.nominated else ''}>"
        )
