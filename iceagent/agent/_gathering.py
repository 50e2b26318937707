"""What one generation has gathered: its local candidates, gathering state and gatherers' errors.

The policy a gatherer's candidate goes through before the session sees it lives here too: the relay
transport policy, hiding related addresses behind mDNS names, and dropping duplicates.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ..gatherers.base import GatherOptions
from ..ice.candidate import Candidate
from ..ice.lite import lite_admits
from ..states import GatheringState
from ._notify import Notifier

__all__ = ["MAX_GATHERER_ERRORS", "Gathering"]

#: Errors kept per gatherer for stats() (the latest ones).
MAX_GATHERER_ERRORS = 32

#: `Gathering.errors` until the first error (read-only: most generations have none, and a dict costs 64 bytes)
_NO_ERRORS: Mapping[str, deque[str]] = MappingProxyType({})


class Gathering:
    """One generation's candidates as gathered so far, and how each gatherer is doing."""

    __slots__ = ("_changed", "candidates", "done", "errors", "kinds", "options", "state")

    def __init__(self, options: GatherOptions) -> None:
        self.options = options
        self.candidates: list[Candidate] = []
        #: the kind of gatherer of each candidate (a tuple: a handful of candidates, and no dict per session)
        self.kinds: tuple[str, ...] = ()
        #: made by the first wait, dropped by the notification that wakes its waiters (see `changed`)
        self._changed: Notifier | None = None
        self.state = GatheringState.NEW
        #: gatherer kind -> whether its initial gathering is over
        self.done: dict[str, bool] = {}
        self.errors: Mapping[str, deque[str]] = _NO_ERRORS

    @property
    def changed(self) -> Notifier:
        """Notified on every new candidate and state change (agent.gather() waits on it)."""
        changed = self._changed
        if changed is None:
            changed = self._changed = Notifier()
        return changed

    def _notify(self) -> None:
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.notify()

    def admit(self, candidate: Candidate) -> Candidate | None:
        """The candidate as it is signalled, or None when it is not: another type under the relay policy,
        not a host (or TCP passive) one for a lite agent (RFC 8445 2.5), or equal to one already gathered
        (the first is kept, DESIGN.md "Plugins"). With mDNS, the related address of srflx and relay
        candidates is hidden (draft-ietf-mmusic-mdns-ice-candidates 3.1.1)."""
        options = self.options
        if options.ice_transport_policy == "relay" and candidate.type != "relay":
            return None
        if options.lite and not lite_admits(candidate):
            return None  # whatever a plugin found
        if options.mdns and candidate.type in ("srflx", "relay") and candidate.related_address not in (
            None, "0.0.0.0", "::"
        ):
            unspecified = "::" if ":" in (candidate.related_address or "") else "0.0.0.0"
            candidate = attrs.evolve(candidate, related_address=unspecified, related_port=9)
        for other in self.candidates:  # a handful: a scan is lighter than a set per session
            if other.port == candidate.port and other.address == candidate.address and (
                other.transport == candidate.transport
            ):
                return None
        return candidate

    def add(self, candidate: Candidate, kind: str) -> None:
        """A candidate the session took."""
        self.candidates.append(candidate)
        self.kinds = (*self.kinds, kind)
        self._notify()

    def started(self, kind: str) -> None:
        """A gatherer of `kind` runs."""
        self.done.setdefault(kind, False)

    def error(self, kind: str, message: str) -> None:
        """Remember a gatherer's error for stats(): the last MAX_GATHERER_ERRORS of each gatherer (a TURN
        server failing every refresh for days must not grow the session)."""
        table = self.errors
        if not isinstance(table, dict):
            table = self.errors = {}
        errors = table.get(kind)
        if errors is None:
            errors = table[kind] = deque(maxlen=MAX_GATHERER_ERRORS)
        errors.append(message)

    def set_state(self, state: GatheringState) -> None:
        self.state = state
        self._notify()

    def failure_hint(self) -> str:
        """Why there was nothing to pair, when nothing was gathered: the gatherers' last errors (e.g. a port
        range that ran out), for the IceFailed message."""
        if self.candidates:
            return ""
        errors = [f"{kind}: {errors[-1]}" for kind, errors in self.errors.items() if errors]
        return " (no local candidate was gathered" + ("; " + "; ".join(errors) if errors else "") + ")"

    def stats(self) -> dict[str, Any]:
        """For `agent.stats()["gatherers"]`."""
        return {
            kind: {
                "state": "done" if done else "gathering",
                "candidates": self.kinds.count(kind),
                "errors": list(self.errors.get(kind, ())),
            }
            for kind, done in self.done.items()
        }
