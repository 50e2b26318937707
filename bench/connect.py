"""Benchmark: connection setup time, iceagent against aioice in the same run.

What it measures: the time from starting the connectivity checks (calling `connect()` on both agents
at once) until both agents are connected, for two agents in one process talking over 127.0.0.1 with
one host candidate each (no STUN/TURN server, nothing leaves loopback).

- iceagent (Trio, `IceConfig(global_pacing=False)`): both agents are opened and have gathered before
  the clock starts; the candidates go through `to_sdp()`/`Candidate.from_sdp()` beforehand too. Then,
  with the clock running, each agent is handed the other's parameters, candidates and
  end-of-candidates (plain synchronous calls: iceagent starts checking as soon as it has them, so they
  are inside the timed span), and both `connect()` calls run concurrently. "connected" is when both
  `connect()` calls have returned (a valid pair, DESIGN.md "Timing and states"); "completed" is when
  both agents reach COMPLETED (nomination concluded), which is what aioice's `connect()` waits for.
- aioice (asyncio): two `aioice.Connection`s gather, exchange parameters and candidates, then the
  clock times `asyncio.gather(a.connect(), b.connect())` (aioice returns once a pair is nominated).

Every run uses fresh agents; the first `--warmup` runs of each side are not counted. Prints median,
p90 and min of `--runs` runs per side and the ratio of the medians (target: iceagent at most 1/4 of
aioice).

Run: `.venv/bin/python bench/connect.py [--runs 30] [--warmup 2] [--ta MS] [--global-pacing]`; issue 15's
nomination figure is `--ta 5 --global-pacing` (both agents signal a=ice-pacing:5; the pacer is idle when
each run starts).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import aioice
import aioice.ice
import trio

from iceagent import Agent, Candidate, IceConfig, IceState, open_agent
from iceagent.ice.pacing import GLOBAL_INTERVAL

LO = ["127.0.0.1"]


def _aioice_loopback_only(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    """aioice never gathers 127.0.0.1 by itself and otherwise takes every interface: loopback only."""
    return ["127.0.0.1"] if use_ipv4 else []


aioice.ice.get_host_addresses = _aioice_loopback_only


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


# ---- iceagent ----


async def iceagent_once(config: IceConfig) -> tuple[float, float]:
    """One connection; returns (both connected, both completed) in seconds."""
    async with open_agent(controlling=True, host_addresses=LO, config=config) as a, open_agent(
        controlling=False, host_addresses=LO, config=config
    ) as b:
        return await timed_connect(a, b)


async def timed_connect(a: Agent, b: Agent) -> tuple[float, float]:
    """Signal two open agents to each other (untimed), then time (both connected, both COMPLETED)."""
    cands_a = [Candidate.from_sdp(c.to_sdp()) async for c in a.gather()]
    cands_b = [Candidate.from_sdp(c.to_sdp()) async for c in b.gather()]
    params_a, params_b = a.local_parameters, b.local_parameters
    done: dict[str, float] = {}

    async def connect(key: str, agent: Agent) -> None:
        await agent.connect()
        done[key] = time.perf_counter()

    async def complete(key: str, agent: Agent) -> None:
        await agent.state.wait_value(IceState.COMPLETED)
        done[key] = time.perf_counter()

    t0 = time.perf_counter()
    for agent, params, cands in ((a, params_b, cands_b), (b, params_a, cands_a)):
        agent.set_remote_parameters(params)
        for c in cands:
            agent.add_remote_candidate(c)
        agent.add_remote_candidate(None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connect, "a", a)
        nursery.start_soon(connect, "b", b)
        nursery.start_soon(complete, "ca", a)
        nursery.start_soon(complete, "cb", b)
    return max(done["a"], done["b"]) - t0, max(done["ca"], done["cb"]) - t0


async def iceagent_runs(n: int, warmup: int, config: IceConfig) -> tuple[list[float], list[float]]:
    connected: list[float] = []
    completed: list[float] = []
    for i in range(n + warmup):
        if config.global_pacing:  # the previous run's last check holds the process-wide pacer for 5 ms
            await trio.sleep(2 * GLOBAL_INTERVAL)
        with trio.fail_after(30):
            c1, c2 = await iceagent_once(config)
        if i >= warmup:
            connected.append(c1)
            completed.append(c2)
    return connected, completed


# ---- aioice ----


async def aioice_once() -> float:
    a = aioice.Connection(ice_controlling=True, stun_server=None, use_ipv6=False)
    b = aioice.Connection(ice_controlling=False, stun_server=None, use_ipv6=False)
    try:
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        for x, y in ((a, b), (b, a)):
            x.remote_username, x.remote_password = y.local_username, y.local_password
            for c in y.local_candidates:
                await x.add_remote_candidate(aioice.Candidate.from_sdp(c.to_sdp()))
            await x.add_remote_candidate(None)
        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)
        return time.perf_counter() - t0
    finally:
        await a.close()
        await b.close()


async def aioice_runs(n: int, warmup: int) -> list[float]:
    times = []
    for i in range(n + warmup):
        t = await aioice_once()
        if i >= warmup:
            times.append(t)
    return times


# ---- report ----


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="counted runs per implementation (default 30)")
    parser.add_argument("--warmup", type=int, default=2, help="uncounted warm-up runs first (default 2)")
    parser.add_argument("--ta", type=float, default=50, help="IceConfig.ta of both agents in ms (default 50)")
    parser.add_argument("--global-pacing", action="store_true",
                        help="keep the process-wide pacer on (RFC 8445 14.2; the agent's default, off here)")
    parser.add_argument("--no-aioice", action="store_true", help="time iceagent only")
    args = parser.parse_args(argv)

    config = IceConfig(ta=args.ta / 1000, global_pacing=args.global_pacing)
    ice_connected, ice_completed = trio.run(iceagent_runs, args.runs, args.warmup, config)
    aio = [] if args.no_aioice else asyncio.run(aioice_runs(args.runs, args.warmup))

    rows = [
        ("iceagent: both connect() returned", ice_connected),
        ("iceagent: both COMPLETED", ice_completed),
        ("aioice: both connect() returned", aio),
    ][: 2 if args.no_aioice else 3]
    print(f"connect time, 2 agents in one process on 127.0.0.1, host candidates, {args.runs} runs each, "
          f"iceagent with ta={args.ta:g} ms and global_pacing={args.global_pacing} "
          f"(python {sys.version.split()[0]}, trio {trio.__version__}, aioice {aioice.__version__})")
    print(f"{'':36} {'median':>9} {'p90':>9} {'min':>9}")
    for name, values in rows:
        print(f"{name:36} {statistics.median(values) * 1e3:7.2f}ms {percentile(values, 90) * 1e3:7.2f}ms "
              f"{min(values) * 1e3:7.2f}ms")
    if args.no_aioice:
        return 0
    m_aio = statistics.median(aio)
    r1 = statistics.median(ice_connected) / m_aio
    r2 = statistics.median(ice_completed) / m_aio
    print(f"ratio of medians, iceagent/aioice: connected {r1:.3f}, completed {r2:.3f} "
          f"(target <= 0.25: {'met' if r1 <= 0.25 else 'NOT met'} for connected, "
          f"{'met' if r2 <= 0.25 else 'NOT met'} for completed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
