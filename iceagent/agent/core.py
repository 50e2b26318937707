"""The Agent and `open_agent()`: the public face of iceagent (DESIGN.md "Contract").

The agent nursery holds one SessionRunner per live ICE generation and the supervisor (consent,
disconnected/failed timers, automatic restart). The agent decides which valid pair the IceStream
sends on ("selected": the best valid pair, then the nominated one) and its IceState.
"""

from __future__ import annotations

import logging
import string
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pluggy
import trio
from trio_util import AsyncValue

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from .._addresses import IP
from .._agent_options import check_agent_options
from ..config import IceConfig
from ..errors import IceError, IceFailed
from ..gatherers.base import CandidateTransport, GatherOptions
from ..ice.candidate import MAX_PACING, Candidate, IceParameters, check_candidate, unusable_reason
from ..ice.pair import CandidatePair, PairState
from ..logs import get_logger
from ..net.base import Address, Network
from ..net.os import OSNetwork
from ..plugins import get_plugin_manager
from ..states import GatheringState, IceState
from ..stun.message import random_bytes
from ..uri import IceServer
from .lazy_value import LazyAsyncValue
from .notify import Notifier
from .remote import RemoteGate
from .runner import SessionRunner
from .stream import IceStream, Inbox
from .supervisor import Supervisor

log = get_logger("iceagent.agent")

_ICE_CHARS = string.ascii_letters + string.digits + "+/"

Route = tuple[CandidateTransport, Address, CandidatePair]

#: Observer hooks (iceagent.hookspecs) the agent calls itself; iceagent_check is the runner's.
_OBSERVER_HOOKS = (
    "iceagent_candidate_gathered",
    "iceagent_pair_state_changed",
    "iceagent_state_changed",
    "iceagent_selected_pair_changed",
)


def _random_ice_string(n: int) -> str:
    """n uniformly random ice-chars (RFC 8445 5.3): 64 of them, so 6 random bits each."""
    return "".join([_ICE_CHARS[b & 63] for b in random_bytes(n)])


def new_parameters(pacing: int | None = None) -> IceParameters:
    """Fresh credentials: 8-char ufrag (>= 4 required) and 24-char pwd (>= 22), RFC 8445 5.3; `pacing` is
    the a=ice-pacing (ms) to signal, for a non-default Ta (RFC 8445 14.2, RFC 8839 4.4)."""
    return IceParameters(ufrag=_random_ice_string(8), pwd=_random_ice_string(24), pacing=pacing)


class Agent:
    """An ICE agent; created by `open_agent()`, valid inside its `async with` only."""

    __slots__ = (
        "_checking_since",
        "_closed",
        "_current",
        "_dropped",
        "_failure_reason",
        "_foundations",
        "_gate",
        "_inbox",
        "_mdns_errors",
        "_mdns_resolved",
        "_mdns_unresolved",
        "_nursery",
        "_observers",
        "_pm",
        "_route",
        "_route_runner",
        "_route_waiters",
        "_runners",
        "_selected_at",
        "_stream",
        "_supervise",
        "auto_restart",
        "config",
        "controlling",
        "gathering_state",
        "generation",
        "name",
        "network",
        "options",
        "plugin_manager",
        "state",
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
        self._pm = plugin_manager
        self.plugin_manager = plugin_manager
        observers = {}
        for hook_name in _OBSERVER_HOOKS:
            caller = getattr(plugin_manager.hook, hook_name, None)
            if caller is not None and caller.get_hookimpls():
                observers[hook_name] = caller
        #: the observer hooks some plugin implements (None: none, the usual case)
        self._observers: dict[str, Any] | None = observers or None
        self.state: AsyncValue[IceState] = LazyAsyncValue(IceState.NEW)
        self.gathering_state: AsyncValue[GatheringState] = LazyAsyncValue(GatheringState.NEW)
        self.generation: AsyncValue[int] = LazyAsyncValue(0)
        self._runners: list[SessionRunner] = []
        self._current: SessionRunner | None = None
        self._route: Route | None = None
        self._route_runner: SessionRunner | None = None
        self._selected_at = 0.0
        #: connect() and IceStream.send() waiting for a route (or for FAILED/CLOSED)
        self._route_waiters = Notifier()
        self.supervisor = Supervisor(self)
        self._supervise = True  # poll the supervisor at the next pump (see SessionRunner.pump)
        self._foundations: dict[tuple[str, str, str, str | None], str] = {}
        self._inbox = Inbox(self.config.receive_buffer)
        self._stream = IceStream(self, self._inbox)
        self._dropped = 0
        self._closed = False
        self._failure_reason: str | None = None
        self._checking_since: float | None = None
        self._nursery: trio.Nursery | None = None
        self._mdns_resolved = 0
        self._mdns_unresolved = 0
        self._mdns_errors: deque[str] | None = None  # the last 32, made on the first
        self._gate = RemoteGate(self)

    # ---- public API ----

    @property
    def local_parameters(self) -> IceParameters:
        """This generation's ufrag/pwd, to signal to the peer."""
        return self._runner().ice.local_parameters

    @property
    def selected_pair(self) -> CandidatePair | None:
        """The pair the stream sends on now (None before connect() returns and while FAILED)."""
        return None if self._route is None else self._route[2]

    async def gather(self) -> AsyncIterator[Candidate]:
        """Yield this generation's local candidates as they are found; ends when gathering completes."""
        runner = self._runner()
        i = 0
        while True:
            while i < len(runner.candidates):
                yield runner.candidates[i]
                i += 1
            if runner.gathering_state is GatheringState.COMPLETE or runner.closed:
                return
            await runner.candidates_changed.wait()

    def set_remote_parameters(self, params: IceParameters) -> None:
        """The peer's ufrag/pwd (and optional pacing). A new ufrag after the first means the peer restarted:
        this agent restarts too, at most once per `IceConfig.peer_restart_interval` (see agent/remote.py)."""
        self._check_open()
        if not isinstance(params, IceParameters):
            raise TypeError(f"set_remote_parameters takes IceParameters, not {type(params).__name__}")
        runner = self._runner()
        remote = runner.ice.remote_parameters
        if self._gate.hold(params, remote, trio.current_time()):
            return
        if remote is not None and remote.ufrag != params.ufrag:
            log.info("%s: peer restarted (new ufrag); restarting too", self.name)
            runner = self._restart_now()
        elif remote is not None and remote == params:
            return
        runner.ice.set_remote_parameters(params)
        if self.state.value is IceState.NEW:
            self._checking_since = trio.current_time()
            self._set_state(IceState.CHECKING)
        runner.wake()

    def add_remote_candidate(self, candidate: Candidate | None) -> None:
        """A remote candidate from signaling, at any time; None = end-of-candidates (RFC 8838).

        Raises CandidateParseError for a Candidate whose numbers are out of range (as `from_sdp` would).
        Candidates that can reach no peer (unspecified, multicast, broadcast address, port 0), of another
        generation, or over the cap are ignored and counted in `stats()["ignored_remote_candidates"]`."""
        self._check_open()
        runner = self._runner()
        if candidate is not None:
            if not isinstance(candidate, Candidate):
                raise TypeError(f"add_remote_candidate takes a Candidate or None, not {type(candidate).__name__}")
            check_candidate(candidate)
            reason = unusable_reason(candidate)
            if reason is not None:
                self._gate.ignore(candidate, reason)
                return
        if self._gate.hold_candidate(candidate):
            return  # it belongs to the peer's restart that waits for peer_restart_interval
        if candidate is not None:
            remote = runner.ice.remote_parameters
            if candidate.ufrag is not None and remote is not None and candidate.ufrag != remote.ufrag:
                self._gate.ignore(candidate, "other-generation")
                return
            if candidate.is_mdns:
                if self.options.ice_transport_policy == "relay":
                    # resolving would pair it with a relay only, and the TURN server would learn the address
                    # (draft-ietf-mmusic-mdns-ice-candidates 3.2.1, 3.3.2)
                    self._gate.ignore(candidate, "mdns-relay-policy")
                    return
                runner.resolve_remote(candidate)  # in the session nursery; blocks nothing (draft 3.2.2)
                return
        if not runner.ice.add_remote_candidate(candidate) and candidate is not None:
            self._gate.ignore(candidate, "over-limit")
        runner.wake()

    async def connect(self) -> IceStream:
        """Wait until a pair is valid and return the IceStream; raises IceFailed if the agent FAILED."""
        await self._wait_route()
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
        gatherers: dict[str, Any] = {}
        current = self._current
        if current is not None:
            for ctx in current._contexts:
                gatherers[ctx.kind] = {
                    "state": "done" if ctx.is_done else "gathering",
                    "candidates": current.gatherer_counts.get(ctx.kind, 0),
                    "errors": list(current.gatherer_errors.get(ctx.kind, [])),
                }
        return {
            "state": self.state.value.value,
            "generation": self.generation.value,
            "gathering_state": self.gathering_state.value.value,
            "controlling": self.controlling,
            "selected_pair": None
            if pair is None
            else {"local": pair.local.to_sdp(), "remote": pair.remote.to_sdp(), "rtt": pair.rtt,
                  "nominated": pair.nominated},
            "pairs": pairs,
            "gatherers": gatherers,
            "dropped_datagrams": self._dropped,
            "ignored_remote_candidates": dict(self._gate.ignored),
            "peer_restarts": self._gate.stats(),
            "mdns": {
                "resolved": self._mdns_resolved,
                "unresolved": self._mdns_unresolved,
                "pending": sum(r.ice.pending_remote for r in self._runners),
                "errors": list(self._mdns_errors or ()),
            },
        }

    # ---- internals: lifetime ----

    def _runner(self) -> SessionRunner:
        if self._current is None:
            raise IceError("the agent is not open (use it inside `async with open_agent(...)`)")
        return self._current

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError(f"agent {self.name} is closed")

    def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._restart_now(first=True)

    def _restart_now(self, first: bool = False) -> SessionRunner:
        assert self._nursery is not None
        old = self._current
        generation = 0 if first else self.generation.value + 1
        # a non-default Ta is signalled as a=ice-pacing, and both sides use the larger (RFC 8445 14.2)
        ta_ms = round(self.config.ta * 1000)
        pacing = None if ta_ms == round(IceConfig().ta * 1000) else min(MAX_PACING, max(1, ta_ms))
        runner = SessionRunner(self, generation, new_parameters(pacing), self.controlling)
        self._runners.append(runner)
        self._current = runner
        self._nursery.start_soon(runner.run, name=f"session-{self.name}-{generation}")
        if old is not None:
            if self._route_runner is not old:
                self._close_runner(old)
            if self.state.value is IceState.FAILED:
                self._set_state(IceState.NEW)
            self._checking_since = None
            self.generation.value = generation
        self._notify()
        return runner

    def _close_runner(self, runner: SessionRunner) -> None:
        runner.close()
        if runner in self._runners:
            self._runners.remove(runner)

    def _close(self) -> None:
        self._closed = True
        self._route = None
        self._route_runner = None
        self._inbox.close()
        self._set_state(IceState.CLOSED)
        self._notify()

    def create_gatherers(self) -> list[Any]:
        """Ask every plugin for its gatherers (pluggy hook `iceagent_gatherers`)."""
        out: list[Any] = []
        for result in reversed(self._pm.hook.iceagent_gatherers(options=self.options)):
            out.extend(result or [])
        return out

    def foundation(self, type: str, base_address: str, transport: str, server: str | None) -> str:
        """Equal (type, base IP, transport, server) give equal foundations (RFC 8445 5.1.1.3)."""
        key = (type, base_address, transport, server)
        f = self._foundations.get(key)
        if f is None:
            f = self._foundations[key] = str(len(self._foundations) + 1)
        return f

    # ---- internals: data ----

    def deliver(self, data: bytes) -> None:
        """Queue a received datagram for the application (dropped and counted when the queue is full)."""
        if not self._inbox.put(data):
            self._dropped += 1

    def _raise_if_failed(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError(f"agent {self.name} is closed")
        if self.state.value is IceState.FAILED and not self.auto_restart:
            raise IceFailed(self._failure_reason or "ICE failed: no candidate pair works")

    async def _wait_route(self) -> Route:
        route = self._route
        if route is None or self._closed:
            while True:
                if self._closed:
                    raise trio.ClosedResourceError(f"agent {self.name} is closed")
                if self._route is not None:
                    return self._route  # the wait was the checkpoint
                if self.state.value is IceState.FAILED and not self.auto_restart:
                    raise IceFailed(self._failure_reason or "ICE failed: no candidate pair works")
                await self._route_waiters.wait()
        await trio.lowlevel.checkpoint()
        return route

    def _notify(self) -> None:
        """The route or the state changed: wake connect() waiters, and the supervisor (it runs in the
        current session's driver loop; a no-op while that loop is at work, it looks anyway)."""
        self._route_waiters.notify()
        self._supervise = True
        current = self._current
        if current is not None:
            current.wake()

    # ---- events from runners ----

    def _hook(self, name: str, **kwargs: Any) -> None:
        """Call an observer hook, unless no plugin implemented it when the agent opened (the common case:
        keep it cheap; observers are registered before opening agents, as docs/guide-plugins.md says)."""
        observers = self._observers
        if observers is None:
            return
        caller = observers.get(name)
        if caller is None:
            return
        try:
            caller(agent=self, **kwargs)
        except Exception:
            log.exception("%s: observer hook %s raised", self.name, name)

    def remote_ignored(self, candidate: Candidate, reason: str, source: str) -> None:
        """A remote candidate a session will not use (e.g. a `.local` name resolved to a multicast address)."""
        self._gate.ignore(candidate, reason, source)

    def mdns_settled(self, candidate: Candidate, address: str | None, error: str | None) -> None:
        """A remote `.local` candidate resolved (or not): logged and counted in stats()["mdns"]."""
        if address is not None:
            self._mdns_resolved += 1
            log.info("%s: mDNS name %s resolved", self.name, candidate.address)
        else:
            self._mdns_unresolved += 1
            if self._mdns_errors is None:
                self._mdns_errors = deque(maxlen=32)
            self._mdns_errors.append(f"{candidate.address}: {error}")
            log.warning("%s: mDNS remote candidate not resolved: %s (%s)", self.name, candidate.to_sdp(), error)

    def runner_gathering_changed(self, runner: SessionRunner) -> None:
        if runner is self._current:
            self.gathering_state.value = runner.gathering_state

    def candidate_gathered(self, runner: SessionRunner, candidate: Candidate) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info("%s: gathered %s", self.name, candidate.to_sdp())
        self._hook("iceagent_candidate_gathered", candidate=candidate)

    def pair_state_changed(self, runner: SessionRunner, pair: CandidatePair, old: Any, new: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: pair %s -> %s: %s", self.name, pair.local.to_sdp(), pair.remote.to_sdp(), new)
        if self._observers is not None:
            self._hook("iceagent_pair_state_changed", pair=pair, old=old, new=new)

    def pair_valid(self, runner: SessionRunner, pair: CandidatePair) -> None:
        if runner is not self._current:
            return
        if self._route_runner is not None and self._route_runner is not runner:
            return  # restart in progress: the old pair carries data until the new one is nominated (12.1)
        if runner.nominated is not None:
            return
        # the best valid pair whose last check did not fail (a broken TCP pair is valid but Failed)
        best = next((p for p in runner.ice.valid_pairs if p.state is not PairState.FAILED), pair)
        self._select(runner, best)
        if self.state.value in (IceState.NEW, IceState.CHECKING, IceState.FAILED, IceState.DISCONNECTED):
            self._set_state(IceState.CONNECTED)

    def pair_nominated(self, runner: SessionRunner, pair: CandidatePair) -> None:
        if runner is not self._current:
            return
        self._select(runner, pair)
        for other in list(self._runners):
            if other is not runner:
                self._close_runner(other)
        self._set_state(IceState.COMPLETED)

    def pair_broken(self, runner: SessionRunner, pair: CandidatePair) -> None:
        """The TCP connection under a pair closed (RFC 6544 7.1). If the stream sends on it: before
        nomination it moves to the next valid pair, or back to CHECKING while checks are still under way
        (the peer may have closed it because it nominated another pair); otherwise consent is lost at
        once (RFC 7675 5.1)."""
        if self._route is None or self._route[2] is not pair or self._route_runner is not runner:
            return
        if not pair.nominated:
            for other in runner.ice.valid_pairs:
                if other is not pair and other.state is not PairState.FAILED:
                    self._select(runner, other)
                    return
            if runner is self._current and runner.ice.checks_pending:
                self._route = None
                self._route_runner = None
                self._hook("iceagent_selected_pair_changed", pair=None)
                self._checking_since = trio.current_time()
                self._set_state(IceState.CHECKING)
                return
        self._route_lost("the TCP connection of the selected pair closed (RFC 6544 7.1, consent lost: RFC 7675 5.1)")

    def role_changed(self, runner: SessionRunner, controlling: bool) -> None:
        if runner is self._current:
            log.info("%s: role conflict resolved: now %s", self.name, "controlling" if controlling else "controlled")
            self.controlling = controlling

    def checklist_failed(self, runner: SessionRunner) -> None:
        if runner is self._current and self._route is None:
            self._fail("every candidate pair failed")

    def consent_refreshed(self, runner: SessionRunner, pair: CandidatePair, now: float) -> None:
        pass  # pair.last_consent is updated by the session; the supervisor reads it

    def _select(self, runner: SessionRunner, pair: CandidatePair) -> None:
        transport = runner.transport_for(pair)
        if transport is None:
            log.warning("%s: no transport for the valid pair %s", self.name, pair.local.to_sdp())
            return
        old = self._route
        self._route = (transport, (pair.remote.address, pair.remote.port), pair)
        if self._route_runner is not runner:
            self._route_runner = runner
        if old is None or old[2] is not pair:
            self._selected_at = trio.current_time()
            if log.isEnabledFor(logging.INFO):
                log.info("%s: selected pair %s <-> %s", self.name, pair.local.to_sdp(), pair.remote.to_sdp())
            self._hook("iceagent_selected_pair_changed", pair=pair)
        self._notify()

    def _set_state(self, new: IceState) -> None:
        old = self.state.value
        if old is new:
            return
        if old is IceState.CLOSED:
            return
        if log.isEnabledFor(logging.INFO):
            log.info("%s: %s -> %s", self.name, old.value, new.value)
        self.state.value = new
        self._hook("iceagent_state_changed", old=old, new=new)
        self._notify()

    def _route_lost(self, reason: str) -> None:
        """The selected pair died. During a restart (it belongs to an older generation) the agent goes
        back to the new generation's best valid pair, or to CHECKING; otherwise it is FAILED."""
        runner = self._route_runner
        current = self._current
        if runner is None or current is None or runner is current:
            self._fail(reason)
            return
        log.info("%s: the previous generation's pair died during the restart: %s", self.name, reason)
        self._route = None
        self._route_runner = None
        self._close_runner(runner)
        self._hook("iceagent_selected_pair_changed", pair=None)
        valid = [p for p in current.ice.valid_pairs if p.state is not PairState.FAILED]
        if valid:
            self._select(current, valid[0])
            self._set_state(IceState.COMPLETED if valid[0].nominated else IceState.CONNECTED)
        else:
            self._checking_since = trio.current_time()
            self._set_state(IceState.CHECKING if current.ice.remote_parameters is not None else IceState.NEW)

    def _fail(self, reason: str) -> None:
        if self.state.value in (IceState.FAILED, IceState.CLOSED):
            return
        log.warning("%s: ICE failed: %s", self.name, reason)
        self._failure_reason = f"ICE failed: {reason}"
        if self._route is not None:
            self._route = None
            self._route_runner = None
            self._hook("iceagent_selected_pair_changed", pair=None)
        self._set_state(IceState.FAILED)

def _validate_servers(ice_servers: Sequence[IceServer] | None) -> tuple[IceServer, ...]:
    servers = tuple(ice_servers or ())
    for s in servers:
        if not isinstance(s, IceServer):
            raise TypeError(f"ice_servers takes IceServer objects, not {type(s).__name__}")
    return servers


@asynccontextmanager
async def open_agent(
    *,
    controlling: bool = True,
    ice_servers: Sequence[IceServer] | None = None,
    host_addresses: Sequence[str] | None = None,
    ice_transport_policy: str = "all",
    mdns: bool = False,
    tcp: bool = False,
    auto_restart: bool = False,
    config: IceConfig | None = None,
    network: Network | None = None,
    name: str | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
    mux: object = None,
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
    `ip_filter(ipaddress)` narrow what `host_addresses` allows. `mux`, `lite`, `port_mapping` and
    `continual_gathering` raise NotImplementedError until their issue lands."""
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
    )
    if ice_transport_policy not in ("all", "relay"):
        raise ValueError(f"ice_transport_policy must be 'all' or 'relay', not {ice_transport_policy!r}")
    if ice_transport_policy == "relay" and not any(
        u.is_turn for s in ice_servers or () for u in getattr(s, "uris", ())
    ):
        raise ValueError(
            "ice_transport_policy='relay' gathers relay candidates only: give a TURN server, e.g. "
            "ice_servers=[IceServer(urls=['turn:HOST:3478'], username=..., credential=...)]"
        )
    if isinstance(host_addresses, str):
        host_addresses = [host_addresses]
    options = GatherOptions(
        ice_servers=_validate_servers(ice_servers),
        ice_transport_policy=ice_transport_policy,
        host_addresses=None if host_addresses is None else tuple(host_addresses),
        mdns=mdns,
        tcp=tcp,
        config=config or IceConfig(),
        **address_options,
    )
    agent = Agent(
        controlling=controlling,
        options=options,
        auto_restart=auto_restart,
        network=network or OSNetwork(),
        name=name or random_bytes(2).hex(),
        plugin_manager=plugin_manager or get_plugin_manager(),
    )
    try:
        async with trio.open_nursery() as nursery:
            agent._start(nursery)
            try:
                yield agent
            finally:
                agent._close()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The agent's own tasks end only by cancellation, so a group here carries the body's exception:
        # give it back as itself so `except IceFailed:` around `async with open_agent()` works.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


__all__ = ["Agent", "IceStream", "PairState", "new_parameters", "open_agent"]
