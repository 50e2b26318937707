"""open_mux: one UDP port (and ICE-TCP listener) per address shared by many agents (DESIGN.md "Concurrency").

The application opens the mux in its own nursery; it owns one socket per address and one receive task
per socket, which drains datagrams in batches and routes each into one endpoint's bounded inbox by the
sans-IO table of `_mux_routes` (checks by ufrag, responses by transaction id, everything else by a source
address an endpoint confirmed). Routing never calls agent code: it appends to an inbox and wakes the
task waiting on it, so nothing an agent does can raise in (or end) the mux.

An agent uses the mux through a `MuxEndpoint` (`mux.register(name)`): one `MuxTransport` per mux
address, each looking like a UDP socket (`send`, `send_nowait`, `try_send`, `receive`, `receive_batch`,
`local_address`, `close`) plus `confirm(remote)`, and `receive_now` / `wait_receivable` to be served by
a task that waits on other things too (an agent's session task: the mux reschedules it on a delivery);
with `tcp=True` also one `MuxTcpTransport` per address (an ICE-TCP passive transport, RFC 6544). A
wildcard address ("0.0.0.0", "::") is served on the OS network with IP_PKTINFO / IPV6_RECVPKTINFO
(RFC 3542 6): each datagram's destination picks the transport, and replies leave from that address.

Server-reflexive discovery through the mux is shared (`_mux_stun`): one Binding transaction per (mux address,
STUN server) answers every agent (`MuxEndpoint.reflexive`), cached and refreshed while agents use it.
"""

from __future__ import annotations

import collections
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import trio

from ..logs import get_logger
from ._mux_agent import Fanout, MuxGeneration, watcher
from ._mux_inbox import InboxTransport
from ._mux_loop import HEADER, MAGIC_COOKIE, route
from ._mux_ports import RECEIVE_BATCH, WILDCARDS, Port, SeamPort, bind_port
from ._mux_routes import (
    CLASS_MASK,
    REQUEST,
    MuxError,
    MuxFull,
    MuxLimits,
    MuxRoutes,
)
from ._mux_stun import MuxStun
from ._mux_tcp import MuxTcpTransport, TcpAcceptor
from .base import Address, Network
from .os import OSNetwork

log = get_logger("iceagent.mux")

#: Seconds of the run between two drains of the mux's sockets from `_StepDrainer` (besides the receive task).
DRAIN_INTERVAL = 0.002
#: The share of its sockets' receive buffers (`Port.capacity`) from which the mux drains between task steps:
#: while it serves that many agents, or took that many datagrams from its sockets in the last scheduling round
#: (`_Drainer`), a round could fill the buffers.
DRAIN_SHARE = 0.25
#: Seconds of tasks' steps in one scheduling round from which the next round drains between steps too, whatever
#: the load: a long round may be the process busy with other work, and a round as long again could fill the
#: sockets. (The answer's delay is DRAIN_TAIL's: a check waits for the rest of its round and for its agent's
#: turn in the next. Before the round's end was drained, it also waited for the receive task's turn in the next
#: round, three rounds, which 125 ms kept inside RFC 8445 14.3's 500 ms RTO floor.) The decision follows the
#: previous round, so the first long round of a burst (one task signalling thousands of agents at once) is never
#: drained between its steps.
DRAIN_ROUND = 0.125

#: Seconds of tasks' steps in one scheduling round from which the mux routes what its sockets hold at the round's
#: end, when tasks are ready to run (`_Drainer.before_io_wait`): what arrived after its receive task's turn is then
#: handled by its agents in the next round, as on sockets of their own (epoll reports those at the round's end),
#: not a round later. A drain that finds nothing costs a few microseconds: shorter rounds take none.
DRAIN_TAIL = 0.001

EndpointT = TypeVar("EndpointT", bound="MuxEndpoint")

#: The ICE-TCP transports of an endpoint on a mux without `tcp=True` (shared: never changed).
_NONE: list[MuxTcpTransport] = []

__all__ = ["Mux", "MuxEndpoint", "MuxError", "MuxFull", "MuxLimits", "MuxTcpTransport", "MuxTransport", "open_mux"]


class MuxTransport(InboxTransport):
    """One mux UDP address as one agent sees it: a socket-like transport (the `UdpSocket` shape plus
    `send_nowait`, `try_send`, `receive_batch`, `receive_now`, `wait_receivable`) and `confirm(remote)` to
    bind a verified source address. One task receives at a time (another gets `trio.BusyResourceError`)."""

    __slots__ = ("_port", "bind")

    def __init__(self, endpoint: MuxEndpoint, port: Port, local: Address) -> None:
        super().__init__(endpoint, local)
        self._port = port
        #: `confirm` as the routing table's own call (`MuxRoutes.bind`, which binds nothing once the endpoint
        #: left): what a generation's view confirms with (`_mux_agent.GenerationTransport.confirm`)
        self.bind: Callable[[Address], None] = partial(endpoint._mux._routes.bind, endpoint, local)

    def _before_send(self, data: bytes) -> None:
        """Raise once closed; record a STUN request's transaction id: its response comes back by it (RFC 8489
        6.3). Only a datagram whose first byte a request can have (top bits and class bit C1 zero, RFC 8489 5)
        is looked at further (the answers to checks are not)."""
        if self._closed:
            self._check_open()
        # (`request_transaction_id` and `looks_like_stun`, inline)
        size = len(data)
        if size >= 20 and not data[0] & 0xC1:
            mtype, length, cookie = HEADER.unpack_from(data)
            if cookie == MAGIC_COOKIE and length == size - 20 and not length & 3 and mtype & CLASS_MASK == REQUEST:
                self._endpoint._mux._routes.add_transaction(self._endpoint, bytes(data[8:20]), trio.current_time())

    async def send(self, data: bytes, remote: Address) -> None:
        """Send one datagram from this address; a STUN request's transaction id is recorded first."""
        self._before_send(data)
        await self._port.send(data, remote, self._local)

    def try_send(self, data: bytes, remote: Address) -> bool:
        """Send now if the socket can take it; False (nothing sent) when it cannot."""
        if self._closed or (data and not data[0] & 0xC1):  # (`_before_send`'s tests: a call less per answer)
            self._before_send(data)
        port = self._port
        sendto = port.direct  # the socket's own sendto where the port needs no source address
        if sendto is None:
            return port.try_send(data, remote, self._local)
        try:
            sendto(data, remote)
        except BlockingIOError:
            return False
        except OSError:
            pass  # lost, as UDP allows
        return True

    def send_nowait(self, data: bytes, remote: Address) -> None:
        """Send now, or drop the datagram (counted as "send_full") when the socket cannot take it."""
        if not self.try_send(data, remote):
            self._endpoint._mux._routes.drop("send_full")

    def confirm(self, remote: Address) -> None:
        """Bind `remote` on this address to this endpoint: call it only after verifying the integrity of a
        check from, or a response to, `remote` (DESIGN.md). The latest confirm of any endpoint wins."""
        if not self._closed:
            self.bind(remote)


class MuxEndpoint:
    """One agent's registration with a mux: its ufrags (one per ICE generation) and one transport per mux
    address. Closing it (or leaving `with`) unbinds everything of the agent at once."""

    __slots__ = ("_mux", "closed", "name", "tcp_transports", "transports")

    def __init__(self, mux: Mux, name: str) -> None:
        self._mux = mux
        self.name = name
        self.closed = False
        self.transports = [MuxTransport(self, port, local) for port, local in mux._port_of_local]
        """One UDP transport per `mux.local_addresses`, in that order."""
        self.tcp_transports: list[MuxTcpTransport] = (
            [MuxTcpTransport(self, local, mux.limits) for local in mux.tcp_addresses] if mux._acceptors else _NONE
        )
        """One ICE-TCP passive transport per `mux.tcp_addresses` (none without `tcp=True`)."""

    def transport(self, local: Address) -> MuxTransport:
        """The UDP transport of mux address `local` (KeyError if the mux has no such address)."""
        return self.transports[self._mux._local_index[local]]

    def tcp_transport(self, local: Address) -> MuxTcpTransport:
        """The ICE-TCP transport of mux address `local` (KeyError if the mux has no such listener)."""
        for t in self.tcp_transports:
            if t.local_address == local:
                return t
        raise KeyError(local)

    def add_ufrag(self, ufrag: str) -> None:
        """Route checks for `ufrag` (our local ufrag of one ICE generation) to this endpoint; `MuxError` if
        another endpoint has it, `MuxFull` past `MuxLimits.max_ufrags_per_agent`."""
        if self.closed:
            raise trio.ClosedResourceError(f"the mux endpoint {self.name!r} is closed")
        self._mux._routes.add_ufrag(self, ufrag)

    def remove_ufrag(self, ufrag: str) -> None:
        """Stop routing checks for `ufrag` (its generation closed)."""
        if not self.closed:
            self._mux._routes.remove_ufrag(self, ufrag)

    async def reflexive(self, local: Address, server: Address, *, rto: float = 0.5, rc: int = 7,
                        rm: int = 16, refresh_rto: float | None = None) -> Address:
        """The address STUN server `server` sees for mux address `local` (a server-reflexive candidate's
        address, RFC 8445 5.1.1.2), shared with every agent on the mux: from the mux's cache, or from the one
        Binding transaction in flight (RFC 8489 6.2.1 with `rto`, `rc`, `rm` when this call starts it; its
        refreshes start from `refresh_rto`, by default `rto`).
        Raises StunTimeout or StunErrorResponse (every waiter of a failed transaction gets one), `MuxFull`
        past `MuxLimits.max_stun_bindings`, `trio.ClosedResourceError` once the endpoint or mux closed."""
        if self.closed:
            raise trio.ClosedResourceError(f"the mux endpoint {self.name!r} is closed")
        if local not in self._mux._local_index:
            raise ValueError(f"the mux has no UDP address {local[0]}:{local[1]}")
        return await self._mux._stun.mapped(self, local, server, rto=rto, rc=rc, rm=rm, refresh_rto=refresh_rto)

    def stats(self) -> dict[str, int]:
        """How many ufrags, outstanding transactions, bound addresses and ICE-TCP connections it holds."""
        return {**self._mux._routes.owner_counts(self),
                "tcp_connections": sum(len(t.connections) for t in self.tcp_transports)}

    def close(self) -> None:
        """Leave the mux: ufrags, transactions, bindings and connections go at once; receivers get
        `trio.ClosedResourceError`."""
        if self.closed:
            return
        self.closed = True
        self._mux._routes.remove_owner(self)
        self._mux._stun.remove_owner(self)
        self._mux._endpoints.discard(self)
        for t in (*self.transports, *self.tcp_transports):
            t._close()

    def __enter__(self) -> MuxEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MuxEndpoint {self.name!r}{' closed' if self.closed else ''}>"


class AgentMux(MuxEndpoint):
    """The agent's registration with a mux (its `MuxEndpoint`, for the agent's lifetime), split between its
    generations: one `Fanout` per mux address."""

    __slots__ = ("fanouts", "tcp_fanouts")

    def __init__(self, mux: Mux, name: str) -> None:
        super().__init__(mux, name)
        mux._register(self)
        self.fanouts = tuple(Fanout(t) for t in self.transports)
        self.tcp_fanouts = tuple(Fanout(t) for t in self.tcp_transports)
        for t, fanout in zip(self.tcp_transports, self.tcp_fanouts, strict=True):
            t.watch(watcher(fanout))

    @property
    def mux(self) -> Mux:
        return self._mux

    @property
    def endpoint(self) -> MuxEndpoint:
        """Its registration with the mux: itself."""
        return self

    @property
    def wildcard_addresses(self) -> frozenset[str]:
        """The mux's addresses it serves because it was bound to a wildcard."""
        return self._mux._wildcard_hosts

    def open_generation(self, ufrag: str) -> MuxGeneration:
        """A new ICE generation with local ufrag `ufrag`, routable at once."""
        return MuxGeneration(self, ufrag).open()


class Mux:
    """An open mux (made by `open_mux`): its addresses, stats, and `register` for agents."""

    def __init__(self, limits: MuxLimits) -> None:
        self.limits = limits
        self._routes: MuxRoutes[MuxEndpoint] = MuxRoutes(limits)
        self._ports: list[Port] = []
        self._port_of_local: list[tuple[Port, Address]] = []
        self._local_index: dict[Address, int] = {}  # a UDP address -> its index in an endpoint's `transports`
        #: the addresses it serves because it was bound to a wildcard (not advertised as loopback: RFC 8445 5.1.1.1)
        self._wildcard_hosts: frozenset[str] = frozenset()
        self._acceptors: list[TcpAcceptor] = []
        self._tcp_counts: collections.Counter[str] = collections.Counter()
        self._endpoints: set[MuxEndpoint] = set()
        self._stun = MuxStun(self._routes, limits, self._send_own)
        self._drain_failed = False
        self._taken = 0  # datagrams taken from the sockets since the last scheduling round began (`_Drainer`)
        #: agents, or datagrams taken in one round, from which it drains between task steps (`_Drainer`)
        self._pressure = math.inf
        self.closed = False

    @property
    def local_addresses(self) -> list[Address]:
        """The mux's UDP addresses (a wildcard expanded to the interface addresses): the agents' host bases."""
        return [local for _, local in self._port_of_local]

    @property
    def tcp_addresses(self) -> list[Address]:
        """The mux's ICE-TCP passive addresses (empty without `tcp=True`)."""
        return [local for acceptor in self._acceptors for local in acceptor.locals]

    def register(self, name: str = "") -> MuxEndpoint:
        """A new endpoint for one agent (use it as a context manager or call `close()`); `MuxFull` past
        `MuxLimits.max_agents`."""
        return self._register(MuxEndpoint(self, name))

    def _register(self, endpoint: EndpointT) -> EndpointT:
        """Register `endpoint` (a MuxEndpoint, or an agent's `AgentMux`, which is one)."""
        if self.closed:
            raise trio.ClosedResourceError("the mux is closed")
        self._routes.add_owner(endpoint)
        self._endpoints.add(endpoint)
        return endpoint

    def stats(self) -> dict[str, Any]:
        """{"agents": registered endpoints, "routed": datagrams put in an inbox, "dropped": {reason: n}}."""
        return {"agents": len(self._endpoints), "routed": self._routes.routed, "dropped": dict(self._routes.dropped)}

    def stun_stats(self) -> dict[str, Any]:
        """The mux's shared STUN bindings (srflx through the mux): {"bindings": how many are alive,
        "in_flight": their transactions outstanding, "transactions": Binding transactions started so far
        (refreshes included), "cached": answers given from the cache, "mappings": {(mux address, server):
        mapped address}}."""
        stun = self._stun
        return {"bindings": len(stun), "in_flight": self._routes.own_transactions(),
                "transactions": stun.transactions, "cached": stun.cached, "mappings": stun.mappings()}

    def table_sizes(self) -> dict[str, int]:
        """The size of every table: agents, ufrags, transactions, bindings, open ICE-TCP connections."""
        return {**self._routes.sizes(), "tcp_connections": self._tcp_counts["tcp_open"]}

    async def _send_own(self, data: bytes, remote: Address, local: Address) -> None:
        """Send one of the mux's own datagrams (its STUN bindings) from mux address `local`."""
        for port, address in self._port_of_local:
            if address == local:
                await port.send(data, remote, local)
                return
        raise trio.ClosedResourceError(f"the mux has no UDP address {local[0]}:{local[1]}")

    def _add_port(self, port: Port) -> None:
        self._ports.append(port)
        self._pressure = min(self._pressure, max(1, int(port.capacity * DRAIN_SHARE)))
        for local in port.locals:
            self._port_of_local.append((port, local))
            self._local_index[local] = len(self._port_of_local) - 1
            if port.bind_address in WILDCARDS:
                self._wildcard_hosts |= {local[0]}

    async def _receive_loop(self, port: Port) -> None:
        """Drain one socket in batches and route each datagram into one inbox; never calls agent code."""
        wait = port.wait_readable
        while True:
            # What is read is routed before this task yields: a batch held across a checkpoint would be routed
            # after what the drainer (`_Drainer`, at a round's end too) read meanwhile, out of order. So it waits
            # for the socket without reading (an OS socket), then reads in the step it routes in.
            try:
                batch = port.receive_now(RECEIVE_BATCH)
            except OSError:
                if self.closed:
                    return
                raise
            if batch:
                self._route(batch, trio.current_time())
                await trio.lowlevel.checkpoint()
                continue
            try:
                if wait is None:  # (a socket the drainer cannot read, the vnet's: its batch cannot be overtaken)
                    batch = await port.receive_batch()
                else:
                    await wait()
                    batch = port.receive_now(RECEIVE_BATCH)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            except OSError:
                if self.closed:
                    return
                raise
            if batch:
                self._route(batch, trio.current_time())

    def _drain(self) -> None:
        """Route what the sockets hold now, without waiting (`_Drainer`, between other tasks' steps)."""
        if self.closed:
            return
        for port in self._ports:
            try:
                batch = port.receive_now(RECEIVE_BATCH)
            except OSError:  # closed under us: its receive task ends
                continue
            if batch:
                self._route(batch, trio.current_time())

    def _route_now(self) -> bool:
        """`_drain` outside the mux's own tasks (between task steps, or for an agent about to pump): an
        exception there is the mux's bug, not the caller's, so it is logged and counted ("drain_failed") and
        the receive tasks route alone from then on. False once that happened."""
        if self._drain_failed:
            return False
        try:
            self._drain()
        except Exception:
            self._drain_failed = True
            self._routes.drop("drain_failed")  # shows in mux.stats()["dropped"]
            log.exception("mux: routing outside its receive tasks failed; its receive tasks route alone from now")
            return False
        return True

    def _route_tail(self) -> None:
        """Route what the sockets hold at the end of a scheduling round (`_Drainer`, DRAIN_TAIL): as `_route_now`,
        each datagram's agent then runs in the next round."""
        if self.closed:
            return
        try:
            for port in self._ports:
                try:
                    batch = port.receive_now(RECEIVE_BATCH)
                except OSError:  # closed under us: its receive task ends
                    continue
                if batch:
                    self._route(batch, trio.current_time())
        except Exception:
            self._drain_failed = True
            self._routes.drop("drain_failed")
            log.exception("mux: routing at a round's end failed; its receive tasks route alone from now")

    #: Route each datagram of a batch into one inbox, or count why not (`_mux_loop.route`).
    _route = route

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._stun.close()
        for endpoint in list(self._endpoints):
            endpoint.close()
        for port in self._ports:
            port.close()
        for acceptor in self._acceptors:
            acceptor.listener.close()

    def __repr__(self) -> str:
        return f"<Mux {self.local_addresses} agents={len(self._endpoints)}>"


class _Drainer(trio.abc.Instrument):
    """Once per Trio scheduling round: at its end, before Trio's I/O wait, routes what the mux's sockets hold when
    tasks are ready to run and the round took DRAIN_TAIL or longer (its agents handle it in the next round, as
    on sockets of their own; Trio does not sleep in that wait); after the wait, decides whether this round's
    task steps drain the mux's sockets (`_StepDrainer`): yes while the mux serves at least `Mux._pressure` agents
    or took at least as many datagrams from its sockets since the last round began, DRAIN_SHARE of what its
    smallest receive buffer holds (about 2 000 agents or datagrams with 4 MiB), or when the last round's task
    steps took DRAIN_ROUND or longer (what waits on the socket would wait that long: the process may be busy
    with other work than this mux's agents); from the start, until a round says no.

    The receive task runs once per round, and with thousands of agents a round lasts seconds: a socket buffer
    (about 10 000 small datagrams in 4 MiB) overflowed in one, and the kernel dropped checks, responses and
    consent checks alike (bench/mux.py at 10 000 pairs). A round short of that pressure takes no drain, and
    its steps no call into the mux (a Trio instrument hook costs about half a microsecond per step)."""

    def __init__(self, mux: Mux) -> None:
        self._mux = mux
        self.steps = _StepDrainer(mux)
        self.stepping = True  # (`open_mux` adds both)
        self._round_began = 0.0  # (perf_counter) when this round's task steps began
        self._round_took = 0.0  # seconds the last round's task steps took

    def before_io_wait(self, timeout: float) -> None:
        took = self._round_took = time.perf_counter() - self._round_began
        if timeout == 0 and took >= DRAIN_TAIL and not self._mux._drain_failed:
            # tasks are ready (Trio does not sleep): route what came during the round (DRAIN_TAIL)
            self._mux._route_tail()

    def after_io_wait(self, timeout: float) -> None:
        mux = self._mux
        busy = (mux._taken >= mux._pressure or len(mux._endpoints) >= mux._pressure
                or self._round_took >= DRAIN_ROUND)
        mux._taken = 0
        self._round_began = time.perf_counter()
        if busy is not self.stepping:
            self.stepping = busy
            if busy:
                trio.lowlevel.add_instrument(self.steps)
            else:
                self.steps.remove()

    def remove(self) -> None:
        """Leave the run (with the mux), with the step hook if it is in."""
        self.steps.remove()
        with contextlib.suppress(KeyError):  # Trio removed it if it ever raised
            trio.lowlevel.remove_instrument(self)


class _StepDrainer(trio.abc.Instrument):
    """Drains the mux's sockets every DRAIN_INTERVAL of the run, between any tasks' steps, in the rounds that
    `_Drainer` says may fill them. Routing only appends to inboxes and wakes their tasks, so it may run from
    this hook."""

    def __init__(self, mux: Mux) -> None:
        self._mux = mux
        self._next = 0.0

    def remove(self) -> None:
        with contextlib.suppress(KeyError):  # not in (or Trio removed it after it raised)
            trio.lowlevel.remove_instrument(self)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        now = time.perf_counter()
        if now >= self._next:
            self._next = now + DRAIN_INTERVAL
            if not self._mux._route_now():  # (Trio would remove an instrument that raised, silently)
                self._next = math.inf


async def _listen(mux: Mux, network: Network, port: Port) -> None:
    """An ICE-TCP passive listener on the UDP socket's address and port (RFC 6544 4.5)."""
    listener = await network.listen_tcp(port.bind_address, port.locals[0][1])
    mux._acceptors.append(TcpAcceptor(listener, [(a, listener.local_address[1]) for a, _ in port.locals],
                                      mux._routes, mux.limits, mux._tcp_counts))


@asynccontextmanager
async def open_mux(
    host_addresses: Sequence[str],
    port: int = 0,
    *,
    tcp: bool = False,
    network: Network | None = None,
    limits: MuxLimits | None = None,
) -> AsyncIterator[Mux]:
    """Open one UDP socket on `port` per address in `host_addresses`, shared by many agents; with `tcp=True`
    also an ICE-TCP passive listener (RFC 6544) on the same address and port.

    `port=0` picks an ephemeral port per address (`mux.local_addresses` says which). A wildcard
    ("0.0.0.0", "::") serves every interface address of its family (OS network on Linux only).
    `network=None` is the OS network; the vnet plugin's network runs the mux on the virtual network.
    `limits` bounds the routing tables, inboxes and connections (`MuxLimits`). Every socket and task
    ends with the `async with`; endpoints still registered are closed then.
    """
    if isinstance(host_addresses, str) or not host_addresses:
        raise ValueError(f"open_mux needs a list of addresses to bind, got {host_addresses!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"open_mux: port {port} is out of range 0..65535")
    net = network if network is not None else OSNetwork()
    mux = Mux(limits or MuxLimits())
    drainer = _Drainer(mux)
    trio.lowlevel.add_instrument(drainer)
    trio.lowlevel.add_instrument(drainer.steps)
    try:
        for address in dict.fromkeys(host_addresses):
            mux._add_port(await bind_port(net, address, port))
            if tcp:
                await _listen(mux, net, mux._ports[-1])
        async with trio.open_nursery() as nursery:
            mux._stun.nursery = nursery
            for p in mux._ports:
                nursery.start_soon(mux._receive_loop, p, name=f"iceagent.mux receive {p.locals[0]}")
                if isinstance(p, SeamPort) and p.outbox_receive is not None:
                    nursery.start_soon(p.run_sender, name=f"iceagent.mux send {p.locals[0]}")
            for acceptor in mux._acceptors:
                nursery.start_soon(acceptor.run, nursery, name=f"iceagent.mux accept {acceptor.locals[0]}")
            try:
                yield mux
            finally:
                mux._close()  # endpoints end their receivers, sockets and listeners end their tasks
                nursery.cancel_scope.cancel()
    finally:
        mux._close()
        drainer.remove()
