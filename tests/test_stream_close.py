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
