"""One agent on a mux (`open_agent(mux=...)`): its endpoint, and one view of each mux transport per ICE generation.

The agent registers one `MuxEndpoint` for its lifetime (`AgentMux`). Each ICE generation opens a
`MuxGeneration`: it registers the generation's local ufrag with the mux and gives the generation's session a
`GenerationTransport` per mux address, which looks like a socket of its own. During a restart two generations
share the endpoint's transports (RFC 8445 9: both stay routable until the old one closes), so what the mux
put in the endpoint's inbox is split between them here, with the mux's own rules (DESIGN.md "Concurrency"):

- a check (Binding request) by the local ufrag in USERNAME (RFC 8445 7.3);
- a STUN response by the transaction id the generation recorded when it sent the request (RFC 8489 6.3),
  the oldest generation for ids sent while it was the only one;
- anything else by the generation that last confirmed its source address while both were alive (else the
  oldest, which carries the data until the new one has nominated, RFC 8445 12.1).

With one generation alive (the usual case) nothing is parsed: the batch goes to it as it came. There is no
task of its own: the receiving generation that finds its queue empty pulls the next batch for all of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar, Union

import trio
from trio.lowlevel import current_task, wait_task_rescheduled

from ._mux_inbox import Item, Parking
from ._mux_routes import CHECK, RESPONSE, kind_of, local_ufrag, request_transaction_id
from .base import Address

if TYPE_CHECKING:
    from .mux import AgentMux, MuxTcpTransport, MuxTransport

__all__ = ["Fanout", "GenerationTcpTransport", "GenerationTransport", "MuxGeneration", "watcher"]

Shared = Union["MuxTransport", "MuxTcpTransport"]

#: Transaction ids and confirmed sources remembered per mux address of one agent to split traffic between
#: generations during a restart (beyond it the oldest is forgotten: its response and data go to the oldest
#: generation). The mux bounds the same per agent (MuxLimits).
SPLIT_TABLE = 1024
#: Datagrams waiting for one generation while another pulls (as the mux's inbox, MuxLimits.inbox_datagrams).
VIEW_QUEUE = 256


class Fanout:
    """One mux transport of the agent, shared by its live generations' views (oldest first). The tables that
    split traffic exist only while several generations are alive (a restart); one generation takes all."""

    __slots__ = ("_sources", "_tids", "shared", "views")

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.views: tuple[GenerationTransport, ...] = ()  # (a tuple: smaller than a list for the usual one)
        self._tids: dict[bytes, GenerationTransport] | None = None
        self._sources: dict[Address, GenerationTransport] | None = None

    def attach(self, view: GenerationTransport) -> None:
        self.views += (view,)
        if len(self.views) == 2:  # a restart: split what arrives; the waiting view waits on its own from now
            self._tids, self._sources = {}, {}
            self.shared._listener = self
            self.shared.wake_receiver()
        self._set_confirms()

    def detach(self, view: GenerationTransport) -> None:
        self.views = tuple(v for v in self.views if v is not view)
        view.confirm = _ignore
        if len(self.views) <= 1:
            self._tids = self._sources = None
            self.shared._listener = None
        else:
            _forget(self._tids, view)
            _forget(self._sources, view)
        self._set_confirms()
        self.inbox_ready()  # the others look again (one may now take the endpoint's inbox alone)

    def _set_confirms(self) -> None:
        """Give each live view its `confirm`: the shared transport's own (the routing table's `bind` for UDP) while
        one generation is alive, so an agent's confirm is one call; during a restart one that also steers the
        source's other traffic to the view's generation (`_confirm_split`)."""
        views = self.views
        if len(views) == 1:
            views[0].confirm = views[0]._bind
        else:
            for view in views:
                view.confirm = partial(_confirm_split, view)

    def inbox_ready(self) -> None:
        """The mux delivered (or the endpoint closed) while several generations share the transport."""
        for view in self.views:
            view.wake_receiver()

    def sent(self, view: GenerationTransport, data: bytes) -> None:
        """Remember which generation sent a request while several share the transport."""
        if self._tids is not None:
            tid = request_transaction_id(data)
            if tid is not None:
                _remember(self._tids, tid, view)

    def receive_now(self, view: GenerationTransport, limit: int) -> list[Item]:
        """What waits for `view` now: its queue, else what the endpoint's inbox holds (split between the
        generations while several are alive); [] if nothing."""
        items = view.items
        if items:
            return _take(view, items, limit)
        if view.closed:
            raise trio.ClosedResourceError("this ICE generation's mux transport is closed")
        if len(self.views) == 1:
            return self.shared.receive_now(limit)
        self._split(self.shared.receive_now(VIEW_QUEUE))
        items = view.items
        return _take(view, items, limit) if items else []

    def _split(self, batch: list[Item]) -> None:
        """Checks by ufrag, responses by the generation that sent the request, the rest by the generation that
        confirmed the source; what is not known goes to the oldest (it carries data until the new one has
        nominated, RFC 8445 12.1; ids it sent alone were not recorded)."""
        views = self.views
        if not views or not batch:
            return
        tids = self._tids if self._tids is not None else {}
        sources = self._sources if self._sources is not None else {}
        for data, remote in batch:
            target: GenerationTransport | None
            kind = kind_of(data)
            if kind == CHECK:
                ufrag = local_ufrag(data)
                target = next((v for v in views if v.ufrag == ufrag), None)
            elif kind == RESPONSE:
                target = tids.pop(bytes(data[8:20]), None) or views[0]
            else:
                target = sources.get(remote) or views[0]
            if target is None:
                continue
            if target.items is None:
                target.items = []
            if len(target.items) < VIEW_QUEUE:
                target.items.append((data, remote))
        for v in views:
            if v.items:
                v.wake_receiver()


def _ignore(remote: Address) -> None:
    """A closed view's `confirm`: it binds nothing."""


def _confirm_split(view: GenerationTransport, remote: Address) -> None:
    """`confirm` of a view while several generations share the transport (a restart): bind `remote` to the
    agent and steer its other traffic to this view's generation."""
    if not view.closed and not view._shared._closed:
        view._bind(remote)
        sources = view._fanout._sources
        if sources is not None:
            _remember(sources, remote, view)


def _take(view: GenerationTransport, items: list[Item], limit: int) -> list[Item]:
    if len(items) <= limit:
        view.items = None
        return items
    out = items[:limit]
    del items[:limit]
    return out


K = TypeVar("K")


def _remember(table: dict[K, GenerationTransport], key: K, view: GenerationTransport) -> None:
    table.pop(key, None)
    table[key] = view  # the newest last
    if len(table) > SPLIT_TABLE:
        del table[next(iter(table))]


def _forget(table: dict[K, GenerationTransport] | None, view: GenerationTransport) -> None:
    if table is not None:
        for key in [k for k, v in table.items() if v is view]:
            del table[key]


class GenerationTransport(Parking):
    """One mux UDP address as one ICE generation sees it: a socket of its own (`send`, `try_send`,
    `send_nowait`, `receive`, `receive_batch`, `local_address`, `confirm`); `close()` ends only this view.
    Its session task serves it without a task of its own: `receive_now`, `wait_receivable`, `wake_receiver`."""

    __slots__ = ("_bind", "_fanout", "_sendto", "_shared", "closed", "confirm", "items", "ufrag")

    def __init__(self, fanout: Fanout, ufrag: bytes) -> None:
        super().__init__()  # its receiver, parked here while several generations are alive
        self._fanout = fanout
        shared = self._shared = fanout.shared
        #: the shared transport's confirm (a UDP one's: the routing table's own call, which binds nothing once the
        #: endpoint left)
        self._bind: Callable[[Address], None] = getattr(shared, "bind", shared.confirm)
        #: `confirm(remote)`: bind `remote` to this agent on the mux, after MESSAGE-INTEGRITY passed on a check
        #: from it or a response from it (DESIGN.md). `Fanout` sets it: `_bind` while this is the agent's only
        #: generation (an agent's confirm is then one call into the table), during a restart `_confirm_split`
        #: (its traffic is steered to this generation too), and nothing once closed or detached.
        self.confirm: Callable[[Address], None] = _ignore
        #: the stdlib socket's `sendto` under a UDP transport whose port has one (`Port.direct`), else None: sends
        #: that need no transaction recorded go straight to it (as `MuxTransport.try_send` does)
        port = getattr(shared, "_port", None)
        self._sendto: Callable[[bytes, Address], object] | None = None if port is None else port.direct
        self.ufrag = ufrag
        #: what another generation's pull left for this one (made when first needed: during a restart)
        self.items: list[Item] | None = None
        self.closed = False

    @property
    def local_address(self) -> Address:
        """The mux address (an interface address, never a wildcard)."""
        return self._shared.local_address

    async def send(self, data: bytes, remote: Address) -> None:
        self._before_send(data)
        await self._shared.send(data, remote)

    def try_send(self, data: bytes, remote: Address) -> bool:
        """Send now if the socket can take it; False when it cannot. (`MuxTransport.try_send`, inline where the
        port sends by its socket's own `sendto`: no call between the agent and the socket for an answer.)"""
        if self.closed or self._fanout._tids is not None:
            self._before_send(data)
        shared = self._shared
        sendto = self._sendto
        if sendto is None:
            return shared.try_send(data, remote)
        if shared._closed or (data and not data[0] & 0xC1):  # (its `_before_send`'s tests)
            # raises once closed; records a request's transaction id (a UDP transport: the one with a `sendto`)
            shared._before_send(data)  # type: ignore[union-attr]
        try:
            sendto(data, remote)
        except BlockingIOError:
            return False
        except OSError:
            pass  # lost, as UDP allows
        return True

    def send_nowait(self, data: bytes, remote: Address) -> None:
        """Send now, or drop the datagram (counted as "send_full") when the socket cannot take it (`try_send`
        written out again: a call less per answer)."""
        if self.closed or self._fanout._tids is not None:
            self._before_send(data)
        shared = self._shared
        sendto = self._sendto
        if sendto is None:
            shared.send_nowait(data, remote)
            return
        if shared._closed or (data and not data[0] & 0xC1):
            shared._before_send(data)  # type: ignore[union-attr]
        try:
            sendto(data, remote)
        except BlockingIOError:
            shared._endpoint._mux._routes.drop("send_full")
        except OSError:
            pass

    def _before_send(self, data: bytes) -> None:
        """Raise once closed; while several generations share the transport (a restart), remember which one
        sent a request."""
        self._check_open()
        self._fanout.sent(self, data)

    async def receive(self) -> tuple[bytes, Address]:
        return (await self.receive_batch(1))[0]

    async def receive_batch(self, limit: int = 64) -> list[Item]:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            out = self.receive_now(limit)
            if out:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return out
            await self.wait_receivable()

    def receive_now(self, limit: int = 64) -> list[Item]:
        """What the mux routed to this generation and waits now (at most `limit`), [] if nothing;
        `trio.ClosedResourceError` once it (or the endpoint) closed."""
        if not self.items and not self.closed and len(self._fanout.views) == 1:
            # the endpoint's inbox is this generation's alone
            shared = self._shared
            items = shared._items
            if items is None:  # nothing waits (`InboxTransport.receive_now`, inline, as below)
                if shared._closed:
                    shared._check_open()
                return []
            if len(items) <= limit:  # all of it
                shared._items = shared._checks = None
                shared._bytes = 0
                return items
            return shared.receive_now(limit)
        return self._fanout.receive_now(self, limit)

    def route_waiting(self) -> None:
        """Have the mux route what its sockets hold now: the session task before it pumps for a wake-up, or a
        signalling call doing its turn (agent/_session_task.py `release`). Either takes this generation's share
        with `receive_now` right after, so a delivery here does not wake the session task parked on the
        endpoint's inbox (it would step and find nothing); should more than one batch be left, `receive_now`
        wakes it."""
        shared = self._shared
        waiter = shared._waiter
        if waiter is None or self.closed or self._fanout.views != (self,):  # (only this view takes what it routes)
            shared._endpoint._mux._route_now()
            return
        shared._waiter = None  # (routing reschedules only a parked task)
        try:
            shared._endpoint._mux._route_now()
        finally:
            shared._waiter = waiter
            if shared._closed:
                shared._unpark()  # closed meanwhile: it finds out

    def wait_receivable(self) -> Awaitable[object]:
        """Park until something may wait for this generation (the mux delivered, it or the endpoint closed,
        or `wake_receiver()`); the caller looks with `receive_now`. Await it at once: it is a plain function that
        enlists the calling task and returns Trio's wait itself, so a parked agent keeps no coroutine frame of
        this method (216 bytes per idle agent)."""
        shared = self._shared
        parking: Parking
        if len(self._fanout.views) == 1 and not self.items:  # the endpoint's inbox is this generation's alone
            parking, ready = shared, shared._items is not None or shared._closed
        else:
            parking, ready = self, bool(self.items or self.closed or shared._closed or shared.pending())
        if ready:
            return trio.lowlevel.checkpoint()  # noqa: ASYNC105 (the caller awaits it)
        if parking._waiter is not None:  # (`Parking._enlist`, inline)
            raise trio.BusyResourceError(f"another task already receives on {parking!r}")
        parking._waiter = current_task()
        return wait_task_rescheduled(parking._abort)  # noqa: ASYNC105 (the caller awaits it)

    def wake_receiver(self) -> None:
        """End the wait of its receiver now (it looks again)."""
        if self._waiter is None and len(self._fanout.views) == 1:
            self._shared._unpark()  # it may wait on the endpoint's inbox (`wait_receivable`)
        else:
            self._unpark()

    def close(self) -> None:
        """This generation stops using the address (the agent's endpoint stays)."""
        if not self.closed:
            self.closed = True
            self.items = None
            self.wake_receiver()  # while attached: its receiver may wait on the endpoint's inbox
            self._fanout.detach(self)

    def _check_open(self) -> None:
        if self.closed:
            raise trio.ClosedResourceError("this ICE generation's mux transport is closed")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._shared!r}>"


class GenerationTcpTransport(GenerationTransport):
    """One mux ICE-TCP passive address as one generation sees it (a ConnectionTransport, RFC 6544 7)."""

    __slots__ = ("_on_closed",)

    def __init__(self, fanout: Fanout, ufrag: bytes) -> None:
        super().__init__(fanout, ufrag)
        self._on_closed: Callable[[Address], None] | None = None

    @property
    def _tcp(self) -> MuxTcpTransport:
        return self._shared  # type: ignore[return-value]

    @property
    def connections(self) -> list[Address]:
        """The agent's open connections on this address (claimed by a check for any of its generations)."""
        return [] if self.closed else self._tcp.connections

    def watch(self, on_closed: Callable[[Address], None]) -> None:
        self._on_closed = on_closed

    def close_connection(self, remote: Address) -> None:
        if not self.closed:
            self._tcp.close_connection(remote)


class MuxGeneration:
    """One ICE generation of an agent on a mux: its ufrag's registration and one view per mux address.
    The agent opens it when the generation starts and closes it when the generation closes."""

    __slots__ = ("_open", "agent", "tcp_transports", "transports", "ufrag")

    def __init__(self, agent: AgentMux, ufrag: str) -> None:
        self.agent = agent
        self.ufrag = ufrag
        self.transports: tuple[GenerationTransport, ...] = ()
        self.tcp_transports: tuple[GenerationTcpTransport, ...] = ()
        self._open = False

    def from_wildcard(self, address: str) -> bool:
        """Whether the mux serves `address` because it was bound to a wildcard (then loopback is not advertised
        unless asked for: RFC 8445 5.1.1.1)."""
        return address in self.agent.mux._wildcard_hosts

    def open(self) -> MuxGeneration:
        """Register the ufrag (MuxError/MuxFull from the mux) and open the views."""
        agent = self.agent
        agent.endpoint.add_ufrag(self.ufrag)
        self._open = True
        key = self.ufrag.encode()
        self.transports = tuple(GenerationTransport(fanout, key) for fanout in agent.fanouts)
        self.tcp_transports = tuple(GenerationTcpTransport(fanout, key) for fanout in agent.tcp_fanouts)
        for view in (*self.transports, *self.tcp_transports):
            view._fanout.attach(view)
        return self

    def close(self) -> None:
        """The generation closed: its ufrag is no longer routed, its views end."""
        if self._open:
            self._open = False
            self.agent.endpoint.remove_ufrag(self.ufrag)
        for view in (*self.transports, *self.tcp_transports):
            view.close()


def watcher(fanout: Fanout) -> Callable[[Address], None]:
    def on_closed(remote: Address) -> None:
        for view in list(fanout.views):
            callback = getattr(view, "_on_closed", None)
            if callback is not None:
                callback(remote)
    return on_closed
