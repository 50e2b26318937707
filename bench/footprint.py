"""What an idle connected agent keeps in memory: objects by type and bytes by the line that allocated them.

N agent pairs (`--n`, default 300; per agent the figures hardly move with N) are opened on 127.0.0.1
(`IceConfig(global_pacing=False)`, host candidates only), signalled to each other, connected and left
until all are COMPLETED, then idle for
0.2 s and a full garbage collection. Before the first agent, one agent is opened, gathered and closed
(imports and caches warm), and the baseline is taken. Printed per agent (divided by 2N):

- garbage-collected objects by type (`gc.get_objects()`: containers and class instances; ints, strings
  and bytes are not tracked by the collector), count and `sys.getsizeof` bytes, top `--top` by count and
  by bytes;
- every allocation still alive (`tracemalloc`, all objects and buffers), blocks and bytes, and the top
  `--top` grouped by the innermost line of iceagent on the allocating stack ("outside iceagent": the
  harness, or Trio's own bookkeeping reached from no iceagent frame).

tracemalloc slows the run down several times; nothing here is timed. bench/scale.py measures the peak
RSS (VmHWM) of the same set-up, which also counts allocator overhead and the peak during connecting.

Run: `.venv/bin/python bench/footprint.py [--n 300] [--top 15] [--frames 20]` (about two minutes; tracemalloc
with a deep stack is slow: N=1000 takes over 10 minutes, `--frames 1` is fast but attributes to Trio's lines).
"""

from __future__ import annotations

import argparse
import collections
import gc
import resource
import sys
import tracemalloc
from contextlib import AsyncExitStack

import trio
from _agents import LO, gather_signals, hand_over, open_pairs

from iceagent import IceConfig, IceState, open_agent


def census() -> tuple[collections.Counter[str], collections.Counter[str]]:
    """Count and getsizeof bytes of the garbage-collected objects, by type."""
    count: collections.Counter[str] = collections.Counter()
    size: collections.Counter[str] = collections.Counter()
    for o in gc.get_objects():
        t = type(o)
        key = f"{t.__module__}.{t.__qualname__}"
        count[key] += 1
        size[key] += sys.getsizeof(o)
    return count, size


def site(trace: tracemalloc.Trace) -> str:
    """The innermost iceagent line on the allocating stack."""
    for frame in reversed(trace.traceback):  # tracebacks run from the oldest frame to the newest
        name = frame.filename
        if "/iceagent/" in name and "/bench/" not in name:
            return f"{name.split('/iceagent/', 1)[1]}:{frame.lineno}"
    return "(outside iceagent)"


async def measure(n: int, top: int, frames: int) -> None:
    config = IceConfig(global_pacing=False)
    async with open_agent(controlling=True, host_addresses=LO, config=config) as warm:
        [c async for c in warm.gather()]
    gc.collect()
    count0, size0 = census()
    tracemalloc.start(frames)
    async with AsyncExitStack() as stack:
        pairs = await open_pairs(stack, n, config)
        agents = [x for p in pairs for x in p]
        signal = await gather_signals(agents)
        hand_over(pairs, signal)
        del signal
        for x in agents:
            await x.connect()
        for x in agents:
            await x.state.wait_value(IceState.COMPLETED)
        await trio.sleep(0.2)
        gc.collect()
        count1, size1 = census()  # before the snapshot, whose traces are objects too
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        per = len(agents)
        dcount = {k: count1[k] - count0.get(k, 0) for k in count1}
        dsize = {k: size1[k] - size0.get(k, 0) for k in size1}
        versions = f"python {sys.version.split()[0]}, trio {trio.__version__}"
        print(f"{n} pairs ({per} agents) idle and COMPLETED, per agent ({versions})")
        print(f"garbage-collected objects: {sum(dcount.values()) / per:.1f}, "
              f"{sum(dsize.values()) / per / 1024:.2f} KiB by sys.getsizeof")
        for title, order in (("by count", dcount), ("by bytes", dsize)):
            print(f"  top {top} types {title}:{'count':>48} {'bytes':>8}")
            for key, _ in sorted(order.items(), key=lambda kv: -kv[1])[:top]:
                print(f"    {key:60s} {dcount[key] / per:7.2f} {dsize[key] / per:8.0f}")
        by_site: collections.Counter[str] = collections.Counter()
        blocks: collections.Counter[str] = collections.Counter()
        for trace in snapshot.traces:
            key = site(trace)
            by_site[key] += trace.size
            blocks[key] += 1
        total = sum(by_site.values())
        print(f"every allocation alive (tracemalloc, since the baseline): {total / per / 1024:.2f} KiB, "
              f"{sum(blocks.values()) / per:.1f} blocks")
        print(f"  top {top} by the innermost iceagent line that allocated:{'bytes':>12} {'blocks':>7}")
        for key, size in by_site.most_common(top):
            print(f"    {key:55s} {size / per:8.0f} {blocks[key] / per:7.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="agent pairs (default 300)")
    parser.add_argument("--top", type=int, default=15, help="rows per table (default 15)")
    parser.add_argument("--frames", type=int, default=20, help="tracemalloc stack depth (default 20)")
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # each agent holds a UDP socket
    trio.run(measure, args.n, args.top, args.frames)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
