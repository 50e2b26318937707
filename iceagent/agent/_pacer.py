"""The process-wide STUN pacer of one `trio.run` (RFC 8445 14.2), and waiting for one of its slots.

The pacer itself is sans-IO (`iceagent.ice.pacing.GlobalPacer`); each generation's check scheduler gets
it injected, and gatherers' STUN requests wait for a slot here.
"""

from __future__ import annotations

import math

import trio

from ..ice.pacing import GLOBAL_INTERVAL, GlobalPacer

__all__ = ["GLOBAL_INTERVAL", "GlobalPacer", "global_pacer", "pace_new_transaction", "wait_for_slot"]

_pacer: trio.lowlevel.RunVar[GlobalPacer] = trio.lowlevel.RunVar("iceagent_global_pacer")


def global_pacer() -> GlobalPacer:
    """The pacer shared by every agent in this `trio.run` (so tests in one process stay isolated)."""
    try:
        return _pacer.get()
    except LookupError:
        pacer = GlobalPacer()
        _pacer.set(pacer)
        return pacer


async def wait_for_slot(pacer: GlobalPacer, latest: float = math.inf) -> None:
    """Wait until the pacer lets a new transaction out (at once, after a checkpoint, when it is idle); the
    caller sends right after, with no checkpoint in between (RFC 8445 14.2: the ticket is taken and used
    in the same step, so no other holder can leave in the same instant). At `latest` it returns even
    before its slot (a TURN refresh must reach the server before what it refreshes expires, RFC 8656 8):
    that slot then goes back to the pacer, as it does when the wait is cancelled (`GlobalPacer.release`)."""
    await trio.lowlevel.checkpoint()
    now = trio.current_time()
    ticket = pacer.reserve(now)
    try:
        while (at := pacer.due(ticket)) > now and now < latest:
            await trio.sleep_until(min(at, latest))
            now = trio.current_time()
    except BaseException:  # cancelled (or interrupted) while waiting: nothing is sent on this ticket
        pacer.release(ticket)
        raise
    if at > now:  # its bound came first: the caller sends now, outside the schedule
        pacer.release(ticket, sent_at=now)
    else:
        pacer.sent(ticket, now)


async def pace_new_transaction(latest: float = math.inf) -> None:
    """`GatherContext.pace` with global pacing on: a slot of this run's process-wide pacer (RFC 8445 14.2)."""
    await wait_for_slot(global_pacer(), latest)
