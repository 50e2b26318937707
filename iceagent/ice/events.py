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

`Transmit` and the events made several times per check (PairStateChanged, PairValid, PairNominated,
ConsentRefreshed) are immutable named tuples that compare equal only to their own class: the core makes
them with `tuple.__new__` (~150 ns, where a frozen attrs class takes ~420 ns: six or seven per agent
connecting, issue 15). The rarer events are frozen attrs classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

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
_C = TypeVar("_C")
_tuple_eq: Callable[[tuple[object, ...], object], bool] = tuple.__eq__
#: `record(Transmit, (data, base, remote, pair))`: an instance without the Python-level `__new__` call (hot paths:
#: every field given, in order)
record = tuple.__new__


def _own_class_equality(cls: type[_C]) -> type[_C]:
    """Equal only to an instance of the same class with equal fields (as attrs classes), not to a plain tuple
    or another event with the same fields (PairValid(p) != PairRemoved(p)); hashed as the tuple."""

    def __eq__(self: tuple[object, ...], other: object) -> bool:
        if other.__class__ is self.__class__:
            return _tuple_eq(self, other)
        # another tuple (or event) is never equal; anything else decides itself (mock.ANY, matchers), as attrs
        return False if isinstance(other, tuple) else NotImplemented

    def __ne__(self: tuple[object, ...], other: object) -> bool:
        if other.__class__ is self.__class__:
            return not _tuple_eq(self, other)
        return True if isinstance(other, tuple) else NotImplemented

    cls.__eq__ = __eq__  # type: ignore[method-assign,assignment]
    cls.__ne__ = __ne__  # type: ignore[method-assign,assignment]
    cls.__hash__ = tuple.__hash__  # type: ignore[method-assign,assignment]
    return cls


@_own_class_equality
class Transmit(NamedTuple):
    """A packet to send: `data` from the socket/allocation of local candidate `base` to `remote`.

    `pair` is the candidate pair a check or consent request belongs to (None for responses).
    """

    data: bytes
    base: Candidate
    remote: Address
    pair: CandidatePair | None = None


# ---- events (drained with IceSession.next_event) ----


@_own_class_equality
class PairStateChanged(NamedTuple):
    """A pair moved between FROZEN/WAITING/IN_PROGRESS/SUCCEEDED/FAILED."""

    pair: CandidatePair
    old: object  # PairState
    new: object  # PairState


@_own_class_equality
class PairValid(NamedTuple):
    """A pair entered the valid list (RFC 8445 7.2.5.3.2); data may flow on it (12)."""

    pair: CandidatePair


@_own_class_equality
class PairNominated(NamedTuple):
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


@_own_class_equality
class ConsentRefreshed(NamedTuple):
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
