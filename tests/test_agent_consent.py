"""Consent freshness (RFC 7675), DISCONNECTED/FAILED timers and automatic restart, on loopback.

Real sockets run on the real clock, so these tests shrink the timers instead of mocking time; the
same behaviour under MockClock runs on the vnet in the NAT scenario tests.
"""

from __future__ import annotations

import pytest
import trio
from agent_helpers import connect_both, signal

from iceagent import IceConfig, IceFailed, IceState, open_agent

LO = ["127.0.0.1"]
SHORT = IceConfig(global_pacing=False, consent_interval=0.05, consent_timeout=0.6, disconnected_timeout=0.2,
                  restart_backoff=0.05)


async def test_consent_checks_flow_and_keep_the_pair() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=SHORT) as a, open_agent(
            controlling=False, host_addresses=LO, config=SHORT
        ) as b:
            sa, sb = await connect_both(a, b)
            pair = a.selected_pair
            assert pair is not None
            await trio.sleep(1.0)  # longer than consent_timeout: consent keeps being refreshed
            assert a.state.value is IceState.COMPLETED and b.state.value is IceState.COMPLETED
            assert pair.consent_requests_sent >= 5
            assert pair.last_consent is not None
            await sa.send(b"still here")
            assert await sb.receive() == b"still here"


async def test_peer_gone_disconnected_then_failed() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=SHORT) as a:
            seen: list[IceState] = []
            async with open_agent(controlling=False, host_addresses=LO, config=SHORT) as b:
                sa, _ = await connect_both(a, b)
                await a.state.wait_value(IceState.COMPLETED)
            async with trio.open_nursery() as n:
                async def watch() -> None:
                    async for st in a.state.eventual_values():
                        seen.append(st)
                n.start_soon(watch)
                await a.state.wait_value(IceState.FAILED)
                n.cancel_scope.cancel()
            assert IceState.DISCONNECTED in seen
            assert a.selected_pair is None
            with pytest.raises(IceFailed, match="consent"):
                await sa.send(b"nobody there")
            with pytest.raises(IceFailed):
                await a.connect()


async def test_auto_restart_after_failure_reconnects_with_a_new_peer() -> None:
    with trio.fail_after(15):
        async with open_agent(host_addresses=LO, config=SHORT, auto_restart=True) as a:
            async with open_agent(controlling=False, host_addresses=LO, config=SHORT) as b:
                sa, _ = await connect_both(a, b)
            await a.generation.wait_value(1)  # FAILED, then restarted by the supervisor
            assert a.state.value in (IceState.NEW, IceState.CHECKING)
            async with open_agent(controlling=False, host_addresses=LO, config=SHORT) as c:
                await signal(a, c)
                await signal(c, a)
                sc = await c.connect()
                assert await a.connect() is sa  # the same stream outlives the restart
                await sa.send(b"second life")
                assert await sc.receive() == b"second life"


async def test_old_pair_dying_during_a_restart_is_not_a_failure() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=SHORT) as a:
            async with open_agent(controlling=False, host_addresses=LO, config=SHORT) as b:
                await connect_both(a, b)
                await a.state.wait_value(IceState.COMPLETED)
                await a.restart()  # the new generation waits for signaling; the old pair carries data
                assert a.state.value is IceState.COMPLETED and a.selected_pair is not None
            # b is gone: the old pair's consent expires, but the agent is restarting, not FAILED
            await a.state.wait_value(IceState.NEW)
            assert a.selected_pair is None and a.generation.value == 1
            with trio.move_on_after(0.3) as waited:
                await a.connect()  # waits for the new generation instead of raising IceFailed
            assert waited.cancelled_caught
