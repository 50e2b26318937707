"""The process-wide STUN pacer: at most one new transaction per 5 ms across all agents (RFC 8445 14.2)."""

from __future__ import annotations

import trio

#: RFC 8445 14.2: "...no more than one new transaction every 5 ms" for all agents of one host together.
GLOBAL_INTERVAL = 0.005


class GlobalPacer:
    """Hands out send slots spaced GLOBAL_INTERVAL apart (one per `trio.run`, so tests stay isolated)."""

    def __init__(self) -> None:
        self._next = -float("inf")

    def reserve(self, now: float) -> float:
        """Take the next free slot and return its time: `now` when the pacer is idle, else a later time
        the caller must wait for before it sends (sans-IO form, for loops that sleep anyway)."""
        at = max(now, self._next)
        self._next = at + GLOBAL_INTERVAL
        return at

    async def slot(self) -> None:
        """Wait for the next free slot; returns at once (after a checkpoint) when the pacer is idle."""
        now = trio.current_time()
        at = self.reserve(now)
        if at <= now:
            await trio.lowlevel.checkpoint()
        else:
            await trio.sleep_until(at)


_pacer: trio.lowlevel.RunVar[GlobalPacer] = trio.lowlevel.RunVar("iceagent_global_pacer")


def global_pacer() -> GlobalPacer:
    """The pacer shared by every agent in this `trio.run`."""
    try:
        return _pacer.get()
    except LookupError:
        pacer = GlobalPacer()
        _pacer.set(pacer)
        return pacer
