"""The route the IceStream sends on, shared by the agent (which changes it) and the stream (which reads it).

A route is the selected pair with its transport and the transport's synchronous send paths, looked up
once when the pair is selected, not per datagram.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from ..errors import IceFailed
from ..gatherers.base import CandidateTransport
from ..ice.pair import CandidatePair
from ..net.base import Address, TransportCapabilities
from ._notify import Notifier

__all__ = ["CONNECTED_SCHEDULE_EVERY", "Route", "RouteState", "connected_checkpoint", "make_route"]

#: `connect()` on a connected agent lets other tasks run once per this many such calls (process-wide), as
#: `IceStream` does per SCHEDULE_EVERY datagrams: a loop whose only await is `connect()` cannot starve the run.
CONNECTED_SCHEDULE_EVERY = 16
_connected_calls = 0


async def connected_checkpoint() -> None:
    """`connect()` on a connected agent: a cancel point, and a scheduling round once per CONNECTED_SCHEDULE_EVERY
    such calls (a task awaiting its agents in turn takes no step more for one connected meanwhile)."""
    global _connected_calls
    _connected_calls += 1
    if _connected_calls < CONNECTED_SCHEDULE_EVERY:
        await trio.lowlevel.checkpoint_if_cancelled()
    else:
        _connected_calls = 0
        await trio.lowlevel.checkpoint()

#: (transport, remote address, pair, try_send or None, send_nowait or None)
Route = tuple[
    CandidateTransport,
    Address,
    CandidatePair,
    Callable[[bytes, Address], bool] | None,
    Callable[[bytes, Address], None] | None,
]


def make_route(transport: CandidateTransport, caps: TransportCapabilities, pair: CandidatePair) -> Route:
    """The route for `pair` over `transport`, with the transport's optional synchronous sends."""
    return (
        transport,
        pair.remote_address,  # the pair's own tuple, not a copy per route
        pair,
        caps.try_send,
        caps.send_nowait,
    )


class RouteState(Notifier):
    """The current route (None while there is none), why the agent failed, and whether it is closed.

    `wait_route()` is what IceStream.send() blocks in (and connect(), by `ready` and `park`): it returns once
    there is a route, raises IceFailed when the agent FAILED (unless it restarts by itself) and
    ClosedResourceError once closed. It is its own Notifier (`changed()` wakes the waiters, who look
    again): a wait makes no Notifier, and connect() parks on it directly, with no coroutine frame of this
    class while it waits.
    """

    __slots__ = ("closed", "failure", "name", "route")

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.route: Route | None = None
        #: Set while the agent is FAILED and will not restart by itself: what wait() raises.
        self.failure: str | None = None
        self.closed = False

    #: The route, the failure or `closed` changed: wake the waiters (they look again).
    changed = Notifier.notify

    def raise_if_unusable(self) -> None:
        """ClosedResourceError once closed, IceFailed while failed for good."""
        if self.closed:
            raise trio.ClosedResourceError(f"agent {self.name} is closed")
        if self.failure is not None:
            raise IceFailed(self.failure)

    def ready(self, stream_closed: Callable[[], bool] | None = None) -> Route | None:
        """The route if there is one now, else None (wait: `await self.park()`, then ask again); raises as
        `wait_route()` does: ClosedResourceError once closed or `stream_closed()`, IceFailed while failed for good."""
        if stream_closed is not None and stream_closed():
            raise trio.ClosedResourceError("the IceStream is closed")
        if self.closed or self.failure is not None:
            self.raise_if_unusable()
        return self.route

    async def wait_route(self, stream_closed: Callable[[], bool] | None = None) -> Route:
        """The route, once there is one (always a checkpoint); ClosedResourceError as soon as
        `stream_closed()` is true (a stream closed while one of its tasks waits here)."""
        route = self.route
        if route is None or self.closed:
            while True:
                route = self.ready(stream_closed)
                if route is not None:
                    return route  # the wait was the checkpoint
                await self.park()
        await trio.lowlevel.checkpoint()
        return route
