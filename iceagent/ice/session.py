"""The sans-IO ICE session: one generation's check list, STUN checks and nomination (RFC 8445 6-8).

The session never reads a clock or a socket: every call takes `now` (Trio time, seconds), incoming STUN
arrives as decoded messages with the raw bytes, and outgoing packets come back as `Transmit`s.
Shape (as aioquic): feed input, call `next_check(now)` every Ta, `handle_timer(now)` at `get_timer()`,
drain `next_event()`.

The events and the order they come in are described in `iceagent.ice.events`; the state, the
candidate inputs, the queries and when ChecklistFailed is emitted are in `_session_base.SessionBase`.
`IceGeneration` (generation.py) wraps a session with its pacing and nomination timing.
"""

from __future__ import annotations

from ..stun.attributes import Attr
from ..stun.message import Message, MessageClass, Method
from ..stun.transaction import TransactionState
from ._requests import Request, rtt_sample
from ._session_base import MAX_PENDING_TRIGGERED, REMOTE_CANDIDATES_PER_PAIR, SessionBase
from .candidate import Candidate, IceParameters
from .checklist import COUNT_MASK
from .checks import (
    CheckFields,
    RoleConflict,
    error_response,
    read_fields,
    roles_conflict,
    screen_check,
    seal_check,
    success_response,
    username_attribute,
)
from .events import (
    ChecklistFailed,
    ConsentRefreshed,
    Event,
    LocalCandidateLearned,
    NominationFailed,
    PairNominated,
    PairRemoved,
    PairStateChanged,
    PairValid,
    RemoteCandidateLearned,
    RoleChanged,
    Transmit,
    record,
)
from .pair import CandidatePair, PairState, check_priority
from .priority import MAX_PRIORITY, TYPE_PREFERENCES

__all__ = [
    "MAX_PENDING_TRIGGERED",
    "REMOTE_CANDIDATES_PER_PAIR",
    "ChecklistFailed",  # the events stay importable from here (as before they moved to ice/events.py)
    "ConsentRefreshed",
    "Event",
    "IceSession",
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

_PRFLX_TOP = TYPE_PREFERENCES["prflx"] << 24  # the type preference part of a check's PRIORITY (RFC 8445 7.1.1)
_XOR_MAPPED, _MAPPED = Attr.XOR_MAPPED_ADDRESS, Attr.MAPPED_ADDRESS
# Enum members as module constants: `PairState.X` costs ~70 ns on CPython 3.11 (a class attribute lookup through
# EnumType), a global ~7 ns; the hot paths read these a few dozen times per agent
_WAITING, _IN_PROGRESS = PairState.WAITING, PairState.IN_PROGRESS
_SUCCEEDED, _FAILED = PairState.SUCCEEDED, PairState.FAILED
_REQUEST, _SUCCESS, _ERROR = MessageClass.REQUEST, MessageClass.SUCCESS, MessageClass.ERROR
_BINDING = Method.BINDING
_HOST_OR_RELAY = ("host", "relay")  # the local candidates of a triggered check (7.3.1.4)
_PENDING, _DONE = TransactionState.PENDING, TransactionState.DONE


class IceSession(SessionBase):
    """One ICE generation (one local ufrag/pwd): pairs, checks, triggered queue, valid list, nomination."""

    __slots__ = ()

    # -- inputs --

    def set_remote_parameters(self, params: IceParameters) -> None:
        """Remote ufrag/pwd are known: checks (and triggered checks held back until now) may start. A full
        agent whose peer is lite takes the controlling role (RFC 8445 6.1.1): only it can nominate."""
        self.remote_parameters = params
        self._negotiate(params)
        if params.lite and not self.controlling:
            self._set_role(True)

    def handle_stun(self, message: Message, raw: bytes, base: Candidate, remote: Address, now: float) -> bytes | None:
        """An incoming STUN message received on `base` from `remote`; returns the response to send back
        (requests: success or error response; responses/indications: None)."""
        if message.method != _BINDING:
            return None
        message_class = message.message_class
        if message_class is _REQUEST:
            response = self._handle_request(message, base, remote)
        elif message_class is _SUCCESS or message_class is _ERROR:
            self._handle_response(message, base, remote, now)
            response = None
        else:
            return None  # Binding indications are keepalives (RFC 8445 11)
        if self._failed or not self._checklist.valid:  # else _update_failed has nothing to do
            self._update_failed()
        return response

    def nominate(self, pair: CandidatePair) -> bool:
        """Controlling side: nominate this valid pair (queues a USE-CANDIDATE check, RFC 8445 8.1.1). With
        renomination negotiated it may replace the nominated pair later: the check carries a higher
        NOMINATION value (draft-thatcher-ice-renomination); without it a concluded nomination is final.

        Returns False (and does nothing) when we are controlled, the pair is not valid, or nomination
        concluded on another pair and renomination was not negotiated."""
        if not self.controlling or not pair.valid:
            return False
        if pair.nominated:
            return True
        if self._completed and not self._renomination:
            return False  # RFC 8445 8.1.1: no second nomination
        checked = self.generating_pair(pair)
        self._use_candidate[checked] = pair
        self._checklist.enqueue_triggered(checked)
        return True

    def route_failed(self, base: Candidate, remote: Address) -> list[CandidatePair]:
        """The connection under the route `base` -> `remote` closed or could not be opened (ICE-TCP): its
        checks fail at once instead of at the 39.5 s timeout, and its pairs, valid ones too, become Failed
        (RFC 6544 7.1). Returns those pairs; the agent decides what a broken selected pair means."""
        route = (base, remote)
        for request in self._requests.take_route(route):
            if not request.consent:
                self._check_failed(request)
        pairs = [p for p in self._checklist.valid if p.route == route]
        listed = self._checklist.find(base, remote)
        if listed is not None and listed not in pairs:
            pairs.append(listed)
        for pair in pairs:
            self._checklist.set_state(pair, _FAILED)
            if pair in self._checklist.triggered:
                self._checklist.triggered.remove(pair)
            target = self._use_candidate.pop(pair, None)
            if target is not None:
                self._events.append(NominationFailed(target))
            self._peer_nominated.pop(pair, None)
        self._update_failed()
        return pairs

    def consent_check(self, pair: CandidatePair, now: float) -> Transmit:
        """A consent freshness Binding request on `pair` (RFC 7675 5.1), tracked like a check."""
        return self._send(pair, now, False, True)

    # -- outputs --

    def next_check(self, now: float) -> Transmit | None:
        """Called every Ta: the next check to send (triggered queue first, then the highest-priority
        WAITING pair, unfreezing per 6.1.4.2), or None if nothing is left to do right now.

        Once a pair is nominated only triggered checks go out (RFC 8445 8.1.2), unless renomination was
        negotiated."""
        if self.remote_parameters is None:
            return None
        checklist = self._checklist
        triggered = checklist.triggered
        while triggered:
            pair = triggered.pop(0)  # the oldest first (RFC 8445 6.1.4.2)
            target = self._use_candidate.pop(pair, None) if self.controlling else None
            if pair._state is _SUCCEEDED and target is None:
                continue  # its cancelled check came back meanwhile (7.3.1.4)
            return self._send(pair, now, target is not None, False, target)  # positional: no keyword matching
        if self._completed and not self._renomination:  # _checks_over: only triggered checks (8.1.2)
            return None
        ordinary = checklist.next_waiting() or self._requests.pop_repeat()  # repeats: _requests' docstring
        if ordinary is None:
            if self._failed or not checklist.valid:  # else _update_failed has nothing to do
                self._update_failed()
            return None
        return self._send(ordinary, now, False)

    def get_timer(self) -> float | None:
        """When `handle_timer` must next be called (retransmission or transaction timeout), or None."""
        return self._requests.get_timer()

    def handle_timer(self, now: float) -> list[Transmit]:
        """Retransmit due requests (RFC 8489 6.2.1) and fail timed-out checks; returns the retransmits."""
        out = []
        again, expired = self._requests.handle_timer(now)
        for request, data in again:
            pair = request.pair
            pair._requests_sent += 1
            pair._retransmissions_sent += 1
            out.append(record(Transmit, (data, pair._base, pair._remote_address, pair)))
        for request in expired:
            if request.is_live_check:
                self._check_failed(request, lost=True)
        if self._failed or not self._checklist.valid:  # else _update_failed has nothing to do
            self._update_failed()
        return out

    # ---- incoming requests (RFC 8445 7.3) ----

    def _handle_request(self, message: Message, base: Candidate, remote: Address) -> bytes | None:
        local = self.local_parameters
        key = self._local_key  # the short-term key of the check and of our answer (RFC 8445 7.2.2, 7.3)
        # FINGERPRINT, then MESSAGE-INTEGRITY (whose result screen_check uses after the USERNAME checks)
        verified = message._verify_short_term(key, True)
        if verified is None:
            return None  # not an ICE check (RFC 8445 7.3, RFC 7983)
        fields = message._fields  # read_check(message), inline: a compiled layout filled them as it decoded
        if fields is None:
            fields = read_fields(message.attributes)  # the attributes acted on, in one pass
        # screen_check's verdict when the check passes all its tests (USERNAME ours, MESSAGE-INTEGRITY there and
        # right, no unknown comprehension-required attribute, PRIORITY there), inline; else it says which fails
        username, unknown = fields[0], message._unknown
        if verified is True and fields[6] and fields[1] is not None and username is not None and unknown == ():
            ours, colon, _ = username.partition(":")
            passed = colon != "" and ours == local.ufrag
        else:
            passed = False
        if not passed:
            rejection = screen_check(message, fields, local, verified)
            if rejection is not None:
                return rejection  # and change no state
        theirs = fields[2] if self.controlling else fields[3]  # the peer claims our role (RFC 8445 7.3.1.1)
        if theirs is not None:
            conflict = self._role_conflict(theirs)
            if conflict is RoleConflict.REJECT:
                return error_response(message, 487, local=local)
            if conflict is RoleConflict.SWITCH:
                self._set_role(not self.controlling)
        priority = fields[1]
        assert priority is not None  # screen_check checked it
        self._check_received(fields, base, remote, priority)
        return success_response(message, remote, local, key)

    def _role_conflict(self, theirs: int) -> RoleConflict:
        """What a check claiming our role with tie-breaker `theirs` calls for (RFC 8445 7.3.1.1; a lite
        session overrides it)."""
        return roles_conflict(self.controlling, self.tie_breaker, theirs)

    def _check_received(self, fields: CheckFields, base: Candidate, remote: Address, priority: int) -> None:
        """Learn a prflx remote (7.3.1.3), trigger a check (7.3.1.4), note USE-CANDIDATE (7.3.1.5)."""
        candidates = self._candidates
        host, port = remote
        transport = base.transport
        candidate: Candidate | None
        for candidate in candidates.remotes:  # candidates.remote_at(base.transport, remote), inline
            if candidate.port == port and candidate.address == host and candidate.transport == transport:
                break
        else:
            candidate = candidates.learn_remote(base, remote, priority)
            if candidate is not None:
                self._events.append(RemoteCandidateLearned(candidate))
        for local, cbase in candidates.locals:  # candidates.local_for_base(base), inline
            if (cbase is base or cbase == base) and local.type in _HOST_OR_RELAY:
                break
        else:
            return  # no host or relay candidate on this base
        if candidate is None:
            return
        checklist = self._checklist
        entry = checklist._by_address.get(remote)  # checklist.find(base, remote): its commonest case inline
        if entry is not None and not isinstance(entry, list) and (entry._base is base or entry._base == base):
            pair: CandidatePair | None = entry
        else:
            pair = None if entry is None else checklist.find(base, remote)
        held_back = self.remote_parameters is None and len(checklist.triggered) >= MAX_PENDING_TRIGGERED
        if pair is None:
            pair = checklist.add(CandidatePair(local=local, remote=candidate, base=base), _WAITING)
            if pair is None:
                return  # the check list is full of busier pairs
            if not held_back:
                checklist.enqueue_triggered(pair)
        elif pair._state is not _SUCCEEDED and not held_back:
            state = pair._state
            if state is not _WAITING:  # (a Waiting pair stays as it is: no call)
                if state is _IN_PROGRESS:
                    self._requests.cancel_checks(pair)
                checklist.set_state(pair, _WAITING)
            triggered = checklist.triggered
            if pair not in triggered:  # checklist.enqueue_triggered(pair), inline
                triggered.append(pair)
        pair._requests_received += 1
        pair._responses_sent += 1
        if self.controlling:
            return
        value = fields[5] if self._renomination else None  # self._nomination_in(fields), inline
        if value is None and fields[4]:
            value = 0
        if value is not None and self._accept_nomination(pair, value):
            valid = self._generated.get(pair)
            if pair.state is _SUCCEEDED and valid is not None:
                self._set_nominated(valid)
            else:
                self._peer_nominated[pair] = None

    # ---- sending checks (RFC 8445 7.2.2) ----

    def _send(
        self,
        pair: CandidatePair,
        now: float,
        use_candidate: bool,
        consent: bool = False,
        nominating: CandidatePair | None = None,
    ) -> Transmit:
        remote = self.remote_parameters
        if remote is None:
            raise ValueError("the remote ICE parameters are not known yet")
        tid = self._random(12)
        local_priority = pair._local.priority
        if 0 <= local_priority <= MAX_PRIORITY and local_priority.__class__ is int:  # else check_priority raises
            priority = _PRFLX_TOP | (local_priority & 0xFFFFFF)  # check_priority inline (RFC 8445 7.2.2)
        else:
            priority = check_priority(pair._local)
        nomination = None
        if use_candidate and self._renomination:  # every nominating check carries a higher value (draft 4)
            self._nomination_sent += 1
            nomination = self._nomination_sent
        if remote is not self._check_for:  # the USERNAME and key of checks to these remote parameters, once
            self._check_head = username_attribute(self.local_parameters, remote)
            self._check_key = remote.pwd.encode()
            self._check_for = remote
        key = self._check_key
        controlling = self.controlling
        # check_request with the session's USERNAME attribute; positional (no keyword matching, once per check):
        # transaction id, USERNAME, PRIORITY, role, tie-breaker, USE-CANDIDATE, NOMINATION, key
        head = self._check_head
        data = seal_check(tid, head, priority, controlling, self.tie_breaker, use_candidate, nomination, key)
        checklist = self._checklist
        # a check's RTO grows with the checks still to be sent (RFC 8445 14.3: check_rto_floor, here on the
        # check list's counts); consent has RFC 8489's own
        n = checklist._n  # checklist.busy, inline: Waiting + In-Progress
        paced = 0.0 if consent else self._ta * ((n >> 24 & COUNT_MASK) + (n >> 48 & COUNT_MASK))
        self._requests.start(
            data,
            tid,
            now,
            self.config,
            Request(pair, key, priority, controlling, use_candidate, consent, nominating, nomination),
            paced,
        )
        pair._requests_sent += 1
        if consent:
            pair._consent_requests_sent += 1
        elif pair._state is not _SUCCEEDED:
            checklist.set_state(pair, _IN_PROGRESS)
        return record(Transmit, (data, pair._base, pair._remote_address, pair))

    # ---- responses (RFC 8445 7.2.5) ----

    def _handle_response(self, message: Message, base: Candidate, remote: Address, now: float) -> None:
        tid = message.transaction_id
        requests = self._requests
        request = requests._by_id.get(tid)  # requests.get
        if request is None:
            return  # unknown or already answered
        # a FINGERPRINT that is there must be right; then the integrity with the key the request carried
        verified = message._verify_short_term(request.key, False)
        if verified is None:
            return
        if not verified:
            if request.reliable:  # RFC 8489 9.1.4: a failure over TCP, ignored over UDP
                requests.pop(tid)
                self._check_failed(request)
            return
        by_id = requests._by_id  # requests.pop(tid), inline (once per answer)
        del by_id[tid]
        if not by_id:
            requests._by_id = {}  # (Requests.pop: an emptied dict keeps its grown table)
            requests._timer = None
        elif request._at == requests._timer:
            requests._timer = False  # it was the earliest: work it out again
        rtt = None  # request.handle_response(now), inline: DONE, and the RTT if sent once (Karn, RFC 6298 3)
        if request.state is _PENDING:
            request.state = _DONE
            request.finished = now
            request._at = None
            if request.transmissions == 1:
                rtt = now - request.started
        pair = request.pair
        pair._responses_received += 1
        if message.message_class is _ERROR:
            error = message.get(Attr.ERROR_CODE)
            if error is not None and error[0] == 487:
                self._role_conflict_response(request)
            elif not request.consent:
                self._check_failed(request)
            return
        known = pair._base  # (base, remote) != pair.route, without making the tuple (once per answer)
        if (known is not base and known != base) or remote != pair._remote_address:
            if not request.consent:
                self._check_failed(request)  # not symmetric (7.2.5.2.1)
            return
        if rtt is not None:
            if pair._srtt is None and rtt >= 0 and pair._rto_initial is not None:
                pair._srtt, pair._rttvar = rtt, rtt / 2  # the first sample (rtt_sample, inline: RFC 6298 2.2)
                pair._rtt = rtt
            else:
                rtt_sample(pair, rtt, self.config)
        pair._last_consent = now
        if request.consent:
            self._events.append(record(ConsentRefreshed, (pair, now)))
            return
        mapped = mapped_only = None  # XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS (the first of each)
        for t, v in message.attributes:
            if t == _XOR_MAPPED:
                mapped = v
                break
            if t == _MAPPED and mapped_only is None:
                mapped_only = v
        mapped = mapped or mapped_only
        if mapped is None:
            self._check_failed(request)
            return
        self._check_succeeded(request, mapped, now)

    def _role_conflict_response(self, request: Request) -> None:
        """487: take the role opposite to what the request said and retry as a triggered check (7.2.5.1)."""
        if request.controlling == self.controlling:
            self._set_role(not request.controlling)
        if request.consent:
            return
        pair = request.pair
        if pair.state is not _SUCCEEDED:
            self._checklist.set_state(pair, _WAITING)
        if request.nominating is not None and self.controlling:
            self._use_candidate[pair] = request.nominating
        self._checklist.enqueue_triggered(pair)

    def _check_succeeded(self, request: Request, mapped: Address, now: float) -> None:
        """Learn a local prflx candidate (7.2.5.3.1), build the valid pair (7.2.5.3.2), set the pair
        Succeeded and unfreeze its foundation (7.2.5.3.3), conclude nomination (7.2.5.3.4)."""
        pair = request.pair
        base = pair._base
        local: Candidate | None = pair._local  # no NAT on the way (local_at's first case, inline)
        if base.port != mapped[1] or base.address != mapped[0]:
            local = self._candidates.local_at(pair, mapped)
        if local is None and base.transport == "udp":
            local = self._candidates.learn_local(pair, mapped, request.priority)
            if local is not None:
                self._events.append(LocalCandidateLearned(local, pair.base))
        if local is None:  # TCP: the mapped port is the connection's ephemeral one (RFC 6544 7.2)
            local = pair._local
        valid = pair
        if local is not pair._local and local != pair._local:
            for found in self._checklist.valid:  # a loop, not a comprehension: no closure cells on every call
                if found.route == pair.route and found.local == local:
                    valid = found
                    break
            else:
                valid = CandidatePair(local=local, remote=pair.remote, base=pair.base, state=_SUCCEEDED)
                valid.compute_priority(self.controlling)
            valid._rtt = pair.rtt if pair.rtt is not None else valid.rtt
            valid._last_consent = now
            if valid.state is not _SUCCEEDED:
                self._checklist.set_state(valid, _SUCCEEDED)
        self._generated[pair] = valid
        checklist = self._checklist
        checklist.set_state(pair, _SUCCEEDED)
        if self._requests._by_id:  # settle: its other checks stop (none in flight: nothing to do)
            self._requests.settle(pair)
        triggered = checklist.triggered
        if triggered and pair in triggered and pair not in self._use_candidate:
            # a check answered after all (its cancelled one, 7.3.1.4): the queued one is moot, as next_check
            # would find; taken off now, it sets no Ta timer that would wake the agent for nothing
            triggered.remove(pair)
        if not valid._valid and checklist.add_valid(valid):
            self._events.append(record(PairValid, (valid,)))
        if request.use_candidate and self.controlling:
            # renomination: a nominating check answered after a later one concluded is stale
            if request.nomination is None or request.nomination > self._nomination_concluded:
                self._nomination_concluded = request.nomination or 0
                self._set_nominated(valid)
        elif not self.controlling and pair in self._peer_nominated:
            del self._peer_nominated[pair]
            if not self._renomination or pair is self._peer_target:  # not superseded meanwhile
                self._set_nominated(valid)
        if checklist._n & COUNT_MASK:  # a Frozen pair on the list (the lowest count)
            checklist.unfreeze_foundation(pair.foundation)

    def _check_failed(self, request: Request, *, lost: bool = False) -> None:
        """A check failed: error response, timeout (`lost`) or asymmetric response (RFC 8445 7.2.5.2). A
        nominating check on a Succeeded pair that got no answer at all leaves the pair Succeeded: its path
        worked, only the nomination was lost, and the controller repeats it (RFC 8445 8.1.1). A lost
        renomination (one concluded already, so nothing is stranded) fails the pair as any timeout does:
        otherwise a higher-priority pair whose path died would be renominated forever."""
        if request.cancelled:
            return
        repeat = lost and not self._completed and request.nominating is not None
        if not (repeat and request.pair.state is _SUCCEEDED):
            self._checklist.set_state(request.pair, _FAILED)
            self._requests.settle(request.pair)
        if request.nominating is not None:
            self._events.append(NominationFailed(request.nominating))

    # ---- helpers ----

    def _set_nominated(self, pair: CandidatePair) -> None:
        """Nomination concluded on `pair`; with renomination it replaces the nominated pair, whose flag
        is cleared (`PairNominated.previous`)."""
        previous = self._checklist.last_nominated
        if pair.nominated and (pair is previous or not self._renomination):
            return
        replaced = None
        if self._renomination and previous is not None and previous is not pair:
            previous._nominated = False
            replaced = previous
        pair._nominated = True
        self._checklist.last_nominated = pair
        self._completed = True
        self._events.append(record(PairNominated, (pair, replaced)))

    def _set_role(self, controlling: bool) -> None:
        """Switch role: recompute pair priorities (RFC 8445 7.3.1.1, 6.1.2.3)."""
        self.controlling = controlling
        self._checklist.set_role(controlling)
        if controlling:
            self._peer_nominated.clear()
        else:
            self._use_candidate.clear()
            triggered = self._checklist.triggered
            if triggered:  # a Succeeded pair queued only to nominate it: moot now (next_check would skip it)
                triggered[:] = [p for p in triggered if p._state is not _SUCCEEDED]
        self._events.append(RoleChanged(controlling))
