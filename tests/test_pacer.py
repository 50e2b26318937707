"""The process-wide pacer of RFC 8445 14.2: one new transaction per 5 ms across all agents."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from pacing_helpers import Reservations

from iceagent.agent._pacer import GLOBAL_INTERVAL, GlobalPacer, global_pacer, wait_for_slot


async def test_slots_are_spaced_and_the_first_is_immediate(autojump_clock: trio.testing.MockClock) -> None:
    pacer = global_pacer()
    assert global_pacer() is pacer  # one per run
    times: list[float] = []
    start = trio.current_time()

    async def take() -> None:
        await wait_for_slot(pacer)
        times.append(trio.current_time() - start)

    async with trio.open_nursery() as n:
        for _ in range(4):
            n.start_soon(take)
    assert sorted(times) == [0.0, GLOBAL_INTERVAL, 2 * GLOBAL_INTERVAL, 3 * GLOBAL_INTERVAL]
    await trio.sleep(1)
    before = trio.current_time()
    await wait_for_slot(pacer)  # idle pacer: no wait
    assert trio.current_time() == before


async def _srflx_gather_reservations(monkeypatch: pytest.MonkeyPatch, *, global_pacing: bool, answer: bool) -> int:
    """Pacer slots taken while one agent gathers a srflx candidate from a STUN server on 127.0.0.1 that
    answers or stays silent (then the request is retransmitted rc times)."""
    from iceagent import IceConfig, IceServer, open_agent
    from iceagent.net.os import OSNetwork
    from iceagent.stun.server import open_stun_server

    reservations = Reservations(monkeypatch)
    config = IceConfig(global_pacing=global_pacing, rto=0.01, rc=3, rm=2, gather_timeout=2.0)
    network = OSNetwork()
    with trio.fail_after(10):
        if answer:
            async with open_stun_server(network, ["127.0.0.1:0"]) as server:
                url = f"stun:127.0.0.1:{server.address[1]}"
                async with open_agent(host_addresses=["127.0.0.1"], ice_servers=[IceServer(urls=[url])],
                                      config=config) as agent:
                    [c async for c in agent.gather()]
                    assert agent.stats()["gatherers"]["srflx"]["errors"] == []  # answered (the srflx equals the host)
        else:
            silent = await network.bind_udp("127.0.0.1", 0)
            try:
                url = f"stun:127.0.0.1:{silent.local_address[1]}"
                async with open_agent(host_addresses=["127.0.0.1"], ice_servers=[IceServer(urls=[url])],
                                      config=config) as agent:
                    [c async for c in agent.gather()]
                    assert agent.stats()["gatherers"]["srflx"]["errors"]  # no answer after rc attempts
            finally:
                silent.close()
    return reservations.count


async def _late_holder_and_newcomer(clock: trio.testing.MockClock) -> dict[str, float]:
    """A takes the idle pacer at 0 and B the slot at 5 ms, but the loop is busy until 12 ms, when X asks
    too: when B and X left, from A."""
    pacer = GlobalPacer()
    await wait_for_slot(pacer)
    start = trio.current_time()
    left: dict[str, float] = {}

    async def take(name: str) -> None:
        await wait_for_slot(pacer)
        left[name] = trio.current_time() - start

    async def busy_then_take() -> None:
        await trio.sleep(0.004)
        clock.jump(0.008)  # the loop was busy until 12 ms: B's timer fires late
        await take("X")

    async with trio.open_nursery() as n:
        n.start_soon(take, "B")
        n.start_soon(busy_then_take)
    return left


async def test_a_holder_let_out_late_and_a_newcomer_do_not_leave_together(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Whichever of B (its slot let out late) and X (asking at that moment) runs first, they leave 5 ms
    apart (X used to take a slot between its reservation and its checkpoint, and leave with B)."""
    for _ in range(8):  # both orders of B and X at 12 ms
        left = await _late_holder_and_newcomer(autojump_clock)
        assert abs(left["B"] - left["X"]) >= GLOBAL_INTERVAL - 1e-9, left
        await trio.sleep(1)


async def test_gathering_takes_no_pacer_slot_without_global_pacing(monkeypatch: pytest.MonkeyPatch) -> None:
    """`IceConfig(global_pacing=False)` lifts the process-wide pacer for gathering too."""
    assert await _srflx_gather_reservations(monkeypatch, global_pacing=False, answer=True) == 0


async def test_retransmissions_take_no_pacer_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 8445 14.2 paces new transactions only: each of the PARALLEL_BINDINGS transactions to a silent server
    (iceagent/gatherers/srflx.py), retransmitted rc (3) times, takes one slot."""
    from iceagent.gatherers.srflx import PARALLEL_BINDINGS

    assert await _srflx_gather_reservations(monkeypatch, global_pacing=True, answer=False) == PARALLEL_BINDINGS


async def test_a_cancelled_wait_gives_its_slot_back(autojump_clock: trio.testing.MockClock) -> None:
    """B waits for the 5 ms slot and is cancelled at 1 ms (its gatherer ended): C, asking at 2 ms, leaves
    at 5 ms in B's slot, not at 10 ms behind an empty one."""
    pacer = GlobalPacer()
    await wait_for_slot(pacer)  # A, at once
    start = trio.current_time()
    with trio.move_on_after(0.001):
        await wait_for_slot(pacer)  # B
    await trio.sleep(0.001)
    await wait_for_slot(pacer)  # C
    assert trio.current_time() - start == pytest.approx(GLOBAL_INTERVAL)


async def test_a_wait_ended_by_its_bound_gives_its_slot_back(autojump_clock: trio.testing.MockClock) -> None:
    """B's bound (2 ms) comes before its slot (5 ms): it returns then and sends outside the schedule (a TURN
    refresh, RFC 8656 8). C, asking at 3 ms, gets B's slot and leaves 5 ms after B, at 7 ms (not at 10 ms)."""
    pacer = GlobalPacer()
    await wait_for_slot(pacer)  # A, at once
    start = trio.current_time()
    await wait_for_slot(pacer, latest=start + 0.002)  # B
    assert trio.current_time() - start == pytest.approx(0.002)
    await trio.sleep(0.001)
    await wait_for_slot(pacer)  # C
    assert trio.current_time() - start == pytest.approx(0.002 + GLOBAL_INTERVAL)
