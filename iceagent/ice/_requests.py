"""The outstanding Binding requests of one ICE session: its checks and consent checks, by transaction id.

Each carries its STUN client transaction (stun.transaction: the RFC 8489 6.2.1 retransmission schedule,
from the RTO of RFC 8445 14.3 for checks) and what the response will be judged against (RFC 8445 7.2.5:
the key, the PRIORITY and role it carried, whether it nominates). The earliest timer is cached until the
table changes.

Under loss a pair's check may get company (RFC 8489 6.2: a client may have several transactions outstanding
to one server, ten at most, new ones paced by ICE's Ta, RFC 8445 14.2): each retransmission of the pair's
oldest live check from its second on queues one more check on it (a new transaction), up to
`REPEATS_PER_PAIR` live ones. The new transactions thus start as RFC 8489's backoff spaces the
retransmissions (after 1.5 and 3.5 s), so a lossy path gets three times the transmissions of one
transaction (21 instead of 7 over 39.5 s), and a path that answers within 1.5 s gets none. A pair the peer's
checks have reached is known to carry traffic: its silence is loss, not a dead address, so there the
second retransmission of its newest live check queues one, up to `REPEATS_HEARD` (RFC 8489's ten) and while
the session is within `max_in_flight`: a new transaction every 1.5 s, two to three transmissions a second
for the first 15 s, where one transaction backs off to one in 16 s; the pair still fails when its first
transaction times out. The growth stays linear so that a peer that is only slow (an overloaded server) gets
few more. When the pair succeeds or fails the others stop (`settle`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..config import IceConfig
from ..stun.transaction import RtoEstimator, Transaction, TransactionState
from .pair import CandidatePair, PairState

__all__ = ["REPEATS_HEARD", "REPEATS_PER_PAIR", "Request", "Requests", "check_rto_floor", "max_in_flight", "rtt_sample"]

#: Live check transactions on one pair at most (RFC 8489 6.2: ten outstanding transactions to one server).
REPEATS_PER_PAIR = 3
#: The same on a pair the peer's checks have reached (RFC 8489 6.2's ten): a lossy path, not a dead address.
REPEATS_HEARD = 10
#: Repeats begin at this transmission of the pair's oldest check, its second retransmission (1.5 s at the
#: initial RTO): a burst of checks that a receive buffer dropped converges by the first retransmission alone
#: (bench/mux.py with a small SO_RCVBUF: starting at the first one cost 40 % more CPU there).
FIRST_REPEAT_AT = 3

Address = tuple[str, int]

_PENDING, _TIMED_OUT = TransactionState.PENDING, TransactionState.TIMED_OUT


class Request(Transaction):
    """An outstanding Binding request of a check or consent transaction (RFC 8445 7.2.2, RFC 7675 5.1), and
    its STUN client transaction (RFC 8489 6.2.1; started by `Requests.start`): one object per check, as a
    check is only ever one transaction."""

    __slots__ = (
        "cancelled",
        "consent",
        "controlling",
        "key",
        "nominating",
        "nomination",
        "pair",
        "priority",
        "use_candidate",
    )

    def __init__(
        self,
        pair: CandidatePair,
        key: bytes,
        priority: int,
        controlling: bool,
        use_candidate: bool,
        consent: bool,
        nominating: CandidatePair | None = None,
        nomination: int | None = None,
    ) -> None:
        self.pair = pair
        self.key = key  # the remote password it was protected with
        self.priority = priority  # the PRIORITY it carried (a learned local prflx candidate gets it, 7.2.5.3.1)
        self.controlling = controlling  # the role attribute it carried (7.2.5.1)
        self.use_candidate = use_candidate
        self.consent = consent
        self.nominating = nominating  # the valid pair a USE-CANDIDATE check nominates
        self.nomination = nomination  # the NOMINATION value it carried (renomination negotiated)
        self.cancelled = False  # 7.3.1.4: no more retransmissions, no failure on timeout

    @property
    def transaction(self) -> Transaction:
        """Its STUN client transaction: the request itself, once `Requests.start` started it."""
        return self

    def __repr__(self) -> str:
        kind = "consent" if self.consent else "nominating check" if self.use_candidate else "check"
        return f"<Request {kind} on {self.pair!r}{' cancelled' if self.cancelled else ''}>"

    @property
    def is_live_check(self) -> bool:
        """A connectivity check that may still succeed (not consent, not cancelled)."""
        return not self.consent and not self.cancelled

    @property
    def is_plain_check(self) -> bool:
        """A live check that nominates nothing (the kind that is repeated under loss)."""
        return self.is_live_check and not self.use_candidate and self.nominating is None


class Requests:
    """The session's requests in flight."""

    __slots__ = ("_by_id", "_cap", "_repeats", "_timer")

    def __init__(self) -> None:
        self._by_id: dict[bytes, Request] = {}
        self._cap = 0  # max_in_flight of the config of the latest `start` (a heard pair's repeats stop there)
        self._timer: float | bool | None = False  # get_timer()'s answer; False: work it out again
        self._repeats: list[CandidatePair] | None = None  # pairs due another check (see the module docstring)

    def __len__(self) -> int:
        return len(self._by_id)

    def start(
        self, data: bytes, transaction_id: bytes, now: float, config: IceConfig, request: Request, paced: float = 0.0
    ) -> None:
        """`request` (its bytes `data`) goes out now: its transaction starts over UDP with an RTO of at least
        `config.rto` (500 ms: RFC 8445 14.3 "MUST NOT use an RTO value smaller than 500 ms"), `paced` (a check's
        `check_rto_floor`, RFC 8445 14.3) and the pair's measured one (RFC 8489 6.2.1, RFC 6298), or with the
        39.5 s timeout over TCP (RFC 8489 6.2.2)."""
        pair = request.pair
        rto = config.rto if paced < config.rto else paced
        srtt = pair._srtt
        if srtt is not None:  # the pair's measured RTO (RtoEstimator.rto of its state, inline)
            rttvar: float = pair._rttvar  # type: ignore[assignment]  # set with the SRTT
            rto = max(rto, min(_MAX_RTO, max(_MIN_RTO, srtt + max(_GRANULARITY, _K * rttvar))))
        elif pair._rto_initial is None:
            pair._rto_initial = config.rto  # its first check: the pair's RTO state starts (`rto_estimator`)
        # Transaction.__init__(request, data, transaction_id, now, rto, config.rc, config.rm, reliable,
        # config.reliable_timeout), inline (once per check; the config's values are validated positive)
        request.request = data
        request.transaction_id = transaction_id
        request.started = now
        request.rto = rto
        request.rc = rc = config.rc
        request.rm = config.rm
        request.reliable = reliable = pair._base.transport == "tcp"
        request.reliable_timeout = config.reliable_timeout
        request.state = _PENDING
        request.transmissions = 1
        request.finished = None
        request.retransmitting = not reliable
        request._at = now + rto if rc > 1 and not reliable else request.timeout_at
        by_id = self._by_id
        known, cap = _last_cap  # _cap_for(config), inline: once per check
        if config is not known:
            cap = _cap_for(config)
        self._cap = cap
        if len(by_id) >= cap:
            self._evict_cancelled()
        by_id[transaction_id] = request
        timer = self._timer
        if timer is not False:  # the earliest timer stays known: the new one may only be earlier
            at = request._at
            if timer is None or (at is not None and at < timer):
                self._timer = at

    def _evict_cancelled(self) -> None:
        """Forget the oldest cancelled check (RFC 8445 7.3.1.4: it only waits for a late answer, which is then
        ignored): a peer whose checks re-trigger ours keeps the table within `max_in_flight` even when RFC 8445
        14.3 stretches each transaction's lifetime."""
        for tid, request in self._by_id.items():
            if request.cancelled:
                del self._by_id[tid]
                return

    def get(self, transaction_id: bytes) -> Request | None:
        return self._by_id.get(transaction_id)

    def pop(self, transaction_id: bytes) -> Request | None:
        request = self._by_id.pop(transaction_id, None)
        if not self._by_id:
            self._by_id = {}  # an emptied dict keeps its grown table (224 bytes per idle agent); a new one is 64
            self._timer = None
        elif request is not None and request._at == self._timer:
            self._timer = False  # it was the earliest: work it out again (a later one leaves the earliest alone)
        return request

    def get_timer(self) -> float | None:
        """When a retransmission or a timeout is next due, or None."""
        timer = self._timer
        if timer is False:
            timer = None
            for r in self._by_id.values():
                t = r._at
                if t is not None and (timer is None or t < timer):
                    timer = t
            self._timer = timer
        return timer

    def handle_timer(self, now: float) -> tuple[list[tuple[Request, bytes]], list[Request]]:
        """The requests to retransmit now with their bytes (RFC 8489 6.2.1), and those that timed out
        (removed)."""
        again: list[tuple[Request, bytes]] = []
        expired: list[Request] = []
        self._timer = False
        for tid, request in list(self._by_id.items()):
            data = request.handle_timer(now)
            if data is not None:
                again.append((request, data))
                if request.is_plain_check and request.transmissions >= FIRST_REPEAT_AT:
                    self._maybe_repeat(request)
            elif request.state is _TIMED_OUT:
                del self._by_id[tid]
                expired.append(request)
        return again, expired

    def _maybe_repeat(self, request: Request) -> None:
        """`request` was just retransmitted (a second time or more): queue its pair for one more check (once) if
        it is the pair's oldest live check and the pair has fewer than REPEATS_PER_PAIR live ones, or, on a
        pair the peer's checks reached, its newest and the pair has fewer than REPEATS_HEARD, while the session
        holds fewer than `max_in_flight` requests (RFC 8445 14.3 stretches a transaction's life past 39.5 s with
        many pairs, and a repeat is live, never evicted: without this, ten per pair could pass that bound)."""
        pair = request.pair
        by_id = self._by_id
        live = [r for r in by_id.values() if r.pair is pair and r.is_plain_check]
        if pair._requests_received:
            if live[-1] is not request or len(live) >= REPEATS_HEARD or len(by_id) >= self._cap:
                return
        elif live[0] is not request or len(live) >= REPEATS_PER_PAIR:
            return
        repeats = self._repeats
        if repeats is None:
            repeats = self._repeats = []
        if pair not in repeats:
            repeats.append(pair)

    @property
    def has_repeat(self) -> bool:
        """A pair is queued for another check."""
        return bool(self._repeats)

    def pop_repeat(self) -> CandidatePair | None:
        """The oldest pair queued for another check that is still In-Progress (a check answered or failed it
        meanwhile: it is skipped), or None."""
        repeats = self._repeats
        while repeats:
            pair = repeats.pop(0)
            if pair.state is PairState.IN_PROGRESS:
                if not repeats:
                    self._repeats = None
                return pair
        self._repeats = None
        return None

    def take_route(self, route: tuple[object, Address]) -> list[Request]:
        """Remove and return the requests on `route` (its connection closed: they cannot be answered)."""
        taken = [(tid, r) for tid, r in self._by_id.items() if r.pair.route == route]
        for tid, _ in taken:
            del self._by_id[tid]
        if taken:
            self._timer = False
        return [r for _, r in taken]

    def cancel_checks(self, pair: CandidatePair) -> None:
        """Cancel the pair's checks in flight (RFC 8445 7.3.1.4): no more retransmissions, and a timeout no
        longer fails the pair; a response that still comes is used."""
        self._timer = False
        for request in self._by_id.values():
            if request.pair is pair and not request.consent:
                request.cancelled = True
                request.stop_retransmitting()

    def settle(self, pair: CandidatePair) -> None:
        """The pair succeeded or failed: its other ordinary checks (repeats, see the module docstring) stop
        retransmitting and no longer count as live, as a cancelled check (7.3.1.4); a nominating check or
        a consent check goes on."""
        for request in self._by_id.values():
            if request.pair is pair and request.is_plain_check:
                request.cancelled = True
                request.stop_retransmitting()
                self._timer = False

    def drop_pair(self, pair: CandidatePair) -> None:
        """Forget the pair's requests (it left the session): a late response is then unknown; no repeat."""
        doomed = [tid for tid, r in self._by_id.items() if r.pair is pair]
        for tid in doomed:
            del self._by_id[tid]
        if doomed:
            self._timer = False
        if self._repeats is not None and pair in self._repeats:
            self._repeats.remove(pair)

    def checks_in_flight(self) -> bool:
        """A connectivity check may still succeed."""
        return any(r.is_live_check for r in self._by_id.values())


def max_in_flight(config: IceConfig) -> int:
    """The bound on a session's requests in flight (docs/security.md): one new check per Ta over the lifetime of
    a transaction at the initial RTO (RFC 8489 6.2.1: 39.5 s, so 790 at Ta = 50 ms)."""
    lifetime = config.rto * ((1 << (config.rc - 1)) - 1 + config.rm)
    return math.ceil(lifetime / config.ta) + 1


#: (config, max_in_flight(config)) of the last config asked about: the agents of one process share one config
_last_cap: tuple[IceConfig | None, int] = (None, 0)


def _cap_for(config: IceConfig) -> int:
    """max_in_flight(config), worked out once per config (not once per session)."""
    global _last_cap
    known, cap = _last_cap
    if config is not known:
        cap = max_in_flight(config)
        _last_cap = (config, cap)
    return cap


def check_rto_floor(ta: float, pairs: Iterable[CandidatePair]) -> float:
    """RFC 8445 14.3's RTO term for a connectivity check: Ta x (Num-Waiting + Num-In-Progress), so every check
    still to be sent goes out once, one per Ta, before any is retransmitted (14.1). The published formula also
    multiplies by N, the number of checks: at the default 100 pairs that squares to 500 s, so no check would
    be retransmitted within a session; 14.3 lets an agent use other mechanisms, never below 500 ms."""
    busy = 0
    for pair in pairs:
        if pair.state is PairState.WAITING or pair.state is PairState.IN_PROGRESS:
            busy += 1
    return ta * busy


# RtoEstimator's defaults and RFC 6298 2.3 constants, for the pair's RTO state kept as floats (CandidatePair)
_DEFAULTS = RtoEstimator()
_MIN_RTO, _MAX_RTO, _GRANULARITY = _DEFAULTS.min_rto, _DEFAULTS.max_rto, _DEFAULTS.granularity
_ALPHA, _BETA, _K = RtoEstimator.ALPHA, RtoEstimator.BETA, RtoEstimator.K


def rtt_sample(pair: CandidatePair, rtt: float, config: IceConfig) -> None:
    """One RTT sample of a request on `pair` that was not retransmitted (Karn, RFC 6298 3): the pair's SRTT and
    RTTVAR as `RtoEstimator.update` makes them (RFC 6298 2.2, 2.3), and its `rtt`."""
    if pair._rto_initial is None:  # a test may have built the pair and its request by hand
        pair._rto_initial = config.rto
    if rtt >= 0:
        srtt, rttvar = pair._srtt, pair._rttvar
        if srtt is None or rttvar is None:
            pair._srtt, pair._rttvar = rtt, rtt / 2
        else:
            pair._rttvar = (1 - _BETA) * rttvar + _BETA * abs(srtt - rtt)
            pair._srtt = (1 - _ALPHA) * srtt + _ALPHA * rtt
    pair._rtt = rtt
