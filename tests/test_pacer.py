"""The process-wide pacer of RFC 8445 14.2: one new transaction per 5 ms across all agents."""

from __future__ import annotations

import trio
import trio.testing

from iceagent.agent.pacer import GLOBAL_INTERVAL, global_pacer


async def test_slots_are_spaced_and_the_first_is_immediate(autojump_clock: trio.testing.MockClock) -> None:
    pacer = global_pacer()
    assert global_pacer() is pacer  # one per run
    times: list[float] = []
    start = trio.current_time()

    async def take() -> None:
        await pacer.slot()
        times.append(trio.current_time() - start)

    async with trio.open_nursery() as n:
        for _ in range(4):
            n.start_soon(take)
    assert sorted(times) == [0.0, GLOBAL_INTERVAL, 2 * GLOBAL_INTERVAL, 3 * GLOBAL_INTERVAL]
    await trio.sleep(1)
    before = trio.current_time()
    await pacer.slot()  # idle pacer: no wait
    assert trio.current_time() == before
