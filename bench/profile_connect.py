"""Where the time of one connect goes: cProfile over many connects, grouped by layer.

The set-up of bench/connect.py (two agents in one process on 127.0.0.1, `IceConfig(global_pacing=False)`,
one host candidate each, opened and gathered before the clock): the profiler runs from handing over
the parameters and candidates until both `connect()` returned, `--runs` times (after 2 unprofiled
warm-up runs). Printed: Python-level calls per connect (a count, steady whatever the machine's load),
the share of profiled time and calls per connect of each layer (Trio's scheduler, iceagent's agent layer,
the sans-IO ICE core, the STUN codec, builtins, system calls), and the `--top` iceagent functions by own
time. cProfile adds a fixed cost per call, so the shares lean towards layers that make many small
calls; bench/connect.py gives the unprofiled time.

`--until completed` profiles until both agents are COMPLETED instead: the controlling agent's nomination too,
which leaves Ta (50 ms) after its first check from a timer wake-up of its session task (the idle time in
between costs no profiled call, and epoll's idle wait is left out of the time shares; the harness's tasks
await the state instead of `connect()`).

Run: `.venv/bin/python bench/profile_connect.py [--runs 200] [--top 25] [--until connected|completed]`.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats

import trio
from _agents import LO, gather_signals, hand_over

from iceagent import Agent, IceConfig, IceState, open_agent

#: (what the file or function name contains, layer); the first match wins
LAYERS = (
    ("trio/", "trio: scheduler, cancel scopes, tasks"),
    ("outcome", "trio: scheduler, cancel scopes, tasks"),
    ("contextlib", "trio: scheduler, cancel scopes, tasks"),
    ("collections/__init__", "trio: scheduler, cancel scopes, tasks"),
    ("'poll' of 'select.epoll'", "system calls (epoll, sendto, recvfrom)"),
    ("sendto", "system calls (epoll, sendto, recvfrom)"),
    ("recvfrom", "system calls (epoll, sendto, recvfrom)"),
    ("/stun/", "STUN: encode, decode, HMAC, CRC"),
    ("HASH", "STUN: encode, decode, HMAC, CRC"),
    ("crc32", "STUN: encode, decode, HMAC, CRC"),
    ("_struct", "STUN: encode, decode, HMAC, CRC"),
    ("/ice/", "ICE sans-IO: session, check list, candidates, pairs"),
    ("ipaddress", "ICE sans-IO: session, check list, candidates, pairs"),
    ("_addresses", "ICE sans-IO: session, check list, candidates, pairs"),
    ("/agent/", "agent layer: runner, agent, stream, sockets"),
    ("/net/", "agent layer: runner, agent, stream, sockets"),
    ("/gatherers/", "agent layer: runner, agent, stream, sockets"),
    ("logging", "logging"),
)


def layer(filename: str, function: str) -> str:
    for needle, name in LAYERS:
        if needle in filename or needle in function:
            return name
    return "builtins (len, isinstance, dict and list methods)" if filename == "~" else "other"


async def connect_once(profile: cProfile.Profile | None, config: IceConfig, until: str = "connected") -> None:
    async with open_agent(controlling=True, host_addresses=LO, config=config) as a, open_agent(
        controlling=False, host_addresses=LO, config=config
    ) as b:
        signal = await gather_signals([a, b])

        async def connect(agent: Agent) -> None:
            if until == "completed":
                await agent.state.wait_value(IceState.COMPLETED)
            else:
                await agent.connect()

        if profile is not None:
            profile.enable()
        hand_over([(a, b)], signal)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connect, a)
            nursery.start_soon(connect, b)
        if profile is not None:
            profile.disable()


async def run(runs: int, profile: cProfile.Profile, until: str = "connected") -> None:
    config = IceConfig(global_pacing=False)
    for i in range(runs + 2):
        await connect_once(profile if i >= 2 else None, config, until)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="profiled connects (default 200)")
    parser.add_argument("--top", type=int, default=25, help="iceagent functions listed (default 25)")
    parser.add_argument("--until", choices=["connected", "completed"], default="connected",
                        help="profile until both connect() returned (default) or both are COMPLETED")
    args = parser.parse_args(argv)
    profile = cProfile.Profile()
    trio.run(run, args.runs, profile, args.until)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    own: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    for (filename, _line, function), (_cc, n, tottime, _ct, _callers) in stats.items():
        if args.until == "completed" and "'poll' of 'select.epoll'" in function:
            tottime = 0.0  # the wait for Ta is idle time in epoll: left out of the shares (its calls count)
        own[layer(filename, function)] += tottime
        calls[layer(filename, function)] += n
    total = sum(own.values())
    n = args.runs
    print(f"{n} connects profiled until both {args.until}: {sum(calls.values()) / n:.0f} Python-level calls per "
          "connect (both agents)")
    print(f"  {'layer':55s} {'time':>6} {'calls/connect':>14}")
    for name, t in own.most_common():
        print(f"  {name:55s} {100 * t / total:5.1f}% {calls[name] / n:14.0f}")
    rows = [(t, c, f, line, fn) for (f, line, fn), (_cc, c, t, _ct, _cl) in stats.items() if "/iceagent/" in f]
    print(f"top {args.top} iceagent functions by own time:  time  calls/connect")
    for t, c, f, line, fn in sorted(rows, reverse=True)[: args.top]:
        where = f"{f.split('/iceagent/', 1)[1]}:{line} {fn}"
        print(f"  {where:50s} {100 * t / total:5.1f}% {c / n:6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
