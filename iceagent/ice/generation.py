"""One ICE generation behind the aioquic-shaped interface the Trio layer drives (DESIGN.md "Concurrency").

`IceGeneration` joins the IceSession (check list, checks, answers) with the policy around it: the
pacing check scheduler (Ta, the peer's a=ice-pacing, the injected process-wide pacer; RFC 8445 14.2),
the nomination controller (8.1.1, and renomination: draft-thatcher-ice-renomination) and the gather
timer. The Trio layer feeds it input with `now`,
sends what `datagrams_to_send(now)` returns, sleeps until `get_timer()`, calls `handle_timer(now)`
then, and applies `next_event()`s. It never reads a clock or a socket.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from operator import attrgetter

from ..config import IceConfig
from ..stun.message import Message, MessageClass, Method, random_bytes
from ._fields import ReadOnly
from .candidate import Candidate, IceParameters
from .checklist import IDLE
from .events import Event, GatherTimedOut, PairNominated, PairStateChanged, Transmit, record
from .lite import LiteSession
from .nomination import NominationController, alternates
from .pacing import CheckScheduler, Pacer
from .pair import CandidatePair
from .parameters import RENOMINATION
from .session import IceSession

__all__ = ["IceGeneration"]

Address = tuple[str, int]


class IceGeneration:
    """One generation (one local ufrag/pwd): `receive`, `datagrams_to_send`, `get_timer`, `handle_timer`,
    `next_event`, plus the inputs that come from signaling and gathering."""

    __slots__ = (
        "_alternates_at",
        "_config",
        "_consent_due",
        "_gather_deadline",
        "_now",
        "_out",
        "_random",
        "events",
        "nomination",
        "scheduler",
        "session",
    )

    def __init__(
        self,
        *,
        local: IceParameters,
        controlling: bool,
        tie_breaker: int,
        config: IceConfig,
        pacer: Pacer | None = None,
        random_bytes: Callable[[int], bytes] = random_bytes,
        pair_state_events: bool = True,
    ) -> None:
        self._config = config
        self._random = random_bytes
        if config.renomination:  # announced in the local parameters; on once the peer announces it too
            local = local.with_option(RENOMINATION)
        # a lite agent (local.lite, RFC 8445 2.5) is controlled and sends no checks: its own session class
        self.session: IceSession = (
            LiteSession(local=local, tie_breaker=tie_breaker, config=config, random_bytes=random_bytes)
            if local.lite
            else IceSession(
                local=local, controlling=controlling, tie_breaker=tie_breaker, config=config, random_bytes=random_bytes
            )
        )
        self.session._checklist.failures_only = not pair_state_events
        self.scheduler = CheckScheduler(pacer)
        self.nomination = NominationController(config.nomination_delay)
        self._out: list[Transmit] = []
        #: the queued events, oldest first (`next_event`, `take_events`); a driver may test it before taking.
        #: A handful at a time: a list is lighter than a deque (624 bytes)
        self.events: list[Event] = []
        self._gather_deadline = math.inf
        self._now = -math.inf  # the latest `now` an input brought (events of untimed inputs use it)
        self._alternates_at = math.inf  # renomination: when the other valid pairs' consent is next refreshed
        #: renomination: when each alternate's next consent check is due, and the nominated pair's had it been one
        #: (from the first refresh of the alternates on): every pair's checks stay 0.8-1.2 x apart across moves
        self._consent_due: dict[CandidatePair, float] | None = None

    # ---- inputs: signaling and gathering ----

    def start_gathering(self, now: float) -> None:
        """Gathering began: it is COMPLETE after `gather_timeout` whatever is still at it (GatherTimedOut)."""
        self._now = now
        self._gather_deadline = now + self._config.gather_timeout

    def gathering_done(self) -> None:
        """No more local candidates for this generation (needed to declare the check list failed)."""
        self._gather_deadline = math.inf
        self.session.local_gathering_done()
        if self.session._events:
            self._pull()

    def set_remote_parameters(self, params: IceParameters) -> None:
        """The peer's ufrag/pwd (and pacing): checks may start."""
        self.session.set_remote_parameters(params)
        if self.session._events:
            self._pull()

    def add_local_candidate(self, candidate: Candidate, base: Candidate) -> None:
        """A gathered local candidate and its base (IceSession.add_local_candidate)."""
        self.session.add_local_candidate(candidate, base)
        if self.session._events:
            self._pull()

    def add_remote_candidate(self, candidate: Candidate | None) -> bool:
        """A signalled remote candidate, None = end-of-candidates; False when refused (over the cap)."""
        accepted = self.session.add_remote_candidate(candidate)
        if self.session._events:
            self._pull()
        return accepted

    def add_pending_remote(self) -> None:
        """A remote `.local` candidate is being resolved (no failure until it settles)."""
        self.session.add_pending_remote()
        if self.session._events:
            self._pull()

    def settle_pending_remote(self, resolved: Candidate | None) -> bool:
        """A `.local` resolution ended (IceSession.settle_pending_remote)."""
        accepted = self.session.settle_pending_remote(resolved)
        if self.session._events:
            self._pull()
        return accepted

    def route_failed(self, base: Candidate, remote: Address) -> list[CandidatePair]:
        """The connection under a route closed (ICE-TCP, RFC 6544 7.1): its pairs fail; returns them."""
        pairs = self.session.route_failed(base, remote)
        if self.session._events:
            self._pull()
        return pairs

    # ---- the aioquic-shaped interface ----

    def receive(self, message: Message, data: bytes, addr: Address, base: Candidate, now: float) -> None:
        """A STUN message (decoded from `data`) that arrived on `base` from `addr`; its response, if any, is
        the next of `datagrams_to_send`."""
        self._now = now
        session = self.session
        response = session.handle_stun(message, data, base, addr, now)  # positional: once per input
        if response is not None:
            self._out.append(record(Transmit, (response, base, addr, None)))
        if session._events:
            self._pull()

    def datagrams_to_send(self, now: float) -> list[Transmit]:
        """What goes out now: answers, consent checks and keepalives queued by inputs, retransmissions made
        by `handle_timer`, and the next paced check if Ta and the process-wide pacer allow it."""
        self._now = now
        scheduler = self.scheduler
        # may_send says no without asking while Ta runs (no pacer slot reserved); ask it only otherwise
        if scheduler._slot is not None or now >= scheduler._next:
            session = self.session
            checklist = session._checklist
            # _wants_check is False without a call when nothing is triggered, Frozen, Waiting or repeated
            wanted = (
                bool(checklist.triggered or checklist._n & IDLE or session._requests._repeats) and self._wants_check()
            )
            if scheduler._pacer is None:  # no process-wide pacer: may_send and sent, inline (Ta alone)
                if wanted:
                    t = session.next_check(now)
                    if t is not None:
                        self._out.append(t)
                        scheduler._next = now + session._ta  # effective_ta(config.ta, remote parameters)
                    if session._events:
                        self._pull()
            elif (wanted or scheduler._slot is not None) and scheduler.may_send(now, wanted):
                t = session.next_check(now)
                if t is not None:
                    self._out.append(t)
                    scheduler.sent(now, session._ta)
                else:
                    scheduler.unused()
                if session._events:
                    self._pull()
        out = self._out
        if out:
            self._out = []
        return out

    def get_timer(self) -> float:
        """When to call `handle_timer` (or `datagrams_to_send` for a paced check); math.inf: only after
        input. -inf or a past time: at once."""
        if self._out:
            return -math.inf
        at = self._gather_deadline
        if self._alternates_at < at:
            at = self._alternates_at
        session = self.session
        requests = session._requests
        timer = requests._timer  # Requests.get_timer()'s cached answer (False: work it out)
        if timer is False:
            timer = requests.get_timer()
        if timer is not None and timer < at:
            at = timer
        scheduler = self.scheduler
        slot = scheduler._slot
        if slot is not None:  # scheduler.deadline()
            if slot < at:
                at = slot
        elif scheduler._next < at:
            checklist = session._checklist
            if (checklist.triggered or checklist._n & IDLE or requests._repeats) and self._wants_check():  # as above
                at = scheduler._next
        nomination = self.nomination
        # the controller's deadline is math.inf unless it is awake, we control, and (a nomination concluded)
        # renomination was negotiated: asked only then
        if nomination.awake and session.controlling and (nomination.nominated is None or session._renomination):
            nominate_at = nomination.deadline(session)
            if nominate_at < at:
                at = nominate_at
        return at

    def handle_timer(self, now: float) -> None:
        """Everything due at `now`: the gather timeout, nomination (controlling side), retransmissions and
        transaction timeouts (RFC 8489 6.2.1). Then call `datagrams_to_send(now)`."""
        self._now = now
        session = self.session
        if now >= self._gather_deadline:
            self._gather_deadline = math.inf
            self.events.append(GatherTimedOut())
        nomination = self.nomination
        if nomination.awake and session.controlling and (nomination.nominated is None or session._renomination):
            if nomination.deadline(session) <= now:  # as in get_timer
                nomination.nominate(session)
        if now >= self._alternates_at:
            self._refresh_alternates(now)
        requests = session._requests
        timer = requests._timer
        if timer is False:
            timer = requests.get_timer()
        if timer is not None and timer <= now:
            self._out.extend(session.handle_timer(now))
        if session._events:
            self._pull()

    def next_event(self) -> Event | None:
        """The next event (ice.events), or None."""
        events = self.events
        return events.pop(0) if events else None

    def take_events(self) -> Sequence[Event]:
        """Every queued event, oldest first, at once; the queue is empty after. The same events as calling
        `next_event()` until None, in one call (a caller applying them may queue more: take again until empty)."""
        events = self.events
        if not events:
            return ()
        self.events = []
        return events

    # ---- what the supervisor asks for ----

    def consent_check(self, pair: CandidatePair, now: float) -> None:
        """Queue a consent freshness check on `pair` (RFC 7675 5.1); its retransmissions are this generation's."""
        self._now = now
        self._out.append(self.session.consent_check(pair, now))
        if self._consent_due is not None:
            self._consent_due[pair] = now + self._consent_gap()

    def keepalive(self, pair: CandidatePair) -> None:
        """Queue a keepalive on `pair`: a Binding indication with a fresh transaction id and FINGERPRINT, no
        integrity and no response (RFC 8445 11, RFC 8489 6.1)."""
        keepalive = Message(Method.BINDING, MessageClass.INDICATION, transaction_id=self._random(12))
        data = keepalive.encode(fingerprint=True)
        self._out.append(Transmit(data, pair.base, pair.remote_address, pair))

    def renominate(self, pair: CandidatePair) -> bool:
        """Controlling side with renomination negotiated: nominate the valid pair `pair` now, replacing the
        nominated one without a restart (its check carries a higher NOMINATION value; the peer follows,
        draft-thatcher-ice-renomination). The nomination controller keeps it until a pair of higher
        priority becomes valid or it fails. False (nothing done) when controlled, not negotiated, or
        `pair` is not valid. PairNominated(pair, previous) comes when the peer answered."""
        done = self.nomination.renominate(self.session, pair)
        if self.session._events:
            self._pull()
        return done

    def _refresh_alternates(self, now: float) -> None:
        """Renomination negotiated and a pair nominated: a consent check on each other valid pair kept
        available (nomination.alternates), so that a later move goes to a pair that works, each again after its
        own randomized consent interval (0.8-1.2 x, RFC 7675 5.1) since its last check, the ones it had while
        selected included: a deselected pair is not checked again too soon, nor one that was just selected
        (the supervisor starts from its last answer) too late."""
        due = self._consent_due
        if due is None:
            due = self._consent_due = {}
        nominated = self.nomination.nominated
        checked = alternates(self.session, nominated, now, self._config.consent_timeout)
        for pair in checked:
            if due.get(pair, now) <= now:
                self._out.append(self.session.consent_check(pair, now))
                due[pair] = now + self._consent_gap()
        for pair in [p for p in due if p is not nominated and p not in checked]:
            del due[pair]  # (bounded: the alternates and the nominated pair)
        self._alternates_at = min((due[p] for p in checked), default=now + self._consent_gap())

    def _consent_gap(self) -> float:
        """A randomized consent interval, 0.8-1.2 x (RFC 7675 5.1)."""
        jitter = int.from_bytes(self._random(12)[-2:], "big") / 0xFFFF  # the source transaction ids come from
        return self._config.consent_interval * (0.8 + 0.4 * jitter)

    # ---- queries ----

    @property
    def pair_state_events(self) -> bool:
        """Whether every pair state change is an event (PairStateChanged, the default). False: only the changes
        to FAILED are, the others (two or more per pair checked) are not made at all; for a driver that has
        nobody to tell about them (no observer, no debug log). May be switched at any time."""
        return not self.session._checklist.failures_only

    @pair_state_events.setter
    def pair_state_events(self, value: bool) -> None:
        self.session._checklist.failures_only = not value

    renomination = ReadOnly[bool](
        attrgetter("session._renomination"),
        doc="Both sides announced renomination (draft-thatcher-ice-renomination): nomination is not final.",
    )
    nominated = ReadOnly["CandidatePair | None"](
        attrgetter("nomination.nominated"), doc="The pair nomination concluded on (either role), or None."
    )

    def _wants_check(self) -> bool:
        """A new check could go out (checks wait for the remote parameters, RFC 8445 7.3.1.4 held back):
        `session.has_check_to_send`, inline."""
        session = self.session
        if session.remote_parameters is None or session.local_parameters.lite:  # lite: no checks (2.5)
            return False
        checklist = session._checklist
        if checklist.triggered:
            return True
        if session._completed and not session._renomination:  # ordinary checks are over (8.1.2)
            return False
        return bool(session._requests._repeats) or (checklist._n & IDLE != 0 and checklist.has_sendable)

    def _pull(self) -> None:
        """Move the session's events to this generation's queue; the nomination controller sees each."""
        session = self.session
        nomination = self.nomination
        now = self._now
        pending = session._events
        nominated = nomination.nominated
        for event in pending:  # the list only grows meanwhile (observe does not call the session)
            cls = event.__class__
            if cls is PairStateChanged:  # the commonest: it matters to the controller only on the nominated pair
                if event.pair is not nominated:  # type: ignore[union-attr]
                    continue
            elif cls is PairNominated and session._renomination:
                if self._alternates_at == math.inf:
                    if not session.local_parameters.lite:  # a lite agent sends no checks (RFC 8445 2.5)
                        self._alternates_at = now + self._config.consent_interval
                elif self._consent_due is not None:  # a move: the deselected pair's next check keeps its time
                    at = self._consent_due.get(event.previous, math.inf)  # type: ignore[union-attr,arg-type]
                    if at < self._alternates_at:
                        self._alternates_at = at
            nomination.observe(event, now)
            nominated = nomination.nominated
        self.events += pending
        pending.clear()
