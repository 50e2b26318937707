"""What the sans-IO ICE session hands back: packets to send (`Transmit`) and events (RFC 8445 6-8).

Events, in the order one input produces them:

- incoming request: RoleChanged (tie-breaker), RemoteCandidateLearned (prflx), PairStateChanged
  (the triggered check's pair back to WAITING), PairNominated (controlled side, pair already valid);
- success response: LocalCandidateLearned (prflx), PairStateChanged (-> SUCCEEDED), PairValid (first
  time only), PairNominated, PairStateChanged (FROZEN -> WAITING for the same foundation);
- 487 response: RoleChanged, PairStateChanged (-> WAITING, re-queued as a triggered check);
- failed check (error, timeout, asymmetric response): PairStateChanged (-> FAILED), NominationFailed if
  it carried USE-CANDIDATE, then ChecklistFailed if that was the last hope;
- consent response: ConsentRefreshed;
- a pair gone from both the check list and the valid list (the `max_pairs` caps): PairRemoved.

PairStateChanged comes for every change unless the driver turned them off
(`IceGeneration(pair_state_events=False)`): then only the changes to FAILED are events.
"""

from __future__ import annotations

import attrs

from .candidate import Candidate
from .pair import CandidatePair

__all__ = [
    "ChecklistFailed",
    "ConsentRefreshed",
    "Event",
    "GatherTimedOut",
    "LocalCandidateLearned",
    "NominationFailed",
    "PairNominated",
    "PairRemoved",
    "PairStateChanged",
    "PairValid",
    "RemoteCandidateLearned",
    "RoleChanged",
    "Transmit",
]

Address = tuple[str, int]


@attrs.frozen
class Transmit:
    """A packet to send: `data` from the socket/allocation of local candidate `base` to `remote`.

    `pair` is the candidate pair a check or consent request belongs to (None for responses).
    """

    data: bytes
    base: Candidate
    remote: Address
    pair: CandidatePair | None = None


# ---- events (drained with IceSession.next_event) ----


@attrs.frozen
class PairStateChanged:
    """A pair moved between FROZEN/WAITING/IN_PROGRESS/SUCCEEDED/FAILED."""

    pair: CandidatePair
    old: object  # PairState
    new: object  # PairState


@attrs.frozen
class PairValid:
    """A pair entered the valid list (RFC 8445 7.2.5.3.2); data may flow on it (12)."""

    pair: CandidatePair


@attrs.frozen
class PairNominated:
    """Nomination concluded on this valid pair (controlling: USE-CANDIDATE check succeeded;
    controlled: a pair nominated by the peer is valid) (RFC 8445 8.1.1). With renomination negotiated
    (draft-thatcher-ice-renomination) a later one replaces the nominated pair: `previous` is the pair it
    replaces (None for the first nomination)."""

    pair: CandidatePair
    previous: CandidatePair | None = None


@attrs.frozen
class PairRemoved:
    """The pair left the check list and the valid list for good (RFC 8445 6.1.2.5 `max_pairs` caps); the
    session keeps nothing about it any more."""

    pair: CandidatePair


@attrs.frozen
class NominationFailed:
    """Controlling side: the USE-CANDIDATE check for this valid pair failed (RFC 8445 8.1.1)."""

    pair: CandidatePair


@attrs.frozen
class RemoteCandidateLearned:
    """A peer-reflexive remote candidate learned from an incoming check (RFC 8445 7.3.1.3)."""

    candidate: Candidate


@attrs.frozen
class LocalCandidateLearned:
    """A peer-reflexive local candidate learned from a check response (RFC 8445 7.2.5.3.1)."""

    candidate: Candidate
    base: Candidate


@attrs.frozen
class RoleChanged:
    """A role conflict (487 or tie-breaker, RFC 8445 7.3.1.1) switched our role."""

    controlling: bool


@attrs.frozen
class ChecklistFailed:
    """Every pair failed, both sides signalled end-of-candidates and local gathering is done (8.1.2); or
    nothing can ever be checked (two ICE-lite agents, RFC 8445 2.5). `reason` says which, for IceFailed."""

    reason: str = "every candidate pair failed"


@attrs.frozen
class ConsentRefreshed:
    """A consent/keepalive Binding request on `pair` got a valid success response (RFC 7675 5.1)."""

    pair: CandidatePair
    now: float


@attrs.frozen
class GatherTimedOut:
    """`gather_timeout` passed with gatherers still at work: the generation's gathering is COMPLETE anyway
    (IceGeneration; the agent names the unfinished gatherers in stats)."""


Event = (
    PairStateChanged
    | PairValid
    | PairNominated
    | PairRemoved
    | NominationFailed
    | RemoteCandidateLearned
    | LocalCandidateLearned
    | RoleChanged
    | ChecklistFailed
    | ConsentRefreshed
    | GatherTimedOut
)
