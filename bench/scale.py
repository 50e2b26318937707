"""Benchmark: many agent pairs connecting at once in one process, iceagent against aioice.

What it measures, for each N in `--n` (default 100 500 1000) and each implementation:

- connect time: N agent pairs (2N agents, one host candidate each on 127.0.0.1, no STUN/TURN) in one
  process. All agents are opened and have gathered first, and their parameters and candidates are
  serialized and parsed before the clock starts. Then, timed, every agent gets its peer's parameters,
  candidates and end-of-candidates, and all 2N agents connect; the clock stops when the last
  `connect()` returns ("connected"); the process CPU time over that span is shown too. aioice's
  `connect()` runs the checks, so each agent gets a task of its own (all started at once); iceagent's
  agents start checking as soon as they have their peer's candidates and `connect()` only waits, and the
  harness awaits each pair's two `connect()` in a task of its own (as an application serving each peer
  in its own task does; the tasks count in iceagent's memory per agent). Between setup and the timed
  part both implementations run a full garbage collection and sit idle for 0.2 s, so setup work
  (including the collector's debt from it) does not leak into the timed part. For iceagent
  (`IceConfig(global_pacing=False)`) `connect()` returns once a pair is valid, so the time until all
  2N agents are COMPLETED (nomination concluded, which is what aioice's `connect()` waits for) is
  shown too.
- the cyclic garbage collector: its CPU time within that span and how many collections ran (`gc.callbacks`;
  every container object a connect allocates counts towards the next collection).
- the floor (`--impl floor`, on by default): the same exchange between 2N plain non-blocking UDP sockets in
  Trio, a task per socket, 6 datagrams a pair as an ICE connect with regular nomination sends, with no STUN
  and no ICE work. Not a competitor: what Trio's scheduling and the kernel cost for this pattern, so that the
  rest of iceagent's time is the agent's own (the sans-IO core alone: bench/core_connect.py).
- the asyncio floor (`--impl afloor`, on by default): the same exchange in asyncio, as cheaply as asyncio
  does it: a reader callback per socket (`loop.add_reader`, recvfrom until EAGAIN, no task, no transport
  object) and a task per pair awaiting the pair's two events. aioice's time minus this floor is aioice's own
  work, as iceagent's minus the Trio floor is iceagent's: the two frameworks do not cost the same.
- memory: peak resident set size of the process (VmHWM from /proc/self/status), and per agent: (peak -
  RSS before the first agent was created) / 2N, and "warm": (peak - RSS after one pair of the same
  implementation was gathered, connected and closed first) / 2N. The first agent of a process loads what
  the process keeps once, whatever the number of agents (iceagent: the built-in plugins' hook modules, the
  installed plugins' entry points through importlib.metadata, the plugin manager: about 1.1 MB, 0.55 KiB per
  agent at 1000 pairs; about 4.5 MB before 2026-12-07, when it also loaded the TURN and UPnP clients and the
  plugins' whole packages); the warm figure leaves that out for both implementations alike.

Every (implementation, N) runs in a fresh subprocess (`--child`), so the peak RSS belongs to that N
alone; a run that does not finish within `--timeout` seconds (default 120) is killed and shown as a
timeout. The subprocess raises its RLIMIT_NOFILE soft limit to the hard limit first (each agent holds
a UDP socket); an N needing more descriptors than that is reported as such.

Run: `.venv/bin/python bench/scale.py [--n 100 500 1000] [--timeout 120] [--impl iceagent aioice floor afloor]
[--rounds R]` (`--rounds`: R alternating runs of every implementation per N, then medians and how many rounds
iceagent won: one run on a shared machine varies by about 10%).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

LO = ["127.0.0.1"]
FDS_PER_AGENT = 1  # one UDP socket per agent (host candidate on 127.0.0.1)
SETTLE = 0.2  # seconds of idle time between setup and the timed connect, for both implementations


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class GcClock:
    """Time the cyclic garbage collector spends, and its collections, while counting (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started
            self.collections += 1

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def report(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


# ---- child: iceagent ----


async def iceagent_warm_up(config: Any, mux: Any = None) -> int:
    """One pair opened, connected and closed before the measured ones, then a full collection: VmRSS (KiB)
    after it. What the first agent of a process loads once (the built-in plugins' hook modules, the installed
    plugins' entry points: about 1.1 MB) is then in the baseline of "KiB/agent warm", not spread over the 2N
    agents."""
    from _agents import gather_signals, hand_over, open_pairs

    async with AsyncExitStack() as stack:
        pairs = await open_pairs(stack, 1, config, mux=mux)
        hand_over(pairs, await gather_signals(list(pairs[0])))
        for agent in pairs[0]:
            await agent.connect()
    gc.collect()
    return proc_status_kb("VmRSS")


async def iceagent_child(n: int, baseline_kb: int, *, mux: Any = None) -> dict[str, Any]:
    """The iceagent run; with `mux` (bench/mux.py) the controlled agents are opened on it. Returns the report."""
    import trio
    from _agents import gather_signals, hand_over, open_pairs

    from iceagent import IceConfig, IceState

    config = IceConfig(global_pacing=False)
    warm_kb = await iceagent_warm_up(config, mux)
    t_setup = time.perf_counter()
    async with AsyncExitStack() as stack:
        pairs = await open_pairs(stack, n, config, mux=mux)
        agents = [x for p in pairs for x in p]
        signal = await gather_signals(agents)
        setup = time.perf_counter() - t_setup

        async def connect_all() -> int:
            """A task per pair that awaits both agents' connect(), as an application serving each peer in
            its own task writes it (the agents run their checks themselves; these tasks only wait)."""
            count = [0]

            async def connect_pair(a: Any, b: Any) -> None:
                await a.connect()
                await b.connect()
                count[0] += 2

            async with trio.open_nursery() as nursery:
                for a, b in pairs:
                    nursery.start_soon(connect_pair, a, b)
            return count[0]

        gc.collect()
        await trio.sleep(SETTLE)
        with GcClock() as collector:
            c0, t0 = time.process_time(), time.perf_counter()
            hand_over(pairs, signal)
            n_connected = await connect_all()
            done, cpu = time.perf_counter(), time.process_time() - c0
        fds = len(os.listdir("/proc/self/fd"))
        for agent in agents:
            await agent.state.wait_value(IceState.COMPLETED)
        completed = time.perf_counter()
        result = {
            "impl": "iceagent" if mux is None else "mux", "n": n, "setup_s": setup, "connect_s": done - t0,
            "cpu_s": cpu, "gc_s": collector.seconds, "gc_runs": collector.collections,
            "complete_s": completed - t0, "hwm_kb": proc_status_kb("VmHWM"), "baseline_kb": baseline_kb,
            "warm_kb": warm_kb, "connected": n_connected, "agents": len(agents), "fds": fds,
        }
        report(result)
        return result


# ---- the floors' exchange (Trio and asyncio run the same one) ----

FLOOR_CHECK, FLOOR_ANSWER, FLOOR_NOMINATE = b"c" * 100, b"a" * 64, b"n" * 104  # ICE's sizes: check, answer, nomination


def floor_sockets(n: int) -> list[Any]:
    """2N plain non-blocking UDP sockets on 127.0.0.1, an agent each."""
    import socket

    socks = []
    for _ in range(2 * n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    return socks


def floor_drain(sock: Any, controlling: bool, connected: Any) -> None:
    """Read what is queued on `sock` and answer as an ICE connect does: a check (or a nominating check) gets an
    answer; the controlling side's first answer makes it connected and nominates; the other's makes it
    connected. `connected` is an event with `is_set()` and `set()` (trio.Event or asyncio.Event)."""
    while True:
        try:
            data, addr = sock.recvfrom(65536)
        except BlockingIOError:
            return
        if data[0] in (0x63, 0x6E):  # a check or a nominating check: answer it
            sock.sendto(FLOOR_ANSWER, addr)
        elif controlling and not connected.is_set():  # the first answer: valid, nominate
            connected.set()
            sock.sendto(FLOOR_NOMINATE, addr)
        else:
            connected.set()


# ---- child: the Trio floor ----


async def floor_child(n: int, baseline_kb: int) -> None:
    """What Trio and the kernel alone cost for this exchange: 2N plain non-blocking UDP sockets on 127.0.0.1, a
    task per socket (wait_readable, recvfrom until EAGAIN), and the datagrams of one ICE connect with regular
    nomination (A's check, B's answer and B's own check, A's answer and A's nominating check, B's answer: 6 a
    pair, of ICE's sizes), but no STUN encoding, no integrity check, no ICE state; the timed part awaits each
    pair's two "connected" as iceagent's does. A lower bound for any Trio agent, not a competitor."""
    import trio

    t_setup = time.perf_counter()
    socks = floor_sockets(n)
    go = trio.Event()

    async def side(sock: Any, peer: tuple[str, int], controlling: bool, connected: trio.Event) -> None:
        await go.wait()
        sock.sendto(FLOOR_CHECK, peer)
        while True:
            await trio.lowlevel.wait_readable(sock)
            floor_drain(sock, controlling, connected)

    try:
        async with trio.open_nursery() as everything:
            events = []
            for i in range(n):
                a, b = socks[2 * i], socks[2 * i + 1]
                ea, eb = trio.Event(), trio.Event()
                events.append((ea, eb))
                everything.start_soon(side, a, b.getsockname(), True, ea)
                everything.start_soon(side, b, a.getsockname(), False, eb)
            setup = time.perf_counter() - t_setup

            async def connect_pair(ea: trio.Event, eb: trio.Event) -> None:
                await ea.wait()
                await eb.wait()

            gc.collect()
            await trio.sleep(SETTLE)
            with GcClock() as collector:
                c0, t0 = time.process_time(), time.perf_counter()
                go.set()
                async with trio.open_nursery() as nursery:
                    for ea, eb in events:
                        nursery.start_soon(connect_pair, ea, eb)
                done, cpu = time.perf_counter(), time.process_time() - c0
            report({
                "impl": "floor", "n": n, "setup_s": setup, "connect_s": done - t0, "cpu_s": cpu,
                "gc_s": collector.seconds, "gc_runs": collector.collections, "complete_s": None,
                "hwm_kb": proc_status_kb("VmHWM"), "baseline_kb": baseline_kb, "connected": 2 * n, "agents": 2 * n,
            })
            everything.cancel_scope.cancel()
    finally:
        for s in socks:
            s.close()


# ---- child: the asyncio floor ----


async def afloor_child(n: int, baseline_kb: int) -> None:
    """floor_child's exchange in asyncio, at its cheapest: a reader callback per socket instead of a task, an
    event per agent for "connected", and a task per pair awaiting both (as the Trio floor's harness does)."""
    loop = asyncio.get_running_loop()
    t_setup = time.perf_counter()
    socks = floor_sockets(n)
    try:
        pairs = []
        for i in range(n):
            a, b = socks[2 * i], socks[2 * i + 1]
            ea, eb = asyncio.Event(), asyncio.Event()
            pairs.append((a, b, ea, eb))
            loop.add_reader(a.fileno(), floor_drain, a, True, ea)
            loop.add_reader(b.fileno(), floor_drain, b, False, eb)
        setup = time.perf_counter() - t_setup

        async def connect_pair(ea: asyncio.Event, eb: asyncio.Event) -> None:
            await ea.wait()
            await eb.wait()

        gc.collect()
        await asyncio.sleep(SETTLE)
        with GcClock() as collector:
            c0, t0 = time.process_time(), time.perf_counter()
            for a, b, _, _ in pairs:  # both send their first check at once, as the Trio floor's `go`
                a.sendto(FLOOR_CHECK, b.getsockname())
                b.sendto(FLOOR_CHECK, a.getsockname())
            await asyncio.gather(*(connect_pair(ea, eb) for _, _, ea, eb in pairs))
            done, cpu = time.perf_counter(), time.process_time() - c0
        report({
            "impl": "afloor", "n": n, "setup_s": setup, "connect_s": done - t0, "cpu_s": cpu,
            "gc_s": collector.seconds, "gc_runs": collector.collections, "complete_s": None,
            "hwm_kb": proc_status_kb("VmHWM"), "baseline_kb": baseline_kb, "connected": 2 * n, "agents": 2 * n,
        })
    finally:
        for s in socks:
            loop.remove_reader(s.fileno())
            s.close()


# ---- child: aioice ----


async def aioice_child(n: int, baseline_kb: int) -> None:
    import aioice
    import aioice.ice

    def loopback_only(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback_only  # aioice would otherwise take every interface

    # the warm-up, as iceagent's (iceagent_warm_up): one pair gathered, connected and closed first
    warm = (aioice.Connection(ice_controlling=True, stun_server=None, use_ipv6=False),
            aioice.Connection(ice_controlling=False, stun_server=None, use_ipv6=False))
    try:
        await asyncio.gather(*(c.gather_candidates() for c in warm))
        for x, y in (warm, warm[::-1]):
            x.remote_username, x.remote_password = y.local_username, y.local_password
            for cand in y.local_candidates:
                await x.add_remote_candidate(aioice.Candidate.from_sdp(cand.to_sdp()))
            await x.add_remote_candidate(None)
        await asyncio.gather(*(c.connect() for c in warm))
    finally:
        await asyncio.gather(*(c.close() for c in warm), return_exceptions=True)
    gc.collect()
    warm_kb = proc_status_kb("VmRSS")

    t_setup = time.perf_counter()
    pairs = [
        (aioice.Connection(ice_controlling=True, stun_server=None, use_ipv6=False),
         aioice.Connection(ice_controlling=False, stun_server=None, use_ipv6=False))
        for _ in range(n)
    ]
    agents = [x for p in pairs for x in p]
    try:
        await asyncio.gather(*(c.gather_candidates() for c in agents))
        signal = {
            c: (c.local_username, c.local_password, [aioice.Candidate.from_sdp(x.to_sdp()) for x in c.local_candidates])
            for c in agents
        }
        setup = time.perf_counter() - t_setup
        done: list[float] = []

        async def connect(conn: aioice.Connection) -> None:
            await conn.connect()
            done.append(time.perf_counter())

        gc.collect()
        await asyncio.sleep(SETTLE)
        with GcClock() as collector:
            c0, t0 = time.process_time(), time.perf_counter()
            for a, b in pairs:
                for x, y in ((a, b), (b, a)):
                    x.remote_username, x.remote_password, cands = signal[y]
                    for cand in cands:
                        await x.add_remote_candidate(cand)
                    await x.add_remote_candidate(None)
            await asyncio.gather(*(connect(c) for c in agents))
            cpu = time.process_time() - c0
        report({
            "impl": "aioice", "n": n, "setup_s": setup, "connect_s": max(done) - t0, "cpu_s": cpu,
            "gc_s": collector.seconds, "gc_runs": collector.collections,
            "complete_s": None,
            "hwm_kb": proc_status_kb("VmHWM"), "baseline_kb": baseline_kb, "warm_kb": warm_kb,
            "connected": len(done), "agents": len(agents),
        })
    finally:
        await asyncio.gather(*(c.close() for c in agents), return_exceptions=True)


def child(impl: str, n: int) -> int:
    limit = raise_nofile()
    need = 2 * n * FDS_PER_AGENT + 64
    if limit != resource.RLIM_INFINITY and need > limit:
        report({"impl": impl, "n": n, "error": f"needs ~{need} file descriptors, RLIMIT_NOFILE is {limit}"})
        return 0
    if impl == "iceagent":
        import trio

        import iceagent  # noqa: F401  (imported before the baseline, as aioice is below)

        baseline = proc_status_kb("VmRSS")
        trio.run(iceagent_child, n, baseline)  # type: ignore[arg-type]
    elif impl == "floor":
        import trio

        baseline = proc_status_kb("VmRSS")
        trio.run(floor_child, n, baseline)  # type: ignore[arg-type]
    elif impl == "afloor":
        baseline = proc_status_kb("VmRSS")
        asyncio.run(afloor_child(n, baseline))
    else:
        import aioice  # noqa: F401

        baseline = proc_status_kb("VmRSS")
        asyncio.run(aioice_child(n, baseline))
    return 0


# ---- parent ----


def run_child(impl: str, n: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", impl, "--n", str(n)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                result: dict[str, Any] = json.loads(line)
                result["note"] = f"killed after {timeout:g} s while closing"
                return result
        return {"impl": impl, "n": n, "error": f"timeout: not all connected within {timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"impl": impl, "n": n, "error": f"exit code {proc.returncode}: {tail}"}


def fmt_row(r: dict[str, Any]) -> str:
    name = f"{r['impl']:9} {r['n']:>6}"
    if "error" in r:
        return f"{name}   {r['error']}"
    per_agent = (r["hwm_kb"] - r["baseline_kb"]) / r["agents"]
    complete = "-" if r["complete_s"] is None else f"{r['complete_s']:9.3f}"
    note = f"   ({r['note']})" if "note" in r else ""
    collector = f" {r['gc_s']:8.3f} {r['gc_runs']:7d}" if "gc_s" in r else ""
    warm = f" {(r['hwm_kb'] - r['warm_kb']) / r['agents']:8.1f}" if "warm_kb" in r else f" {'-':>8}"
    return (f"{name} {r['connect_s']:10.3f} {r['cpu_s']:7.3f} {complete:>10} {r['setup_s']:9.2f} "
            f"{r['hwm_kb'] / 1024:9.1f} {per_agent:10.1f}{warm}{collector}{note}")


def print_rounds(n: int, runs: dict[str, list[dict[str, Any]]]) -> None:
    """Per implementation: the median (and range) of its runs at `n`; and in how many rounds iceagent took less
    time than aioice (the two ran back to back in each round)."""
    for impl, rs in runs.items():
        if not rs:
            continue
        connect = sorted(r["connect_s"] for r in rs)
        cpu = sorted(r["cpu_s"] for r in rs)
        print(f"  {impl:9} {n:>6}: {len(rs)} runs, connect s median {statistics.median(connect):.3f} "
              f"({connect[0]:.3f}-{connect[-1]:.3f}), cpu s median {statistics.median(cpu):.3f} "
              f"({cpu[0]:.3f}-{cpu[-1]:.3f})")
    ours, theirs = runs.get("iceagent", []), runs.get("aioice", [])
    if ours and len(ours) == len(theirs):
        faster = sum(a["connect_s"] < b["connect_s"] for a, b in zip(ours, theirs, strict=True))
        ratios = sorted(a["connect_s"] / b["connect_s"] for a, b in zip(ours, theirs, strict=True))
        print(f"  iceagent took less time than aioice in {faster} of {len(ours)} rounds; "
              f"iceagent/aioice time, median {statistics.median(ratios):.3f} ({ratios[0]:.3f}-{ratios[-1]:.3f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 500, 1000], help="numbers of agent pairs")
    parser.add_argument("--impl", nargs="+", choices=["iceagent", "aioice", "floor", "afloor"],
                        default=["iceagent", "aioice", "floor", "afloor"])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per (implementation, N) run")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every implementation this many times per N, alternating (a round runs each once), "
                             "then print each one's median and range: single runs on a shared machine vary by 10%%")
    parser.add_argument("--child", choices=["iceagent", "aioice", "floor", "afloor"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.n[0])

    print(f"{len(args.n)} sizes x {len(args.impl)} implementations, each in a fresh process on 127.0.0.1 "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print(f"{'impl':9} {'pairs':>6} {'connect s':>10} {'cpu s':>7} {'complete s':>10} {'setup s':>9} {'peak MiB':>9} "
          f"{'KiB/agent':>10} {'warm KiB':>8} {'gc cpu s':>8} {'gc runs':>7}")
    skip: set[str] = set()
    for n in args.n:
        runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in args.impl}
        for _ in range(max(1, args.rounds)):
            for impl in args.impl:
                if impl in skip:
                    print(f"{impl:9} {n:>6}   skipped (a smaller N already failed)")
                    continue
                r = run_child(impl, n, args.timeout)
                if "error" in r:
                    skip.add(impl)
                else:
                    runs[impl].append(r)
                print(fmt_row(r), flush=True)
        if args.rounds > 1:
            print_rounds(n, runs)
    print("connect: wall-clock time until all 2N connect() returned; cpu: process CPU time over the same span "
          "(steadier on a shared machine); complete: until all 2N iceagent agents are COMPLETED (aioice's "
          "connect() returns only then); setup: opening and gathering, not timed; KiB/agent: (peak RSS - RSS "
          "before the first agent) / 2N; warm KiB: (peak RSS - RSS after one pair was connected and closed first, "
          "in the same process) / 2N: what each agent costs without what the first agent of a process loads once "
          "(modules, plugin discovery; aioice warms up the same way, with a pair of its own); gc cpu s, gc runs: "
          "the cyclic garbage collector's share of cpu s and its collections (gc.callbacks); floor: Trio and "
          "plain sockets exchanging the same 6 datagrams a pair with no "
          "STUN or ICE work (a lower bound for any Trio agent, see floor_child)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
