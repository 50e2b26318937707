"""What the peer signals, checked before it reaches a session (DESIGN.md "Security defaults").

- Remote candidates whose address can reach no peer (unspecified, multicast, broadcast, port 0) are
  ignored, counted by reason in `agent.stats()["ignored_remote_candidates"]` and logged, whether
  signalled or resolved from a `.local` name; so are candidates of another generation, `.local` ones
  under the relay policy and those over the per-session cap.
- Peer-driven restarts (a new remote ufrag, RFC 8445 9) are rate-limited: at most one per
  `IceConfig.peer_restart_interval`. A new ufrag inside the interval is held back with the candidates
  signalled after it; a newer one replaces it (and drops them); when the interval ends the agent
  follows the latest. So a peer flipping ufrags costs one restart per interval, and the agent still
  ends on the peer's latest parameters.
"""

from __future__ import annotations

import attrs

from ..config import IceConfig
from ..ice.candidate import Candidate, IceParameters
from ..ice.session import REMOTE_CANDIDATES_PER_PAIR
from ..logs import get_logger

log = get_logger("iceagent.agent")

__all__ = ["RemoteGate"]


@attrs.define
class _Held:
    """The peer's latest parameters, waiting for the restart interval to end, and what came after them."""

    parameters: IceParameters
    candidates: list[Candidate | None] = attrs.Factory(list)


class RemoteGate:
    """One per agent, across generations: the ignored-candidate counters and the peer-restart limiter."""

    __slots__ = ("_config", "_name", "following", "held", "ignored", "restart_at", "restarts", "superseded")

    def __init__(self, name: str, config: IceConfig) -> None:
        self._name = name
        self._config = config
        #: reason -> remote candidates ignored for it
        self.ignored: dict[str, int] = {}
        #: the earliest time the next peer-driven restart may happen
        self.restart_at = -float("inf")
        self.held: _Held | None = None
        self.restarts = 0  # peer-driven restarts done
        self.superseded = 0  # held parameters replaced by newer ones before they applied
        #: a task waits for `restart_at` to apply `held` (the agent starts it after a `hold`, sets this)
        self.following = False

    def ignore(self, candidate: Candidate, reason: str, source: str = "signalled") -> None:
        """Count and log a remote candidate that is not used."""
        self.ignored[reason] = self.ignored.get(reason, 0) + 1
        log.info("%s: %s remote candidate ignored (%s): %s", self._name, source, reason, candidate.to_sdp())

    # ---- peer-driven restarts ----

    def hold(self, params: IceParameters, current: IceParameters | None, now: float) -> bool:
        """Called with the peer's parameters before they are applied; True when they are held back (or
        replace held ones) instead: a restart came less than `peer_restart_interval` ago. With no `current`
        parameters (our own restart began a generation) they answer that restart: applied at once, and any
        held ones, of the generation before, are dropped. When held parameters need a task to apply them
        at `restart_at`, `following` is False: the caller starts one (see `take`) and sets it."""
        if current is None:
            self.held = None
            return False
        held = self.held
        if held is not None:
            if params.ufrag == held.parameters.ufrag:
                held.parameters = params
                return True
            self.held = None
            if params.ufrag == current.ufrag:
                return False  # back to the parameters in use: nothing to restart
            self.superseded += 1
            self.held = _Held(params)
            return True
        if current.ufrag == params.ufrag:
            return False
        if now >= self.restart_at:
            self.restart_at = now + self._config.peer_restart_interval
            self.restarts += 1
            return False
        self.held = _Held(params)
        log.info(
            "%s: the peer restarted again within peer_restart_interval=%g s: following it at %.3f",
            self._name, self._config.peer_restart_interval, self.restart_at,
        )
        return True

    def hold_candidate(self, candidate: Candidate | None) -> bool:
        """True when `candidate` (None: end-of-candidates) belongs to held parameters and was kept for them
        (or, over the per-session cap, ignored): it was signalled after them, or carries their ufrag."""
        held = self.held
        if held is None:
            return False
        if candidate is not None and candidate.ufrag is not None and candidate.ufrag != held.parameters.ufrag:
            return False
        if len(held.candidates) > REMOTE_CANDIDATES_PER_PAIR * self._config.max_pairs:
            if candidate is not None:
                self.ignore(candidate, "over-limit")
            return True
        held.candidates.append(candidate)
        return True

    def take(self) -> _Held | None:
        """The held parameters and their candidates, to apply now that `restart_at` has come."""
        held, self.held = self.held, None
        self.following = False
        return held

    def stats(self) -> dict[str, object]:
        """For `agent.stats()["peer_restarts"]`."""
        return {"restarts": self.restarts, "superseded": self.superseded, "held": self.held is not None}
