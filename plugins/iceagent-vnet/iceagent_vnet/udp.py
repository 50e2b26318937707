"""The virtual UDP socket (the `UdpSocket` of iceagent.net): an unbounded receive queue on a host's port."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from .addresses import Address
from .scheduler import advance_if_running, current_scheduler

if TYPE_CHECKING:
    from .host import Host
    from .segment import Attachment


class VirtualUdpSocket:
    """A UDP socket bound on a virtual host. Closed sockets raise `trio.ClosedResourceError`."""

    def __init__(self, host: Host, ip: str, port: int, reuse: bool) -> None:
        self.host = host
        self.ip = ip
        self.port = port
        self.reuse = reuse
        self.groups: set[tuple[str, Attachment | None]] = set()
        """Multicast memberships: (group, interface)."""
        self._send, self._queue = trio.open_memory_channel[tuple[bytes, Address]](math.inf)
        self._closed = False

    @property
    def local_address(self) -> Address:
        """(bound address, port); the address may be a wildcard."""
        return (self.ip, self.port)

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    async def send(self, data: bytes, remote: Address) -> None:
        """Send one datagram; like UDP, a datagram that cannot be delivered is silently lost."""
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("the UDP socket was closed")
        self.host._send_udp(self, bytes(data), remote)

    async def receive(self) -> tuple[bytes, Address]:
        """The next datagram and its source address (waits on Trio time)."""
        if not self._closed:
            current_scheduler().advance()
        try:
            return await self._queue.receive()
        except trio.ClosedResourceError:
            raise trio.ClosedResourceError("the UDP socket was closed") from None

    def pending(self) -> int:
        """Datagrams waiting to be received."""
        return self._queue.statistics().current_buffer_used

    def close(self) -> None:
        """Unbind and close; a task blocked in `receive()` gets `trio.ClosedResourceError`."""
        if self._closed:
            return
        advance_if_running()  # what arrived before the close is still queued (and then discarded)
        self._closed = True
        self.host._unbind_udp(self)
        self._queue.close()
        self._send.close()

    def _deliver(self, payload: bytes, source: Address) -> None:
        if not self._closed:
            self._send.send_nowait((payload, source))

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<VirtualUdpSocket {self.host.name} {self.ip}:{self.port}{state}>"
