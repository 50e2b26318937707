"""SessionRunner: the Trio side of one ICE generation (DESIGN.md "Concurrency: the nursery tree").

It owns the session nursery: gatherer tasks, one receive task per transport (each drains a batch per
wake-up, feeds the session and wakes the session task) and the session task itself, which sleeps until
woken or until its next deadline (`trio.move_on_at`) and then runs `pump(now)`: everything due without
waiting (paced checks, retransmissions, nomination, the gather timeout, the agent's supervisor), then
sends what must wait (TCP, TURN). Every callback, observer hooks included, runs in one of these tasks,
so KeyboardInterrupt, contextvars and exceptions behave as in any Trio code (DESIGN.md). The sans-IO
IceSession does the protocol; this module only moves bytes, keeps time and reports events to the Agent.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any, TypeGuard

import attrs
import trio

from ..gatherers.base import CandidateTransport, ConnectionTransport, GatherOptions
from ..ice.candidate import Candidate, IceParameters, unusable_reason
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
from ..logs import get_logger
from ..mdns.resolver import MAX_PENDING, MdnsResolveError, MdnsResolver
from ..net.base import Address, Network, UdpSocket
from ..states import GatheringState
from ..stun.message import Message, MessageClass, StunDecodeError, looks_like_stun
from .context import AgentGatherContext
from .notify import Notifier, Wakeup
from .pacer import global_pacer

if TYPE_CHECKING:
    from .core import Agent

log = get_logger("iceagent.agent")

_CHECK_KINDS = {
    MessageClass.REQUEST: "request",
    MessageClass.INDICATION: "indication",
    MessageClass.SUCCESS: "success",
    MessageClass.ERROR: "error",
}

#: Source addresses whose data pair lookup is cached (a hostile host sending from many addresses cannot
#: grow the cache further; beyond it a lookup is simply not cached).
MAX_DATA_SOURCES = 4096

#: Errors kept per gatherer for stats() (the latest ones).
MAX_GATHERER_ERRORS = 32

#: The first two bytes of a Binding success response (RFC 8489 5): a check was accepted.
_BINDING_SUCCESS = b"\x01\x01"


def _is_connection_transport(transport: object) -> TypeGuard[ConnectionTransport]:
    """isinstance(transport, ConnectionTransport) without the cost of a runtime Protocol check (tens of
    microseconds, once per transport of every agent)."""
    return all(hasattr(transport, name) for name in ("connections", "watch", "confirm", "close_connection"))


class SessionRunner:
    """One generation: an IceSession plus the tasks and sockets that serve it."""

    __slots__ = (
        "_base_of",
        "_check_hook",
        "_connection_transports",
        "_contexts",
        "_data_pairs",
        "_early_resolutions",
        "_gather_deadline",
        "_held",
        "_next_check",
        "_nominating",
        "_nursery",
        "_outbox",
        "_owned",
        "_pumping",
        "_resolver",
        "_resolving",
        "_sleep",
        "_supervise_at",
        "_wakeup",
        "agent",
        "bases",
        "bases_changed",
        "candidates",
        "candidates_changed",
        "closed",
        "config",
        "failed",
        "first_valid_at",
        "gatherer_counts",
        "gatherer_errors",
        "gathering_state",
        "generation",
        "host_done",
        "ice",
        "network",
        "nominated",
        "options",
        "stun_strays",
        "stun_waiters",
        "transport_of",
    )

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
        self._gather_deadline = math.inf
        self.bases: list[UdpSocket] = []
        self.bases_changed = Notifier()
        self.host_done = False
        self.gatherer_errors: dict[str, deque[str]] = {}
        self.gatherer_counts: dict[str, int] = {}
        self._contexts: list[AgentGatherContext] = []
        # transports
        self._base_of: dict[int, Candidate] = {}  # id(transport) -> base candidate
        self.transport_of: dict[Candidate, CandidateTransport] = {}  # base candidate -> transport
        #: ICE-TCP endpoints (RFC 6544): transports with one connection per remote, by id
        self._connection_transports: dict[int, ConnectionTransport] = {}
        self._owned: list[UdpSocket] = []
        self.stun_waiters: dict[bytes, tuple[Address, trio.MemorySendChannel[Message]]] = {}
        #: Where answers to a waiting transaction came from when that was not its server (ignored; the
        #: gatherer's timeout error names it). Bounded: one entry per waiting transaction at most.
        self.stun_strays: dict[bytes, Address] = {}
        self._data_pairs: dict[tuple[int, Address], CandidatePair | None] = {}
        # the driver loop (checks, timers, nomination, supervisor)
        self._wakeup = Wakeup()
        self._pumping = False
        self._sleep: trio.CancelScope | None = None  # the session task's wait, while it waits
        self._next_check = -math.inf  # Ta pacing: when the next new check may go out
        self._supervise_at = -math.inf  # when the agent's supervisor wants to be polled again
        self._held: tuple[Transmit, float] | None = None  # a check waiting for its global pacer slot
        #: packets for transports that cannot send without waiting (TCP, TURN, plugins): the driver sends them
        self._outbox: list[tuple[CandidateTransport, bytes, Address]] = []
        self.nominated: CandidatePair | None = None
        self._nominating = False  # a nominating check is under way
        self.first_valid_at: float | None = None
        self.failed = False
        self.closed = False
        self._nursery: trio.Nursery | None = None
        # remote `.local` candidates (draft-ietf-mmusic-mdns-ice-candidates 3.2)
        self._resolver: MdnsResolver | None = None
        self._resolving = 0
        self._early_resolutions: list[Candidate] = []
        # the iceagent_check observer hook, only when some plugin implements it (it costs a decode per packet)
        check_hook = getattr(agent._pm.hook, "iceagent_check", None)
        self._check_hook = check_hook if check_hook is not None and check_hook.get_hookimpls() else None

    # ---- lifetime ----

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the session until cancelled: gatherers and receive loops in its nursery, the driver loop
        in this task (one task less per agent than a driver task of its own)."""
        try:
            if self.closed:  # closed before it started
                return
            async with trio.open_nursery() as nursery:
                self._nursery = nursery  # close() cancels it
                self._gather_deadline = trio.current_time() + self.config.gather_timeout
                self._set_gathering(GatheringState.GATHERING)
                gatherers = self.agent.create_gatherers()
                for gatherer in gatherers:
                    ctx = AgentGatherContext(self, gatherer.kind)
                    self._contexts.append(ctx)
                    self.gatherer_counts.setdefault(gatherer.kind, 0)
                    nursery.start_soon(self._run_gatherer, gatherer, ctx, name=f"gather-{gatherer.kind}")
                if not gatherers:
                    self._gathering_complete()
                for candidate in self._early_resolutions:
                    nursery.start_soon(self._resolve, candidate, name=f"mdns-resolve-{self.agent.name}")
                self._early_resolutions.clear()
                task_status.started()
                await self._drive()
        finally:
            self.closed = True
            for sock in self._owned:
                sock.close()
            self.candidates_changed.notify()

    def close(self) -> None:
        """End this session: cancel its nursery (its sockets close as the tasks unwind)."""
        self.closed = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

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

    def _gather_timed_out(self) -> None:
        """gather_timeout passed: gathering is COMPLETE, whatever gatherers are still at it (named in stats)."""
        for ctx in self._contexts:
            if not ctx.is_done:
                self.gatherer_error(ctx.kind, f"still gathering after gather_timeout={self.config.gather_timeout:g} s")
        self._gathering_complete()

    def gatherer_error(self, kind: str, message: str) -> None:
        """Remember a gatherer's error for stats(): the last MAX_GATHERER_ERRORS of each gatherer (a TURN
        server failing every refresh for days must not grow the session)."""
        errors = self.gatherer_errors.get(kind)
        if errors is None:
            errors = self.gatherer_errors[kind] = deque(maxlen=MAX_GATHERER_ERRORS)
        errors.append(message)

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
        self.transport_of[base] = transport  # keeps the transport (and so its id) alive
        if old is None:  # a new transport: start receiving on it
            if _is_connection_transport(transport):
                self._connection_transports[key] = transport
                transport.watch(lambda remote: self._connection_closed(transport, remote))
            assert self._nursery is not None
            self._nursery.start_soon(self._receive_loop, transport, name=f"receive-{self.agent.name}")

    def emit(self, candidate: Candidate, transport: CandidateTransport, *, kind: str) -> None:
        """A gatherer found a candidate: dedupe, apply the policy, hand it to the session and the app."""
        if self.closed:
            return
        if self.options.ice_transport_policy == "relay" and candidate.type != "relay":
            return
        if self.options.mdns and candidate.type in ("srflx", "relay") and candidate.related_address not in (
            None, "0.0.0.0", "::"
        ):
            # hosts are hidden behind names: no related address (draft-ietf-mmusic-mdns-ice-candidates 3.1.1)
            unspecified = "::" if ":" in (candidate.related_address or "") else "0.0.0.0"
            candidate = attrs.evolve(candidate, related_address=unspecified, related_port=9)
        for other in self.candidates:  # a handful: a scan is lighter than a set per session
            if other.port == candidate.port and other.address == candidate.address and (
                other.transport == candidate.transport
            ):
                return  # equal to one already emitted: the first is kept (DESIGN.md "Plugins")
        if candidate.is_mdns:
            # a `.local` host candidate stands for its socket, whose base keeps the address (draft 3.1.1)
            found = self._base_of.get(id(transport))
            if found is None:
                log.warning("%s: %s candidate with an unknown transport dropped", self.agent.name, kind)
                return
            base = found
        elif candidate.type in ("host", "relay"):
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

    # ---- remote `.local` candidates (draft-ietf-mmusic-mdns-ice-candidates 3.2) ----

    def resolve_remote(self, candidate: Candidate) -> None:
        """Resolve a remote `.local` candidate in the session nursery: nothing waits for it, but the session
        does not fail while it is pending (draft-ietf-mmusic-mdns-ice-candidates 3.2.1, 3.2.2)."""
        if self.closed:
            return
        if self._resolving >= MAX_PENDING:
            self.agent.mdns_settled(candidate, None, f"too many mDNS candidates pending (at most {MAX_PENDING})")
            return
        self._resolving += 1
        self.ice.add_pending_remote()
        if self._nursery is None:
            self._early_resolutions.append(candidate)  # the session starts them when its nursery opens
        else:
            self._nursery.start_soon(self._resolve, candidate, name=f"mdns-resolve-{self.agent.name}")

    async def _resolve(self, candidate: Candidate) -> None:
        resolved: Candidate | None = None
        try:
            if self._resolver is None:
                self._resolver = MdnsResolver(self.network)
                assert self._nursery is not None
                self._nursery.start_soon(self._run_resolver, self._resolver, name=f"mdns-resolver-{self.agent.name}")
            address = await self._resolver.resolve(candidate.address, self.config.mdns_timeout)
        except MdnsResolveError as exc:
            self.agent.mdns_settled(candidate, None, str(exc))
        except Exception as exc:  # a resolver bug must not take the session down: count it, go on
            log.exception("%s: resolving %s crashed", self.agent.name, candidate.address)
            self.agent.mdns_settled(candidate, None, f"crashed: {type(exc).__name__}: {exc}")
        else:
            resolved = attrs.evolve(candidate, address=address)
            self.agent.mdns_settled(candidate, address, None)
            reason = unusable_reason(resolved)  # a hostile answer may name any address (RFC 6762 has no check)
            if reason is not None:
                self.agent.remote_ignored(resolved, reason, "mDNS-resolved")
                resolved = None
        finally:
            self._resolving -= 1
        if not self.ice.settle_pending_remote(resolved) and resolved is not None:
            self.agent.remote_ignored(resolved, "over-limit", "mDNS-resolved")
        self._drain_events()
        self.wake()

    async def _run_resolver(self, resolver: MdnsResolver) -> None:
        """The session's resolver, joined on the interfaces of the host candidates once they are known."""
        while not self.host_done:
            await self.bases_changed.wait()
        try:
            await resolver.run([sock.local_address[0] for sock in self.bases])
        except Exception as exc:  # a failing resolver must not take the session down
            log.exception("%s: the mDNS resolver crashed", self.agent.name)
            resolver.fail(f"the mDNS resolver crashed: {type(exc).__name__}: {exc}")

    # ---- receiving ----

    async def _receive_loop(self, transport: CandidateTransport) -> None:
        """The receive task of one transport: drain a batch per wake-up (`receive_batch` where the transport
        has it, else one datagram) and feed it to the session. An exception is this session's bug: it ends
        the session nursery, and so the agent's `async with`, like any task's."""
        batch = getattr(transport, "receive_batch", None)
        receive = transport.receive
        while True:
            try:
                items = await batch() if batch is not None else [await receive()]
            except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
                return
            self._on_datagrams(transport, items)

    def _on_datagrams(self, transport: CandidateTransport, items: list[tuple[bytes, Address]]) -> None:
        """Demultiplex what arrived on one transport: STUN to the session, data to the stream (DESIGN.md)."""
        key = id(transport)
        data_pairs = self._data_pairs
        deliver = self.agent.deliver
        stun = False
        for data, addr in items:
            if looks_like_stun(data):
                try:
                    msg = Message.decode(data)
                except StunDecodeError:
                    msg = None
                if msg is not None:
                    stun = self._handle_stun(transport, msg, data, addr) or stun
                    continue
            try:
                pair = data_pairs[(key, addr)]
            except KeyError:
                pair = self._lookup_data_pair(key, addr)
            if pair is None:
                continue  # not from a known remote candidate (RFC 8445 12.2)
            pair.bytes_received += len(data)
            deliver(data)
        if stun:
            self._poke(trio.current_time())

    def _lookup_data_pair(self, key: int, addr: Address) -> CandidatePair | None:
        base = self._base_of.get(key)
        if base is None:
            return None
        pair = self.ice.find_pair(base, addr)
        if len(self._data_pairs) < MAX_DATA_SOURCES:
            self._data_pairs[(key, addr)] = pair
        return pair

    def _handle_stun(self, transport: CandidateTransport, msg: Message, raw: bytes, addr: Address) -> bool:
        """Route one STUN message: to a gatherer's transaction or to the session (its response goes out at
        once). Returns True if the session took it: the caller then runs `_poke()`."""
        if msg.message_class in (MessageClass.SUCCESS, MessageClass.ERROR):
            waiter = self.stun_waiters.get(msg.transaction_id)
            if waiter is not None:
                if waiter[0] == addr:
                    try:
                        waiter[1].send_nowait(msg)
                    except (trio.WouldBlock, trio.BrokenResourceError):
                        pass
                else:
                    self.stun_strays[msg.transaction_id] = addr
                return False
        base = self._base_of.get(id(transport))
        if base is None:
            return False
        now = trio.current_time()
        response = self.ice.handle_stun(msg, raw, base=base, remote=addr, now=now)
        if self._check_hook is not None:
            pair = self.ice.find_pair(base, addr)
            self._observe_check("receive", msg, base, addr, pair)
            if response is not None:
                self._observe_check("send", response, base, addr, pair)
        if response is not None and self._nursery is not None:
            connection = self._connection_transports.get(id(transport))
            if connection is not None and response[:2] == _BINDING_SUCCESS:
                connection.confirm(addr)  # a valid check came on it (RFC 6544 7.2)
            self._send_response(transport, response, addr)
            if connection is not None and self.nominated is not None and self.nominated.route != (base, addr):
                connection.close_connection(addr)  # a pair checked after nomination concluded has lost
        return True

    def _send_response(self, transport: CandidateTransport, data: bytes, addr: Address) -> None:
        """Send a STUN response at once: synchronously where the transport can (UDP, TCP, TURN; dropped
        if it cannot take it now, as UDP may: the request is retransmitted), else from the driver."""
        send_nowait = getattr(transport, "send_nowait", None)
        if send_nowait is not None:
            send_nowait(data, addr)
            return
        self._outbox.append((transport, data, addr))
        self._wakeup.set()

    # ---- the driver loop ----

    def wake(self) -> None:
        """Something changed (input, candidates, the agent's state): have the session task pump. A no-op
        while this session's `pump` runs: it looks at everything before it returns."""
        if not self._pumping and not self.closed:
            self._wakeup.set()

    def _poke(self, now: float) -> None:
        """STUN input arrived (in a receive task): do now what it made due (a triggered check, nomination,
        the agent's reaction), without a round through the session task; wake it only if the next
        deadline moved earlier than its sleep."""
        if self.closed:
            return
        deadline = self.pump(now)
        sleep = self._sleep
        if sleep is not None and deadline < sleep.deadline:
            sleep.deadline = deadline

    def send_soon(self, transport: CandidateTransport, data: bytes, remote: Address) -> None:
        """Send at once where the transport can without waiting (a UDP socket with room in its buffer),
        else from the driver task, in order."""
        try_send = getattr(transport, "try_send", None)
        if try_send is not None and not self._outbox and try_send(data, remote):
            return
        self._outbox.append((transport, data, remote))
        self._wakeup.set()

    def _transmit(self, t: Transmit) -> None:
        transport = self.transport_of.get(t.base)
        if transport is None:
            return
        if self._check_hook is not None:
            self._observe_check("send", t.data, t.base, t.remote, t.pair)
        self.send_soon(transport, t.data, t.remote)

    def _observe_check(
        self, direction: str, msg: Message | bytes, base: Candidate, remote: Address, pair: CandidatePair | None
    ) -> None:
        """Call the iceagent_check observer hook (only when a plugin implements it)."""
        hook = self._check_hook
        if hook is None:
            return
        try:
            if isinstance(msg, bytes):
                msg = Message.decode(msg)
            hook(
                agent=self.agent,
                pair=pair,
                direction=direction,
                kind=_CHECK_KINDS[msg.message_class],
                transaction_id=msg.transaction_id,
                local=base,
                remote=remote,
                message=msg,
            )
        except Exception:
            log.exception("%s: observer hook iceagent_check raised", self.agent.name)

    async def _drive(self) -> None:
        """The session task after setup: pump, send what must wait (the outbox: TCP, TURN, plugin
        transports), then sleep until woken or until the next deadline (`trio.move_on_at`)."""
        wakeup = self._wakeup
        outbox = self._outbox
        while True:
            deadline = self.pump(trio.current_time())
            if outbox:
                while outbox:
                    transport, data, remote = outbox.pop(0)
                    await transport.send(data, remote)
                continue
            with trio.move_on_at(deadline) as sleep:  # a receive task's pump may move it earlier
                self._sleep = sleep
                try:
                    await wakeup.wait()
                finally:
                    self._sleep = None

    def pump(self, now: float) -> float:
        """Everything due at `now` that needs no waiting, in order: the gather timeout, nomination (controlling
        side), the next paced check (the first at once, then one per Ta; RFC 8445 6.1.4.2, 14.2),
        retransmissions and transaction timeouts (RFC 8489 6.2.1) and, in the agent's current session,
        the supervisor. Returns when to pump again (math.inf: only after a change)."""
        if self.closed:
            return math.inf
        self._pumping = True
        try:
            ice = self.ice
            self._drain_events()  # inputs (remote candidates, end-of-candidates) may have queued events
            deadline = math.inf
            if self.gathering_state is not GatheringState.COMPLETE:
                if now >= self._gather_deadline:
                    self._gather_timed_out()
                else:
                    deadline = self._gather_deadline
            nominate_at = self._nomination_deadline()
            if nominate_at is not None:
                if nominate_at <= now:
                    self._nominate(now)
                else:
                    deadline = min(deadline, nominate_at)
            held = self._held
            if held is not None:
                if now >= held[1]:
                    self._held = None
                    self._transmit(held[0])
                    self._next_check = now + self.ta()
                    self._drain_events()
                else:
                    deadline = min(deadline, held[1])
            elif now >= self._next_check and ice.has_check_to_send:
                t = ice.next_check(now)
                if t is not None:
                    at = global_pacer().reserve(now) if self.config.global_pacing else now
                    if at > now:
                        self._held = (t, at)
                        deadline = min(deadline, at)
                    else:
                        self._transmit(t)
                        self._next_check = now + self.ta()
                self._drain_events()
            timer = ice.get_timer()
            if timer is not None and timer <= now:
                for t in ice.handle_timer(now):
                    self._transmit(t)
                self._drain_events()
                timer = ice.get_timer()
            agent = self.agent
            if agent._current is self and not self.closed:
                # the supervisor looks again after a change of the agent's route or state, or when it asked to
                if agent._supervise or now >= self._supervise_at:
                    agent._supervise = False
                    self._supervise_at = agent.supervisor.poll(now)
                    self._drain_events()
                    timer = ice.get_timer()  # a consent check may have gone out
                deadline = min(deadline, self._supervise_at)
            if timer is not None:
                deadline = min(deadline, timer)
            if self._held is None and self._next_check > now and ice.has_check_to_send:
                deadline = min(deadline, self._next_check)
            return deadline
        finally:
            self._pumping = False

    def ta(self) -> float:
        """Ta: ours, or the peer's a=ice-pacing if larger (RFC 8445 14.2)."""
        ta = self.config.ta
        remote = self.ice.remote_parameters
        if remote is not None and remote.pacing:
            ta = max(ta, remote.pacing / 1000)
        return ta

    # ---- nomination (controlling side, regular nomination, RFC 8445 8.1.1) ----

    def _nomination_deadline(self) -> float | None:
        if self.first_valid_at is None or not self.ice.controlling or self.nominated is not None or self._nominating:
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

    def _nominatable(self) -> list[CandidatePair]:
        """Valid pairs whose last check did not fail (a failed USE-CANDIDATE check stays valid)."""
        return [p for p in self.ice.valid_pairs if p.state is not PairState.FAILED]

    def _nominate(self, now: float) -> None:
        valid = self._nominatable()
        if not valid:
            return
        self._nominating = True
        self.ice.nominate(valid[0])  # queues the nominating triggered check

    # ---- events ----

    def _drain_events(self) -> None:
        agent = self.agent
        while (event := self.ice.next_event()) is not None:
            if isinstance(event, PairStateChanged):
                agent.pair_state_changed(self, event.pair, event.old, event.new)
                if event.new is PairState.FAILED and event.pair.base.transport == "tcp":
                    self._close_connection(event.pair)
            elif isinstance(event, PairValid):
                if self.first_valid_at is None:
                    self.first_valid_at = trio.current_time()
                self._data_pairs.clear()
                agent.pair_valid(self, event.pair)
            elif isinstance(event, PairNominated):
                self.nominated = event.pair
                self._nominating = False
                agent.pair_nominated(self, event.pair)
                self._prune_connections(event.pair)
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
            else:  # a learned candidate may make a data source known, a removed pair one unknown
                self._data_pairs.clear()

    # ---- ICE-TCP connections (RFC 6544 7) ----

    def _connection_closed(self, transport: CandidateTransport, remote: Address) -> None:
        """A TCP connection ended by itself: its pairs fail now (RFC 6544 7.1); a selected one is the agent's."""
        if self.closed:
            return
        base = self._base_of.get(id(transport))
        if base is None:
            return
        broken = self.ice.route_failed(base, remote)
        self._drain_events()
        for pair in broken:
            self.agent.pair_broken(self, pair)
        self.wake()

    def _close_connection(self, pair: CandidatePair) -> None:
        """A TCP pair failed: close its connection, unless the stream still sends on it."""
        if self.agent.selected_pair is pair:
            return
        transport = self._connection_transports.get(id(self.transport_of.get(pair.base)))
        if transport is not None:
            transport.close_connection(pair.remote_address)

    def _prune_connections(self, nominated: CandidatePair) -> None:
        """Nomination concluded: close every TCP connection but the nominated pair's; their pairs lost
        (RFC 6544 7.1, RFC 8445 8.1.2). The routes closed here are failed in the session."""
        keep = self.transport_of.get(nominated.base)
        for key, transport in self._connection_transports.items():
            base = self._base_of.get(key)
            for remote in transport.connections:
                if transport is keep and remote == nominated.remote_address:
                    continue
                transport.close_connection(remote)
                if base is not None:
                    self.ice.route_failed(base, remote)  # its events are drained by the caller

    def transport_for(self, pair: CandidatePair) -> CandidateTransport | None:
        """The transport that sends for `pair`: the one of its base (RFC 8445 7.2.5.3.2)."""
        return self.transport_of.get(pair.base)

    # ---- consent (driven by the agent's supervisor) ----

    def send_consent(self, pair: CandidatePair, now: float) -> None:
        """A consent check on `pair` (RFC 7675 5.1), sent now; its retransmissions are this session's."""
        self._transmit(self.ice.consent_check(pair, now))
        self.wake()

    def table_sizes(self) -> dict[str, int]:
        """The session's table sizes (IceSession.table_sizes) and this runner's own: for tests and soak runs."""
        return {
            **self.ice.table_sizes(),
            "data_sources": len(self._data_pairs),
            "stun_waiters": len(self.stun_waiters),
            "stun_strays": len(self.stun_strays),
            "outbox": len(self._outbox),
        }

    def stats_pairs(self) -> list[dict[str, Any]]:
        """One dict per pair: the check list, then valid pairs that are not on it. Such a pair was generated
        by another pair's check (RFC 8445 7.2.5.3.2, e.g. with a peer-reflexive local candidate): its
        check counters stay on that pair, named in "generated_by"."""
        out = []
        for p in self._all_pairs():
            entry: dict[str, Any] = {
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
                "generated_by": None,
            }
            checked = self.ice.generating_pair(p)
            if checked is not p:
                entry["generated_by"] = {"local": checked.local.to_sdp(), "remote": checked.remote.to_sdp()}
            out.append(entry)
        return out

    def _all_pairs(self) -> list[CandidatePair]:
        """The check list, then valid pairs that are not on it (RFC 8445 7.2.5.3.2: a valid pair may be new)."""
        pairs = self.ice.pairs
        seen = {id(p) for p in pairs}
        return pairs + [p for p in self.ice.valid_pairs if id(p) not in seen]
