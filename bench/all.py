"""Every figure of issue 15 in one table: runs each benchmark by its command line, with small defaults.

Each benchmark runs as a subprocess (`.venv/bin/python bench/<name>.py ...`), exactly as a user would
run it alone, and prints its own full output first (so nothing is hidden and every number can be
checked); the table at the end picks the headline figures out of those outputs. A figure a
benchmark did not print (it failed, coturn is missing, its output changed) shows as "-" and its
output says why.

| row | benchmark and arguments |
| --- | --- |
| connect | `connect.py --runs R`: both `connect()` returned, median; aioice's `connect()` |
| COMPLETED, Ta 5 ms + pacer | `connect.py --runs R --ta 5 --global-pacing --no-aioice`: both COMPLETED, median |
| same, two processes | `connect.py --runs R --ta 5 --global-pacing --processes 2`: both COMPLETED, median |
| 1000 pairs | `scale.py --n N`: time until all connected and KiB per agent, iceagent and aioice |
| data path | `throughput.py --seconds S --repeat K`: % of the fair limit (wall clock and per CPU-second), aioice's % |
| relay | `relay.py --seconds S --repeat K`: relay-only agents through coturn, % of the same agents direct |

Run: `.venv/bin/python bench/all.py [--quick]` (about 3 minutes; `--quick` about 1 minute: fewer runs,
100 pairs). Every benchmark's own `--help` says how it measures.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
Figures = dict[str, str]


def run(script: str, *args: str, timeout: float = 900) -> str:
    """Run `bench/<script>` with this interpreter; its output (stdout and stderr), echoed as it is."""
    cmd = [sys.executable, str(BENCH / script), *args]
    print(f"$ {' '.join(['python', f'bench/{script}', *args])}", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=BENCH.parent)
        out = proc.stdout + (f"\n[exit code {proc.returncode}]\n{proc.stderr[-2000:]}" if proc.returncode else "")
    except subprocess.TimeoutExpired:
        out = f"[killed after {timeout:g} s]"
    print(out.rstrip())
    print(f"[{time.perf_counter() - t0:.0f} s]\n", flush=True)
    return out


def find(pattern: str, text: str, group: int = 1) -> str:
    m = re.search(pattern, text, re.MULTILINE)
    return m.group(group) if m else "-"


def connect(out: str) -> Figures:
    return {
        "ice": find(r"^iceagent: both connect\(\) returned\s+(\S+)", out),
        "ice_completed": find(r"^iceagent: both COMPLETED\s+(\S+)", out),
        "aioice": find(r"^aioice: both connect\(\) returned\s+(\S+)", out),
    }


def scale(out: str, n: int) -> Figures:
    def row(impl: str) -> tuple[str, str, str, str]:
        m = re.search(rf"^{impl}\s+{n}\s+([\d.]+)\s+([\d.]+)\s+\S+\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+(\S+)", out,
                      re.MULTILINE)
        return (m.group(1), m.group(2), m.group(3), m.group(4)) if m else ("-", "-", "-", "-")

    def median(impl: str) -> str | None:  # scale.py --rounds: the median of the alternated runs, and their range
        m = re.search(rf"^  {impl}\s+{n}: (\d+) runs, connect s median ([\d.]+) \(([\d.]+-[\d.]+)\)", out,
                      re.MULTILINE)
        return f"{m.group(2)} s (median of {m.group(1)} runs, {m.group(3)})" if m else None

    (ice_s, ice_cpu, ice_kib, ice_warm), (aio_s, aio_cpu, aio_kib, aio_warm) = row("iceagent"), row("aioice")
    ice_time, aio_time = median("iceagent") or f"{ice_s} s", median("aioice") or f"{aio_s} s"
    wins = re.search(r"^  iceagent took less time than aioice in (\d+ of \d+) rounds", out, re.MULTILINE)
    if wins:
        ice_time += f", less time than aioice in {wins.group(1)} rounds"
    floor_cpu = row("floor")[1]  # Trio and plain sockets, the same datagrams, no STUN or ICE work
    afloor_cpu = row("afloor")[1]  # the same in asyncio (reader callbacks): what aioice's framework costs
    return {  # KiB: per agent from before the first agent, and after a warm-up pair (scale.py's "warm KiB")
        "ice": f"{ice_time}; first run {ice_cpu} s CPU, Trio floor {floor_cpu} s CPU / {ice_kib} KiB ({ice_warm} warm)",
        "aioice": f"{aio_time}; first run {aio_cpu} s CPU, asyncio floor {afloor_cpu} s CPU / {aio_kib} KiB "
                  f"({aio_warm} warm)",
    }


def throughput(out: str) -> Figures:
    return {
        "ice": find(r"^iceagent: ([\d.]+% of the fair limit by wall clock, [\d.]+% per CPU-second)", out),
        "aioice": find(r"^aioice: ([\d.]+%) of the fair limit", out),
    }


def relay(out: str) -> Figures:
    def row(name: str) -> str:
        m = re.search(rf"^{name}\s+([\d,]+)\s+[\d.]+\s+[\d.]+x\s+([\d.]+%)", out, re.MULTILINE)
        return f"{m.group(1)}/s ({m.group(2)})" if m else "-"

    share = re.search(r"^relay-only agents: ([\d.]+%) of the same agents", out, re.MULTILINE)
    ice = row("iceagent agents").split(" (")[0]
    return {"ice": f"{ice} ({share.group(1) if share else '-'} of the same agents direct)",
            "aioice": row("aioice TURN")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs and 100 pairs instead of 1000 (~1 min)")
    parser.add_argument("--skip", nargs="*", default=[], help="rows to leave out",
                        choices=["connect", "completed", "completed2", "scale", "throughput", "relay"])
    args = parser.parse_args(argv)
    runs, pairs = ("10", 100) if args.quick else ("30", 1000)
    seconds, repeat = ("1", "3") if args.quick else ("2", "5")
    scale_rounds = "1" if args.quick else "5"  # iceagent and aioice alternated: one run varies by about 10%

    rows: list[tuple[str, str, Callable[[], Figures], str, str]] = [
        ("connect", "two agents, both connect() returned (median)", lambda: connect(run("connect.py", "--runs", runs)),
         "ice", "<= 0.3 ms"),
        ("completed", "both COMPLETED, Ta 5 ms both sides + process-wide pacer (median)",
         lambda: connect(run("connect.py", "--runs", runs, "--ta", "5", "--global-pacing", "--no-aioice")),
         "ice_completed", "<= 10 ms (one process: 10 ms + RTT at least, docs/agent.md \"Pacing\")"),
        ("completed2", "the same in two processes, a pacer each (as two hosts; median)",
         lambda: connect(run("connect.py", "--runs", runs, "--ta", "5", "--global-pacing", "--processes", "2")),
         "ice_completed", "<= 10 ms"),
        ("scale", f"{pairs} pairs in one process: time to all connected / RSS per agent",
         lambda: scale(run("scale.py", "--n", str(pairs), "--rounds", scale_rounds), pairs), "ice",
         "less than aioice, toward half its time"),
        ("throughput", "data path, 1000-byte datagrams: share of the fair non-blocking limit",
         lambda: throughput(run("throughput.py", "--seconds", seconds, "--repeat", repeat)), "ice",
         ">= 85% and above aioice"),
        ("relay", "relay-only agents through coturn, datagrams/s (% of the same two agents connected directly; "
                  "aioice: its TURN client, % of relay.py's plain trio.socket row)",
         lambda: relay(run("relay.py", "--seconds", seconds, "--repeat", repeat)), "ice", ">= 90%"),
    ]
    table: list[tuple[str, str, str, str]] = []
    for key, label, measure, ice_key, target in rows:
        if key in args.skip:
            continue
        figures = measure()
        table.append((label, figures.get(ice_key, "-"), figures.get("aioice", "-"), target))

    print(f"issue 15 figures ({'--quick' if args.quick else 'default'} settings), "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}, {versions()}")
    print("| measure | iceagent | aioice 0.13 | target |")
    print("| --- | --- | --- | --- |")
    for label, ice, aio, target in table:
        print(f"| {label} | {ice} | {aio} | {target} |")
    return 0


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("iceagent", "trio", "aioice"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} -")
    return ", ".join(out)


if __name__ == "__main__":
    sys.exit(main())
