"""Binding inside `open_agent(port_range=(lo, hi))`: host UDP sockets, ICE-TCP listeners and active connections.

Ports are tried sequentially from a random start in the range (so agents opened together do not all race for
`lo`, and a peer cannot predict the next one), skipping the taken ones, at most MAX_PORT_TRIES binds per
socket. Nothing free raises `PortRangeExhausted` naming the range, the address and the protocol.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from ..errors import PortRangeExhausted

__all__ = ["MAX_PORT_TRIES", "bind_in_range"]

T = TypeVar("T")

#: Most bind attempts for one socket: a range wider than this is sampled, not swept (binds are cheap, but an
#: agent opening should not walk 60 000 ports). A generation in a range of N free ports finds one if N > 0
#: and the range is at most this wide.
MAX_PORT_TRIES = 4096
#: Errors that mean "this port is taken, try the next": EADDRINUSE on bind; EADDRNOTAVAIL when an active TCP
#: connection's 4-tuple is already in use (Linux connect() with SO_REUSEADDR).
_TAKEN = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL})

#: Scheduler rounds to wait before the second pass: a cancelled generation closes its sockets once its
#: nested nurseries have unwound, a round or two per level (cheap: a checkpoint each).
_SETTLE_ROUNDS = 20

_rng = random.SystemRandom()


async def bind_in_range(
    bind: Callable[[int], Awaitable[T]],
    port_range: tuple[int, int] | None,
    address: str,
    what: str,
) -> T:
    """`await bind(port)` for a port of `port_range` (port 0, the OS's choice, without a range).

    `what` names the socket in the error ("UDP", "TCP listener", "TCP connection"). A socket of a generation
    being closed is released when that generation's tasks unwind, so one more pass follows a few scheduler
    rounds later before the range counts as exhausted (RFC 8445 9: a restart opens the new generation's
    sockets while the old ones close)."""
    if port_range is None:
        return await bind(0)
    low, high = port_range
    span = high - low + 1
    tries = min(span, MAX_PORT_TRIES)
    for attempt in range(2):
        start = _rng.randrange(span)
        for i in range(tries):
            port = low + (start + i) % span
            try:
                return await bind(port)
            except OSError as exc:
                if exc.errno not in _TAKEN:
                    raise
        if attempt == 0:
            for _ in range(_SETTLE_ROUNDS):
                await trio.lowlevel.checkpoint()
    sampled = "every port" if tries == span else f"{tries} of its {span} ports"
    raise PortRangeExhausted(
        f"port_range=({low}, {high}) is exhausted: no free {what} port on {address} ({sampled} tried, twice). "
        "Each host address takes one UDP port per ICE generation (and with tcp=True one TCP listener), and "
        "during a restart the previous generation keeps its ports until the new one has nominated: "
        "give the range room for two generations"
    )
