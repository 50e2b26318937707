"""The Agent and `open_agent()`: the public face of iceagent (DESIGN.md "Contract").

The agent nursery holds one SessionRunner per live ICE generation and the supervisor (consent,
disconnected/failed timers, automatic restart). The agent decides which valid pair the IceStream
sends on ("selected": the best valid pair, then the nominated one) and its IceState.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pluggy
import trio
from trio_util import AsyncValue

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from .._addresses import IP
from .._agent_options import check_agent_options, check_servers
from ..config import IceConfig
from ..errors import IceError
from ..gatherers.base import GatherOptions
from ..ice.candidate import MAX_PACING, Candidate, IceParameters, check_candidate, unusable_reason
from ..ice.credentials import new_parameters
from ..ice.pair import CandidatePair, PairState
from ..ice.supervisor import (
    Supervisor,
)
from ..logs import get_logger
from ..net.base import Network
from ..net.mux import AgentMux, Mux
from ..net.os import OSNetwork
from ..net.watch import InterfaceChanges
from ..plugins import get_plugin_manager
from ..states import GatheringState, IceState
from ..stun.message import random_bytes
from ..uri import IceServer
from ._lazy_value import LazyAsyncValue, made_on_read
from ._observe import AgentObservers
from ._remote import RemoteGate
from ._remote_names import MdnsCounters
from ._route import RouteState, connected_checkpoint
from ._runner import SessionRunner
from ._states import AgentStates
from .stream import IceStream, Inbox

log = get_logger("iceagent.agent")

#: The configuration of agents opened without one (frozen: one serves them all, and its Ta is the default one).
_DEFAULT_CONFIG = IceConfig()

#: What stats() shows for an agent that has not needed its RemoteGate or MdnsCounters yet (never changed).
_NO_GATE = RemoteGate("", _DEFAULT_CONFIG)
_NO_MDNS = MdnsCounters()


class Agent(AgentStates):
    """An ICE agent; created by `open_agent()`, valid inside its `async with` only."""

    __slots__ = (
        "_closed",
        "_current",
        "_dropped",
        "_foundations",
        "_gate",
        "_gathering_state",
        "_gathering_value",
        "_generation_value",
        "_inbox",
        "_initial",
        "_mdns",
        "_mux",
        "_nursery",
        "_observers",
        "_routes",
        "_runners",
        "_stream",
        "_watch",
        "auto_restart",
        "config",
        "continual_gathering",
        "name",
        "network",
        "options",
        "plugin_manager",
        "supervisor",
        "tie_breaker",
    )

    def __init__(
        self,
        *,
        controlling: bool,
        options: GatherOptions,
        auto_restart: bool,
        network: Network,
        name: str,
        plugin_manager: pluggy.PluginManager,
    ) -> None:
        self.name = name
        self.options = options
        self.config: IceConfig = options.config
        self.network = network
        self.auto_restart = auto_restart
        self.controlling = controlling
        self.tie_breaker = int.from_bytes(random_bytes(8), "big")  # RFC 8445 7.1.1: 64-bit random
        self.plugin_manager = plugin_manager
        #: the observer hooks some plugin implements (None: none, the usual case)
        self._observers = AgentObservers.create(self)
        # state, gathering_state and generation are AsyncValues made on first read (most are never read): until
        # then the agent keeps the plain value (see AgentStates.state)
        self._state = IceState.NEW
        self._state_value: LazyAsyncValue[IceState] | None = None
        self._gathering_state = GatheringState.NEW
        self._gathering_value: LazyAsyncValue[GatheringState] | None = None
        self._generation_value: LazyAsyncValue[int] | None = None
        self._runners: list[SessionRunner] = []
        self._current: SessionRunner | None = None
        #: the route the stream sends on; connect() and IceStream.send() wait on it
        self._routes = RouteState(name)
        self._route_runner: SessionRunner | None = None
        self._selected_at = 0.0
        # consent timing is randomized (RFC 7675 5.1) from the `random` module: a program that seeds it (as the
        # soak test does) runs the same every time, and no agent carries a generator of its own (2.5 KiB)
        self.supervisor = Supervisor(self.config, auto_restart=auto_restart, lite=options.lite)
        self._supervise = True  # poll the supervisor at the next pump (see `supervise`)
        self._supervise_at = -math.inf  # when the supervisor asked to be polled again
        #: the keys of the foundations handed out so far; a key's foundation is its position + 1 (a tuple: an agent
        #: has a handful, and a dict per agent costs more than the scan)
        self._foundations: tuple[tuple[str, str, str, str | None], ...] = ()
        self._inbox = Inbox(self.config.receive_buffer)
        self._stream = IceStream(self._routes, self._inbox)
        self._dropped = 0
        self._closed = False
        self._failure_reason: str | None = None
        self._nursery: trio.Nursery | None = None
        self._mdns: MdnsCounters | None = None  # made by the first remote `.local` candidate that settles
        self._gate: RemoteGate | None = None  # made by the first ignored candidate or peer restart (`_remote_gate`)
        self._mux: AgentMux | None = None  # open_agent(mux=...): the agent's endpoint on the mux
        #: open_agent(continual_gathering=True): gather on addresses that appear later (DESIGN.md)
        self.continual_gathering = False
        self._watch: InterfaceChanges | None = None  # the Network's interface changes, while open
        #: how many candidates the current generation had when its gathering completed (-1: not yet); the later
        #: ones are new_candidates()
        self._initial = -1
        self._awaiting_address = False  # the selected pair's address went and no other was left to gather on

    # ---- public API ----

    @property
    def gathering_state(self) -> AsyncValue[GatheringState]:
        """The current generation's GatheringState (an AsyncValue: wait on it, or read `.value`)."""
        return made_on_read(self, "_gathering_value", self._gathering_state)

    @property
    def generation(self) -> AsyncValue[int]:
        """The ICE generation (an AsyncValue): bumps on every restart."""
        return made_on_read(self, "_generation_value", 0)  # 0 until the first restart sets it

    @property
    def local_parameters(self) -> IceParameters:
        """This generation's ufrag/pwd, to signal to the peer."""
        return self._runner().ice.local_parameters

    @property
    def selected_pair(self) -> CandidatePair | None:
        """The pair the stream sends on now (None before connect() returns and while FAILED)."""
        route = self._routes.route
        return None if route is None else route[2]

    async def gather(self) -> AsyncIterator[Candidate]:
        """Yield this generation's local candidates as they are found; ends when gathering completes."""
        runner = self._runner()
        gathering = runner.gathering
        i = 0
        while True:
            while i < len(gathering.candidates):
                yield gathering.candidates[i]
                i += 1
            if gathering.state is GatheringState.COMPLETE or runner.closed:
                return
            await gathering.changed.wait()

    def set_remote_parameters(self, params: IceParameters) -> None:
        """The peer's ufrag/pwd (and optional pacing). A new ufrag after the first means the peer restarted:
        this agent restarts too, at most once per `IceConfig.peer_restart_interval` (see agent/remote.py)."""
        runner = self._open_runner()
        if not isinstance(params, IceParameters):
            raise TypeError(f"set_remote_parameters takes IceParameters, not {type(params).__name__}")
        runner.hold()  # what this call makes due is done at its end, in this task (SessionTask.release)
        try:
            self._set_remote_parameters(runner, params)
        finally:
            runner.release()

    def _set_remote_parameters(self, runner: SessionRunner, params: IceParameters) -> None:
        remote = runner.ice.remote_parameters
        gate = self._gate
        if gate is None and remote is not None and remote.ufrag != params.ufrag:
            gate = self._remote_gate()  # a peer restart: the limiter starts counting
        if gate is not None and gate.hold(params, remote, trio.current_time()):
            if not gate.following:
                gate.following = True
                assert self._nursery is not None
                self._nursery.start_soon(self._follow_peer_restart, name=f"follow-peer-restart-{self.name}")
            return
        if remote is not None and remote.ufrag != params.ufrag:
            log.info("%s: peer restarted (new ufrag); restarting too", self.name)
            runner = self._restart_now()
        elif remote is not None and remote == params:
            return
        runner.set_remote_parameters(params)
        if self._state is IceState.NEW:
            self.supervisor.checking_started(trio.current_time())
            self._set_state(IceState.CHECKING)

    def add_remote_candidate(self, candidate: Candidate | None) -> None:
        """A remote candidate from signaling, at any time; None = end-of-candidates (RFC 8838).

        Raises CandidateParseError for a Candidate whose numbers are out of range (as `from_sdp` would).
        Candidates that can reach no peer (unspecified, multicast, broadcast address, port 0), of another
        generation, or over the cap are ignored and counted in `stats()["ignored_remote_candidates"]`."""
        runner = self._open_runner()
        if candidate is not None:
            if not isinstance(candidate, Candidate):
                raise TypeError(f"add_remote_candidate takes a Candidate or None, not {type(candidate).__name__}")
            check_candidate(candidate)
        runner.hold()
        try:
            self._add_remote_candidate(runner, candidate)
        finally:
            runner.release()

    def _add_remote_candidate(self, runner: SessionRunner, candidate: Candidate | None) -> None:
        if candidate is not None:
            reason = unusable_reason(candidate)
            if reason is not None:
                self._remote_gate().ignore(candidate, reason)
                return
        if self._gate is not None and self._gate.hold_candidate(candidate):
            return  # it belongs to the peer's restart that waits for peer_restart_interval
        if candidate is not None:
            remote = runner.ice.remote_parameters
            if candidate.ufrag is not None and remote is not None and candidate.ufrag != remote.ufrag:
                self._remote_gate().ignore(candidate, "other-generation")
                return
            if candidate.is_mdns:
                if self.options.ice_transport_policy == "relay":
                    # resolving would pair it with a relay only, and the TURN server would learn the address
                    # (draft-ietf-mmusic-mdns-ice-candidates 3.2.1, 3.3.2)
                    self._remote_gate().ignore(candidate, "mdns-relay-policy")
                    return
                runner.resolve_remote(candidate)  # in the session nursery; blocks nothing (draft 3.2.2)
                return
        if not runner.add_remote_candidate(candidate) and candidate is not None:
            self._remote_gate().ignore(candidate, "over-limit")

    async def new_candidates(self) -> AsyncIterator[Candidate]:
        """Local candidates found after gathering completed (`continual_gathering=True`: those of an address
        that appeared later), of the current generation, for the application to trickle (RFC 8838; do not
        signal end-of-candidates then). A restart's candidates come from `gather()`, as always; this
        follows the new generation. Ends when the agent closes."""
        runner: SessionRunner | None = None
        i = 0
        while True:
            current = self._runner()
            if current is not runner:
                runner, i = current, -1
            gathering = runner.gathering
            if i < 0 and runner is self._current and self._initial >= 0:
                i = self._initial
            while 0 <= i < len(gathering.candidates):
                yield gathering.candidates[i]
                i += 1
            if runner.closed and runner is self._current:
                return
            await gathering.changed.wait()

    async def connect(self) -> IceStream:
        """Wait until a pair is valid and return the IceStream; raises IceFailed if the agent FAILED. On an agent
        connected already it returns at once: a cancel point, and a scheduling round only once per
        CONNECTED_SCHEDULE_EVERY such calls (agent/_route.py `connected_checkpoint`), so a task awaiting its
        agents' `connect()` in turn takes no step more for the ones that connected while it waited for another."""
        routes = self._routes
        if routes.route is None or routes.closed:
            # RouteState.wait_route's loop, here: the waiting task keeps only this frame (agent/_route.py)
            while routes.ready() is None:
                await routes.park()
        else:
            await connected_checkpoint()
        return self._stream

    async def restart(self) -> None:
        """ICE restart (RFC 8445 9): new ufrag/pwd, new session and gathering; signal them again."""
        self._check_open()
        self._restart_now()
        await trio.lowlevel.checkpoint()

    def stats(self) -> dict[str, Any]:
        """Plain-dict counters: state, generation, selected pair, per-pair counters, gatherers."""
        pair = self.selected_pair
        pairs: list[dict[str, Any]] = []
        for runner in self._runners:
            pairs.extend(runner.stats_pairs())
        current = self._current
        gatherers: dict[str, Any] = {} if current is None else current.gatherer_stats()
        gate = self._gate or _NO_GATE
        return {
            "state": self._state.value,
            "generation": 0 if self._generation_value is None else self._generation_value.value,
            "gathering_state": self._gathering_state.value,
            "controlling": self.controlling,
            "selected_pair": None
            if pair is None
            else {"local": pair.local.to_sdp(), "remote": pair.remote.to_sdp(), "rtt": pair.rtt,
                  "nominated": pair.nominated},
            "pairs": pairs,
            "gatherers": gatherers,
            "dropped_datagrams": self._dropped,
            "ignored_remote_candidates": dict(gate.ignored),
            "peer_restarts": gate.stats(),
            "mdns": (self._mdns or _NO_MDNS).stats(pending=sum(r.ice.pending_remote for r in self._runners)),
        }

    # ---- internals: lifetime ----

    def _runner(self) -> SessionRunner:
        if self._current is None:
            raise IceError("the agent is not open (use it inside `async with open_agent(...)`)")
        return self._current

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError(f"agent {self.name} is closed")

    def _open_runner(self) -> SessionRunner:
        """`_check_open()`, then `_runner()`: what each signaling call starts with, in one call."""
        if self._closed:
            self._check_open()
        runner = self._current
        return self._runner() if runner is None else runner

    def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._restart_now(first=True)
        watch = getattr(self.network, "watch_interfaces", None)  # a Network written before it existed has none
        if watch is not None:
            self._watch = watch()
            self._watch.follow(self.network_changed, nursery)

    def _restart_now(self, first: bool = False) -> SessionRunner:
        assert self._nursery is not None
        old = self._current
        generation = 0 if first else self.generation.value + 1
        # a non-default Ta is signalled as a=ice-pacing, and both sides use the larger (RFC 8445 14.2)
        ta_ms = round(self.config.ta * 1000)
        pacing = None if ta_ms == round(_DEFAULT_CONFIG.ta * 1000) else min(MAX_PACING, max(1, ta_ms))
        runner = SessionRunner(self, generation, new_parameters(pacing, lite=self.options.lite), self.controlling)
        if self._mux is not None:  # the generation's ufrag is routed to it from now until it closes
            share = self._mux.open_generation(runner.ice.local_parameters.ufrag)
            runner.options = attrs.evolve(self.options, mux=share)
        self._runners.append(runner)
        self._current = runner
        self._initial = -1
        runner.start(self._nursery)  # its tasks run in the agent's nursery (agent/_tasks.py)
        if old is not None:
            if self._route_runner is not old:
                self._close_runner(old)
            if self.state.value is IceState.FAILED:
                self._set_state(IceState.NEW)
            self.supervisor.checking_started(None)
            self.generation.value = generation
        self._notify()
        return runner

    def _retire_runner(self, runner: SessionRunner) -> None:
        """A previous generation lost to a newly nominated one: it keeps receiving for `restart_linger` (the
        peer may still send on the old pair until it learns of the nomination), then closes."""
        linger = self.config.restart_linger
        if linger <= 0 or runner.closed or self._nursery is None:
            self._close_runner(runner)
            return
        self._nursery.start_soon(self._close_runner_later, runner, linger, name=f"retire-{self.name}")

    async def _close_runner_later(self, runner: SessionRunner, delay: float) -> None:
        await trio.sleep(delay)
        self._close_runner(runner)

    def _close_runner(self, runner: SessionRunner) -> None:
        runner.close()
        if runner.options.mux is not None:
            runner.options.mux.close()
        if runner in self._runners:
            self._runners.remove(runner)

    def _close(self) -> None:
        self._closed = True
        if self._watch is not None:
            self._watch.close()
        self._routes.closed = True
        self._routes.route = None
        self._route_runner = None
        self._inbox.close()
        self._set_state(IceState.CLOSED)
        self._notify()

    def create_gatherers(self) -> list[Any]:
        """Ask every plugin for its gatherers (pluggy hook `iceagent_gatherers`)."""
        out: list[Any] = []
        for result in reversed(self.plugin_manager.hook.iceagent_gatherers(options=self.options)):
            out.extend(result or [])
        return out

    def foundation(self, type: str, base_address: str, transport: str, server: str | None) -> str:
        """Equal (type, base IP, transport, server) give equal foundations (RFC 8445 5.1.1.3)."""
        key = (type, base_address, transport, server)
        keys = self._foundations
        for i, known in enumerate(keys):
            if known == key:
                return str(i + 1)
        self._foundations = (*keys, key)
        return str(len(keys) + 1)

    # ---- internals: data ----

    def deliver_many(self, datas: list[bytes]) -> None:
        """Queue received datagrams for the application, in order (those that find the queue full are
        dropped and counted)."""
        self._dropped += self._inbox.put_many(datas)

    def _notify(self) -> None:
        """The route or the state changed: wake connect() waiters, and the supervisor (it runs in the
        current session's driver loop; a no-op while that loop is at work, it looks anyway)."""
        self._routes.changed()
        self._supervise = True
        current = self._current
        if current is not None and not self._closed:  # closing: the session task is cancelled, nothing to look at
            current.look()

    # ---- events from runners ----

    def _hook(self, name: str, **kwargs: Any) -> None:
        """Call an observer hook, unless no plugin implemented it when the agent opened (the common case;
        hot callers test `_observers` themselves first)."""
        if self._observers is not None:
            self._observers.call(name, **kwargs)

    def _remote_gate(self) -> RemoteGate:
        """The RemoteGate, made when first needed (most agents ignore no candidate and see no peer restart)."""
        gate = self._gate
        if gate is None:
            gate = self._gate = RemoteGate(self.name, self.config)
        return gate

    def remote_ignored(self, candidate: Candidate, reason: str, source: str) -> None:
        """A remote candidate a session will not use (e.g. a `.local` name resolved to a multicast address)."""
        self._remote_gate().ignore(candidate, reason, source)

    def mdns_settled(self, candidate: Candidate, address: str | None, error: str | None) -> None:
        """A remote `.local` candidate resolved (or not): logged and counted in stats()["mdns"]."""
        counters = self._mdns
        if counters is None:
            counters = self._mdns = MdnsCounters()
        counters.settled(self.name, candidate, address, error)

    def gathering_changed(self, runner: SessionRunner) -> None:
        if runner is self._current:
            self._gathering_state = runner.gathering.state
            if self._gathering_value is not None:
                self._gathering_value.value = runner.gathering.state
            if runner.gathering.state is GatheringState.COMPLETE:
                self._initial = len(runner.gathering.candidates)

    def candidate_gathered(self, runner: SessionRunner, candidate: Candidate) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info("%s: gathered %s", self.name, candidate.to_sdp())
        self._hook("iceagent_candidate_gathered", candidate=candidate)

    async def _follow_peer_restart(self) -> None:
        """At the end of peer_restart_interval, apply the peer's latest held parameters and their candidates."""
        gate = self._remote_gate()
        try:
            await trio.sleep_until(gate.restart_at)
        finally:
            gate.following = False
        held = gate.take()
        if held is None or self._closed:
            return
        self.set_remote_parameters(held.parameters)
        for candidate in held.candidates:
            self.add_remote_candidate(candidate)


@asynccontextmanager
async def open_agent(
    *,
    controlling: bool = True,
    ice_servers: Sequence[IceServer] | None = None,
    host_addresses: Sequence[str] | str | None = None,
    ice_transport_policy: str = "all",
    mdns: bool = False,
    tcp: bool = False,
    auto_restart: bool = False,
    config: IceConfig | None = None,
    network: Network | None = None,
    name: str | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
    mux: Mux | None = None,
    lite: bool = False,
    port_range: tuple[int, int] | None = None,
    public_ips: Mapping[str, str] | None = None,
    public_ip_mode: str = "srflx",
    interface_filter: Callable[[str], bool] | None = None,
    ip_filter: Callable[[IP], bool] | None = None,
    port_mapping: bool = False,
    continual_gathering: bool = False,
) -> AsyncIterator[Agent]:
    """Open an ICE agent; gathering starts at once. Every task it runs ends with the `async with`.

    Addresses (docs/agent.md "Addresses"): `port_range=(lo, hi)` binds host UDP and ICE-TCP sockets in
    [lo, hi] only (`PortRangeExhausted` in `stats()["gatherers"]` when none is free; leave room for a
    restart); `public_ips={"10.0.0.5": "203.0.113.7"}` advertises a 1:1 NAT's address as a srflx candidate
    (`public_ip_mode="srflx"`) or as the host candidate's ("host"); `interface_filter(name)` and
    `ip_filter(ipaddress)` narrow what `host_addresses` allows. `lite=True` makes an ICE-lite agent (docs/agent.md
    "ICE-lite"). `mux=` (an `open_mux()`): the host candidates are the mux's shared ports (those `host_addresses`
    and the filters allow; no `port_range`), docs/guide-serving.md. `port_mapping=True` asks the default gateway
    for a mapping of each host UDP socket (PCP with NAT-PMP fallback, and UPnP-IGD; docs/port-mapping.md).
    `continual_gathering` raises NotImplementedError until its issue lands."""
    if isinstance(host_addresses, str):
        host_addresses = [host_addresses]
    address_options = check_agent_options(
        controlling=controlling,
        mdns=mdns,
        mux=mux,
        lite=lite,
        port_range=port_range,
        public_ips=public_ips,
        public_ip_mode=public_ip_mode,
        interface_filter=interface_filter,
        ip_filter=ip_filter,
        port_mapping=port_mapping,
        continual_gathering=continual_gathering,
        ice_servers=ice_servers,
    )
    options = GatherOptions(
        ice_servers=check_servers(ice_servers, ice_transport_policy),
        ice_transport_policy=ice_transport_policy,
        host_addresses=None if host_addresses is None else tuple(host_addresses),
        mdns=mdns,
        tcp=tcp,
        config=config or _DEFAULT_CONFIG,
        **address_options,
    )
    del address_options  # this generator's frame lives as long as the agent: keep no copy of the options
    agent = Agent(
        controlling=controlling,
        options=options,
        auto_restart=auto_restart,
        network=network or OSNetwork(),
        name=name or random_bytes(2).hex(),
        plugin_manager=plugin_manager or get_plugin_manager(),
    )
    agent.continual_gathering = continual_gathering
    if mux is not None:
        if not isinstance(mux, Mux):
            raise TypeError(f"mux takes what `async with iceagent.open_mux(...)` gives, not {type(mux).__name__}")
        agent._mux = AgentMux(mux, agent.name)
    try:
        try:
            async with trio.open_nursery() as nursery:
                agent._start(nursery)
                try:
                    yield agent
                finally:
                    agent._close()
                    nursery.cancel_scope.cancel()
        finally:
            if agent._mux is not None:
                agent._mux.close()  # its ufrags, transactions and bindings go at once
    except BaseExceptionGroup as group:
        # The agent's own tasks end only by cancellation, so a group here carries the body's exception:
        # give it back as itself so `except IceFailed:` around `async with open_agent()` works.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


__all__ = ["Agent", "IceStream", "PairState", "new_parameters", "open_agent"]
