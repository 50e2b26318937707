"""The receiving half of a mux transport (UDP or ICE-TCP): a bounded inbox the mux fills and the agent drains.

The mux side only appends and wakes (`_deliver`, never blocking, never calling agent code); the agent
takes datagrams as from a socket: `receive` / `receive_batch`, or, without a task of its own, `receive_now`
(what is waiting, never blocking) and `wait_receivable` (park until the mux delivers), which is how an
agent's session task serves its mux address itself (agent/_session_task.py). An inbox holds no objects
while it is empty: its list and its table of waiting checks are made by a delivery and dropped when drained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

from ._mux_routes import MuxLimits
from .base import Address

if TYPE_CHECKING:
    from .mux import MuxEndpoint

Item = tuple[bytes, Address]

#: Datagrams waiting in an inbox up to which a check's retransmission is looked for by scanning it (past it,
#: in a set): the usual inbox holds one or two, and a set per check was an allocation per routed check.
CHECK_SCAN = 8


class InboxListener(Protocol):
    """Who else hears of a delivery (an agent's generations during a restart: `_mux_agent.Fanout`)."""

    def inbox_ready(self) -> None: ...


class Parking:
    """One task parked until woken (a receiver without a task of its own): `_enlist()`, then
    `await wait_task_rescheduled(self._abort)` in the caller's own frame (a frame less per parked agent);
    `_unpark()` wakes it. A second one raises `trio.BusyResourceError`, as two receivers on one socket do."""

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: Task | None = None

    def _enlist(self) -> None:
        if self._waiter is not None:
            raise trio.BusyResourceError(f"another task already receives on {self!r}")
        self._waiter = current_task()

    def _abort(self, _: object) -> Abort:
        self._waiter = None
        return Abort.SUCCEEDED

    def _unpark(self) -> bool:
        """Reschedule the parked task; False if none is parked."""
        task = self._waiter
        if task is None:
            return False
        self._waiter = None
        reschedule(task)
        return True


class InboxTransport(Parking):
    """What every mux transport shares: its endpoint, its local address and its inbox."""

    __slots__ = ("_bytes", "_checks", "_closed", "_endpoint", "_items", "_listener", "_local")

    def __init__(self, endpoint: MuxEndpoint, local: Address) -> None:
        super().__init__()  # the task in `wait_receivable` (one at a time, as on a socket)
        self._endpoint = endpoint
        self._local = local
        self._items: list[Item] | None = None  # what waits, oldest first (None while empty)
        self._bytes = 0
        self._listener: InboxListener | None = None
        self._closed = False
        #: what waits in the inbox, as (datagram, source), to find a check's retransmission: made by a check
        #: once CHECK_SCAN datagrams wait (fewer are looked through), dropped once drained
        self._checks: set[Item] | None = None

    @property
    def local_address(self) -> Address:
        """The mux address (an interface address, never a wildcard) of this transport."""
        return self._local

    @property
    def endpoint(self) -> MuxEndpoint:
        """The endpoint (one agent's registration) this transport belongs to."""
        return self._endpoint

    async def receive(self) -> tuple[bytes, Address]:
        """The next datagram routed to this transport and its source address."""
        return (await self.receive_batch(1))[0]

    async def receive_batch(self, limit: int = 64) -> list[Item]:
        """Every datagram waiting (at most `limit`), waiting for the first if none is;
        `trio.ClosedResourceError` once the endpoint or the mux closed, `trio.BusyResourceError` if another
        task waits on this transport already."""
        await trio.lowlevel.checkpoint_if_cancelled()
        out = self.receive_now(limit)
        if out:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return out
        while not out:
            await self.wait_receivable()
            out = self.receive_now(limit)
        return out

    def receive_now(self, limit: int = 64) -> list[Item]:
        """The datagrams waiting now (at most `limit`, oldest first; [] if none), without waiting;
        `trio.ClosedResourceError` once the endpoint or the mux closed."""
        items = self._items
        if items is None:
            if self._closed:
                raise trio.ClosedResourceError(f"the mux endpoint {self._endpoint.name!r} is closed")
            return []
        if len(items) <= limit:
            out = items
            self._items = None
            self._bytes = 0
            self._checks = None
            return out
        out = items[:limit]
        del items[:limit]
        self._bytes -= sum(len(d) for d, _ in out)
        checks = self._checks
        if checks:
            for item in out:
                checks.discard(item)
        self._unpark()  # a receiver parked meanwhile takes the rest (`GenerationTransport.route_waiting`)
        return out

    async def wait_receivable(self) -> None:
        """Park until the mux delivers to this transport, it closes, or `wake_receiver()`; at once (after a
        checkpoint) if something is waiting already."""
        if self._items is not None or self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._enlist()
        await wait_task_rescheduled(self._abort)

    def wake_receiver(self) -> None:
        """End the wait of the task in `wait_receivable` now (it finds nothing new and looks again)."""
        self._unpark()

    def pending(self) -> int:
        """Datagrams waiting in the inbox."""
        return 0 if self._items is None else len(self._items)

    def close(self) -> None:
        """Close the whole endpoint (every ufrag, transaction, binding and connection of the agent goes)."""
        self._endpoint.close()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError(f"the mux endpoint {self._endpoint.name!r} is closed")

    def _deliver(self, data: bytes, remote: Address, limits: MuxLimits, item: Item | None = None) -> bool:
        """Queue a datagram (False when the inbox is full: the caller counts the drop) and wake the receiver;
        `item`: the (data, remote) tuple, if the caller made one already."""
        items = self._items
        if items is None:
            if self._closed:
                return False
            items = self._items = []
        elif len(items) >= limits.inbox_datagrams or self._bytes + len(data) > limits.inbox_bytes:
            return False
        items.append((data, remote) if item is None else item)
        self._bytes += len(data)
        task = self._waiter  # (`_unpark`, inline: a call less per datagram)
        if task is not None:
            self._waiter = None
            reschedule(task)
        if self._listener is not None:
            self._listener.inbox_ready()
        return True

    def _deliver_check(self, item: Item, limits: MuxLimits) -> str:
        """Queue a check (a Binding request, `item` its (data, source)) as `_deliver` does, unless the same datagram
        from the same source is still waiting: a retransmission (RFC 8489 6.2.1) of a check the agent has not
        read yet, which it will answer by the waiting copy. "" when queued, else why it was dropped.

        Up to CHECK_SCAN datagrams waiting it looks through the inbox (into an empty one, the usual case, it
        makes nothing); past that a set of what waits is kept until the inbox is drained (bounded work per
        check whatever `MuxLimits.inbox_datagrams` is). A datagram equal to a check is a check (its kind comes
        from its bytes), so the set may hold every waiting datagram."""
        items = self._items
        if items is not None:
            checks = self._checks
            if checks is None and len(items) >= CHECK_SCAN:
                checks = self._checks = set(items)
            if item in (items if checks is None else checks):
                return "duplicate_check"
        if not self._deliver(item[0], item[1], limits, item):  # the same tuple in the inbox and the set
            return "inbox_full"
        if self._checks is not None:
            self._checks.add(item)
        return ""

    def _close(self) -> None:
        self._closed = True
        self._checks = None
        self._items = None
        self._bytes = 0
        self.wake_receiver()
        if self._listener is not None:
            self._listener.inbox_ready()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._endpoint.name!r} {self._local[0]}:{self._local[1]}>"
