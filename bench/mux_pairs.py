"""bench/mux.py's `pairs` mode: N server agents on one mux, N clients on their own sockets (see bench/mux.py).

Each N runs in a fresh subprocess (`--child`), as bench/scale.py does, whose children also give the aioice
and the socket-per-agent iceagent rows of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from scale import fmt_row, iceagent_child, proc_status_kb, raise_nofile, report, run_child

LO = ["127.0.0.1"]


async def mux_child(n: int, baseline_kb: int) -> None:
    """bench/scale.py's iceagent run with the controlled agents on one mux; adds the mux's drops and SO_RCVBUF."""
    from iceagent.net.mux import open_mux

    async with open_mux(LO, 0) as mux:
        result = await iceagent_child(n, baseline_kb, mux=mux)
        port = mux._ports[0]
        result["rcvbuf"] = port.sock.raw.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)  # type: ignore[attr-defined]
        result["dropped"] = mux.stats()["dropped"]
        report(result)


def child(n: int, rcvbuf: int | None) -> int:
    raise_nofile()
    import trio

    import iceagent  # imported before the baseline is taken (its modules are not per-agent memory)

    if rcvbuf is not None:  # a small buffer: the burst of first checks overflows it and must converge anyway
        import iceagent.net._mux_ports

        iceagent.net._mux_ports.SOCKET_BUFFER = rcvbuf

    baseline = proc_status_kb("VmRSS")
    trio.run(mux_child, n, baseline)
    return 0


def run_mux_child(n: int, timeout: float, rcvbuf: int | None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(n)]
    if rcvbuf is not None:
        cmd += ["--rcvbuf", str(rcvbuf)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"impl": "mux", "n": n, "error": f"timeout: not all connected within {timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"impl": "mux", "n": n, "error": f"exit code {proc.returncode}: {tail}"}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="N server agents on one mux, N clients with their own sockets")
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000], help="numbers of pairs")
    parser.add_argument("--aioice", type=int, nargs="*", default=[1000], help="pairs for the aioice rows")
    parser.add_argument("--plain", type=int, nargs="*", default=[1000], help="pairs for iceagent without a mux")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--rcvbuf", type=int, help="SO_RCVBUF asked for the mux socket (default 4 MiB); small "
                        "values make the burst of checks overflow it, to see that the agents still connect")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.rcvbuf)
    print(f"each row a fresh process on 127.0.0.1 (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print(f"{'impl':9} {'pairs':>6} {'connect s':>10} {'cpu s':>7} {'complete s':>10} {'setup s':>9} {'peak MiB':>9} "
          f"{'KiB/agent':>10} {'fds':>6}  mux drops, SO_RCVBUF")
    rows: list[dict[str, Any]] = []
    for n in args.aioice:
        rows.append(run_child("aioice", n, args.timeout))
    for n in args.plain:
        rows.append(run_child("iceagent", n, args.timeout))
    for r in rows:
        print(fmt_row(r), flush=True)
    for n in args.n:
        r = run_mux_child(n, args.timeout, args.rcvbuf)
        extra = "" if "error" in r else f" {r['fds']:>6}  {r['dropped'] or 'none'}, {r['rcvbuf']}"
        print(fmt_row(r) + extra, flush=True)
    print("connect: wall-clock time until all 2N connect() returned; cpu: process CPU time over it; complete: "
          "until all 2N iceagent agents are COMPLETED (aioice's connect() returns only then); KiB/agent: "
          "(peak RSS - RSS before the first agent) / 2N; fds: descriptors open once all connected; "
          "mux: the N server agents on one mux port, clients on their own sockets")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
