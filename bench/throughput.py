"""Benchmark: datagram throughput over the selected pair, against the fair limit for Trio and aioice.

What it measures: how many 1000-byte datagrams per second one side delivers to the other over
127.0.0.1, both ends in one process (one thread), for

- fair limit: two stdlib UDP sockets (`socket.socket`, `setblocking(False)`) inside Trio, no ICE at
  all, driven with IceStream's discipline: every call checks for cancellation, the socket call is
  tried at once and the task waits (`trio.lowlevel.wait_writable` / `wait_readable`) only on EAGAIN,
  and every `IceStream.SCHEDULE_EVERY` (16) calls is a full checkpoint. The headline share is against it;
- fair, recvfrom: the same, receiving with `recvfrom` instead of `recv`: an ICE agent must know whose
  datagram it got (RFC 8445 12.2), and the address costs a tuple, a string and an int per datagram.
  Shown for reference (how much of the gap is that alone); the headline stays against `recv`;
- raw trio.socket: two trio.socket UDP sockets (`sendto` / `recvfrom`), which pay a scheduling round
  per datagram that IceStream skips: below the fair limit for that reason alone, kept for reference;
- iceagent: two connected agents (`IceConfig(global_pacing=False)`), `IceStream.send` / `receive`;
- iceagent nowait: the same with `IceStream.send_nowait` / `receive_nowait` (no checkpoint per datagram);
- aioice: two connected `aioice.Connection`s in asyncio, `Connection.send` / `recv`.

The same windowed protocol runs over each, so that datagrams dropped by a full socket buffer are not
counted as throughput: the sender keeps at most `--window` W datagrams unacknowledged; the receiver
counts what arrives and sends an ack datagram (its running count) after every W/2 datagrams; the
sender sends while it has credit and otherwise waits for an ack. An ack that does not come within
`--ack-timeout` writes the outstanding datagrams off as lost (counted in the table) and restores the
credit. The sender runs for `--seconds`; the rate is datagrams received / (time of the last one
received - start). MB/s counts payload bytes (10^6 bytes). "per CPU-s" divides the same count by the
process's CPU time (user + system, the kernel's loopback work included) over the run: on a shared
machine it moves less than the wall-clock rate.

Each implementation runs `--repeat` times, interleaved (fair, fair with recvfrom, raw, iceagent, nowait, aioice, then
again); the median run is reported, with every run's rate, as % of the fair limit's median (and of
raw trio.socket's). aioice runs on asyncio, so its share of a Trio limit compares the two libraries
as a user meets them, not asyncio with Trio. Target: iceagent above aioice.

Run: `.venv/bin/python bench/throughput.py [--seconds 2] [--repeat 3] [--window 32] [--size 1000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aioice
import aioice.ice
import trio

from iceagent import Agent, Candidate, IceConfig, IceStream, open_agent

LO = ["127.0.0.1"]


def _aioice_loopback_only(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    """aioice never gathers 127.0.0.1 by itself and otherwise takes every interface: loopback only."""
    return ["127.0.0.1"] if use_ipv4 else []


aioice.ice.get_host_addresses = _aioice_loopback_only


class Result:
    def __init__(
        self, delivered: int, lost: int, elapsed: float, cpu: float, size: int, peer_cpu: float = 0.0, span: float = 0.0
    ) -> None:
        self.delivered, self.lost, self.elapsed, self.cpu, self.size = delivered, lost, elapsed, cpu, size
        #: CPU seconds of another process (`peer_pid`: bench/relay.py's coturn) and the wall-clock seconds over
        #: which both CPU times were taken (the run, its tail included)
        self.peer_cpu, self.span = peer_cpu, span

    @property
    def rate(self) -> float:
        """Delivered datagrams per second of wall-clock time."""
        return self.delivered / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def cpu_rate(self) -> float:
        """Delivered datagrams per second of this process's CPU time (user + system)."""
        return self.delivered / self.cpu if self.cpu > 0 else 0.0


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) process `pid` has used so far, from /proc (Linux); 0.0 for None."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the windowed protocol, on Trio ----


async def trio_windowed(
    send: Callable[[bytes], Awaitable[None]],
    receive: Callable[[], Awaitable[bytes]],
    send_ack: Callable[[bytes], Awaitable[None]],
    receive_ack: Callable[[], Awaitable[bytes]],
    *,
    seconds: float,
    window: int,
    size: int,
    ack_timeout: float,
    peer_pid: int | None = None,
) -> Result:
    payload = b"\xab" * size
    half = max(1, window // 2)
    received = 0
    last_rx = 0.0
    lost = 0

    async def receiver() -> None:
        nonlocal received, last_rx
        while True:
            data = await receive()
            if len(data) != size:
                continue
            received += 1
            last_rx = time.perf_counter()
            if received % half == 0:
                await send_ack(received.to_bytes(8, "big"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.lowlevel.checkpoint()
        p0 = process_cpu(peer_pid)
        c0 = time.process_time()
        t0 = time.perf_counter()
        end = t0 + seconds
        sent = credited = 0
        while time.perf_counter() < end:
            while sent - credited < window:
                await send(payload)
                sent += 1
            with trio.move_on_after(ack_timeout) as scope:
                ack = int.from_bytes(await receive_ack(), "big")
                credited = max(credited, ack)
            if scope.cancelled_caught:
                lost += sent - max(credited, received)
                credited = sent
        await trio.sleep(min(0.05, ack_timeout))  # let the last datagrams in flight arrive
        nursery.cancel_scope.cancel()
        cpu = time.process_time() - c0
        span = time.perf_counter() - t0
        peer_cpu = process_cpu(peer_pid) - p0
    lost = max(lost, sent - received)
    return Result(received, lost, last_rx - t0, cpu, size, peer_cpu, span)


async def run_raw(args: argparse.Namespace) -> Result:
    a = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    b = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with a, b:
        await a.bind(("127.0.0.1", 0))
        await b.bind(("127.0.0.1", 0))
        addr_a, addr_b = a.getsockname(), b.getsockname()

        async def send(data: bytes) -> None:
            await a.sendto(data, addr_b)

        async def receive() -> bytes:
            return (await b.recvfrom(65536))[0]

        async def send_ack(data: bytes) -> None:
            await b.sendto(data, addr_a)

        async def receive_ack() -> bytes:
            return (await a.recvfrom(65536))[0]

        return await trio_windowed(send, receive, send_ack, receive_ack, seconds=args.seconds,
                                   window=args.window, size=args.size, ack_timeout=args.ack_timeout)


class FairEnd:
    """One end of the fair limit: a stdlib non-blocking UDP socket driven with IceStream's discipline.

    Each call checks for cancellation; the socket call is tried at once and the task waits for the
    socket (trio.lowlevel.wait_writable / wait_readable) only on EAGAIN (BlockingIOError); every
    `IceStream.SCHEDULE_EVERY`-th call is a full checkpoint (a scheduling round). That is what
    `IceStream.send` (`try_send`, `transport.send` on EAGAIN) and `receive` (queue, `Inbox.get` when
    empty) do, minus ICE: the fastest a Trio program moving these datagrams that way can go.
    """

    def __init__(self, sock: socket.socket, peer: tuple[str, int], source: bool = False) -> None:
        self._sock, self._peer = sock, peer
        self._sends = self._receives = 0
        if source:
            self.receive = self.receive_from  # type: ignore[method-assign]

    async def send(self, data: bytes) -> None:
        self._sends += 1
        if self._sends % IceStream.SCHEDULE_EVERY:
            await trio.lowlevel.checkpoint_if_cancelled()
        else:
            await trio.lowlevel.checkpoint()
        while True:
            try:
                self._sock.sendto(data, self._peer)
                return
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._sock)

    async def receive(self) -> bytes:
        self._receives += 1
        if self._receives % IceStream.SCHEDULE_EVERY:
            await trio.lowlevel.checkpoint_if_cancelled()
        else:
            await trio.lowlevel.checkpoint()
        while True:
            try:
                return self._sock.recv(65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._sock)

    async def receive_from(self) -> bytes:
        """`receive` with `recvfrom`, which an ICE agent needs (RFC 8445 12.2: whose datagram is it?)."""
        self._receives += 1
        if self._receives % IceStream.SCHEDULE_EVERY:
            await trio.lowlevel.checkpoint_if_cancelled()
        else:
            await trio.lowlevel.checkpoint()
        while True:
            try:
                return self._sock.recvfrom(65536)[0]
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._sock)


async def run_fair(args: argparse.Namespace, source: bool = False) -> Result:
    """The windowed protocol over two `FairEnd`s: the limit IceStream is measured against (with `source`,
    the same receiving with `recvfrom`: for reference)."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        for s in (a, b):
            s.setblocking(False)
            s.bind(("127.0.0.1", 0))
        end_a, end_b = FairEnd(a, b.getsockname(), source), FairEnd(b, a.getsockname(), source)
        return await trio_windowed(end_a.send, end_b.receive, end_b.send, end_a.receive, seconds=args.seconds,
                                   window=args.window, size=args.size, ack_timeout=args.ack_timeout)


@asynccontextmanager
async def connected_streams(**options: Any) -> AsyncIterator[tuple[IceStream, IceStream]]:
    """Two agents on 127.0.0.1 with `options` (besides the role), signalled and connected; their streams."""
    config = IceConfig(global_pacing=False)
    async with open_agent(controlling=True, host_addresses=LO, config=config, **options) as a, open_agent(
        controlling=False, host_addresses=LO, config=config, **options
    ) as b:
        for x, y in ((a, b), (b, a)):
            x.set_remote_parameters(y.local_parameters)
            async for c in y.gather():
                x.add_remote_candidate(Candidate.from_sdp(c.to_sdp()))
            x.add_remote_candidate(None)
        streams: dict[str, IceStream] = {}

        async def connect(key: str, agent: Agent) -> None:
            streams[key] = await agent.connect()

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(connect, "a", a)
                nursery.start_soon(connect, "b", b)
        yield streams["a"], streams["b"]


async def run_iceagent(args: argparse.Namespace, nowait: bool = False) -> Result:
    async with connected_streams() as (sa, sb):
        if not nowait:
            return await trio_windowed(sa.send, sb.receive, sb.send, sa.receive, seconds=args.seconds,
                                       window=args.window, size=args.size, ack_timeout=args.ack_timeout)

        # The checkpoint-free calls, as aioice's send/recv behave: no scheduling round per datagram.
        async def send(data: bytes) -> None:
            sa.send_nowait(data)

        async def receive() -> bytes:
            try:
                return sb.receive_nowait()
            except trio.WouldBlock:
                return await sb.receive()

        return await trio_windowed(send, receive, sb.send, sa.receive, seconds=args.seconds,
                                   window=args.window, size=args.size, ack_timeout=args.ack_timeout)


# ---- the same protocol on asyncio, for aioice ----


async def asyncio_windowed(
    send: Callable[[bytes], Awaitable[None]],
    receive: Callable[[], Awaitable[bytes]],
    send_ack: Callable[[bytes], Awaitable[None]],
    receive_ack: Callable[[], Awaitable[bytes]],
    *,
    seconds: float,
    window: int,
    size: int,
    ack_timeout: float,
    peer_pid: int | None = None,
) -> Result:
    """`trio_windowed`'s protocol on asyncio (aioice's side of the comparison)."""
    payload = b"\xab" * size
    half = max(1, window // 2)
    received = 0
    last_rx = 0.0
    lost = 0

    async def receiver() -> None:
        nonlocal received, last_rx
        while True:
            data = await receive()
            if len(data) != size:
                continue
            received += 1
            last_rx = time.perf_counter()
            if received % half == 0:
                await send_ack(received.to_bytes(8, "big"))

    task = asyncio.create_task(receiver())
    await asyncio.sleep(0)
    p0 = process_cpu(peer_pid)
    c0 = time.process_time()
    t0 = time.perf_counter()
    end = t0 + seconds
    sent = credited = 0
    while time.perf_counter() < end:
        while sent - credited < window:
            await send(payload)
            sent += 1
        try:
            ack = int.from_bytes(await asyncio.wait_for(receive_ack(), ack_timeout), "big")
            credited = max(credited, ack)
        except asyncio.TimeoutError:
            lost += sent - max(credited, received)
            credited = sent
    await asyncio.sleep(min(0.05, ack_timeout))  # let the last datagrams in flight arrive
    cpu = time.process_time() - c0
    span = time.perf_counter() - t0
    peer_cpu = process_cpu(peer_pid) - p0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    lost = max(lost, sent - received)
    return Result(received, lost, last_rx - t0, cpu, size, peer_cpu, span)


async def run_aioice(args: argparse.Namespace) -> Result:
    a = aioice.Connection(ice_controlling=True, stun_server=None, use_ipv6=False)
    b = aioice.Connection(ice_controlling=False, stun_server=None, use_ipv6=False)
    try:
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        for x, y in ((a, b), (b, a)):
            x.remote_username, x.remote_password = y.local_username, y.local_password
            for c in y.local_candidates:
                await x.add_remote_candidate(aioice.Candidate.from_sdp(c.to_sdp()))
            await x.add_remote_candidate(None)
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 10)
        return await asyncio_windowed(a.send, b.recv, b.send, a.recv, seconds=args.seconds, window=args.window,
                                      size=args.size, ack_timeout=args.ack_timeout)
    finally:
        await a.close()
        await b.close()


# ---- report ----


def median_rate(results: list[Result]) -> float:
    return statistics.median(r.rate for r in results)


def median_cpu_rate(results: list[Result]) -> float:
    return statistics.median(r.cpu_rate for r in results)


FAIR = "fair limit"
FAIR_FROM = "fair, recvfrom"
RAW = "raw trio.socket"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="sending time per run (default 2)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per implementation, interleaved; the median is shown (default 3)")
    parser.add_argument("--window", type=int, default=32, help="max unacknowledged datagrams (default 32)")
    parser.add_argument("--size", type=int, default=1000, help="datagram payload size in bytes (default 1000)")
    parser.add_argument("--ack-timeout", type=float, default=0.05,
                        help="seconds to wait for an ack before writing the window off as lost (default 0.05)")
    args = parser.parse_args(argv)
    if args.size < 9:
        parser.error("--size must be at least 9 (acks are 8 bytes)")

    results: dict[str, list[Result]] = {FAIR: [], FAIR_FROM: [], RAW: [], "iceagent": [], "iceagent nowait": [],
                                        "aioice": []}
    for _ in range(args.repeat):  # interleaved, so a slow moment of the machine hits all of them
        results[FAIR].append(trio.run(run_fair, args))
        results[FAIR_FROM].append(trio.run(run_fair, args, True))
        results[RAW].append(trio.run(run_raw, args))
        results["iceagent"].append(trio.run(run_iceagent, args))
        results["iceagent nowait"].append(trio.run(run_iceagent, args, True))
        results["aioice"].append(asyncio.run(run_aioice(args)))

    fair, fair_cpu = median_rate(results[FAIR]), median_cpu_rate(results[FAIR])
    raw = median_rate(results[RAW])
    print(f"throughput on 127.0.0.1, {args.size}-byte datagrams, window {args.window}, "
          f"{args.seconds:g} s per run, median of {args.repeat} interleaved runs (python {sys.version.split()[0]}, "
          f"trio {trio.__version__}, aioice {aioice.__version__})")
    print(f"{'':16} {'datagrams/s':>12} {'MB/s':>6} {'% of fair':>9} {'% of raw':>8} {'per CPU-s':>10} "
          f"{'% of fair':>9} {'lost':>5}   all runs (datagrams/s)")
    for name, rs in results.items():
        rate, cpu_rate = median_rate(rs), median_cpu_rate(rs)
        runs = ", ".join(f"{x.rate:,.0f}" for x in rs)
        print(f"{name:16} {rate:12,.0f} {rate * args.size / 1e6:6.1f} {100 * rate / fair:8.1f}% "
              f"{100 * rate / raw:7.1f}% {cpu_rate:10,.0f} {100 * cpu_rate / fair_cpu:8.1f}% "
              f"{sum(x.lost for x in rs):5d}   {runs}")
    ice, aio = median_rate(results["iceagent"]), median_rate(results["aioice"])
    ice_cpu = median_cpu_rate(results["iceagent"])
    print(f"iceagent: {100 * ice / fair:.1f}% of the fair limit by wall clock, {100 * ice_cpu / fair_cpu:.1f}% "
          f"per CPU-second; {ice / aio:.2f}x aioice "
          f"(target > 1: {'met' if ice > aio else 'NOT met'})")
    print(f"aioice: {100 * aio / fair:.1f}% of the fair limit (aioice runs on asyncio; the limit is Trio's)")
    print("fair limit: stdlib non-blocking sockets, wait only on EAGAIN, a scheduling round every "
          f"{IceStream.SCHEDULE_EVERY} calls (IceStream's discipline); 'fair, recvfrom': the same receiving with "
          "recvfrom, as ICE must (RFC 8445 12.2 needs the source), for reference; raw trio.socket: a scheduling round "
          "per datagram (trio.socket's sendto/recvfrom), slower than the fair limit for that reason alone")
    print("per CPU-s: delivered datagrams per second of process CPU time (user+system), steadier than wall-clock "
          "rates when other work shares the machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
