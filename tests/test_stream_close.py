"""IceStream.aclose() against tasks using the stream: trio.abc.Channel semantics on a real loopback pair.

Closing a channel end wakes a task blocked on it in another task with trio.ClosedResourceError (as a
trio memory channel closed by aclose does); the agent closing ends the stream with trio.EndOfChannel
(tested in test_agent_loopback.test_close_ends_the_stream).
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from agent_helpers import connect_both

from iceagent import IceConfig, open_agent

LO = ["127.0.0.1"]
FAST = IceConfig(global_pacing=False)


async def test_aclose_wakes_a_task_blocked_in_receive() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST) as a, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as b:
            sa, sb = await connect_both(a, b)
            outcome: list[BaseException] = []

            async def reader() -> None:
                try:
                    await sb.receive()
                except (trio.ClosedResourceError, trio.EndOfChannel) as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.testing.wait_all_tasks_blocked()
                await sb.aclose()  # the nursery ends only once the reader has been woken
            assert [type(e) for e in outcome] == [trio.ClosedResourceError]
            # the stream stays closed; the agent and its peer's side still work
            with pytest.raises(trio.ClosedResourceError):
                await sb.receive()
            with pytest.raises(trio.ClosedResourceError):
                sb.receive_nowait()
            with pytest.raises(trio.ClosedResourceError):
                await sb.send(b"after aclose")
            # only this end is closed: the peer's stream still sends
            await sa.send(b"to a closed end")


async def test_aclose_wakes_a_task_blocked_in_send_waiting_for_a_pair(autojump_clock: trio.testing.MockClock) -> None:
    """With auto_restart a send waits for a pair instead of raising IceFailed; aclose ends that wait."""
    from iceagent_vnet import vnet

    scenario = vnet("none", "none", seed=3)
    with trio.fail_after(120):
        async with open_agent(network=scenario.network_a, config=FAST, auto_restart=True) as a:
            async with open_agent(controlling=False, network=scenario.network_b, config=FAST) as b:
                sa, _ = await connect_both(a, b)
            # the peer is gone: consent expires, A fails and restarts, and has no pair to send on
            while a.selected_pair is not None:
                await a.state.wait_transition()
            outcome: list[BaseException] = []

            async def writer() -> None:
                try:
                    await sa.send(b"waits for a pair")
                except trio.ClosedResourceError as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                await trio.testing.wait_all_tasks_blocked()
                assert outcome == []
                closed_at = trio.current_time()
                await sa.aclose()
            assert [type(e) for e in outcome] == [trio.ClosedResourceError]
            # woken by aclose itself, not by the agent's next timer (the virtual clock did not move)
            assert trio.current_time() == closed_at
