"""The nomination controller (RFC 8445 8.1.1, regular nomination): when the controlling side nominates.

Once a pair is valid, the controlling agent waits at most `nomination_delay` for better pairs that are
still being checked, then nominates the best valid pair whose last check did not fail; when that
nominating check fails, it goes on with the next best. The controlled side never nominates (it
learns nomination from USE-CANDIDATE, RFC 8445 7.3.1.5), so the controller sleeps there.

With renomination negotiated (draft-thatcher-ice-renomination leaves the policy to the agent) the
controller keeps watching after nomination: it renominates the best usable valid pair when a pair of
higher priority than the nominated one becomes valid (a direct pair after a relayed one) and when the
nominated pair fails (its route is gone). A pair the application renominated itself (`renominate`)
stays nominated until one of those happens.
"""

from __future__ import annotations

import math

from .events import Event, NominationFailed, PairNominated, PairStateChanged, PairValid, RoleChanged
from .pair import CandidatePair, PairState
from .session import IceSession

__all__ = ["MAX_ALTERNATES", "NominationController", "alternates"]

#: Valid pairs besides the nominated one whose consent is kept fresh while renomination is negotiated
#: (draft-thatcher-tsvwg-renomination 3: pairs kept available for a later nomination need consent, RFC
#: 7675), so that a move after the selected route is lost goes to a pair known to work. Two: another
#: path of each kind (direct, relayed) is enough, and each costs a consent check per consent interval.
MAX_ALTERNATES = 2

_UNFINISHED = (PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS)
_FAILED = PairState.FAILED  # a global: `PairState.FAILED` costs ~70 ns on CPython 3.11


class NominationController:
    """One per generation, fed the session's events; `deadline()` says when `nominate()` is due."""

    __slots__ = ("_delay", "_explicit", "_nominating", "_review", "awake", "first_valid_at", "nominated")

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self.first_valid_at: float | None = None
        self.nominated: CandidatePair | None = None
        self._nominating = False  # a USE-CANDIDATE check is under way
        self._review = False  # renomination: something changed that may call for another nomination
        self._explicit = False  # the nomination under way was asked for by `renominate`
        #: False when `deadline()` is math.inf whatever the session says (no pair valid yet, a nomination under
        #: way, or one concluded with nothing to review): the generation then asks nothing (kept by _settle)
        self.awake = False

    def _settle(self) -> None:
        self.awake = (
            self.first_valid_at is not None and not self._nominating and (self.nominated is None or self._review)
        )

    def observe(self, event: Event, now: float) -> None:
        """Follow the session: the first valid pair starts the clock; a nomination ends the job; a role
        switch or a failed nominating check lets the next best pair be nominated. After nomination, a new
        valid pair, a failed nomination or the nominated pair failing is worth a look (renomination)."""
        cls = event.__class__  # the event classes are final: compared, not isinstance()'d (a call each)
        if cls is PairStateChanged:
            if event.pair is self.nominated and event.new is _FAILED:  # type: ignore[union-attr]
                self._review = True
            else:
                return  # nothing changed (the commonest event)
        elif cls is PairValid:
            if self.first_valid_at is None:
                self.first_valid_at = now
            self._review = self.nominated is not None
        elif cls is PairNominated:
            self.nominated = event.pair  # type: ignore[union-attr]
            self._nominating = False
            self._review = not self._explicit  # a better pair may have become valid meanwhile
            self._explicit = False
        elif cls is RoleChanged or cls is NominationFailed:
            self._nominating = self._explicit = False
            self._review = self.nominated is not None
        else:
            return
        self.awake = (  # as _settle()
            self.first_valid_at is not None and not self._nominating and (self.nominated is None or self._review)
        )

    def deadline(self, session: IceSession) -> float:
        """When to nominate: -inf (now) when no better pair is still being checked, the first valid pair's
        time plus `nomination_delay` while one is, math.inf when there is nothing to do."""
        if self.first_valid_at is None or self._nominating or not session.controlling:
            return math.inf
        if self.nominated is not None:
            if not self._review or not session.renomination:
                return math.inf
            if self._renomination_target(session) is None:
                self._review = False  # nothing better: look again only after the next change
                self._settle()
                return math.inf
            return -math.inf
        checklist = session._checklist  # read in place: asked at every pump until nomination
        for p in checklist.valid:  # the best of nominatable(session)
            if p._state is not _FAILED:
                best = p._priority
                break
        else:
            return math.inf
        for p in checklist.pairs:  # a loop, not any(generator)
            if p._priority > best and p._state in _UNFINISHED:
                return self.first_valid_at + self._delay
        return -math.inf

    def nominate(self, session: IceSession) -> CandidatePair | None:
        """Nominate the best valid pair (queues its USE-CANDIDATE triggered check); returns it. After a
        nomination (renomination negotiated): the pair `_renomination_target` names, if any."""
        if self.nominated is not None:
            self._review = False
            target = self._renomination_target(session) if session.renomination else None
        else:
            target = None
            for pair in session._checklist.valid:  # nominatable(session)[0], without its two copies
                if pair._state is not _FAILED:
                    target = pair
                    break
        if target is None or not session.nominate(target):
            self._settle()
            return None
        self._nominating = True
        self._settle()
        return target

    def renominate(self, session: IceSession, pair: CandidatePair) -> bool:
        """Nominate `pair` now (renomination negotiated, controlling side, `pair` valid); it stays
        nominated until a better pair becomes valid or it fails. False if the session refused it."""
        if not session.renomination or not session.nominate(pair):
            return False
        if pair is not self.nominated:
            self._nominating = self._explicit = True
            self._settle()
        return True

    def _renomination_target(self, session: IceSession) -> CandidatePair | None:
        """The pair to renominate: the best usable valid pair, when the nominated pair failed or has a
        lower priority; None when the nominated pair is the one to keep."""
        current = self.nominated
        valid = nominatable(session)
        if current is None or not valid or valid[0] is current:
            return None
        if current.state is _FAILED or not current.valid or valid[0].priority > current.priority:
            return valid[0]
        return None


def nominatable(session: IceSession) -> list[CandidatePair]:
    """Valid pairs whose last check did not fail (a failed USE-CANDIDATE check or a closed TCP connection
    leaves a pair valid but FAILED)."""
    return [p for p in session.valid_pairs if p.state is not _FAILED]


def alternates(
    session: IceSession, keep: CandidatePair | None, now: float, consent_timeout: float
) -> list[CandidatePair]:
    """The valid pairs (at most MAX_ALTERNATES, best first, one per route) other than `keep` that still have
    consent: their last successful check or consent answer is at most `consent_timeout` old (RFC 7675
    5.1: a pair whose consent expired gets no more checks)."""
    out: list[CandidatePair] = []
    routes = set() if keep is None else {keep.route}
    for pair in nominatable(session):
        last = pair.last_consent
        if pair is keep or pair.route in routes or last is None or now - last > consent_timeout:
            continue
        routes.add(pair.route)
        out.append(pair)
        if len(out) == MAX_ALTERNATES:
            break
    return out
