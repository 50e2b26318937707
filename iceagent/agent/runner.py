"""SessionRunner: the Trio side of one ICE generation (DESIGN.md "Concurrency: the nursery tree").

It owns the session nursery: gatherer tasks, one receive loop per local transport, and the check
driver (paced checks, retransmission timers, nomination). The sans-IO IceSession does the protocol;
this module only moves bytes, sleeps, and reports events to the Agent.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import trio

from ..gatherers.base import CandidateTransport, GatherOptions
from ..ice.candidate import Candidate, IceParameters
from ..ice.pair import CandidatePair, PairState
from ..ice.session import (
    ChecklistFailed,
    ConsentRefreshed,
    IceSession,
    NominationFailed,
    PairNominated,
    PairStateChanged,
    PairValid,
    RoleChanged,
    Transmit,
)
from ..net.base import Address, Network, UdpSocket
from ..states import GatheringState
from ..stun.message import Message, MessageClass, StunDecodeError, looks_like_stun
from .context import AgentGatherContext
from .notify import Notifier
from .pacer import global_pacer

if TYPE_CHECKING:
    from .core import Agent

log = logging.getLogger("iceagent.agent")


class SessionRunner:
    """One generation: an IceSession plus the tasks and sockets that serve it."""

    def __init__(self, agent: Agent, generation: int, local: IceParameters, controlling: bool) -> None:
        self.agent = agent
        self.generation = generation
        self.options: GatherOptions = agent.options
        self.network: Network = agent.network
        self.config = agent.config
        self.ice = IceSession(
            local=local, controlling=controlling, tie_breaker=agent.tie_breaker, config=self.config
        )
        # gathering
        self.candidates: list[Candidate] = []
        self.candidates_changed = Notifier()
        self.gathering_state = GatheringState.NEW
        self.bases: list[UdpSocket] = []
        self.bases_changed = Notifier()
        self.host_done = False
        self.gatherer_errors: dict[str, list[str]] = {}
        self.gatherer_counts: dict[str, int] = {}
        self._contexts: list[AgentGatherContext] = []
        self._emitted: set[tuple[str, str, int]] = set()
        # transports
        self._base_of: dict[int, Candidate] = {}  # id(transport) -> base candidate
        self.transport_of: dict[Candidate, CandidateTransport] = {}  # base candidate -> transport
        self._transports: dict[int, CandidateTransport] = {}
        self._owned: list[UdpSocket] = []
        self.stun_waiters: dict[bytes, tuple[Address, trio.MemorySendChannel[Message]]] = {}
        self._data_pairs: dict[tuple[int, Address], CandidatePair | None] = {}
        # checks
        self._wakeup = trio.Event()
        self.nominated: CandidatePair | None = None
        self.first_valid_at: float | None = None
        self.failed = False
        self.closed = False
        self._nursery: trio.Nursery | None = None
        self.cancel_scope = trio.CancelScope()

    # ---- lifetime ----

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the session until cancelled: gatherers, receive loops, check driver."""
        try:
            with self.cancel_scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._set_gathering(GatheringState.GATHERING)
                    gatherers = self.agent.create_gatherers()
                    for gatherer in gatherers:
                        ctx = AgentGatherContext(self, gatherer.kind)
                        self._contexts.append(ctx)
                        self.gatherer_counts.setdefault(gatherer.kind, 0)
                        nursery.start_soon(self._run_gatherer, gatherer, ctx, name=f"gather-{gatherer.kind}")
                    if not gatherers:
                        self._gathering_complete()
                    nursery.start_soon(self._gather_timeout)
                    nursery.start_soon(self._driver)
                    task_status.started()
        finally:
            self.closed = True
            for sock in self._owned:
                sock.close()
            self.candidates_changed.notify()

    def close(self) -> None:
        """End this session: cancel its nursery (its sockets close as the tasks unwind)."""
        self.closed = True
        self.cancel_scope.cancel()

    # ---- gathering ----

    async def _run_gatherer(self, gatherer: Any, ctx: AgentGatherContext) -> None:
        try:
            await gatherer.run(ctx)
        except Exception as exc:  # a plugin bug must not take the agent down
            log.exception("%s: %s gatherer crashed", self.agent.name, ctx.kind)
            ctx.error(f"crashed: {type(exc).__name__}: {exc}")
        finally:
            ctx.done()
            if ctx.kind == "host" and not self.host_done:
                self.host_done = True
                self.bases_changed.notify()

    async def _gather_timeout(self) -> None:
        await trio.sleep(self.config.gather_timeout)
        if self.gathering_state is not GatheringState.COMPLETE:
            for ctx in self._contexts:
                if not ctx.is_done:
                    self.gatherer_errors.setdefault(ctx.kind, []).append(
                        f"still gathering after gather_timeout={self.config.gather_timeout:g} s"
                    )
            self._gathering_complete()

    def gatherer_done(self, ctx: AgentGatherContext) -> None:
        if ctx.kind == "host" and not self.host_done:
            self.host_done = True
            self.bases_changed.notify()
        if all(c.is_done for c in self._contexts):
            self._gathering_complete()

    def _gathering_complete(self) -> None:
        if self.gathering_state is GatheringState.COMPLETE:
            return
        self.ice.local_gathering_done()
        self._set_gathering(GatheringState.COMPLETE)
        self.wake()

    def _set_gathering(self, state: GatheringState) -> None:
        self.gathering_state = state
        self.candidates_changed.notify()
        self.agent.runner_gathering_changed(self)

    def add_base(self, sock: UdpSocket) -> None:
        """A host socket: remember it, start receiving on it, let srflx/mdns gatherers build on it."""
        host, port = sock.local_address
        base = Candidate(
            foundation=self.agent.foundation("host", host, "udp", None),
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
        self.transport_of[base] = transport
        if key not in self._transports:
            self._transports[key] = transport
            assert self._nursery is not None
            self._nursery.start_soon(self._receive_loop, transport, name=f"receive-{self.agent.name}")

    def emit(self, candidate: Candidate, transport: CandidateTransport, *, kind: str) -> None:
        """A gatherer found a candidate: dedupe, apply the policy, hand it to the session and the app."""
        if self.closed:
            return
        if self.options.ice_transport_policy == "relay" and candidate.type != "relay":
            return
        key = (candidate.transport, candidate.address, candidate.port)
        if key in self._emitted:
            return  # equal to one already emitted: the first is kept (DESIGN.md "Plugins")
        self._emitted.add(key)
        if candidate.type in ("host", "relay"):
            base = candidate
            self._register_transport(transport, base)
        else:
            found = self._base_of.get(id(transport))
            if found is None:
                log.warning("%s: %s candidate with an unknown transport dropped", self.agent.name, kind)
                return
            base = found
        self.ice.add_local_candidate(candidate, base)
        self.candidates.append(candidate)
        self.gatherer_counts[kind] = self.gatherer_counts.get(kind, 0) + 1
        self.candidates_changed.notify()
        self.agent.candidate_gathered(self, candidate)
        self.wake()

    # ---- receiving ----

    async def _receive_loop(self, transport: CandidateTransport) -> None:
        key = id(transport)
        receive = transport.receive
        data_pairs = self._data_pairs
        deliver = self.agent.deliver
        while True:
            try:
                data, addr = await receive()
            except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
                return
            if looks_like_stun(data):
                try:
                    msg = Message.decode(data)
                except StunDecodeError:
                    msg = None
                if msg is not None:
                    self._handle_stun(transport, msg, data, addr)
                    continue
            try:
                pair = data_pairs[(key, addr)]
            except KeyError:
                pair = self._lookup_data_pair(key, addr)
            if pair is None:
                continue  # not from a known remote candidate (RFC 8445 12.2)
            pair.bytes_received += len(data)
            deliver(data)

    def _lookup_data_pair(self, key: int, addr: Address) -> CandidatePair | None:
        base = self._base_of.get(key)
        if base is None:
            return None
        pair = self.ice.find_pair(base, addr)
        if pair is not None or len(self._data_pairs) < 4096:
            self._data_pairs[(key, addr)] = pair
        return pair

    def _handle_stun(self, transport: CandidateTransport, msg: Message, raw: bytes, addr: Address) -> None:
        if msg.message_class in (MessageClass.SUCCESS, MessageClass.ERROR):
            waiter = self.stun_waiters.get(msg.transaction_id)
            if waiter is not None:
                if waiter[0] == addr:
                    try:
                        waiter[1].send_nowait(msg)
                    except (trio.WouldBlock, trio.BrokenResourceError):
                        pass
                return
        base = self._base_of.get(id(transport))
        if base is None:
            return
        now = trio.current_time()
        response = self.ice.handle_stun(msg, raw, base=base, remote=addr, now=now)
        if response is not None and self._nursery is not None:
            self._send_nowait(transport, response, addr)
        self._drain_events()
        self.wake()

    def _send_nowait(self, transport: CandidateTransport, data: bytes, addr: Address) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(transport.send, data, addr)

    # ---- the check driver ----

    def wake(self) -> None:
        """Something changed (input, candidates, nomination): let the driver look again."""
        self._wakeup.set()

    async def transmit(self, t: Transmit) -> None:
        transport = self.transport_of.get(t.base)
        if transport is None:
            return
        await transport.send(t.data, t.remote)

    async def _driver(self) -> None:
        """Paced checks every Ta (the first at once), retransmissions at the session's timer."""
        ice = self.ice
        next_check = -math.inf
        pacing = self.config.global_pacing
        while True:
            self._drain_events()  # inputs (remote candidates, end-of-candidates) may have queued events
            now = trio.current_time()
            if now >= next_check:
                t = ice.next_check(now)
                if t is not None:
                    if pacing:
                        await global_pacer().slot()
                    await self.transmit(t)
                    next_check = trio.current_time() + self.ta()
                    self._drain_events()
                    continue
            timer = ice.get_timer()
            if timer is not None and timer <= now:
                for t in ice.handle_timer(now):
                    await self.transmit(t)
                self._drain_events()
                continue
            deadline = math.inf if timer is None else timer
            if next_check > now:
                deadline = min(deadline, next_check)
            nominate_at = self._nomination_deadline()
            if nominate_at is not None:
                if nominate_at <= now:
                    self._nominate(now)
                    continue
                deadline = min(deadline, nominate_at)
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
            self._wakeup = trio.Event()

    def ta(self) -> float:
        """Ta: ours, or the peer's a=ice-pacing if larger (RFC 8445 14.2)."""
        ta = self.config.ta
        remote = self.ice.remote_parameters
        if remote is not None and remote.pacing:
            ta = max(ta, remote.pacing / 1000)
        return ta

    # ---- nomination (controlling side, regular nomination, RFC 8445 8.1.1) ----

    def _nomination_deadline(self) -> float | None:
        if not self.ice.controlling or self.nominated is not None or self._nominating:
            return None
        valid = self._nominatable()
        if not valid or self.first_valid_at is None:
            return None
        best = valid[0]
        better_pending = any(
            p.state in (PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS)
            and p.priority > best.priority
            for p in self.ice.pairs
        )
        if not better_pending:
            return -math.inf
        return self.first_valid_at + self.config.nomination_delay

    _nominating = False

    def _nominatable(self) -> list[CandidatePair]:
        """Valid pairs whose last check did not fail (a failed USE-CANDIDATE check stays valid)."""
        return [p for p in self.ice.valid_pairs if p.state is not PairState.FAILED]

    def _nominate(self, now: float) -> None:
        valid = self._nominatable()
        if not valid:
            return
        self._nominating = True
        self.ice.nominate(valid[0])
        self.wake()

    # ---- events ----

    def _drain_events(self) -> None:
        agent = self.agent
        while (event := self.ice.next_event()) is not None:
            if isinstance(event, PairStateChanged):
                agent.pair_state_changed(self, event.pair, event.old, event.new)
            elif isinstance(event, PairValid):
                if self.first_valid_at is None:
                    self.first_valid_at = trio.current_time()
                self._data_pairs.clear()
                agent.pair_valid(self, event.pair)
            elif isinstance(event, PairNominated):
                self.nominated = event.pair
                self._nominating = False
                agent.pair_nominated(self, event.pair)
            elif isinstance(event, RoleChanged):
                self._nominating = False
                agent.role_changed(self, event.controlling)
            elif isinstance(event, ChecklistFailed):
                self.failed = True
                agent.checklist_failed(self)
            elif isinstance(event, NominationFailed):
                self._nominating = False  # nominate the next best valid pair
            elif isinstance(event, ConsentRefreshed):
                agent.consent_refreshed(self, event.pair, event.now)
            else:
                self._data_pairs.clear()  # a learned candidate may make a data source known

    def transport_for(self, pair: CandidatePair) -> CandidateTransport | None:
        """The transport that sends for `pair`: the one of its base (RFC 8445 7.2.5.3.2)."""
        return self.transport_of.get(pair.base)

    # ---- consent (driven by the agent's supervisor) ----

    async def send_consent(self, pair: CandidatePair) -> None:
        t = self.ice.consent_check(pair, trio.current_time())
        await self.transmit(t)
        self.wake()

    def stats_pairs(self) -> list[dict[str, Any]]:
        return [
            {
                "local": p.local.to_sdp(),
                "remote": p.remote.to_sdp(),
                "state": p.state.value,
                "nominated": p.nominated,
                "requests_sent": p.requests_sent,
                "requests_received": p.requests_received,
                "responses_sent": p.responses_sent,
                "responses_received": p.responses_received,
                "rtt": p.rtt,
                "bytes_sent": p.bytes_sent,
                "bytes_received": p.bytes_received,
            }
            for p in self.ice.pairs
        ]
