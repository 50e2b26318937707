"""Benchmark: connection setup time over ICE-TCP (RFC 6544) next to UDP, iceagent against itself.

What it measures: as bench/connect.py, the time from handing both agents each other's parameters and
candidates (both opened and gathered before the clock starts) until both `connect()` calls returned
("connected": a valid pair) and until both agents are COMPLETED (nomination concluded), for two agents
in one process on 127.0.0.1, in three set-ups:

- udp: host UDP candidates only (the default agent);
- tcp: ICE-TCP only (`tcp=True` on a Network whose UDP bind fails, as on a network that blocks UDP): an
  active check opens a connection first (SYN, SYN-ACK), the passive side learns the peer-reflexive
  candidate and checks back on the same connection;
- udp+tcp: both (`tcp=True`); UDP wins, and the TCP connections are closed after nomination.

`IceConfig(global_pacing=False)`, default Ta (50 ms). Median, p90 and min of `--runs` runs each, after
`--warmup` uncounted runs. Run: `.venv/bin/python bench/tcp_connect.py [--runs 30] [--warmup 2]`.
"""

from __future__ import annotations

import argparse
import errno
import logging
import statistics
import sys

import trio
from connect import timed_connect  # bench/connect.py: the same timing, same signaling

from iceagent import IceConfig, open_agent
from iceagent.net.base import Network, NetworkWrapper, UdpSocket
from iceagent.net.os import OSNetwork

LO = ["127.0.0.1"]


class UdpBlocked(NetworkWrapper):
    """The OS network with UDP blocked: only the ICE-TCP candidates exist."""

    async def bind_udp(self, address: str, port: int = 0, *, reuse: bool = False) -> UdpSocket:
        raise OSError(errno.EACCES, "UDP is blocked (benchmark)")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


async def once(setup: str, config: IceConfig) -> tuple[float, float, str]:
    """One connection; returns (both connected, both completed) in seconds and the selected transport."""
    network: Network = UdpBlocked(OSNetwork()) if setup == "tcp" else OSNetwork()
    tcp = setup != "udp"
    async with open_agent(controlling=True, host_addresses=LO, tcp=tcp, network=network, config=config) as a, \
            open_agent(controlling=False, host_addresses=LO, tcp=tcp, network=network, config=config) as b:
        connected, completed = await timed_connect(a, b)
        pair = a.selected_pair
        transport = "?" if pair is None else pair.local.transport
        return connected, completed, transport


async def runs(setup: str, n: int, warmup: int) -> tuple[list[float], list[float], set[str]]:
    config = IceConfig(global_pacing=False)
    connected: list[float] = []
    completed: list[float] = []
    transports: set[str] = set()
    for i in range(n + warmup):
        with trio.fail_after(30):
            c1, c2, transport = await once(setup, config)
        if i >= warmup:
            connected.append(c1)
            completed.append(c2)
            transports.add(transport)
    return connected, completed, transports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="counted runs per set-up (default 30)")
    parser.add_argument("--warmup", type=int, default=2, help="uncounted warm-up runs first (default 2)")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # "UDP blocked" and the peer leaving at the end of each run are expected
    print(f"connect time, 2 iceagent agents in one process on 127.0.0.1, {args.runs} runs each "
          f"(python {sys.version.split()[0]}, trio {trio.__version__})")
    print(f"{'':34} {'median':>9} {'p90':>9} {'min':>9}")
    medians: dict[str, float] = {}
    for setup in ("udp", "tcp", "udp+tcp"):
        connected, completed, transports = trio.run(runs, setup, args.runs, args.warmup)
        medians[setup] = statistics.median(connected)
        for what, values in (("connected", connected), ("COMPLETED", completed)):
            name = f"{setup} (selected: {'/'.join(sorted(transports))}): {what}"
            print(f"{name:34} {statistics.median(values) * 1e3:7.2f}ms {percentile(values, 90) * 1e3:7.2f}ms "
                  f"{min(values) * 1e3:7.2f}ms")
    print(f"ratio of medians (connected), tcp/udp: {medians['tcp'] / medians['udp']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
