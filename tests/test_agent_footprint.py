"""The per-agent object budget (issue 14, issue 15 item 3): what an idle connected agent keeps.

Counted, never timed: garbage-collected objects and traced bytes per agent, as the difference between
K and 2K agent pairs open in one process (so the harness's own objects and warm-up caches cancel out).
The bounds sit a little above what an agent keeps now; it used to keep 8 objects and about 1 KiB more
(three AsyncValues nobody read, a RemoteGate with its table, MdnsCounters, the route's and the gathering's
Notifiers, a foundation table, the gatherers' counters and error table, a gatherer object per agent).
"""

from __future__ import annotations

import gc
import tracemalloc
from contextlib import AsyncExitStack

import trio
import trio.testing
from agent_helpers import connect_both

from iceagent import Agent, IceConfig, IceState, open_agent

#: Agent pairs per step (the second step doubles them).
PAIRS = 15


async def _open_connected(stack: AsyncExitStack, n: int, config: IceConfig, agents: list[Agent]) -> None:
    for _ in range(n):
        a = await stack.enter_async_context(open_agent(host_addresses=["127.0.0.1"], config=config))
        b = await stack.enter_async_context(
            open_agent(controlling=False, host_addresses=["127.0.0.1"], config=config)
        )
        await connect_both(a, b)
        agents.extend((a, b))
    for agent in agents:
        await agent.state.wait_value(IceState.COMPLETED)  # nomination concluded: nothing left in flight
    await trio.testing.wait_all_tasks_blocked()


def _census() -> tuple[int, int]:
    gc.collect()
    return len(gc.get_objects()), tracemalloc.get_traced_memory()[0]


async def test_an_idle_connected_agent_keeps_a_bounded_number_of_objects_and_bytes() -> None:
    """After connecting and settling, each further agent costs at most 116 garbage-collected objects and
    16.0 KiB of traced allocations (107 and 14.8 KiB now; 131 and 18.6 KiB before session 7's trims, 139 and
    19.5 KiB before the agent layer's; bench/footprint.py shows the types and the lines)."""
    config = IceConfig(global_pacing=False)
    agents: list[Agent] = []
    tracemalloc.start(1)
    try:
        with trio.fail_after(60):
            async with AsyncExitStack() as stack:
                await _open_connected(stack, PAIRS, config, agents)
                objects0, bytes0 = _census()
                await _open_connected(stack, PAIRS, config, agents)
                objects1, bytes1 = _census()
                assert all(agent.state.value is IceState.COMPLETED for agent in agents)
    finally:
        tracemalloc.stop()
    per_agent_objects = (objects1 - objects0) / (2 * PAIRS)
    per_agent_kib = (bytes1 - bytes0) / (2 * PAIRS) / 1024
    print(f"per agent: {per_agent_objects:.1f} objects, {per_agent_kib:.2f} KiB")
    assert per_agent_objects <= 116
    assert per_agent_kib <= 16.0


def test_host_addresses_are_parsed_once_for_every_agent_that_names_them(monkeypatch: object) -> None:
    """Agents opened with the same `host_addresses` share their parse (most of what the host gatherer
    computed per agent): each address is parsed once, the answer is the same list every time (a copy the
    caller may change), and a bad address is still a ValueError every time."""
    import ipaddress

    import pytest

    from iceagent.gatherers import host

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    parsed: list[object] = []
    real = ipaddress.ip_address

    def counting(address: object) -> object:
        parsed.append(address)
        return real(address)  # type: ignore[arg-type]

    monkeypatch.setattr(ipaddress, "ip_address", counting)
    forget = getattr(getattr(host, "_normalized", None), "cache_clear", lambda: None)
    forget()
    names = ("127.0.0.1", "::1", "127.0.0.1", "0:0::1")
    for _ in range(50):
        got = host.host_addresses_of(list(names))
        assert got == ["127.0.0.1", "::1"]
        got.append("changed by the caller")
    assert len(parsed) == len(names)
    for _ in range(2):
        with pytest.raises(ValueError, match="'not-an-ip' is not an IP address"):
            host.host_addresses_of(["127.0.0.1", "not-an-ip"])
    forget()


async def test_agents_opened_without_a_config_share_the_default_one() -> None:
    """IceConfig is frozen, so agents opened without `config=` share one (240 bytes and 20 validator calls per
    agent before); it is the default configuration, and the default Ta is still not signalled (RFC 8445 14.2)."""
    with trio.fail_after(10):
        async with (
            open_agent(host_addresses=["127.0.0.1"]) as a,
            open_agent(controlling=False, host_addresses=["127.0.0.1"]) as b,
        ):
            assert a.config == IceConfig() and a.config is b.config
            assert a.local_parameters.pacing is None
