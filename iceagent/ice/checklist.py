"""The check list: pairing, pruning, pair states, triggered-check queue, valid list (RFC 8445 6.1.2)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable
from operator import attrgetter

from .candidate import Candidate
from .events import Event, PairStateChanged, record
from .pair import Address, CandidatePair, PairState
from .priority import pair_priority

__all__ = ["CheckList", "can_pair", "pairing_candidate"]

StateListener = Callable[[CandidatePair, PairState, PairState], None]
DropListener = Callable[[CandidatePair], None]

#: TCP candidate types that may be paired, local first (RFC 6544 6.2; pairs with a passive local are pruned).
_TCP_PAIRS = {("active", "passive"), ("so", "so")}
# enum members as module constants: `Enum.X` costs ~70 ns on CPython 3.11, a global ~7 ns (hot paths)
_FROZEN, _WAITING, _IN_PROGRESS = PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS
_SUCCEEDED, _FAILED = PairState.SUCCEEDED, PairState.FAILED

#: CheckList._n counts the pairs on the list per state in one int, 24 bits per state (a list of counters would
#: cost 104 bytes per agent): Frozen from bit 0, Waiting from 24, In-Progress from 48, Failed from 72
#: (Succeeded is not counted). _STEP is what one pair in a state adds, by the state's value (an Enum member
#: hashes in Python, enum.Enum.__hash__, its value string in C).
_BITS = 24
COUNT_MASK = (1 << _BITS) - 1  # one count of _n
_STEP = {"frozen": 1, "waiting": 1 << 24, "in-progress": 1 << 48, "succeeded": 0, "failed": 1 << 72}
IDLE = (1 << 48) - 1  # `_n & IDLE`: some pair is Frozen or Waiting
UNFINISHED = (1 << 72) - 1  # `_n & UNFINISHED`: some pair is Frozen, Waiting or In-Progress
assert {s._value_ for s in PairState} == set(_STEP)
_by_priority = attrgetter("_priority")  # a sort key in C (with reverse=True: highest first, ties kept in order)


@functools.lru_cache(maxsize=4096)
def _ip_kind(address: str) -> tuple[int, bool] | None:
    """(IP version, link-local) of an address, None for a host name: what pairing compares (one cached tuple,
    no ipaddress property calls per pair)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    return (ip.version, ip.version == 6 and ip.is_link_local)


def pairing_candidate(candidate: Candidate, base: Candidate) -> Candidate | None:
    """The local candidate of a pair: srflx is replaced by its base, prflx is unpaired (RFC 8445 6.1.2.4)."""
    if candidate.type == "srflx":
        return base
    if candidate.type == "prflx":
        return None
    return candidate


def can_pair(local: Candidate, base: Candidate, remote: Candidate) -> bool:
    """Same component, transport and IP family; TCP types that connect (RFC 8445 6.1.2.2, RFC 6544 6.2)."""
    if local.component != remote.component or local.transport != remote.transport:
        return False
    # a host name (an mDNS `.local` one: the agent resolves them before they are added) is no IP: not paired.
    # Same version, and a link-local address only reaches link-local peers (RFC 8445 6.1.2.2)
    local_kind = _ip_kind(base.address)
    if local_kind is None or local_kind != _ip_kind(remote.address):
        return False
    if local.transport == "tcp":
        return (local.tcptype, remote.tcptype) in _TCP_PAIRS
    return True


class CheckList:
    """One check list (RFC 8445 6.1.2): pairs in priority order, their states, the triggered queue and
    the valid list. The IceSession owns it and drives it; state changes are reported to `on_state_change`.

    Both lists are bounded by `max_pairs` (RFC 8445 6.1.2.5 for the check list; the valid list drops its
    lowest-priority pair that is not nominated). A pair that leaves the check list while not valid, or
    the valid list while not on the check list, is gone: `on_drop` is told, so that the session forgets
    everything it keeps about it."""

    __slots__ = (
        "_by_address",
        "_events",
        "_n",
        "controlling",
        "failures_only",
        "last_nominated",
        "max_pairs",
        "on_drop",
        "on_state_change",
        "pairs",
        "triggered",
        "valid",
    )

    def __init__(
        self,
        *,
        controlling: bool,
        max_pairs: int = 100,
        on_state_change: StateListener | None = None,
        on_drop: DropListener | None = None,
        events: list[Event] | None = None,
    ) -> None:
        self.controlling = controlling
        self.max_pairs = max_pairs
        self.on_state_change = on_state_change
        self.on_drop = on_drop
        #: the pair nominated last (the agent sends on it, RFC 8445 8.1.1): the valid-list cap keeps it
        self.last_nominated: CandidatePair | None = None
        self.pairs: list[CandidatePair] = []
        self.valid: list[CandidatePair] = []
        self.triggered: list[CandidatePair] = []  # FIFO; short, and a list is lighter than a deque
        #: the pairs on the list by route (base, remote address), kept by the remote address: the pair, or a
        #: list of the pairs whose bases differ (several local bases to one peer address). Keyed by the pair's
        #: own address tuple, no (base, address) tuple is made per pair, and a lookup hashes no Candidate
        self._by_address: dict[Address, CandidatePair | list[CandidatePair]] = {}
        #: pairs on the list per state (packed, see _STEP), so the summaries below need no scan
        self._n = 0
        #: where state changes go as PairStateChanged events, if given (the session's queue: no call per change)
        self._events = events
        #: report only the changes to FAILED as events (IceGeneration.pair_state_events False: nobody watches
        #: the others; a failed pair still matters to the nomination controller and to ICE-TCP connections)
        self.failures_only = False

    # ---- building ----

    def pair_up(
        self, locals_: Iterable[tuple[Candidate, Candidate]], remotes: Iterable[Candidate]
    ) -> list[CandidatePair]:
        """Form the pairs of local (candidate, base) x remote candidates, prune redundant ones and cap the
        list; new pairs get their initial state (RFC 8445 6.1.2.2-6.1.2.6). Returns the pairs added."""
        fresh: list[CandidatePair] = []
        remotes = list(remotes)
        controlling = self.controlling
        for candidate, base in locals_:
            kind = candidate.type  # pairing_candidate(candidate, base), inline: srflx pairs as its base (6.1.2.4)
            local = base if kind == "srflx" else candidate if kind != "prflx" else None
            if local is None:
                continue
            for remote in remotes:
                if can_pair(local, base, remote):
                    pair = CandidatePair(local=local, remote=remote, base=base)
                    g, d = (local.priority, remote.priority) if controlling else (remote.priority, local.priority)
                    pair._priority = pair_priority(g, d)  # pair.compute_priority(controlling), inline (6.1.2.3)
                    fresh.append(pair)
        if len(fresh) > 1:
            fresh.sort(key=_by_priority, reverse=True)
        added = []
        for pair in fresh:
            if self._insert(pair, self._initial_state(pair)):
                added.append(pair)
        if len(self.pairs) > 1 or len(self.valid) > 1:  # (nothing to sort: no call)
            self._sort()  # the valid list too: a redundant pair may have raised a valid pair's priority (_insert)
        if len(self.pairs) <= self.max_pairs:
            return added  # nothing capped
        self._cap()
        return self._still_listed(added)

    def _still_listed(self, pairs: list[CandidatePair]) -> list[CandidatePair]:
        """Those of `pairs` on the list (after `_cap`); a method, so that pair_up has no closure cell."""
        return [p for p in pairs if p in self]

    def add(self, pair: CandidatePair, state: PairState) -> CandidatePair | None:
        """Add one pair outside the pairing rules (a triggered check's pair, RFC 8445 7.3.1.4); returns the
        pair now on the list for its route (an existing one if the route is taken), None if capped out."""
        existing = self.find(pair._base, pair._remote_address)
        if existing is not None:
            return existing
        pair.compute_priority(self.controlling)
        self._insert(pair, state)
        self._sort()
        self._cap()
        return pair if self.find(pair._base, pair._remote_address) is pair else None

    def _insert(self, pair: CandidatePair, state: PairState) -> bool:
        """Insert unless redundant: a route already on the list keeps the higher-priority pair (6.1.2.4)."""
        existing = self._claim_route(pair)
        if existing is not pair:
            if pair.priority > existing.priority:
                existing._local, existing._remote = pair.local, pair.remote
                existing.compute_priority(self.controlling)
            return False
        pair._state = state
        self.pairs.append(pair)
        self._n += _STEP[state._value_]
        return True

    def _claim_route(self, pair: CandidatePair) -> CandidatePair:
        """The pair on the list for `pair`'s route, registering `pair` for it if there is none (as
        dict.setdefault on (base, remote address))."""
        by_address = self._by_address
        address = pair._remote_address
        entry = by_address.setdefault(address, pair)
        if entry is pair:
            return pair
        base = pair._base
        if not isinstance(entry, list):  # one pair at the address so far (a CandidatePair or a subclass)
            other = entry
            if other._base is base or other._base == base:
                return other
            by_address[address] = [other, pair]
            return pair
        entries = entry
        for other in entries:
            if other._base is base or other._base == base:
                return other
        entries.append(pair)
        return pair

    def _release_route(self, pair: CandidatePair) -> None:
        """Forget `pair` as its route's pair (if it is)."""
        address = pair._remote_address
        entry = self._by_address.get(address)
        if entry is pair:
            del self._by_address[address]
        elif entry.__class__ is list:
            entries = entry
            if pair in entries:
                entries.remove(pair)
                if len(entries) == 1:
                    self._by_address[address] = entries[0]

    def _initial_state(self, pair: CandidatePair) -> PairState:
        """Waiting for the best pair of a foundation, Frozen for the others (RFC 8445 6.1.2.6, RFC 8838 10);
        Waiting too if a pair of the foundation already succeeded (7.2.5.3.3)."""
        # the pair foundation is the two candidates' foundations (6.1.2.6): compared as such, without building
        # the joined string for every pair on the list (pairing 100 pairs did it 10 000 times)
        local, remote = pair.local.foundation, pair.remote.foundation
        busy = False  # a pair of the foundation is Waiting or In-Progress
        for p in self.pairs:
            if p._local.foundation == local and p._remote.foundation == remote:
                state = p._state
                if state is _SUCCEEDED:
                    return _WAITING
                busy = busy or state is _WAITING or state is _IN_PROGRESS
        return _FROZEN if busy else _WAITING

    def _cap(self) -> None:
        """Keep at most `max_pairs` pairs, dropping the lowest-priority idle ones (RFC 8445 6.1.2.5)."""
        while len(self.pairs) > self.max_pairs:
            idle = [p for p in self.pairs if p.state is not _IN_PROGRESS and not p.valid]
            victim = idle[-1] if idle else self.pairs[-1]
            self.remove(victim)

    def remove(self, pair: CandidatePair) -> None:
        """Take a pair off the check list and the triggered queue (it stays valid if it was)."""
        if pair in self.pairs:
            self.pairs.remove(pair)
            self._n -= _STEP[pair._state._value_]
        self._release_route(pair)
        if pair in self.triggered:
            self.triggered.remove(pair)
        if not pair.valid and self.on_drop is not None:
            self.on_drop(pair)

    def replace_remote(self, old: Candidate, new: Candidate) -> None:
        """A signalled candidate replaces a learned prflx one with the same address (RFC 8838 11.4)."""
        for pair in [*self.pairs, *self.valid]:
            if pair.remote == old:
                pair._remote = new
                pair.compute_priority(self.controlling)
        self._sort()

    def _sort(self) -> None:
        if len(self.pairs) > 1:
            self.pairs.sort(key=_by_priority, reverse=True)
        if len(self.valid) > 1:
            self.valid.sort(key=_by_priority, reverse=True)

    def set_role(self, controlling: bool) -> None:
        """Recompute every pair priority after a role change (RFC 8445 6.1.2.3, 7.3.1.1)."""
        self.controlling = controlling
        for pair in [*self.pairs, *self.valid]:
            pair.compute_priority(controlling)
        self._sort()

    # ---- lookups ----

    def find(self, base: Candidate, remote: Address) -> CandidatePair | None:
        """The check-list pair sending from `base` to `remote`, if any."""
        entry = self._by_address.get(remote)
        if entry is None:
            return None
        if not isinstance(entry, list):
            pair = entry
            return pair if pair._base is base or pair._base == base else None
        for pair in entry:
            if pair._base is base or pair._base == base:
                return pair
        return None

    def __contains__(self, pair: object) -> bool:
        return isinstance(pair, CandidatePair) and self.find(pair._base, pair._remote_address) is pair

    # ---- states ----

    def set_state(self, pair: CandidatePair, new: PairState) -> None:
        """Move a pair to `new`, reporting the change (RFC 8445 6.1.2.6)."""
        old = pair._state
        if old is new:
            return
        pair._state = new
        if pair in self.pairs:  # on the list (a valid pair may not be); an identity scan of a short list
            self._n += _STEP[new._value_] - _STEP[old._value_]
        if self._events is not None and (new is _FAILED or not self.failures_only):
            self._events.append(record(PairStateChanged, (pair, old, new)))
        if self.on_state_change is not None:
            self.on_state_change(pair, old, new)

    def add_valid(self, pair: CandidatePair) -> bool:
        """Put a pair on the valid list (RFC 8445 7.2.5.3.2); False if it already was. Over `max_pairs` the
        lowest-priority valid pair leaves it, preferring one that is not nominated; never this one or the
        last nominated (a peer may nominate every pair, so nominated ones cannot all be kept)."""
        if pair.valid:
            return False
        pair._valid = True
        self.valid.append(pair)
        if len(self.valid) > 1:  # only the valid list changed (_sort)
            self.valid.sort(key=_by_priority, reverse=True)
        if len(self.valid) > self.max_pairs:
            self._drop_spare_valid(pair)
        return True

    def _drop_spare_valid(self, pair: CandidatePair) -> None:
        """`add_valid` over `max_pairs`: the lowest-priority valid pair leaves the valid list, one not nominated
        if there is one, never `pair` or the last nominated (a method: add_valid keeps no closure cells)."""
        spare = [p for p in self.valid if p is not pair and p is not self.last_nominated]
        spare = [p for p in spare if not p.nominated] or spare
        if spare:
            victim = spare[-1]
            self.valid.remove(victim)
            victim._valid = False
            if victim not in self and victim in self.triggered:
                self.triggered.remove(victim)
            if victim not in self and self.on_drop is not None:
                self.on_drop(victim)

    def sizes(self) -> dict[str, int]:
        """The sizes of its tables (docs/security.md "Agent-side bounds")."""
        return {
            "pairs": len(self.pairs),
            "routes": self._routes(),
            "valid": len(self.valid),
            "triggered": len(self.triggered),
        }

    def _routes(self) -> int:
        """How many routes have a pair on the list (one per pair)."""
        entries = self._by_address.values()
        return sum(len(e) if isinstance(e, list) else 1 for e in entries)

    def unfreeze_foundation(self, foundation: str) -> None:
        """A check succeeded: Frozen pairs with the same foundation become Waiting (RFC 8445 7.2.5.3.3)."""
        for pair in self.pairs:
            if pair.state is _FROZEN and pair.foundation == foundation:
                self.set_state(pair, _WAITING)

    def unfreeze(self) -> None:
        """No pair is Waiting: unfreeze the best Frozen pair of each foundation that has no Waiting or
        In-Progress pair (RFC 8445 6.1.4.2)."""
        busy = {p.foundation for p in self.pairs if p.state in (_WAITING, _IN_PROGRESS)}
        for pair in self.pairs:
            if pair.state is _FROZEN and pair.foundation not in busy:
                self.set_state(pair, _WAITING)
                busy.add(pair.foundation)

    def next_waiting(self) -> CandidatePair | None:
        """The highest-priority Waiting pair, unfreezing per 6.1.4.2 if there is none (RFC 8445 6.1.4.2)."""
        for pair in self.pairs:
            if pair.state is _WAITING and pair not in self.triggered:
                return pair
        self.unfreeze()
        for pair in self.pairs:
            if pair.state is _WAITING and pair not in self.triggered:
                return pair
        return None

    # ---- triggered checks ----

    def enqueue_triggered(self, pair: CandidatePair) -> None:
        """Append a pair to the triggered-check FIFO queue once (RFC 8445 7.3.1.4)."""
        if pair not in self.triggered:
            self.triggered.append(pair)

    def pop_triggered(self) -> CandidatePair | None:
        """The oldest pair of the triggered-check queue (RFC 8445 6.1.4.2)."""
        return self.triggered.pop(0) if self.triggered else None

    # ---- summary ----

    @property
    def active(self) -> bool:
        """Some pair may still be checked: one is Frozen, Waiting or In-Progress, or a check is queued."""
        return bool(self.triggered) or self._n & UNFINISHED != 0

    @property
    def all_failed(self) -> bool:
        """Every pair Failed (or there are none) and nothing is valid (RFC 8445 8.1.2)."""
        return not self.valid and self._n >> 72 == len(self.pairs)

    @property
    def has_idle(self) -> bool:
        """Some pair on the list is FROZEN or WAITING."""
        return self._n & IDLE != 0

    def counts(self) -> tuple[int, int, int, int]:
        """Pairs on the list that are Frozen, Waiting, In-Progress, Failed (kept, not counted)."""
        n = self._n
        return (n & COUNT_MASK, n >> 24 & COUNT_MASK, n >> 48 & COUNT_MASK, n >> 72)

    @property
    def busy(self) -> int:
        """Pairs on the list that are Waiting or In-Progress: the checks still to be sent (RFC 8445 14.3)."""
        n = self._n
        return (n >> 24 & COUNT_MASK) + (n >> 48 & COUNT_MASK)

    @property
    def has_sendable(self) -> bool:
        """`next_waiting()` would return a pair: one is Waiting (and not queued as triggered), or a Frozen
        one's foundation has no Waiting or In-Progress pair, so it would be unfrozen (RFC 8445 6.1.4.2). A
        Frozen pair behind a busy foundation waits for that check, not for the next Ta."""
        if not self._n & IDLE:
            return False
        busy = set()
        for pair in self.pairs:
            state = pair.state
            if state is _WAITING:
                if pair not in self.triggered:
                    return True
                busy.add(pair.foundation)
            elif state is _IN_PROGRESS:
                busy.add(pair.foundation)
        for pair in self.pairs:  # a loop, not any(generator): no closure cell for `busy` on every call
            if pair.state is _FROZEN and pair.foundation not in busy:
                return True
        return False
