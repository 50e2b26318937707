"""What the generations' events and the supervisor's actions mean for the agent (DESIGN.md "Timing and
states"): which valid pair the stream sends on ("selected": the best valid pair, then the nominated
one, RFC 8445 8.1.1, 12; with renomination the pair nominated last, draft-thatcher-ice-renomination),
the agent's IceState, and losing the selected pair (consent, RFC 7675 5.1; a closed ICE-TCP
connection, RFC 6544 7.1; a restart's previous generation, RFC 8445 9, 12.1).

`AgentStates` is the part of `Agent` (agent/core.py) that decides this; the lifetime, the public API
and the signaling intake are core.py's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import trio
from trio_util import AsyncValue

from ..gatherers.base import GatherOptions
from ..gatherers.host import host_addresses
from ..ice.events import ChecklistFailed, Event, PairNominated, PairStateChanged, PairValid, RoleChanged
from ..ice.nomination import alternates
from ..ice.pair import CandidatePair, PairState
from ..ice.supervisor import (
    TERMINAL,
    Fail,
    Restart,
    RouteLost,
    SendConsent,
    SendKeepalive,
    SetState,
    Supervisor,
    SupervisorAction,
)
from ..logs import get_logger
from ..net.base import InterfaceChange, Network
from ..net.mux import AgentMux
from ..states import IceState
from ._continual import gather_late, may_gather
from ._lazy_value import LazyAsyncValue, made_on_read
from ._observe import AgentObservers
from ._route import Route, RouteState
from ._runner import SessionRunner

__all__ = ["AgentStates"]

log = get_logger("iceagent.agent")

#: What an event of a generation is to the agent, by its class (`session_event`; ice.events has no subclasses):
#: one dict lookup instead of a chain of isinstance calls per event. Other events are nothing to it.
_PAIR_STATE, _PAIR_VALID, _NOMINATED, _ROLE, _CHECKLIST_FAILED = range(1, 6)
_EVENT_KIND: dict[type, int] = {
    PairStateChanged: _PAIR_STATE,
    PairValid: _PAIR_VALID,
    PairNominated: _NOMINATED,
    RoleChanged: _ROLE,
    ChecklistFailed: _CHECKLIST_FAILED,
}


class AgentStates:
    """Selection and states; `Agent` supplies the fields and the lifetime methods declared here."""

    #: the fields this part changes (the others are Agent's and only read here)
    __slots__ = ("_awaiting_address", "_failure_reason", "_route_runner", "_selected_at", "_state", "_state_value",
                 "_supervise", "_supervise_at", "controlling")

    name: str
    auto_restart: bool
    controlling: bool
    #: the IceState; `state` (the AsyncValue of the contract) is made on first read and follows it
    _state: IceState
    _state_value: LazyAsyncValue[IceState] | None
    supervisor: Supervisor
    _routes: RouteState
    _route_runner: SessionRunner | None
    _selected_at: float
    _runners: list[SessionRunner]
    _current: SessionRunner | None
    _failure_reason: str | None
    _supervise: bool
    _supervise_at: float
    _observers: AgentObservers | None
    options: GatherOptions
    network: Network
    continual_gathering: bool
    _mux: AgentMux | None
    _closed: bool
    _nursery: trio.Nursery | None

    @property
    def state(self) -> AsyncValue[IceState]:
        """The agent's IceState (an AsyncValue: wait on it, or read `.value`)."""
        return made_on_read(self, "_state_value", self._state)

    def _notify(self) -> None:
        raise NotImplementedError

    def _hook(self, name: str, **kwargs: Any) -> None:
        raise NotImplementedError

    def _restart_now(self, first: bool = False) -> SessionRunner:
        raise NotImplementedError

    def _retire_runner(self, runner: SessionRunner) -> None:
        raise NotImplementedError

    def _close_runner(self, runner: SessionRunner) -> None:
        raise NotImplementedError

    def create_gatherers(self) -> list[Any]:
        raise NotImplementedError

    def _restart_after_address_loss(self) -> None:
        """Restart now when there is an address to gather on (a mux agent's are the mux's), else at the
        next address that appears (`_addresses_added`): a generation with no candidate would only fail."""
        opts = self.options
        try:
            usable = self._mux is not None or bool(host_addresses(
                self.network, opts.host_addresses, interface_filter=opts.interface_filter, ip_filter=opts.ip_filter))
        except ValueError:
            usable = True  # the restart's host gatherer reports it
        if usable:
            self._restart_now()
        else:
            self._awaiting_address = True

    def _addresses_added(self, addresses: list[str]) -> None:
        """New local addresses (after `network_changed` looked at the selected pair): an agent that restarts
        by itself and has no pair restarts now if it is FAILED or lost its pair's address with nothing left
        to gather on (the new generation gathers on them); else, with continual_gathering, the current
        generation gathers on those its options allow."""
        if self._closed or self._nursery is None:
            return
        if self.auto_restart and self._routes.route is None and (
            self._state is IceState.FAILED or self._awaiting_address
        ):
            self._awaiting_address = False
            log.info("%s: new local address %s: restarting now", self.name, ", ".join(addresses))
            self._restart_now()
            return
        runner = self._current
        if not self.continual_gathering or runner is None:
            return
        gatherers = self.create_gatherers()
        for address in addresses:
            if self._mux is None and may_gather(runner.options, self.network, address):
                self._nursery.start_soon(gather_late, runner, gatherers, address, name=f"gather-late-{self.name}")

    # ---- events of the generations ----

    def observed(self) -> bool:
        """Whether a plugin observes this agent (its hooks run in the agent's tasks: the session task keeps the
        turn a signalling call would otherwise do itself, SessionTask.release)."""
        return self._observers is not None

    def wants_pair_states(self) -> bool:
        """Pair state changes other than to FAILED are only told to observers (iceagent_pair_state_changed) and
        the debug log: a generation started while neither listens does not make them."""
        observers = self._observers
        return (observers is not None and observers.listens("iceagent_pair_state_changed")) or log.isEnabledFor(
            logging.DEBUG
        )

    def session_event(self, runner: SessionRunner, event: Event) -> None:
        """What an event of a generation means for the agent: its state, the selected pair, its role."""
        kind = _EVENT_KIND.get(type(event), 0)
        e: Any = event  # its class is the one `kind` names
        if kind == _PAIR_STATE:
            pair = e.pair
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: pair %s -> %s: %s", self.name, pair.local.to_sdp(), pair.remote.to_sdp(), e.new)
            if self._observers is not None:
                self._hook("iceagent_pair_state_changed", pair=pair, old=e.old, new=e.new)
        elif kind == 0 or runner is not self._current:
            return  # an older generation only carries data until the new one has nominated (12.1)
        elif kind == _PAIR_VALID:
            self._pair_valid(runner, e.pair)
        elif kind == _NOMINATED:
            route = self._routes.route
            if route is None or route[2] is not e.pair or self._route_runner is not runner:
                self._select(runner, e.pair)  # (usually the pair is the one selected already: nothing to do)
            if e.previous is not None:
                self._renominated(e.previous, e.pair)
            if len(self._runners) > 1:
                for other in list(self._runners):
                    if other is not runner:
                        self._retire_runner(other)
            if self._state in (IceState.NEW, IceState.CHECKING):
                self._set_state(IceState.CONNECTED)  # valid and nominated at once (a lite agent, RFC 8445 7.3.2)
            self._set_state(IceState.COMPLETED)
        elif kind == _ROLE:
            role = "controlling" if e.controlling else "controlled"
            log.info("%s: role conflict resolved: now %s", self.name, role)
            self.controlling = e.controlling
        elif self._routes.route is None:  # ChecklistFailed
            self._fail(e.reason + runner.gathering.failure_hint())

    def _pair_valid(self, runner: SessionRunner, pair: CandidatePair) -> None:
        if self._route_runner is not None and self._route_runner is not runner:
            return  # restart in progress: the old pair carries data until the new one is nominated (12.1)
        if runner.gen.nominated is not None:
            return
        # the best valid pair whose last check did not fail (a broken TCP pair is valid but Failed)
        best = pair
        for valid in runner.ice.valid_pairs:
            if valid.state is not PairState.FAILED:
                best = valid
                break
        if self._state in (IceState.NEW, IceState.CHECKING, IceState.FAILED, IceState.DISCONNECTED):
            self._select(runner, best, notify=False)  # the state change tells everyone, once
            self._set_state(IceState.CONNECTED)
        else:
            self._select(runner, best)

    def _renominated(self, old: CandidatePair, new: CandidatePair) -> None:
        """Nomination moved without a restart (renomination): the stream sends on `new` from now on (it was
        selected just before); `old` still delivers what the peer sent on it before it learned of the move."""
        if log.isEnabledFor(logging.INFO):
            log.info("%s: renominated %s <-> %s (was %s <-> %s)", self.name, new.local.to_sdp(), new.remote.to_sdp(),
                     old.local.to_sdp(), old.remote.to_sdp())
        self._hook("iceagent_renomination", old=old, new=new)

    def pair_broken(self, runner: SessionRunner, pair: CandidatePair) -> None:
        """The TCP connection under a pair closed (RFC 6544 7.1). If the stream sends on it: before
        nomination it moves to the next valid pair, or back to CHECKING while checks are still under way
        (the peer may have closed it because it nominated another pair); otherwise consent is lost at
        once (RFC 7675 5.1)."""
        route = self._routes.route
        if route is None or route[2] is not pair or self._route_runner is not runner:
            return
        if not pair.nominated:
            for other in runner.ice.valid_pairs:
                if other is not pair and other.state is not PairState.FAILED:
                    self._select(runner, other)
                    return
            if runner is self._current and runner.ice.checks_pending:
                self._unselect()
                self.supervisor.checking_started(trio.current_time())
                self._set_state(IceState.CHECKING)
                return
        self._route_lost("the TCP connection of the selected pair closed (RFC 6544 7.1, consent lost: RFC 7675 5.1)")

    # ---- the supervisor (iceagent.ice.supervisor) ----

    def heard(self) -> None:
        """STUN input arrived: the supervisor looks at the pair's counters at this pump, so the time it
        notes for the latest receipt (its DISCONNECTED clock) is the input's, without polling on a tick. With no
        selected pair there are no counters to look at (a pair that becomes valid is `_notify`'s)."""
        if self._routes.route is not None:
            self._supervise = True

    def supervise(self, runner: SessionRunner, now: float) -> float:
        """Called by the current generation's pump: poll the supervisor when something changed or when it
        asked to be, apply what it says; returns when to poll again."""
        if runner is not self._current or runner.closed:
            return math.inf
        if not self._supervise and now < self._supervise_at:
            return self._supervise_at
        self._supervise = False  # a change the actions make below asks for another look
        poll = self.supervisor.poll
        for _ in range(4):  # a RouteLost or Fail changes the state: look again (at most a few times)
            route = self._routes.route
            if route is not None:
                actions, at = poll(now, state=self._state, pair=route[2], selected_at=self._selected_at)
            else:  # only a lite session has `last_check_at` (and only a lite supervisor reads it)
                checked_at = getattr(runner.ice, "last_check_at", None) if self.options.lite else None
                actions, at = poll(now, state=self._state, pair=None, selected_at=self._selected_at,
                                   checked_at=checked_at)
            if not actions:
                break
            for action in actions:
                self._apply(action, now)
            if not isinstance(actions[-1], TERMINAL) or self._current is not runner:
                break
        self._supervise_at = at
        return at

    def _apply(self, action: SupervisorAction, now: float) -> None:
        runner = self._route_runner
        if isinstance(action, SendConsent):
            if runner is not None:
                runner.send_consent(action.pair, now)
        elif isinstance(action, SendKeepalive):
            if runner is not None:
                runner.send_keepalive(action.pair, now)
        elif isinstance(action, SetState):
            self._set_state(action.state)
        elif isinstance(action, RouteLost):
            self._route_lost(action.reason)
        elif isinstance(action, Fail):
            self._fail(action.reason)
        elif isinstance(action, Restart):
            self._restart_now()

    # ---- the selected pair and the state ----

    def _select(self, runner: SessionRunner, pair: CandidatePair, *, notify: bool = True) -> None:
        """The stream sends on `pair` from now on. `notify=False`: the caller changes the state next, and that
        `_notify()`s (connect() waiters, the supervisor) once for both."""
        old = self._routes.route
        route = runner.route_for(pair, old)
        if route is None:
            log.warning("%s: no transport for the valid pair %s", self.name, pair.local.to_sdp())
            return
        if route is old and self._route_runner is runner:
            return  # selected already (as when the valid pair is nominated): nothing changed to tell anyone
        self._routes.route = route
        self._route_runner = runner
        if old is None or old[2] is not pair:
            self._selected_at = trio.current_time()
            if log.isEnabledFor(logging.INFO):
                log.info("%s: selected pair %s <-> %s", self.name, pair.local.to_sdp(), pair.remote.to_sdp())
            if self._observers is not None:
                self._hook("iceagent_selected_pair_changed", pair=pair)
        if notify:
            self._notify()

    def _unselect(self) -> None:
        """No pair is selected any more (the stream waits)."""
        if self._routes.route is not None:
            self._routes.route = None
            self._route_runner = None
            self._hook("iceagent_selected_pair_changed", pair=None)

    def _set_state(self, new: IceState) -> None:
        old = self._state
        if old is new or old is IceState.CLOSED:
            return
        if log.isEnabledFor(logging.INFO):
            log.info("%s: %s -> %s", self.name, old.value, new.value)
        if new is IceState.FAILED and not self.auto_restart:  # failed for good: what connect() and send() raise
            self._routes.failure = self._failure_reason or "ICE failed: no candidate pair works"
        else:
            self._routes.failure = None
        self._state = new
        if self._state_value is not None:
            self._state_value.value = new
        if self._observers is not None:
            self._hook("iceagent_state_changed", old=old, new=new)
        self._notify()

    def _route_lost(self, reason: str) -> None:
        """The selected pair died. During a restart (it belongs to an older generation) the agent goes
        back to the new generation's best valid pair, or to CHECKING; otherwise it is FAILED."""
        runner = self._route_runner
        current = self._current
        if runner is not None and runner is current and self._move_on(runner, reason):
            return
        if runner is None or current is None or runner is current:
            self._fail(reason)
            return
        log.info("%s: the previous generation's pair died during the restart: %s", self.name, reason)
        self._unselect()
        self._close_runner(runner)
        valid = [p for p in current.ice.valid_pairs if p.state is not PairState.FAILED]
        if valid:
            self._select(current, valid[0])
            self._set_state(IceState.COMPLETED if valid[0].nominated else IceState.CONNECTED)
        elif current.ice.failed:  # the new generation's check list already failed (ignored while routed)
            self._fail(f"{reason}; and every candidate pair of the new generation failed")
        else:
            self.supervisor.checking_started(trio.current_time())
            self._set_state(IceState.CHECKING if current.ice.remote_parameters is not None else IceState.NEW)

    def _move_on(self, runner: SessionRunner, reason: str) -> bool:
        """Renomination negotiated: the selected pair's route is gone, but another valid pair may carry the
        stream without a restart (DESIGN.md "Continual gathering"). Its route fails in the generation, the
        stream moves at once to the best other valid pair that still has consent (the generation keeps it
        fresh: nomination.alternates), and the nomination follows: the controlling side renominates that
        pair, the controlled side waits for the peer's renomination. False when no other pair has consent
        (a peer that is gone: FAILED as without renomination)."""
        route = self._routes.route
        if route is None or not runner.gen.renomination:
            return False
        lost = route[2]
        runner.gen.route_failed(lost.base, lost.remote_address)
        now = trio.current_time()
        others = alternates(runner.ice, lost, now, runner.config.consent_timeout)
        if not others:
            return False
        log.info("%s: the selected pair is lost (%s); moving to another valid pair (renomination)", self.name, reason)
        pair = others[0]
        runner.gen.renominate(pair)  # controlling side (the controlled one follows the peer: False)
        self._select(runner, pair)
        # its consent is as old as its last answer (RFC 7675 5.1), not renewed by the move
        self._selected_at = min(self._selected_at, pair.last_consent or now)
        runner.wake()
        return True

    def _fail(self, reason: str) -> None:
        if self._state in (IceState.FAILED, IceState.CLOSED):
            return
        log.warning("%s: ICE failed: %s", self.name, reason)
        self._failure_reason = f"ICE failed: {reason}"
        self._unselect()
        self._set_state(IceState.FAILED)

    # ---- the network under the selected pair (DESIGN.md "Continual gathering") ----

    def network_changed(self, changes: Sequence[InterfaceChange]) -> None:
        """Addresses of the Network came or went (`Network.watch_interfaces()`): the observer hook, then
        the selected pair's local address gone is `_local_address_gone`, and new addresses are the
        agent's to gather on (`_addresses_added`)."""
        if self._state is IceState.CLOSED:
            return
        self._hook("iceagent_network_changed", changes=tuple(changes))
        route = self._routes.route
        removed = {c.address for c in changes if c.kind == "removed"}
        if route is not None and removed:
            address = gone_under(route, self._route_runner, removed)
            if address is not None:
                self._local_address_gone(address, removed)
        added = [c.address for c in changes if c.kind == "added"]
        if added:
            self._addresses_added(added)

    def _local_address_gone(self, address: str, removed: set[str]) -> None:
        """The local address under the selected pair disappeared: nothing sent on the pair leaves any
        more, so consent (RFC 7675 5.1) is not waited for. This is the one place that decides what
        follows. With renomination negotiated (draft-thatcher-ice-renomination), or during a restart,
        every pair of the current generation on a removed address fails first; then `_route_lost` moves
        the stream to another valid pair that still has consent (renomination: no restart) or to the new
        generation's best valid pair; otherwise (or with no such pair) the pair is lost at once (FAILED),
        and with auto_restart a FAILED agent restarts now, with no back-off (the cause is known), or at
        the next new address when none is left."""
        reason = f"the local address {address} under the selected pair disappeared (network change)"
        log.info("%s: %s", self.name, reason)
        current = self._current
        if current is not None and (current is not self._route_runner or current.gen.renomination):
            # the pair the stream moves to (renomination, or the new generation's during a restart) must
            # not be one on a removed address too
            for pair in list(current.ice.valid_pairs):
                transport = current.transport_of.get(pair.base)
                if transport is not None and gone_under((transport, pair.remote_address, pair, None, None),
                                                       current, removed):
                    current.gen.route_failed(pair.base, pair.remote_address)
        self._route_lost(reason)
        if self.auto_restart and self._state is IceState.FAILED:
            self._restart_after_address_loss()


def gone_under(route: Route, runner: SessionRunner | None, removed: set[str]) -> str | None:
    """The removed address the route sent from, if it was one: its transport's address (a TURN
    allocation's is that of its socket to the server), else its base's. A transport bound to the
    wildcard (a relay's, by default) sends from whichever address the host routes through: it is taken
    as gone when one of the addresses its generation gathered on is."""
    local = getattr(route[0], "local_address", None)
    if local is None or local[0] not in ("0.0.0.0", "::"):
        address = route[2].base.address if local is None else str(local[0])
        return address if address in removed else None
    gathered = set() if runner is None else {sock.local_address[0] for sock in runner.bases}
    return next((a for a in sorted(removed) if a in gathered), None)
