"""bench/mux.py's `pairs` mode: N server agents on one mux, N clients on their own sockets (see bench/mux.py).

Each N runs in a fresh subprocess (`--child`), as bench/scale.py does, whose children also give the aioice
and the socket-per-agent iceagent rows of the same run. The mux child prints a JSON line once all 2N agents
are connected and another once all are COMPLETED, so a run killed at `--timeout` still shows how far it
got; `--progress` adds a line per second on stderr (CPU, states, the mux's and the kernel's drops).
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from scale import SETTLE, fmt_row, iceagent_warm_up, proc_status_kb, raise_nofile, report, run_child

LO = ["127.0.0.1"]


def kernel_drops(port: int) -> int:
    """Datagrams the kernel dropped at the UDP socket bound to 127.0.0.1:`port` (its receive buffer was
    full): the "drops" column of /proc/net/udp, which the mux cannot see."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == local:
                return int(fields[-1])
    return 0


class GcClock:
    """Wall-clock seconds spent in the cyclic garbage collector, by generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds: collections.Counter[int] = collections.Counter()
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._start

    def total(self) -> float:
        return sum(self.seconds.values())


async def mux_child(n: int, baseline_kb: int, progress: bool) -> None:
    """N pairs, the controlled agents on one mux: what bench/scale.py's iceagent child measures (setup not
    timed, a task per pair awaiting its two connect(), as an application serving each peer in its own task),
    plus when all are COMPLETED (each pair's task then waits for both), the CPU of setup and of the garbage
    collector, the mux's drops by reason and what the kernel dropped at the mux socket."""
    import trio
    from _agents import gather_signals, hand_over, open_pairs

    from iceagent import IceConfig, IceState
    from iceagent.net.mux import open_mux

    config = IceConfig(global_pacing=False)
    gc_clock = GcClock()
    async with open_mux(LO, 0) as mux, AsyncExitStack() as stack:
        warm_kb = await iceagent_warm_up(config, mux)  # (bench/scale.py: "warm KiB")
        port = mux.local_addresses[0][1]
        t_setup, c_setup = time.perf_counter(), time.process_time()
        pairs = await open_pairs(stack, n, config, mux=mux)
        opened = time.process_time()
        agents = [x for p in pairs for x in p]
        signal = await gather_signals(agents)
        result: dict[str, Any] = {
            "impl": "mux", "n": n, "agents": len(agents), "baseline_kb": baseline_kb, "warm_kb": warm_kb,
            "setup_s": time.perf_counter() - t_setup, "open_cpu_s": opened - c_setup,
            "gather_cpu_s": time.process_time() - opened, "complete_s": None,
            "rcvbuf": mux._ports[0].sock.raw.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),  # type: ignore[attr-defined]
        }
        gc.collect()
        await trio.sleep(SETTLE)
        gc_before = gc_clock.total()
        connected: list[float] = []
        completed: list[float] = []

        def snapshot(phase: str) -> None:
            result.update(phase=phase, hwm_kb=proc_status_kb("VmHWM"), mux_dropped=mux.stats()["dropped"],
                          kernel_dropped=kernel_drops(port),
                          failed=sum(a.state.value is IceState.FAILED for a in agents))
            report(result)

        async def serve_pair(a: Any, b: Any) -> None:
            await a.connect()
            await b.connect()
            connected.append(time.perf_counter())
            if len(connected) == n:
                result.update(connect_s=connected[-1] - t0, cpu_s=time.process_time() - c0,
                              fds=len(os.listdir("/proc/self/fd")), connected=2 * n,
                              gc_s=gc_clock.total() - gc_before)
                snapshot("connected")
            await a.state.wait_value(IceState.COMPLETED)
            await b.state.wait_value(IceState.COMPLETED)
            completed.append(time.perf_counter())

        async def show_progress() -> None:
            last = c0
            while True:
                await trio.sleep(1)
                cpu = time.process_time()
                states = collections.Counter(a.state.value.name for a in agents)
                print(f"{time.perf_counter() - t0:7.1f} s  cpu {cpu - c0:7.1f} s (+{cpu - last:4.2f})  "
                      f"{dict(states)}  routed {mux.stats()['routed']}  dropped {mux.stats()['dropped']}  "
                      f"kernel dropped {kernel_drops(port)}  gc {gc_clock.total() - gc_before:.1f} s",
                      file=sys.stderr, flush=True)
                last = cpu

        c0, t0 = time.process_time(), time.perf_counter()
        hand_over(pairs, signal)
        async with trio.open_nursery() as watcher:
            if progress:
                watcher.start_soon(show_progress)
            async with trio.open_nursery() as nursery:
                for a, b in pairs:
                    nursery.start_soon(serve_pair, a, b)
            watcher.cancel_scope.cancel()
        result.update(complete_s=completed[-1] - t0, complete_cpu_s=time.process_time() - c0)
        snapshot("completed")


def child(n: int, rcvbuf: int | None, progress: bool) -> int:
    raise_nofile()
    import trio

    import iceagent  # imported before the baseline is taken (its modules are not per-agent memory)

    if rcvbuf is not None:  # a small buffer: the burst of first checks overflows it and must converge anyway
        import iceagent.net._mux_ports

        iceagent.net._mux_ports.SOCKET_BUFFER = rcvbuf

    baseline = proc_status_kb("VmRSS")
    trio.run(mux_child, n, baseline, progress)
    return 0


def run_mux_child(n: int, timeout: float, rcvbuf: int | None, progress: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(n)]
    if rcvbuf is not None:
        cmd += ["--rcvbuf", str(rcvbuf)]
    if progress:
        cmd += ["--progress"]
    stderr = None if progress else subprocess.PIPE
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=timeout)
        out, err = proc.stdout, proc.stderr or ""
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        phase = "COMPLETED" if '"phase": "connected"' in out else "connected"
        err = f"timeout: not all {phase} within {timeout:g} s"
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if lines:
        result = dict(json.loads(lines[-1]))
        if result.get("phase") != "completed":
            result["note"] = err
        return result
    tail = (err.strip().splitlines() or ["no output"])[-1]
    return {"impl": "mux", "n": n, "error": tail if tail.startswith("timeout") else f"exit code: {tail}"}


def fmt_mux_row(r: dict[str, Any]) -> str:
    if "error" in r:
        return fmt_row(r)
    drops = {**r["mux_dropped"], "kernel": r["kernel_dropped"]}
    extra = (f" {r['fds']:>6} {r['gc_s']:6.1f} {r['open_cpu_s'] + r['gather_cpu_s']:9.1f} {r['failed']:>6}  "
             f"{ {k: v for k, v in drops.items() if v} or 'none'}, {r['rcvbuf']}")
    note = f"   ({r['note']})" if "note" in r else ""
    return fmt_row({k: v for k, v in r.items() if k not in ("note", "gc_s")}) + extra + note


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="N server agents on one mux, N clients with their own sockets")
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000], help="numbers of pairs")
    parser.add_argument("--aioice", type=int, nargs="*", default=[1000], help="pairs for the aioice rows")
    parser.add_argument("--plain", type=int, nargs="*", default=[1000], help="pairs for iceagent without a mux")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--rcvbuf", type=int, help="SO_RCVBUF asked for the mux socket (default 4 MiB); small "
                        "values make the burst of checks overflow it, to see that the agents still connect")
    parser.add_argument("--progress", action="store_true", help="a line per second on stderr from each mux run")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.rcvbuf, args.progress)
    print(f"each row a fresh process on 127.0.0.1 (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print(f"{'impl':9} {'pairs':>6} {'connect s':>10} {'cpu s':>7} {'complete s':>10} {'setup s':>9} {'peak MiB':>9} "
          f"{'KiB/agent':>10} {'warm KiB':>8} {'fds':>6} {'gc s':>6} {'setup cpu':>9} {'failed':>6}  drops, SO_RCVBUF")
    rows: list[dict[str, Any]] = []
    for n in args.aioice:
        rows.append(run_child("aioice", n, args.timeout))
    for n in args.plain:
        rows.append(run_child("iceagent", n, args.timeout))
    for r in rows:
        print(fmt_row({k: v for k, v in r.items() if k not in ("gc_s", "gc_runs")}), flush=True)  # (mux columns)
    for n in args.n:
        print(fmt_mux_row(run_mux_child(n, args.timeout, args.rcvbuf, args.progress)), flush=True)
    print("connect: wall-clock time until all 2N connect() returned; cpu: process CPU time over it; complete: "
          "until all 2N iceagent agents are COMPLETED (aioice's connect() returns only then); KiB/agent: "
          "(peak RSS - RSS before the first agent) / 2N; warm KiB: the same from after a pair connected and closed "
          "first (bench/scale.py); fds: descriptors open once all connected; mux: the N "
          "server agents on one mux port, clients on their own sockets; gc: seconds in the garbage collector "
          "until all connected; setup cpu: opening and gathering the 2N agents (not timed); failed: agents "
          "FAILED then; drops: the mux's by reason, and what the kernel dropped at the mux socket (its buffer full)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
