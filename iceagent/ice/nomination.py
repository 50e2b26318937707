"""The nomination controller (RFC 8445 8.1.1, regular nomination): when the controlling side nominates.

Once a pair is valid, the controlling agent waits at most `nomination_delay` for better pairs that are
still being checked, then nominates the best valid pair whose last check did not fail; when that
nominating check fails, it goes on with the next best. The controlled side never nominates (it
learns nomination from USE-CANDIDATE, RFC 8445 7.3.1.5), so the controller sleeps there.
"""

from __future__ import annotations

import math

from .events import Event, NominationFailed, PairNominated, PairValid, RoleChanged
from .pair import CandidatePair, PairState
from .session import IceSession

__all__ = ["NominationController"]

_UNFINISHED = (PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS)


class NominationController:
    """One per generation, fed the session's events; `deadline()` says when `nominate()` is due."""

    __slots__ = ("_delay", "_nominating", "first_valid_at", "nominated")

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self.first_valid_at: float | None = None
        self.nominated: CandidatePair | None = None
        self._nominating = False  # a USE-CANDIDATE check is under way

    def observe(self, event: Event, now: float) -> None:
        """Follow the session: the first valid pair starts the clock; a nomination ends the job; a role
        switch or a failed nominating check lets the next best pair be nominated."""
        if isinstance(event, PairValid):
            if self.first_valid_at is None:
                self.first_valid_at = now
        elif isinstance(event, PairNominated):
            self.nominated = event.pair
            self._nominating = False
        elif isinstance(event, (RoleChanged, NominationFailed)):
            self._nominating = False

    def deadline(self, session: IceSession) -> float:
        """When to nominate: -inf (now) when no better pair is still being checked, the first valid pair's
        time plus `nomination_delay` while one is, math.inf when there is nothing to do."""
        if self.first_valid_at is None or self.nominated is not None or self._nominating or not session.controlling:
            return math.inf
        valid = nominatable(session)
        if not valid:
            return math.inf
        best = valid[0].priority
        if any(p.state in _UNFINISHED and p.priority > best for p in session.pairs):
            return self.first_valid_at + self._delay
        return -math.inf

    def nominate(self, session: IceSession) -> CandidatePair | None:
        """Nominate the best valid pair (queues its USE-CANDIDATE triggered check); returns it."""
        valid = nominatable(session)
        if not valid:
            return None
        self._nominating = True
        session.nominate(valid[0])
        return valid[0]


def nominatable(session: IceSession) -> list[CandidatePair]:
    """Valid pairs whose last check did not fail (a failed USE-CANDIDATE check or a closed TCP connection
    leaves a pair valid but FAILED)."""
    return [p for p in session.valid_pairs if p.state is not PairState.FAILED]
