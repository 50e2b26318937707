"""SessionRunner: the Trio side of one ICE generation (DESIGN.md "Concurrency: the nursery tree").

Its tasks run in the agent's nursery, each under a cancel scope the runner cancels (agent/_tasks.py):
the session task, which serves the first OS UDP socket itself and sleeps until woken, until input or
until `generation.get_timer()` (agent/_session_task.py), then runs `pump(now)`: `handle_timer(now)`,
sends `datagrams_to_send(now)`, applies `next_event()`s, and lets the agent's supervisor look, then
sends what must wait (TCP, TURN); gatherer tasks; and one receive task per further transport (each
drains a batch per wake-up and feeds the generation). Every callback, observer hooks included, runs in
one of these tasks, so KeyboardInterrupt, contextvars and exceptions behave as in any Trio code.
The sans-IO IceGeneration (iceagent.ice.generation) holds the protocol and its timing policy; this
module only moves bytes, keeps time and reports events to its owner (the Agent, as a SessionOwner).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import pluggy
import trio

from ..config import IceConfig
from ..gatherers.base import CandidateTransport, GatherOptions
from ..ice.candidate import Candidate, IceParameters
from ..ice.events import (
    ChecklistFailed,
    Event,
    GatherTimedOut,
    LocalCandidateLearned,
    PairNominated,
    PairRemoved,
    PairStateChanged,
    PairValid,
    RemoteCandidateLearned,
)
from ..ice.generation import IceGeneration
from ..ice.pair import CandidatePair, PairState
from ..ice.session import IceSession
from ..logs import get_logger
from ..net.base import Address, Network, TransportCapabilities, UdpSocket, transport_capabilities
from ..states import GatheringState
from ._connections import Connections
from ._context import AgentGatherContext
from ._gathering import Gathering
from ._notify import Notifier, Wakeup
from ._observe import CheckObserver
from ._pacer import global_pacer
from ._receive import MAX_DATA_SOURCES as MAX_DATA_SOURCES
from ._remote_names import RemoteNames
from ._route import Route, make_route
from ._send_path import SendPath
from ._stats import pair_stats
from ._stun_requests import StunRequests
from ._tasks import GenerationTasks

log = get_logger("iceagent.agent")

#: Times one `pump` looks again when what it did changed something (a state, the selected pair), before it
#: leaves the rest to the session task's next round.
PUMP_ROUNDS = 4

#: The runner's own part of an event, by the event's class (`_apply_events`); other events are only the owner's.
_STATE, _SOURCES, _VALID, _CHECKLIST_FAILED, _GATHER_TIMED_OUT, _NOMINATED = range(1, 7)
_RUNNER_PART: dict[type, int] = {
    PairStateChanged: _STATE,
    PairRemoved: _SOURCES,
    RemoteCandidateLearned: _SOURCES,
    LocalCandidateLearned: _SOURCES,
    PairValid: _VALID,
    ChecklistFailed: _CHECKLIST_FAILED,
    GatherTimedOut: _GATHER_TIMED_OUT,
    PairNominated: _NOMINATED,
}


class SessionOwner(Protocol):
    """What a SessionRunner needs from the agent that owns it, and the events it reports to it."""

    name: str
    options: GatherOptions
    network: Network
    config: IceConfig
    tie_breaker: int
    plugin_manager: pluggy.PluginManager

    @property
    def selected_pair(self) -> CandidatePair | None: ...

    def create_gatherers(self) -> list[Any]: ...

    def foundation(self, type: str, base_address: str, transport: str, server: str | None) -> str: ...

    def deliver_many(self, datas: list[bytes]) -> None: ...

    def supervise(self, runner: SessionRunner, now: float) -> float: ...

    def heard(self) -> None:
        """STUN input arrived (the supervisor looks at the pair's counters at the next `supervise`)."""

    def gathering_changed(self, runner: SessionRunner) -> None: ...

    def candidate_gathered(self, runner: SessionRunner, candidate: Candidate) -> None: ...

    def session_event(self, runner: SessionRunner, event: Event) -> None:
        """An event of the runner's generation (ice.events), after the runner's own part of it."""

    def wants_pair_states(self) -> bool:
        """Whether a new generation should report every pair state change (else only those to FAILED)."""

    def observed(self) -> bool:
        """Whether an observer hook is registered (hooks run in the agent's own tasks)."""

    def pair_broken(self, runner: SessionRunner, pair: CandidatePair) -> None:
        """The TCP connection under `pair` closed by itself (RFC 6544 7.1)."""

    def mdns_settled(self, candidate: Candidate, address: str | None, error: str | None) -> None: ...

    def remote_ignored(self, candidate: Candidate, reason: str, source: str) -> None: ...


class SessionRunner(SendPath):
    """One generation: an IceGeneration plus the tasks and sockets that serve it."""

    __slots__ = (
        "_again",
        "_base_of",
        "_caps",
        "_check_hook",
        "_connections",
        "_contexts",
        "_data_pairs",
        "_names",
        "_outbox",
        "_owned",
        "_pumping",
        "_supervising",
        "_tasks",
        "_wakeup",
        "bases",
        "bases_changed",
        "closed",
        "config",
        "failed",
        "gathering",
        "gen",
        "generation",
        "host_done",
        "ice",
        "name",
        "network",
        "options",
        "owner",
        "plugin_manager",
        "stun_requests",
        "transport_of",
    )

    def __init__(self, owner: SessionOwner, generation: int, local: IceParameters, controlling: bool) -> None:
        super().__init__()
        self.owner: SessionOwner = owner
        self.name = owner.name
        self.generation = generation
        self.options: GatherOptions = owner.options
        self.network: Network = owner.network
        self.config = owner.config
        self.plugin_manager = owner.plugin_manager
        self.gen = IceGeneration(
            local=local,
            controlling=controlling,
            tie_breaker=owner.tie_breaker,
            config=self.config,
            pacer=global_pacer() if self.config.global_pacing else None,  # RFC 8445 14.2, one per process
            pair_state_events=owner.wants_pair_states(),  # else two events fewer per checked pair
        )
        #: the generation's IceSession, for queries (pairs, candidates, parameters); input goes to `gen`
        self.ice: IceSession = self.gen.session
        self.gathering = Gathering(self.options)
        self.bases: list[UdpSocket] = []
        self.bases_changed = Notifier()
        self.host_done = False
        self._contexts: list[AgentGatherContext] = []
        self.stun_requests = StunRequests()
        # transports
        self._base_of: dict[int, Candidate] = {}  # id(transport) -> base candidate
        self._caps: dict[int, TransportCapabilities] = {}  # id(transport) -> its fast paths, looked up once
        self.transport_of: dict[Candidate, CandidateTransport] = {}  # base candidate -> transport
        self._connections = Connections()  # ICE-TCP endpoints (RFC 6544)
        self._owned: list[UdpSocket] = []
        self._data_pairs: dict[tuple[int, Address], CandidatePair | None] = {}
        # the session task
        self._wakeup = Wakeup()
        self._pumping = False
        self._again = False  # wake() was called while pumping: pump again
        self._supervising = False  # this pump's round has called the agent's supervisor (see `look`)
        #: packets for transports that cannot send without waiting (TCP, TURN, plugins): the session task sends them
        self._outbox: list[tuple[CandidateTransport, bytes, Address]] = []
        self.failed = False
        self.closed = False
        self._tasks: GenerationTasks | None = None  # this generation's tasks, from `start`
        self._names: RemoteNames | None = None  # made by the first remote `.local` candidate (rare)
        #: the iceagent_check observer hook, only when some plugin implements it (it costs a decode per packet)
        self._check_hook = CheckObserver.create(owner)
        self._observed = self._check_hook is not None or owner.observed()  # (for SessionTask.release)

    @property
    def nominated(self) -> CandidatePair | None:
        """The pair nomination concluded on in this generation, or None."""
        return self.gen.nominated

    # ---- lifetime ----

    def start(self, nursery: trio.Nursery) -> None:
        """Start the session task in the agent's `nursery`; this generation's other tasks follow it there."""
        tasks = self._tasks = GenerationTasks(nursery, self._close_sockets)
        tasks.enter()
        nursery.start_soon(self.run, tasks, name=f"session-{self.name}-{self.generation}")

    async def run(self, tasks: GenerationTasks) -> None:
        """The session task: start gathering (a task per gatherer), then drive the session until `close()`
        or the agent's nursery ends; then this generation's other tasks are cancelled."""
        try:
            if self.closed:  # closed before it started
                return
            self.gen.start_gathering(trio.current_time())
            self._set_gathering(GatheringState.GATHERING)
            gatherers = self.owner.create_gatherers()
            for gatherer in gatherers:
                ctx = AgentGatherContext(self, gatherer.kind)
                self._contexts.append(ctx)
                self.gathering.started(gatherer.kind)
                tasks.start_soon(self._run_gatherer, gatherer, ctx, name=f"gather-{gatherer.kind}")
            if not gatherers:
                self._gathering_complete()
            if self._names is not None:
                self._names.start(tasks)
            await self._drive()
        finally:
            self.closed = True
            self._stop_serving()
            tasks.cancel()
            tasks.leave()  # the sockets close when the last task of this generation has ended
            self.gathering.changed.notify()

    def close(self) -> None:
        """End this generation: cancel its tasks (its sockets close when the last one has ended)."""
        self.closed = True
        self.forget_data_sources()  # the reader reads none of its sockets directly from now on
        if self._tasks is not None:
            self._tasks.cancel()
        for scope in (self._sleep, self._sending):
            if scope is not None:
                scope.cancel()

    def _close_sockets(self) -> None:
        for sock in self._owned:
            sock.close()

    # ---- inputs from the agent (signaling) ----

    def set_remote_parameters(self, params: IceParameters) -> None:
        self.gen.set_remote_parameters(params)
        self.wake()

    def add_remote_candidate(self, candidate: Candidate | None) -> bool:
        """A signalled remote candidate (None: end-of-candidates); False when the session refused it."""
        accepted = self.gen.add_remote_candidate(candidate)
        self.wake()
        return accepted

    # ---- gathering ----

    async def _run_gatherer(self, gatherer: Any, ctx: AgentGatherContext) -> None:
        try:
            await gatherer.run(ctx)
        except Exception as exc:  # a plugin bug must not take the agent down
            log.exception("%s: %s gatherer crashed", self.name, ctx.kind)
            ctx.error(f"crashed: {type(exc).__name__}: {exc}")
        finally:
            ctx.done()
            if ctx.kind == "host" and not self.host_done:
                self.host_done = True
                self.bases_changed.notify()

    def _gather_timed_out(self) -> None:
        """gather_timeout passed: gathering is COMPLETE, whatever gatherers are still at it (named in stats)."""
        for ctx in self._contexts:
            if not ctx.is_done:
                self.gatherer_error(ctx.kind, f"still gathering after gather_timeout={self.config.gather_timeout:g} s")
        self._gathering_complete()

    def gatherer_error(self, kind: str, message: str) -> None:
        self.gathering.error(kind, message)

    def gatherer_done(self, ctx: AgentGatherContext) -> None:
        self.gathering.done[ctx.kind] = all(c.is_done for c in self._contexts if c.kind == ctx.kind)
        if ctx.kind == "host" and not self.host_done:
            self.host_done = True
            self.bases_changed.notify()
        if all(c.is_done for c in self._contexts):
            self._gathering_complete()

    def _gathering_complete(self) -> None:
        if self.gathering.state is GatheringState.COMPLETE:
            return
        self.gen.gathering_done()
        self._set_gathering(GatheringState.COMPLETE)
        self.wake()

    def _set_gathering(self, state: GatheringState) -> None:
        self.gathering.set_state(state)
        self.owner.gathering_changed(self)

    def foundation(self, type: str, base_address: str, transport: str, server: str | None) -> str:
        return self.owner.foundation(type, base_address, transport, server)

    def add_base(self, sock: UdpSocket) -> None:
        """A host socket: remember it, start receiving on it, let srflx/mdns gatherers build on it."""
        host, port = sock.local_address
        base = Candidate(
            foundation=self.owner.foundation("host", host, "udp", None),
            component=1,
            transport="udp",
            priority=0,
            address=host,
            port=port,
            type="host",
        )
        self._owned.append(sock)
        self._register_transport(sock, base)
        self.bases.append(sock)
        self.bases_changed.notify()

    def _register_transport(self, transport: CandidateTransport, base: Candidate) -> None:
        key = id(transport)
        old = self._base_of.get(key)
        if old is not None:
            self.transport_of.pop(old, None)
        self._base_of[key] = base
        self.transport_of[base] = transport  # keeps the transport (and so its id) alive
        if old is None:  # a new transport: the session task's own socket, or a receive task of its own
            if hasattr(transport, "confirm"):
                self._confirming = True
            caps = self._caps[key] = transport_capabilities(transport)
            if caps.connection is not None:
                self._connections.add(caps.connection, self._connection_closed)
            if not self._serve(transport):
                assert self._tasks is not None
                self._tasks.start_soon(self._receive_loop, transport, name=f"receive-{self.name}")
            else:  # served by the session task: its sends skip the lookup only on a plain OS socket
                plain = not self._inbox and not hasattr(transport, "confirm")
                self._own_sendto = getattr(transport, "sync_sendto", None) if plain else None
        if transport is self._served and self._own_sendto is not None:
            self._own_base = base
        elif base == self._own_base:  # (another transport under an equal base: the lookup decides)
            self._own_base = None

    def emit(self, candidate: Candidate, transport: CandidateTransport, *, kind: str) -> None:
        """A gatherer found a candidate: apply the policy, find its base, hand it to the session and the app.

        Host and relay candidates are their own base (RFC 8445 5.1.1.1), unless the transport is a socket
        already registered under another address: a `.local` name (draft-ietf-mmusic-mdns-ice-candidates
        3.1.1) or a public address standing for the socket (1:1 NAT); srflx candidates take the base of
        their transport (5.1.1.2)."""
        if self.closed:
            return
        admitted = self.gathering.admit(candidate)
        if admitted is None:
            return
        candidate = admitted
        found = self._base_of.get(id(transport))
        own_base = candidate.type in ("host", "relay") and not candidate.is_mdns and (
            found is None
            or candidate.type == "relay"
            or (found.address, found.port) == (candidate.address, candidate.port)
        )
        if own_base:
            base = candidate
            self._register_transport(transport, base)
        elif found is None:
            log.warning("%s: %s candidate with an unknown transport dropped", self.name, kind)
            return
        else:
            base = found
        self.gen.add_local_candidate(candidate, base)
        self.gathering.add(candidate, kind)
        self.owner.candidate_gathered(self, candidate)
        self.wake()

    # ---- remote `.local` candidates (draft-ietf-mmusic-mdns-ice-candidates 3.2) ----

    def resolve_remote(self, candidate: Candidate) -> None:
        """Resolve a remote `.local` candidate in a task of this generation (see RemoteNames)."""
        if self.closed:
            return
        names = self._names
        if names is None:
            names = self._names = RemoteNames(
                name=self.name,
                network=self.network,
                config=self.config,
                gen=self.gen,
                owner=self.owner,
                bases=self,
                settled=self.remote_name_settled,
            )
        names.resolve(candidate, self._tasks)

    def remote_name_settled(self) -> None:
        self.wake()

    # ---- the session task ----

    def wake(self) -> None:
        """Something changed (input, candidates, the agent's state): have the session task pump. While this
        session's `pump` runs (a callback it made changed something), that pump asks to run again."""
        if self._pumping:
            self._again = True
        elif not self.closed:
            if self._holding:
                self._held = True  # `release` does the session task's turn (see _session_task.py)
            elif self._polling:
                self._alert()
            else:  # (what `_alert` does then, without its call: busy, or waiting on its Wakeup)
                self._wakeup.set()

    def look(self) -> None:
        """The agent's state or selected pair changed (Agent._notify): its supervisor must look. A pump of this
        session whose round has yet to call the supervisor looks anyway (it is called after the round's
        events), so that needs no round more; otherwise as `wake()`."""
        if self._pumping:
            if self._supervising:
                self._again = True  # (as `wake()` does then)
        elif not self.closed:  # (as `wake()` does then, without its call)
            if self._holding:
                self._held = self._looked = True  # (`release` pumps for it even when nothing else is due)
            elif self._polling:
                self._alert()
            else:
                self._wakeup.set()

    def pump(self, now: float, due: bool = True) -> float:
        """Everything due at `now` that needs no waiting: the generation's timers (gather timeout,
        nomination, retransmissions), what it has to send (answers, the next paced check), its events,
        and the agent's supervisor; again while that changed something (at most PUMP_ROUNDS times).
        Returns when to pump again (math.inf: only after a change; -inf: at once). `due=False`: the caller
        found the generation's timer not passed and no events, so the first round asks only the supervisor."""
        if self.closed:
            return math.inf
        self._pumping = True
        try:
            gen = self.gen
            owner = self.owner
            transmit = self._transmit
            for _ in range(PUMP_ROUNDS):
                self._again = self._supervising = False
                if gen.events:  # inputs (remote candidates, end-of-candidates) may have queued events
                    self._apply_events()
                if due:
                    gen.handle_timer(now)  # does only what is due (as cheap as asking get_timer() first)
                    for t in gen.datagrams_to_send(now):  # (`flush`, inline: a call less per pump)
                        transmit(t)
                    if gen.events:
                        self._apply_events()
                due = True
                self._supervising = True  # from here on a change of the agent's state needs another round
                deadline = owner.supervise(self, now) if not self.closed else math.inf
                if self.closed:
                    return math.inf
                if not self._again:
                    timer = gen.get_timer()
                    return deadline if deadline < timer else timer
            return -math.inf  # it keeps changing: the session task looks again after the others ran
        finally:
            self._pumping = self._supervising = False

    def flush(self, now: float) -> None:
        """Send what the generation has to send now, and apply the events that caused."""
        gen = self.gen
        for t in gen.datagrams_to_send(now):
            self._transmit(t)
        if gen.events:  # most flushes queue none: no call to take none
            self._apply_events()

    def _apply_events(self) -> None:
        """The runner's part of each event (connections, the data-source cache, gathering), then the owner's.
        Dispatched by the event's class (ice.events has no subclasses): one dict lookup, not a chain of
        isinstance calls."""
        owner = self.owner
        gen = self.gen
        event: Any  # one of ice.events, told apart by `part`
        events = gen.take_events()
        while events:  # what applying them queues comes after them, in order
            for event in events:
                part = _RUNNER_PART.get(type(event), 0)
                if part == _NOMINATED:
                    owner.session_event(self, event)
                    if self._connections.by_id is not None:  # (ICE-TCP only)
                        self._prune_connections(event.pair)
                    continue
                if part == _SOURCES:
                    self.forget_data_sources()  # a data source may have become known, or unknown
                elif part == _VALID:  # also a data source: a response from the remote passed MESSAGE-INTEGRITY
                    self.forget_data_sources()
                    if self._confirming:
                        self._confirm(self.transport_of.get(event.pair.base), event.pair.remote_address)
                elif part == _STATE:
                    if event.new is PairState.FAILED and event.pair.base.transport == "tcp":
                        self._close_connection(event.pair)
                elif part == _CHECKLIST_FAILED:
                    self.failed = True
                elif part == _GATHER_TIMED_OUT:
                    self._gather_timed_out()
                    continue
                owner.session_event(self, event)
            events = gen.take_events() if gen.events else ()  # (no call to take none)

    # ---- what the agent's supervisor asks for (on the selected pair's generation) ----

    def send_consent(self, pair: CandidatePair, now: float) -> None:
        """A consent check on `pair` (RFC 7675 5.1), sent now; its retransmissions are this session's."""
        self.gen.consent_check(pair, now)
        self.flush(now)
        self.wake()

    def send_keepalive(self, pair: CandidatePair, now: float) -> None:
        """A keepalive on `pair` (RFC 8445 11), sent now."""
        self.gen.keepalive(pair)
        self.flush(now)

    # ---- ICE-TCP connections (RFC 6544 7) ----

    def _connection_closed(self, transport: CandidateTransport, remote: Address) -> None:
        """A TCP connection ended by itself: its pairs fail now (RFC 6544 7.1); a selected one is the agent's."""
        if self.closed:
            return
        base = self._base_of.get(id(transport))
        if base is None:
            return
        broken = self.gen.route_failed(base, remote)
        self._apply_events()
        for pair in broken:
            self.owner.pair_broken(self, pair)
        self.wake()

    def _close_connection(self, pair: CandidatePair) -> None:
        """A TCP pair failed: close its connection, unless the stream still sends on it."""
        if self.owner.selected_pair is pair:
            return
        self._connections.close(self.transport_of.get(pair.base), pair.remote_address)

    def route_for(self, pair: CandidatePair, current: Route | None = None) -> Route | None:
        """The route that sends for `pair`: the transport of its base (RFC 8445 7.2.5.3.2) with its fast paths;
        `current` itself when that is it already (none is made)."""
        transport = self.transport_of.get(pair.base)
        if transport is None:
            return None
        if current is not None and current[2] is pair and current[0] is transport:
            return current
        return make_route(transport, self._caps[id(transport)], pair)

    # ---- stats ----

    def gatherer_stats(self) -> dict[str, Any]:
        """For `agent.stats()["gatherers"]`."""
        return self.gathering.stats()

    def table_sizes(self) -> dict[str, int]:
        """The session's table sizes (IceSession.table_sizes) and this runner's own: for tests and soak runs."""
        return {
            **self.ice.table_sizes(),
            "data_sources": len(self._data_pairs),
            "stun_waiters": len(self.stun_requests),
            "outbox": len(self._outbox),
        }

    def stats_pairs(self) -> list[dict[str, Any]]:
        """One dict per pair of this generation (agent.stats()["pairs"])."""
        return pair_stats(self.ice)
