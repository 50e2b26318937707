"""The receiving half of a mux transport (UDP or ICE-TCP): a bounded inbox the mux fills and the agent drains.

The mux side only appends and wakes (`_deliver`, never blocking, never calling agent code); the agent's
receive task takes datagrams with `receive` / `receive_batch`, as from a socket.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import trio

from ._mux_routes import MuxLimits
from .base import Address

if TYPE_CHECKING:
    from .mux import MuxEndpoint


class InboxTransport:
    """What every mux transport shares: its endpoint, its local address and its inbox."""

    def __init__(self, endpoint: MuxEndpoint, local: Address) -> None:
        self._endpoint = endpoint
        self._local = local
        self._items: collections.deque[tuple[bytes, Address]] = collections.deque()
        self._bytes = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        #: the checks waiting in the inbox, as (datagram, source): made at the first check
        self._checks: set[tuple[bytes, Address]] | None = None

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

    async def receive_batch(self, limit: int = 64) -> list[tuple[bytes, Address]]:
        """Every datagram waiting (at most `limit`), waiting for the first if none is;
        `trio.ClosedResourceError` once the endpoint or the mux closed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        items = self._items
        parked = False
        while not items:
            if self._closed:
                raise trio.ClosedResourceError(f"the mux endpoint {self._endpoint.name!r} is closed")
            await self._lot.park()
            parked = True
        out = [items.popleft() for _ in range(min(limit, len(items)))]
        self._bytes -= sum(len(d) for d, _ in out)
        checks = self._checks
        if checks:
            for item in out:
                checks.discard(item)
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return out

    def pending(self) -> int:
        """Datagrams waiting in the inbox."""
        return len(self._items)

    def close(self) -> None:
        """Close the whole endpoint (every ufrag, transaction, binding and connection of the agent goes)."""
        self._endpoint.close()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError(f"the mux endpoint {self._endpoint.name!r} is closed")

    def _deliver(self, data: bytes, remote: Address, limits: MuxLimits) -> bool:
        """Queue a datagram (False when the inbox is full: the caller counts the drop) and wake the receiver."""
        if len(self._items) >= limits.inbox_datagrams or self._bytes + len(data) > limits.inbox_bytes:
            return False
        self._items.append((data, remote))
        self._bytes += len(data)
        if self._lot:
            self._lot.unpark_all()
        return True

    def _deliver_check(self, data: bytes, remote: Address, limits: MuxLimits) -> str:
        """Queue a check (a Binding request) as `_deliver` does, unless the same datagram from the same source
        is still waiting: a retransmission (RFC 8489 6.2.1) of a check the agent has not read yet, which it
        will answer by the waiting copy. "" when queued, else why it was dropped."""
        checks = self._checks
        if checks is None:
            checks = self._checks = set()
        key = (data, remote)
        if key in checks:
            return "duplicate_check"
        if not self._deliver(data, remote, limits):
            return "inbox_full"
        checks.add(key)
        return ""

    def _close(self) -> None:
        self._closed = True
        self._checks = None
        self._items.clear()
        self._bytes = 0
        self._lot.unpark_all()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._endpoint.name!r} {self._local[0]}:{self._local[1]}>"
