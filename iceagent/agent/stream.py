"""IceStream: the application's datagram channel over the selected candidate pair (RFC 8445 12)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ..errors import IceFailed

if TYPE_CHECKING:
    from .core import Agent


class IceStream(trio.abc.Channel[bytes]):
    """One datagram per message, in both directions, over whatever pair the agent has selected.

    `send` waits until a pair is selected, raises IceFailed while the agent is FAILED, and
    trio.ClosedResourceError once the agent (or this stream) is closed. `receive` returns datagrams
    from any known remote candidate; when the application does not read, at most
    `IceConfig.receive_buffer` datagrams are queued and newer ones are dropped (as a UDP socket's
    buffer would), counted in `agent.stats()["dropped_datagrams"]`. The stream outlives restarts.

    Scheduling: `send` and `receive` check for cancellation on every call, but when they can complete
    at once (socket writable, datagram queued) they let other tasks run only every
    `SCHEDULE_EVERY` calls: a scheduling round per datagram would cost a third of the throughput.
    """

    #: A successful send/receive that did not have to wait yields to the scheduler every this many calls.
    SCHEDULE_EVERY = 16

    def __init__(self, agent: Agent, receive_channel: trio.MemoryReceiveChannel[bytes]) -> None:
        self._agent = agent
        self._receive = receive_channel
        self._closed = False
        self._sends = 0
        self._receives = 0

    async def send(self, data: bytes) -> None:
        """Send one datagram to the peer on the selected pair."""
        if self._closed:
            raise trio.ClosedResourceError("the IceStream is closed")
        route = self._agent._route
        if route is None:
            route = await self._agent._wait_route()
        transport, remote, pair = route
        self._sends += 1
        try_send = getattr(transport, "try_send", None)
        if try_send is not None and self._sends % self.SCHEDULE_EVERY:
            await trio.lowlevel.checkpoint_if_cancelled()
            if not try_send(data, remote):
                await transport.send(data, remote)  # the socket buffer is full: wait for it
        else:
            await transport.send(data, remote)
        pair.bytes_sent += len(data)

    def send_nowait(self, data: bytes) -> None:
        """Send one datagram without a checkpoint, for tight loops; trio.WouldBlock when no pair is selected
        yet or the transport cannot send synchronously (use `send` then). Dropped if the socket buffer
        is full, as UDP may."""
        if self._closed:
            raise trio.ClosedResourceError("the IceStream is closed")
        route = self._agent._route
        if route is None:
            self._agent._raise_if_failed()
            raise trio.WouldBlock
        transport, remote, pair = route
        send_nowait = getattr(transport, "send_nowait", None)
        if send_nowait is None:
            raise trio.WouldBlock
        send_nowait(data, remote)
        pair.bytes_sent += len(data)

    def receive_nowait(self) -> bytes:
        """The next queued datagram without a checkpoint; trio.WouldBlock if none is queued."""
        if self._closed:
            raise trio.ClosedResourceError("the IceStream is closed")
        return self._receive.receive_nowait()

    async def receive(self) -> bytes:
        """The next datagram from the peer; trio.EndOfChannel once the agent has closed."""
        if self._closed:
            raise trio.ClosedResourceError("the IceStream is closed")
        self._receives += 1
        if self._receives % self.SCHEDULE_EVERY:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                return self._receive.receive_nowait()
            except trio.WouldBlock:
                pass
        return await self._receive.receive()

    async def aclose(self) -> None:
        """Close this stream (the agent stays open); further send/receive raise ClosedResourceError."""
        self._closed = True
        await trio.lowlevel.checkpoint()


__all__ = ["IceFailed", "IceStream"]
