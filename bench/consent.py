"""Benchmark: what consent freshness (RFC 7675) costs N connected pairs in one process, iceagent against aioice.

For each N in `--n` and each implementation, in a fresh subprocess: N pairs with host candidates on 127.0.0.1
(`IceConfig(global_pacing=False)`) connect (not timed), then the process idles for `--idle` seconds while
every agent keeps consent (a check every 5 s, randomized, on both sides: RFC 7675 5.1; aioice does the same
with its CONSENT_INTERVAL of 5 s). Reported per second of that idle time: the process's CPU seconds (above
1.0 the process cannot keep up on one core), the CPU microseconds per agent, and for iceagent the fewest
agents still COMPLETED at any one-second sample (an agent that misses consent answers goes DISCONNECTED,
then FAILED); then the CPU it takes to close them all. Rows: `iceagent` (own sockets), `mux` (the N
controlled agents on one `open_mux` port, as bench/mux.py) and `aioice` (own sockets).

Found this way (2026-12-07): on a mux, consent costs about 62 us of CPU per agent per second at 2000 pairs
but 2-3 times that per agent at 6000 pairs, where the process no longer keeps up and closing the agents
afterwards took up to 40 s of CPU (bench/README.md, last section). Explained there: CPython's garbage collector
(Trio's per-wait objects of each idle agent die in the oldest generation; full collections cost in proportion
to the whole heap), with the agents' consent checks in step; `--settle` measures after the first waves.

Run: `.venv/bin/python bench/consent.py [--n 1000 2000] [--idle 12] [--impl iceagent mux aioice]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from scale import raise_nofile


async def iceagent_child(n: int, idle: float, on_mux: bool, settle: float = 0.0) -> dict[str, Any]:
    import trio
    from _agents import gather_signals, hand_over, open_pairs

    from iceagent import IceConfig, IceState
    from iceagent.net.mux import open_mux

    config = IceConfig(global_pacing=False)
    async with AsyncExitStack() as outer:
        mux = await outer.enter_async_context(open_mux(["127.0.0.1"], 0)) if on_mux else None
        stack = AsyncExitStack()
        await stack.__aenter__()
        pairs = await open_pairs(stack, n, config, mux=mux)
        agents = [x for p in pairs for x in p]
        hand_over(pairs, await gather_signals(agents))
        async with trio.open_nursery() as nursery:
            for a, b in pairs:
                nursery.start_soon(_until_completed, a, b, IceState.COMPLETED)
        await trio.sleep(settle)
        fewest = len(agents)
        c0, t0 = time.process_time(), time.perf_counter()
        while time.perf_counter() - t0 < idle:
            await trio.sleep(1)
            fewest = min(fewest, sum(agent.state.value is IceState.COMPLETED for agent in agents))
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        c1 = time.process_time()
        await stack.aclose()
        return {"cpu_per_s": cpu / wall, "us_per_agent_s": cpu / wall / len(agents) * 1e6, "wall": wall,
                "fewest_completed": fewest, "agents": len(agents), "close_cpu": time.process_time() - c1}


async def _until_completed(a: Any, b: Any, completed: Any) -> None:
    await a.connect()
    await b.connect()
    await a.state.wait_value(completed)
    await b.state.wait_value(completed)


async def aioice_child(n: int, idle: float, settle: float = 0.0) -> dict[str, Any]:
    import aioice
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"] if use_ipv4 else []
    pairs = [(aioice.Connection(ice_controlling=True, stun_server=None, use_ipv6=False),
              aioice.Connection(ice_controlling=False, stun_server=None, use_ipv6=False)) for _ in range(n)]
    agents = [x for p in pairs for x in p]
    await asyncio.gather(*(c.gather_candidates() for c in agents))
    for a, b in pairs:
        for x, y in ((a, b), (b, a)):
            x.remote_username, x.remote_password = y.local_username, y.local_password
            for cand in y.local_candidates:
                await x.add_remote_candidate(aioice.Candidate.from_sdp(cand.to_sdp()))
            await x.add_remote_candidate(None)
    await asyncio.gather(*(c.connect() for c in agents))
    await asyncio.sleep(settle)
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(idle)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    c1 = time.process_time()
    await asyncio.gather(*(c.close() for c in agents), return_exceptions=True)
    return {"cpu_per_s": cpu / wall, "us_per_agent_s": cpu / wall / len(agents) * 1e6, "wall": wall,
            "fewest_completed": None, "agents": len(agents), "close_cpu": time.process_time() - c1}


def child(impl: str, n: int, idle: float, settle: float) -> None:
    raise_nofile()
    if impl == "aioice":
        result = asyncio.run(aioice_child(n, idle, settle))
    else:
        import trio

        result = trio.run(iceagent_child, n, idle, impl == "mux", settle)
    print(json.dumps({"impl": impl, "n": n, **result}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 2000], help="numbers of agent pairs")
    parser.add_argument("--idle", type=float, default=12.0, help="seconds of idle (consent) time measured")
    parser.add_argument("--impl", nargs="+", choices=["iceagent", "mux", "aioice"],
                        default=["iceagent", "mux", "aioice"])
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds of idle time before the measured part (0: measure right after connecting, when "
                        "the agents' consent checks still come in the waves of the burst that connected them)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--child", choices=["iceagent", "mux", "aioice"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.n[0], args.idle, args.settle)
        return 0
    print(f"consent over {args.idle:g} s of idle time (after {args.settle:g} s), each row a fresh process on 127.0.0.1 "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print(f"{'impl':9} {'pairs':>6} {'CPU s/s':>8} {'us/agent/s':>10} {'fewest COMPLETED':>17} {'close CPU s':>11}")
    for n in args.n:
        for impl in args.impl:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", impl, "--n", str(n),
                   "--idle", str(args.idle), "--settle", str(args.settle)]
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout).stdout
                r = json.loads(out.strip().splitlines()[-1])
            except (subprocess.TimeoutExpired, IndexError, json.JSONDecodeError) as exc:
                print(f"{impl:9} {n:>6}   failed: {type(exc).__name__}")
                continue
            fewest = "-" if r["fewest_completed"] is None else f"{r['fewest_completed']} of {r['agents']}"
            print(f"{impl:9} {n:>6} {r['cpu_per_s']:8.2f} {r['us_per_agent_s']:10.1f} {fewest:>17} "
                  f"{r['close_cpu']:11.2f}", flush=True)
    print("CPU s/s: process CPU seconds per wall second while idle (consent only); us/agent/s: the same per agent; "
          "fewest COMPLETED: the least, over one-second samples, of iceagent agents still COMPLETED; close CPU s: "
          "closing all agents afterwards")
    return 0


if __name__ == "__main__":
    sys.exit(main())
