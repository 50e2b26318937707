"""The process-wide STUN pacer of one `trio.run` (RFC 8445 14.2), and waiting for one of its slots.

The pacer itself is sans-IO (`iceagent.ice.pacing.GlobalPacer`); each generation's check scheduler gets
it injected, and gatherers' STUN requests wait for a slot here.
"""

from __future__ import annotations

import trio

from ..ice.pacing import GLOBAL_INTERVAL, GlobalPacer

__all__ = ["GLOBAL_INTERVAL", "GlobalPacer", "global_pacer", "wait_for_slot"]

_pacer: trio.lowlevel.RunVar[GlobalPacer] = trio.lowlevel.RunVar("iceagent_global_pacer")


def global_pacer() -> GlobalPacer:
    """The pacer shared by every agent in this `trio.run` (so tests in one process stay isolated)."""
    try:
        return _pacer.get()
    except LookupError:
        pacer = GlobalPacer()
        _pacer.set(pacer)
        return pacer


async def wait_for_slot(pacer: GlobalPacer) -> None:
    """Wait for the pacer's next free slot (and until the transaction before it has been gone its interval);
    returns at once (after a checkpoint) when it is idle. The caller sends right after."""
    now = trio.current_time()
    at = pacer.reserve(now)
    if at <= now:
        await trio.lowlevel.checkpoint()
    else:
        while at > now:
            await trio.sleep_until(at)
            now = trio.current_time()
            at = pacer.not_before(at)
    pacer.sent(now)
