"""Shared by the benchmarks: open agent pairs on 127.0.0.1 and signal them to each other."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from iceagent import Agent, Candidate, IceConfig, IceParameters, open_agent

LO = ["127.0.0.1"]

Signal = dict[Agent, tuple[IceParameters, list[Candidate]]]


async def open_pairs(
    stack: AsyncExitStack, n: int, config: IceConfig, *, mux: Any = None
) -> list[tuple[Agent, Agent]]:
    """`n` (controlling, controlled) pairs with host candidates on 127.0.0.1, open until `stack` closes; with
    `mux` (bench/mux.py) the controlled agents are opened on it."""
    pairs = []
    for _ in range(n):
        a = await stack.enter_async_context(open_agent(controlling=True, host_addresses=LO, config=config))
        b = await stack.enter_async_context(open_agent(controlling=False, host_addresses=LO, config=config, mux=mux))
        pairs.append((a, b))
    return pairs


async def gather_signals(agents: list[Agent]) -> Signal:
    """What each agent would signal: its parameters and its candidates, through their SDP form."""
    signal: Signal = {}
    for agent in agents:
        signal[agent] = (agent.local_parameters, [Candidate.from_sdp(c.to_sdp()) async for c in agent.gather()])
    return signal


def hand_over(pairs: list[tuple[Agent, Agent]], signal: Signal) -> None:
    """Give each agent of each pair the other's parameters, candidates and end-of-candidates."""
    for a, b in pairs:
        for x, y in ((a, b), (b, a)):
            params, cands = signal[y]
            x.set_remote_parameters(params)
            for c in cands:
                x.add_remote_candidate(c)
            x.add_remote_candidate(None)
