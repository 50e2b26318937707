"""The state one ICE session keeps, the inputs that only add to it, and the queries on it (RFC 8445 6.1, 7).

`SessionBase` holds one generation's candidates (candidate_set.py), check list (checklist.py),
requests in flight (_requests.py), the nomination tables and the event queue; it takes candidates
from gathering and signaling and answers questions about pairs. The checks themselves (sending,
answering, responses, roles, nomination) are `IceSession`'s, in session.py.

Renomination (draft-thatcher-ice-renomination): when both sides announce the `renomination` ice-option,
the controlling side's USE-CANDIDATE checks carry NOMINATION with a value that grows by one each time,
a later nomination replaces the nominated pair, and checks go on after nomination (the valid pairs it
may move to must be found); the controlled side follows the pair with the highest value it accepted.
Without it a NOMINATION attribute is ignored and RFC 8445 8.1 applies.

ChecklistFailed is emitted once per failure: when local gathering is done, the peer sent
end-of-candidates, no remote `.local` candidate is still being resolved, nothing is valid, every pair
is FAILED (or there is none) and nothing is queued. A pair that appears later (a new remote candidate,
a peer-reflexive one from an incoming check) revives the list: its checks run, and if they fail too
ChecklistFailed is emitted again.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import ClassVar

from ..config import IceConfig
from ..stun._random import POOL
from ..stun.message import random_bytes as default_random_bytes
from ._fields import ReadOnly
from ._requests import Requests
from .candidate import Candidate, IceParameters, unusable_reason
from .candidate_set import CandidateSet, RemoteAdded
from .checklist import IDLE, CheckList
from .checks import CheckFields
from .events import ChecklistFailed, Event, PairRemoved
from .pacing import effective_ta
from .pair import CandidatePair, PairState
from .parameters import RENOMINATION

__all__ = ["MAX_PENDING_TRIGGERED", "REMOTE_CANDIDATES_PER_PAIR", "SessionBase"]

Address = tuple[str, int]

#: Triggered checks held back while the remote parameters are unknown (hostile-input bound).
MAX_PENDING_TRIGGERED = 64
#: Signalled remote candidates kept, as a multiple of `IceConfig.max_pairs` (hostile-input bound).
REMOTE_CANDIDATES_PER_PAIR = 4

_UNFINISHED = (PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS)
_FULL, _IGNORED = RemoteAdded.FULL, RemoteAdded.IGNORED  # globals: enum member access costs ~70 ns (3.11)
_POOL_TAKE = POOL.take  # bound once: a bound method per session would be 64 bytes per agent


class SessionBase:
    """One generation's state (candidates, check list, requests in flight, nomination tables, events) with
    the inputs that only add candidates and the queries; IceSession adds the checks themselves."""

    __slots__ = (
        "_candidates",
        "_check_for",
        "_check_head",
        "_check_key",
        "_checklist",
        "_completed",
        "_events",
        "_failed",
        "_generated",
        "_local_done",
        "_local_key",
        "_local_parameters",
        "_nomination_concluded",
        "_nomination_sent",
        "_peer_nominated",
        "_peer_nomination",
        "_peer_target",
        "_pending_remote",
        "_random",
        "_remote_done",
        "_renomination",
        "_requests",
        "_ta",
        "_use_candidate",
        "config",
        "controlling",
        "remote_parameters",
        "tie_breaker",
    )

    @property
    def local_parameters(self) -> IceParameters:
        """This generation's own ufrag and password (read-only: the session keeps their key's bytes, and a new
        ufrag/pwd is a new generation, an ICE restart, RFC 8445 9)."""
        return self._local_parameters

    #: the subclass has its own `_update_failed` (LiteSession): call it after every input, whatever the pairs
    _own_failure: ClassVar[bool] = False

    def __init__(
        self,
        *,
        local: IceParameters,
        controlling: bool,
        tie_breaker: int,
        config: IceConfig,
        random_bytes: Callable[[int], bytes] = default_random_bytes,
    ) -> None:
        self._local_parameters = local
        self.remote_parameters: IceParameters | None = None
        self._local_key = local.pwd.encode()  # the short-term key of the checks we answer (RFC 8445 7.3)
        #: the remote parameters `_check_head` (our checks' USERNAME attribute) and `_check_key` (their key, the
        #: remote password's bytes) were made for: made again when the remote parameters are another object
        self._check_for: IceParameters | None = None
        self._check_head = self._check_key = b""
        self._ta = effective_ta(config.ta, None)  # Ta as both sides use it (RFC 8445 14.2): set with the remote's
        self.controlling = controlling
        self.tie_breaker = tie_breaker
        self.config = config
        # the default source of random bytes is the pool itself: one call per transaction id instead of two
        self._random = _POOL_TAKE if random_bytes is default_random_bytes else random_bytes
        self._events: list[Event] = []  # a handful at a time: a list is lighter than a deque
        self._checklist = CheckList(
            controlling=controlling,
            max_pairs=config.max_pairs,
            on_drop=self._pair_dropped,
            events=self._events,  # PairStateChanged goes straight to the queue
        )
        self._candidates = CandidateSet(
            max_prflx=config.max_pairs, max_remote=REMOTE_CANDIDATES_PER_PAIR * config.max_pairs
        )
        self._local_done = False
        self._remote_done = False
        self._requests = Requests()
        self._use_candidate: dict[CandidatePair, CandidatePair] = {}  # checked pair -> valid pair to nominate
        #: 7.3.1.5: nominated by the peer, not yet valid (a dict as a set: an empty one is a third the size)
        self._peer_nominated: dict[CandidatePair, None] = {}
        self._generated: dict[CandidatePair, CandidatePair] = {}  # checked pair -> valid pair (7.2.5.3.2)
        self._failed = False
        self._completed = False
        self._pending_remote = 0  # remote `.local` candidates being resolved
        self._renomination = False  # both sides announced it (set with the remote parameters)
        self._nomination_sent = 0  # controlling: the last NOMINATION value sent (the first is 1)
        self._nomination_concluded = 0  # controlling: the value of the nomination that concluded last
        self._peer_nomination = -1  # controlled: the highest nomination value accepted (USE-CANDIDATE alone: 0)
        self._peer_target: CandidatePair | None = None  # controlled: the check-list pair that carried it

    def _negotiate(self, params: IceParameters) -> None:
        """Renomination is on when both sides announce it (draft-thatcher-ice-renomination 3); Ta is the
        larger of both sides' (RFC 8445 14.2)."""
        self._ta = effective_ta(self.config.ta, params)
        self._renomination = RENOMINATION in self.local_parameters.options and RENOMINATION in params.options

    def _nomination_in(self, fields: CheckFields) -> int | None:
        """The nomination an incoming check (its `read_check` fields) carries: None for none, 0 for
        USE-CANDIDATE alone (RFC 8445 7.3.1.5), else its NOMINATION value, read only when renomination was
        negotiated (draft 4: any value takes precedence over USE-CANDIDATE alone; without the option the
        attribute is ignored)."""
        value = fields[5] if self._renomination else None
        if value is not None:
            return value
        return 0 if fields[4] else None

    def _accept_nomination(self, pair: CandidatePair, value: int) -> bool:
        """Controlled side: whether the peer's nomination of check-list pair `pair` counts. Always without
        renomination (RFC 8445 7.3.1.5); with it, only a value above every one accepted before, or a repeat
        for the pair that carried the highest (a retransmission): an older value arriving late is ignored."""
        if not self._renomination:
            return True
        if value > self._peer_nomination:
            self._peer_nomination = value
            self._peer_target = pair
            return True
        return pair is self._peer_target

    renomination = ReadOnly[bool](
        attrgetter("_renomination"),
        doc="Both sides announced the `renomination` ice-option: a nomination is not final.",
    )

    def add_local_candidate(self, candidate: Candidate, base: Candidate) -> None:
        """A gathered local candidate; `base` is its base (itself for host and relay candidates, the socket's
        address for a `.local` host candidate)."""
        candidates = self._candidates
        if candidates.add_local(candidate, base):
            if candidate.type == "srflx" and candidates.hides_base(base):
                pass  # its pairs would be the `.local` candidate's, pruned as redundant (RFC 8445 6.1.2.4)
            else:
                self._checklist.pair_up([(candidate, base)], candidates.remotes_for(candidate))
        self._update_failed()

    def local_gathering_done(self) -> None:
        """No more local candidates will come for this generation (needed to declare failure)."""
        self._local_done = True
        self._update_failed()

    def add_remote_candidate(self, candidate: Candidate | None) -> bool:
        """A remote candidate (IP address already resolved); None = end-of-candidates (RFC 8838).

        `.local` names are ignored (the agent resolves them first). A candidate with the address of a
        learned peer-reflexive one replaces it, keeping its pairs (RFC 8838 11.4). Returns False when the
        candidate was refused: over the cap (REMOTE_CANDIDATES_PER_PAIR * max_pairs) or unusable."""
        accepted = True
        if candidate is None:
            self._remote_done = True
        else:
            accepted = self._add_remote(candidate, mdns=False)
        checklist = self._checklist
        # _update_failed has nothing to do while a pair on the list has not failed and ChecklistFailed is not out
        # (the first term of its test): no call then, unless a subclass judges failure otherwise (lite)
        if self._failed or checklist._n >> 72 == len(checklist.pairs) or self._own_failure:
            self._update_failed()
        return accepted

    def add_pending_remote(self) -> None:
        """A remote `.local` candidate is being resolved: no ChecklistFailed until it is settled
        (draft-ietf-mmusic-mdns-ice-candidates 3.2.2: resolving blocks nothing, failure waits for it)."""
        self._pending_remote += 1
        self._update_failed()

    def settle_pending_remote(self, resolved: Candidate | None) -> bool:
        """A resolution ended: `resolved` is the candidate with the address its name resolved to (it replaces
        a peer-reflexive candidate at that address, keeping its pairs, and is never paired with a relay
        local candidate: draft-ietf-mmusic-mdns-ice-candidates 3.2.1, 3.3.2), or None if it did not resolve."""
        self._pending_remote = max(0, self._pending_remote - 1)
        accepted = True
        if resolved is not None:
            accepted = self._add_remote(resolved, mdns=True)
        self._update_failed()
        return accepted

    pending_remote = ReadOnly[int](
        attrgetter("_pending_remote"), doc="Remote `.local` candidates still being resolved."
    )

    def is_from_mdns(self, remote: Candidate) -> bool:
        """True for a remote candidate whose address was resolved from a `.local` name."""
        return self._candidates.from_mdns(remote)

    def _add_remote(self, candidate: Candidate, *, mdns: bool) -> bool:
        """Add a remote candidate and pair it; False if it was refused (over the cap, or unusable)."""
        if unusable_reason(candidate) is not None:
            return False  # the agent counts these before they get here
        added, replaced = self._candidates.add_remote(candidate, mdns=mdns)
        if replaced is not None:
            self._checklist.replace_remote(replaced, candidate)
        if added is _FULL:
            return False
        if added is not _IGNORED:
            self._checklist.pair_up(self._candidates.locals_for(candidate), [candidate])
        return True

    def next_event(self) -> Event | None:
        """The next event, or None when the queue is empty."""
        return self._events.pop(0) if self._events else None

    @property
    def pairs(self) -> list[CandidatePair]:
        """All pairs of the check list, in priority order."""
        return list(self._checklist.pairs)

    @property
    def valid_pairs(self) -> list[CandidatePair]:
        """The valid list, in priority order (RFC 8445 7.2.5.3.2)."""
        return list(self._checklist.valid)

    @property
    def nominated_pairs(self) -> list[CandidatePair]:
        """Valid pairs whose nomination concluded, in priority order (RFC 8445 8.1.1)."""
        return [p for p in self._checklist.valid if p.nominated]

    @property
    def local_candidates(self) -> list[Candidate]:
        """Local candidates: gathered ones, then learned peer-reflexive ones, in arrival order."""
        return [c for c, _ in self._candidates.locals]

    @property
    def remote_candidates(self) -> list[Candidate]:
        """Remote candidates: signalled ones and learned peer-reflexive ones, in arrival order."""
        return list(self._candidates.remotes)

    @property
    def checks_pending(self) -> bool:
        """Checks may still produce a valid pair: a triggered check is queued, a check is in flight, or
        (before nomination concluded, 8.1.2, or ever with renomination) a pair is FROZEN or WAITING."""
        checklist = self._checklist
        return (
            any(p.state is not PairState.SUCCEEDED or p in self._use_candidate for p in checklist.triggered)
            or self._requests.checks_in_flight()
            or (not self._checks_over and any(p.state in _UNFINISHED for p in checklist.pairs))
        )

    @property
    def has_check_to_send(self) -> bool:
        """`next_check` may return a check when Ta next allows: a triggered check is queued, or (before
        nomination concluded, 8.1.2, or ever with renomination) a pair is FROZEN or WAITING."""
        checklist = self._checklist
        if checklist.triggered:
            return True
        if self._completed and not self._renomination:  # _checks_over
            return False
        return bool(self._requests._repeats) or (checklist._n & IDLE != 0 and checklist.has_sendable)

    @property
    def _checks_over(self) -> bool:
        """Ordinary checks stop once nomination concluded (RFC 8445 8.1.2); with renomination they go on,
        so that the pairs a later nomination may move to become valid (draft-thatcher-ice-renomination)."""
        return self._completed and not self._renomination

    completed = ReadOnly[bool](
        attrgetter("_completed"), doc="A pair has been nominated: nomination concluded (RFC 8445 8.1.2)."
    )
    failed = ReadOnly[bool](
        attrgetter("_failed"), doc="ChecklistFailed was emitted and nothing revived the list since (RFC 8445 8.1.2)."
    )

    def find_pair(self, base: Candidate, remote: Address) -> CandidatePair | None:
        """The pair for packets between `base` and `remote`: the nominated valid pair on that route, else
        the best valid one, else the check-list pair, else None."""
        routed = [p for p in self._checklist.valid if p.route == (base, remote)]
        for pair in routed:
            if pair.nominated:
                return pair
        if routed:
            return routed[0]
        return self._checklist.find(base, remote)

    def base_of(self, candidate: Candidate) -> Candidate | None:
        """The base of a local candidate (gathered or learned), or None if it is not ours (RFC 8445 5.1.1)."""
        return self._candidates.base_of(candidate)

    def is_remote_candidate(self, base: Candidate, remote: Address) -> bool:
        """Whether `remote` is a known remote candidate reachable from `base`: data from it is delivered
        even before its pair is valid (RFC 8445 12.2)."""
        return self._candidates.remote_at(base.transport, remote) is not None

    def _pair_dropped(self, pair: CandidatePair) -> None:
        """A pair left both the check list and the valid list (the `max_pairs` caps, RFC 8445 6.1.2.5): forget
        it everywhere, its checks in flight included (a late response is then unknown and ignored)."""
        self._use_candidate.pop(pair, None)
        self._peer_nominated.pop(pair, None)
        self._generated.pop(pair, None)
        if self._peer_target is pair:
            self._peer_target = None
        for table in (self._use_candidate, self._generated):
            for key in [k for k, v in table.items() if v is pair]:
                del table[key]
        self._requests.drop_pair(pair)
        self._events.append(PairRemoved(pair))

    def table_sizes(self) -> dict[str, int]:
        """The size of every per-pair and per-candidate table of this session, each bounded (docs/security.md
        "Agent-side bounds"): for tests and soak runs."""
        return {
            **self._checklist.sizes(),
            **self._candidates.sizes(),
            "requests": len(self._requests),
            "generated": len(self._generated),
            "use_candidate": len(self._use_candidate),
            "peer_nominated": len(self._peer_nominated),
            "events": len(self._events),
        }

    def _update_failed(self) -> None:
        """Emit ChecklistFailed when nothing can succeed any more; re-arm when the list revives (8.1.2).

        A no-op while a pair is valid and ChecklistFailed is not out (in every session class): the hot
        paths skip the call then."""
        checklist = self._checklist
        hopeless = (  # the term false most often first: a pair not Failed (while checks run)
            checklist._n >> 72 == len(checklist.pairs)  # all_failed
            and not checklist.valid
            and self._local_done
            and self._remote_done
            and not self._pending_remote
            and not checklist.active
            and not self._requests.checks_in_flight()
            and not self._candidates.awaiting_tcp()
        )
        if hopeless and not self._failed:
            self._failed = True
            self._events.append(ChecklistFailed())
        elif not hopeless:
            self._failed = False

    def generating_pair(self, valid: CandidatePair) -> CandidatePair:
        """The check-list pair whose check produced `valid` (RFC 8445 8.1.1: repeat that check)."""
        if valid in self._checklist:
            return valid
        for checked, generated in self._generated.items():
            if generated is valid:
                return checked
        return valid
