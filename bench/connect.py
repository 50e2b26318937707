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

`--processes 2`: the two agents in two processes (this one controlling, a child controlled), as two
computers run them: each process has its own RFC 8445 14.2 pacer (`--global-pacing`), so nomination's
three new transactions (the controlling check, the controlled side's triggered check, the USE-CANDIDATE
check) are not spaced 5 ms apart by one shared pacer. Per run both open an agent and gather, then
exchange parameters and candidates (SDP lines, one JSON line each way over a socketpair) before the
clock starts; the parent sleeps 2 x 5 ms (both pacers idle), reads the clock and sends "go"; each side
hands the other's parameters and candidates to its agent and reports when its `connect()` returned and
when it reached COMPLETED. Both read `time.perf_counter()`, which on Linux is CLOCK_MONOTONIC: one clock
for every process on the machine, so the child's times are comparable with the parent's t0 (the child
starts late by the socketpair's latency, tens of microseconds, which the figure includes). aioice is not
run in this mode.

`--timer-lateness`: also print how late the paced checks went out against the time they waited for (a
pacer slot or Ta), as the session task's timer woke them: Trio waits in epoll, whose timeout is in whole
milliseconds, rounded up.

`--timeline` (both modes): print one run's timeline (every check sent and received, through the
`iceagent_check` hook; when each paced check was due, its pacer slot or Ta; every wake-up of the event
loop from a timed wait and how late it was, a Trio instrument), and the medians over all runs of where
COMPLETED's time goes: handing over until the first check, until the nominating check was due (the
pacing floor: 10 ms in one process, Ta in two), how late it left, and until both were COMPLETED.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import aioice
import aioice.ice
import trio

from iceagent import Agent, Candidate, IceConfig, IceParameters, IceState, open_agent
from iceagent.hookspecs import hookimpl
from iceagent.ice.pacing import GLOBAL_INTERVAL, CheckScheduler
from iceagent.plugins import get_plugin_manager
from iceagent.stun.attributes import Attr

LO = ["127.0.0.1"]
SCRIPT = os.path.abspath(__file__)


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
        TIMELINE.mark(done[key], "A" if agent.controlling else "B", "COMPLETED")

    t0 = time.perf_counter()
    TIMELINE.mark(t0, "", "t0: parameters and candidates handed over")
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
        TIMELINE.new_run(counted=i >= warmup)
        with trio.fail_after(30):
            c1, c2 = await iceagent_once(config)
        if i >= warmup:
            connected.append(c1)
            completed.append(c2)
    return connected, completed


# ---- iceagent, the two agents in two processes ----


class Lines:
    """JSON messages, one per line, over one end of the socketpair between the two processes."""

    def __init__(self, sock: socket.socket) -> None:
        self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        self._buffer = b""

    async def send(self, message: dict[str, object]) -> None:
        await self._stream.send_all(json.dumps(message).encode() + b"\n")

    async def receive(self) -> dict[str, object] | None:
        """The next message; None once the other process closed its end."""
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        result: dict[str, object] = json.loads(line)
        return result

    async def aclose(self) -> None:
        await self._stream.aclose()


async def signal_and_run(agent: Agent, lines: Lines, parent: bool) -> tuple[float, float, float]:
    """One run of one side: exchange parameters and candidates (untimed), then on "go" hand them over and wait
    for `connect()` and COMPLETED; returns (t0, connected, completed), all `time.perf_counter()` readings."""
    cands = [c.to_sdp() async for c in agent.gather()]
    await lines.send({"params": agent.local_parameters.to_sdp(), "candidates": cands})
    peer = await lines.receive()
    if peer is None:
        raise EOFError
    params = IceParameters.from_sdp(peer["params"])  # type: ignore[arg-type]
    remote = [Candidate.from_sdp(c) for c in peer["candidates"]]  # type: ignore[attr-defined]
    if parent:
        await trio.sleep(2 * GLOBAL_INTERVAL)  # both processes' pacers idle (each side's last check is older)
        t0 = time.perf_counter()
        await lines.send({"go": t0})
    else:
        go = await lines.receive()
        if go is None:
            raise EOFError
        t0 = float(go["go"])  # type: ignore[arg-type]
    if parent:
        TIMELINE.mark(t0, "", "t0: parameters and candidates handed over")
    agent.set_remote_parameters(params)
    for c in remote:
        agent.add_remote_candidate(c)
    agent.add_remote_candidate(None)
    await agent.connect()
    connected = time.perf_counter()
    await agent.state.wait_value(IceState.COMPLETED)
    completed = time.perf_counter()
    TIMELINE.mark(completed, "A" if agent.controlling else "B", "COMPLETED")
    return t0, connected, completed


async def child_main(fd: int, config: IceConfig) -> None:
    """The controlled agent's process: one run per message exchange until the parent closes the socketpair."""
    lines = Lines(socket.socket(fileno=fd))
    try:
        while True:
            async with open_agent(controlling=False, host_addresses=LO, config=config) as agent:
                try:
                    with trio.fail_after(30):
                        _, connected, completed = await signal_and_run(agent, lines, parent=False)
                except (EOFError, trio.BrokenResourceError):
                    return  # the parent is done
                await lines.send({"connected": connected, "completed": completed, "events": TIMELINE.take()})
    finally:
        await lines.aclose()


async def two_process_runs(
    n: int, warmup: int, config: IceConfig, ta_ms: float, timeline: bool = False
) -> tuple[list[float], list[float]]:
    """`iceagent_runs` with the controlled agent in a child process (see the module)."""
    mine, theirs = socket.socketpair()
    command = [sys.executable, SCRIPT, "--child-fd", str(theirs.fileno()), "--ta", str(ta_ms)]
    if config.global_pacing:
        command.append("--global-pacing")
    if timeline:
        command.append("--timeline")
    child = await trio.lowlevel.open_process(command, pass_fds=[theirs.fileno()])
    theirs.close()
    lines = Lines(mine)
    connected: list[float] = []
    completed: list[float] = []
    try:
        for i in range(n + warmup):
            TIMELINE.new_run(counted=i >= warmup)
            async with open_agent(controlling=True, host_addresses=LO, config=config) as agent:
                with trio.fail_after(30):
                    t0, c1, c2 = await signal_and_run(agent, lines, parent=True)
                    other = await lines.receive()
                if other is None:
                    raise RuntimeError("the child process ended early")
                TIMELINE.merge(other.get("events"))
                if i >= warmup:
                    connected.append(max(c1, float(other["connected"])) - t0)  # type: ignore[arg-type]
                    completed.append(max(c2, float(other["completed"])) - t0)  # type: ignore[arg-type]
    finally:
        await lines.aclose()  # the child sees the end and exits
        with trio.fail_after(10):
            await child.wait()
    return connected, completed


# ---- how late the session task's timer sends paced checks ----


@contextmanager
def timer_lateness() -> Iterator[list[float]]:
    """Record, for each paced check, how long after the time it waited for (a pacer slot, or Ta) it was let
    out (`CheckScheduler.may_send` said yes); a diagnostic of Trio's timer granularity, not of ICE."""
    late: list[float] = []
    original = CheckScheduler.may_send

    def may_send(self: CheckScheduler, now: float, wanted: bool) -> bool:
        waited_for = self.deadline(wanted)
        ok = original(self, now, wanted)
        if ok and 0 < waited_for < now:  # it had to wait (not the first check, not a triggered one at once)
            late.append(now - waited_for)
        return ok

    CheckScheduler.may_send = may_send  # type: ignore[method-assign]
    try:
        yield late
    finally:
        CheckScheduler.may_send = original  # type: ignore[method-assign]


# ---- the timeline of a run ----


class Timeline(trio.abc.Instrument):
    """Events of each run as (time.perf_counter(), agent "A" controlling / "B" controlled / "", what): every check
    sent or received (the `iceagent_check` hook), when each paced check was due (its pacer slot or Ta) and how
    late it left, and every wake-up of the event loop from a timed wait (a Trio instrument)."""

    def __init__(self) -> None:
        self.on = False
        self.runs: list[list[tuple[float, str, str]]] = []
        self.events: list[tuple[float, str, str]] = []
        self._due: float | None = None  # when the check being built was due (perf_counter), set by may_send
        self._wait: tuple[float, float] = (0.0, 0.0)

    def new_run(self, counted: bool) -> None:
        self.events = []
        if counted and self.on:
            self.runs.append(self.events)

    def mark(self, at: float, side: str, what: str) -> None:
        if self.on:
            self.events.append((at, side, what))

    def take(self) -> list[tuple[float, str, str]]:
        events, self.events = self.events, []
        return events

    def merge(self, events: object) -> None:
        if self.on and isinstance(events, list):
            self.events.extend((float(t), str(side), str(what)) for t, side, what in events)

    @hookimpl
    def iceagent_check(self, agent: Agent, direction: str, kind: str, message: object, **_: object) -> None:
        what = f"{direction} {kind}" + (" USE-CANDIDATE" if Attr.USE_CANDIDATE in message else "")  # type: ignore[operator]
        now = time.perf_counter()
        if direction == "send" and kind == "request" and self._due is not None:
            what += f" ({(now - self._due) * 1e3:.3f} ms after it was due)"
            self.events.append((self._due, "A" if agent.controlling else "B", "due: " + what.split(" (")[0]))
        self._due = None
        self.mark(now, "A" if agent.controlling else "B", what)

    def before_io_wait(self, timeout: float) -> None:
        self._wait = (time.perf_counter(), timeout)

    def after_io_wait(self, timeout: float) -> None:
        start, asked = self._wait
        now = time.perf_counter()
        if asked > 0 and now - start >= asked:  # woken by its timeout (not by a socket)
            late = (now - start - asked) * 1e3
            self.mark(now, "", f"loop woke {late:.3f} ms after the {asked * 1e3:.3f} ms it asked")

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record (hook, paced checks' due times) while inside; the instrument is added by `instrument()`."""
        original = CheckScheduler.may_send
        pm = get_plugin_manager()

        def may_send(scheduler: CheckScheduler, now: float, wanted: bool) -> bool:
            due = scheduler.deadline(wanted)
            ok = original(scheduler, now, wanted)
            if ok and 0 < due <= now:
                self._due = time.perf_counter() - (now - due)
            return ok

        self.on = True
        pm.register(self)
        CheckScheduler.may_send = may_send  # type: ignore[method-assign]
        try:
            yield
        finally:
            CheckScheduler.may_send = original  # type: ignore[method-assign]
            pm.unregister(self)

    def report(self) -> None:
        """One run's timeline (the run with the median COMPLETED), then medians of where the time went."""
        def completed(run: list[tuple[float, str, str]]) -> float:
            t0 = min(t for t, _, w in run if w.startswith("t0"))
            return max(t for t, _, w in run if w == "COMPLETED") - t0

        runs = [sorted(r) for r in self.runs if any(w == "COMPLETED" for _, _, w in r)]
        if not runs:
            return
        runs.sort(key=completed)
        median_run = runs[len(runs) // 2]
        t0 = min(t for t, _, w in median_run if w.startswith("t0"))
        print("timeline of the median run (ms from t0; A controlling, B controlled):")
        for t, side, what in median_run:
            if t >= t0:
                print(f"  {(t - t0) * 1e3:8.3f}  {side:1}  {what}")
        phases: dict[str, list[float]] = {k: [] for k in (
            "t0 -> first check sent", "first check -> nominating check due", "nominating check: left late by",
            "nominating check sent -> both COMPLETED", "total")}
        for run in runs:
            start = min(t for t, _, w in run if w.startswith("t0"))
            first = min(t for t, _, w in run if w.startswith("send request"))
            due = [t for t, _, w in run if w == "due: send request USE-CANDIDATE"]
            nominate = min(t for t, _, w in run if w.startswith("send request USE-CANDIDATE"))
            due_at = due[0] if due else nominate
            end = max(t for t, _, w in run if w == "COMPLETED")
            parts = (first - start, due_at - first, nominate - due_at, end - nominate, end - start)
            for key, value in zip(phases, parts, strict=True):
                phases[key].append(value)
        print(f"where COMPLETED's time goes, medians of {len(runs)} runs (the parts need not add up to the total):")
        for key, values in phases.items():
            print(f"  {key:42} {statistics.median(values) * 1e3:7.3f} ms")


TIMELINE = Timeline()


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
    parser.add_argument("--processes", type=int, choices=[1, 2], default=1,
                        help="2: the agents in two processes, each with its own pacer (iceagent only)")
    parser.add_argument("--timer-lateness", action="store_true",
                        help="also print how late paced checks went out (one-process mode)")
    parser.add_argument("--timeline", action="store_true",
                        help="also print one run's timeline and where COMPLETED's time goes (see the module)")
    parser.add_argument("--child-fd", type=int, help=argparse.SUPPRESS)  # the controlled side of --processes 2
    args = parser.parse_args(argv)

    config = IceConfig(ta=args.ta / 1000, global_pacing=args.global_pacing)
    recording = TIMELINE.recording() if args.timeline else nullcontext()
    instruments = [TIMELINE] if args.timeline else []
    if args.child_fd is not None:
        with recording:
            trio.run(child_main, args.child_fd, config, instruments=instruments)
        return 0
    late: list[float] = []
    if args.processes == 2:
        args.no_aioice = True
        with recording:
            ice_connected, ice_completed = trio.run(two_process_runs, args.runs, args.warmup, config, args.ta,
                                                    args.timeline, instruments=instruments)
    else:
        with timer_lateness() as late, recording:
            ice_connected, ice_completed = trio.run(iceagent_runs, args.runs, args.warmup, config,
                                                    instruments=instruments)
    aio = [] if args.no_aioice else asyncio.run(aioice_runs(args.runs, args.warmup))

    rows = [
        ("iceagent: both connect() returned", ice_connected),
        ("iceagent: both COMPLETED", ice_completed),
        ("aioice: both connect() returned", aio),
    ][: 2 if args.no_aioice else 3]
    where = "in two processes (one pacer each)" if args.processes == 2 else "in one process"
    print(f"connect time, 2 agents {where} on 127.0.0.1, host candidates, {args.runs} runs each, "
          f"iceagent with ta={args.ta:g} ms and global_pacing={args.global_pacing} "
          f"(python {sys.version.split()[0]}, trio {trio.__version__}, aioice {aioice.__version__})")
    print(f"{'':36} {'median':>9} {'p90':>9} {'min':>9}")
    for name, values in rows:
        print(f"{name:36} {statistics.median(values) * 1e3:7.2f}ms {percentile(values, 90) * 1e3:7.2f}ms "
              f"{min(values) * 1e3:7.2f}ms")
    if args.timer_lateness and late:
        print(f"paced checks let out after the slot or Ta they waited for ({len(late)} checks): median "
              f"{statistics.median(late) * 1e3:.2f} ms, p90 {percentile(late, 90) * 1e3:.2f} ms, max "
              f"{max(late) * 1e3:.2f} ms (Trio's epoll timeout is whole milliseconds, rounded up)")
    if args.timeline:
        TIMELINE.report()
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
