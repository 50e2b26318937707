"""ICE-lite (RFC 8445 2.5): the session of a lite agent, and what a lite agent gathers.

A lite agent has host candidates only (5.1.1.1; ICE-TCP: passive ones, RFC 6544 4.5, as it opens no
connection), takes the controlled role (6.1.1), sends no checks at all (no paced, triggered or consent
checks: 2.5, RFC 7675 leaves consent to the full peer) and answers the checks it gets (7.3). An
authenticated check with USE-CANDIDATE makes its pair valid and nominated (7.3.2), which concludes ICE
for the lite agent (8.2).

Two lite agents never exchange a check (2.5). RFC 8445 8.2 has them pair their candidates (same
component, transport and address family) and, when that gives exactly one pair, use it as the selected
pair; with more, the controlling agent would have to send an updated candidate list to agree on one,
which this API does not do: the session fails then, with a message that says what to change.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..config import IceConfig
from ..stun.message import Message, random_bytes
from .candidate import Candidate, IceParameters
from .checks import CheckFields, RoleConflict
from .events import ChecklistFailed, PairValid, RemoteCandidateLearned, Transmit
from .pair import CandidatePair, PairState
from .session import IceSession

__all__ = ["LiteSession", "lite_admits", "two_lite_agents"]

Address = tuple[str, int]

def two_lite_agents(pairs: int) -> str:
    """Why two lite agents with `pairs` candidate pairs (not one) fail: the reason of their ChecklistFailed,
    shown by IceFailed (RFC 8445 8.2)."""
    if pairs == 0:
        found = "no candidate pair can be formed (same transport and address family, RFC 8445 8.2)"
    else:
        found = (
            f"their candidates form {pairs} pairs, and RFC 8445 8.2 then needs an updated candidate exchange "
            "from the controlling agent to agree on one, which open_agent does not do"
        )
    return (
        f"both agents are ICE-lite (a=ice-lite on both sides) and {found}; give each lite agent a single host "
        "address (host_addresses=[...]), or open one side as a full agent (lite=False), which then controls"
    )


def lite_admits(candidate: Candidate) -> bool:
    """Whether a lite agent may offer `candidate`: host candidates only (RFC 8445 2.5, 5.1.1.1), and over
    TCP only passive ones (RFC 6544 4.5): an active or simultaneous-open candidate would open connections,
    and a lite agent initiates nothing."""
    if candidate.type != "host":
        return False
    return candidate.transport != "tcp" or candidate.tcptype == "passive"


class LiteSession(IceSession):
    """The IceSession of a lite agent (`local.lite` is True): it answers checks and never sends one.

    Every authenticated check teaches the source address as a remote candidate (peer-reflexive when it was
    not signalled, bounded as for a full agent) and puts its pair on the check list without checking it,
    so data from the peer is delivered before nomination (RFC 8445 12.2); the check stamps the pair's
    `last_consent` (the agent declares the peer gone after `consent_timeout` without one). USE-CANDIDATE
    makes the pair valid and nominated (7.3.2). Of several nominations (an RFC 5245 peer's aggressive
    nomination) the highest-priority pair is the selected one (8.1.1); with renomination negotiated, the
    one with the highest NOMINATION value."""

    __slots__ = ("_now", "_peer_lite", "last_check_at")
    _own_failure = True  # its _update_failed judges a lite pair of agents (RFC 8445 8.2), not the check list

    def __init__(
        self,
        *,
        local: IceParameters,
        tie_breaker: int,
        config: IceConfig,
        random_bytes: Callable[[int], bytes] = random_bytes,
    ) -> None:
        if not local.lite:
            raise ValueError("LiteSession is for a lite agent: local IceParameters(lite=True)")
        super().__init__(
            local=local, controlling=False, tie_breaker=tie_breaker, config=config, random_bytes=random_bytes
        )
        self._now = 0.0
        self._peer_lite = False
        #: when the last authenticated check arrived (None: none yet): the full peer is still at it
        self.last_check_at: float | None = None

    # ---- inputs ----

    def set_remote_parameters(self, params: IceParameters) -> None:
        """The peer's parameters; a lite peer as well means no check will ever flow (RFC 8445 2.5, 8.2)."""
        self.remote_parameters = params
        self._negotiate(params)
        self._peer_lite = params.lite
        self._update_failed()

    def handle_stun(self, message: Message, raw: bytes, base: Candidate, remote: Address, now: float) -> bytes | None:
        """As IceSession.handle_stun; the time of an accepted check is its pair's `last_consent`."""
        self._now = now
        return super().handle_stun(message, raw, base, remote, now)

    # ---- a lite agent sends nothing of its own ----

    def next_check(self, now: float) -> Transmit | None:
        """Never a check (RFC 8445 2.5)."""
        return None

    @property
    def has_check_to_send(self) -> bool:
        return False

    @property
    def checks_pending(self) -> bool:
        return False

    def nominate(self, pair: CandidatePair) -> bool:
        """A lite agent is controlled: the full peer nominates (RFC 8445 6.1.1)."""
        return False

    def consent_check(self, pair: CandidatePair, now: float) -> Transmit:
        """Consent is the full peer's job (RFC 7675, RFC 8445 2.5): asking a lite session for one is a bug."""
        raise RuntimeError("a lite agent sends no consent checks (RFC 7675: the full peer does)")

    # ---- answering checks (RFC 8445 7.3, 7.3.2) ----

    def _role_conflict(self, theirs: int) -> RoleConflict:
        """RFC 8445 7.3.1.1 as it applies to a lite agent, which stays controlled (2.5, 6.1.1): a peer that
        claims the controlled role too (ICE-CONTROLLED with tie-breaker `theirs`) gets 487 whatever the
        tie-breakers, so that it takes the controlling role (7.2.5.1); where a full agent would switch, the
        lite agent cannot."""
        return RoleConflict.REJECT

    def _check_received(self, fields: CheckFields, base: Candidate, remote: Address, priority: int) -> None:
        """An accepted check: learn its source (bounded), count it on its pair and stamp the pair's
        `last_consent`; with USE-CANDIDATE the pair is valid and nominated (7.3.2). No triggered check."""
        candidates = self._candidates
        candidate = candidates.remote_at(base.transport, remote)
        if candidate is None:
            candidate = candidates.learn_remote(base, remote, priority)
            if candidate is None:
                return  # over the prflx cap: answered, nothing kept
            self._events.append(RemoteCandidateLearned(candidate))
        pair = self.find_pair(base, remote)
        if pair is None:
            local = candidates.local_for_base(base)
            if local is None:
                return
            pair = self._checklist.add(CandidatePair(local=local, remote=candidate, base=base), PairState.FROZEN)
            if pair is None:
                return  # the check list is full of higher-priority pairs
        pair._requests_received += 1
        pair._responses_sent += 1
        pair._last_consent = self.last_check_at = self._now
        value = self._nomination_in(fields)
        if value is not None and self._accept_nomination(pair, value):
            self._nominated_by_peer(pair)

    def _nominated_by_peer(self, pair: CandidatePair) -> None:
        """7.3.2 (and 8.2's single pair between two lite agents): the pair is valid and nominated; the
        selected pair stays the highest-priority nominated one (8.1.1), so a lower-priority nomination after
        it is recorded without an event. With renomination the nomination accepted last (the highest
        NOMINATION value, draft-thatcher-ice-renomination) is the nominated pair, whatever its priority."""
        self._checklist.set_state(pair, PairState.SUCCEEDED)
        if self._checklist.add_valid(pair):
            self._events.append(PairValid(pair))
        best = self._checklist.last_nominated
        if self._renomination:
            best = None  # the highest NOMINATION value wins, not the priority (draft-thatcher-ice-renomination)
        if best is not None and best is not pair and best.valid and best.priority >= pair.priority:
            pair._nominated = True
            return
        self._set_nominated(pair)

    def _update_failed(self) -> None:
        """A lite agent's list never fails by itself: its pairs are never checked, and the peer's checks may
        come from addresses it never signalled. With a lite peer (RFC 8445 8.2), once both candidate lists
        are complete: a single pair is valid and selected without a check (its consent cannot lapse: no one
        checks, RFC 7675 needs a full peer); none or several fail the session (two_lite_agents)."""
        if not self._peer_lite or self._failed or self._completed:
            return
        if not (self._local_done and self._remote_done) or self._pending_remote:
            return
        pairs = self._checklist.pairs
        if len(pairs) == 1:
            pairs[0]._last_consent = math.inf
            self._nominated_by_peer(pairs[0])
        else:
            self._failed = True
            self._events.append(ChecklistFailed(two_lite_agents(len(pairs))))
