"""Benchmark: the sans-IO ICE core alone, N agent pairs connecting in one process (no Trio, no sockets).

What it measures: N pairs of `IceGeneration` (one controlling, one controlled; one host UDP candidate
each, `IceConfig(global_pacing=False)`) get each other's parameters, candidate and end-of-candidates, then
connect and nominate (RFC 8445 regular nomination) by handing each other the datagrams that
`datagrams_to_send(now)` returns, driven the way the agent drives a generation (`get_timer()`,
`handle_timer(now)`, `datagrams_to_send(now)`, `take_events()`, `receive(...)`), with simulated time
jumping to the next timer when nothing moves. Each pair sends 3 checks and 3 answers and emits 8 events (4
with `--no-pair-state-events`, which leaves out the PairStateChanged events nobody would read).
Decoding each datagram (`Message.decode`, the receive task's job in the agent) is part of the timed work.

Printed, per agent (2N agents):

- CPU us: process CPU time of the connect part (set-up excluded), the median of `--runs` fresh runs;
- calls: Python-level calls (cProfile, one extra run), split into the ICE core (`iceagent.ice` and
  `stun/transaction.py`), the STUN codec (the rest of `iceagent.stun`), builtins and the rest;
- gc net: GC-tracked objects allocated minus freed during the connect (`gc.get_count()[0]` with the
  collector off): what pushes the cyclic collector's young generation towards its next collection
  (threshold 700 by default), and gc young: the young collections a run with the collector on made;
- survivors: GC-tracked objects made during the connect that are still alive after it, by type.

Counts are steady under load; CPU time is not (compare runs made in the same minute).

Run: `.venv/bin/python bench/core_connect.py [--n 1000] [--runs 5]`.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import gc
import pstats
import statistics
import time
from typing import Any

from iceagent.config import IceConfig
from iceagent.ice.candidate import Candidate, IceParameters
from iceagent.ice.generation import IceGeneration
from iceagent.stun.message import Message

Agent = tuple[IceGeneration, IceParameters, Candidate]


def host(port: int) -> Candidate:
    return Candidate(
        foundation="h1", component=1, transport="udp", priority=2130706431, address="127.0.0.1", port=port, type="host"
    )


#: `--no-pair-state-events`: the generations report only pair state changes to FAILED (IceGeneration)
PAIR_STATE_EVENTS = True


def make_pairs(n: int) -> list[tuple[Agent, Agent]]:
    """N pairs of generations that have gathered (set-up, not timed)."""
    config = IceConfig(global_pacing=False)
    pairs = []
    for i in range(n):
        pa = IceParameters(ufrag=f"a{i:05d}", pwd="aPassword0123456789abcd")
        pb = IceParameters(ufrag=f"b{i:05d}", pwd="bPassword0123456789abcd")
        # the argument only when it is off: the script runs against a tree from before it, for a comparison
        quiet: dict[str, Any] = {} if PAIR_STATE_EVENTS else {"pair_state_events": False}
        a = IceGeneration(local=pa, controlling=True, tie_breaker=1, config=config, **quiet)
        b = IceGeneration(local=pb, controlling=False, tie_breaker=2, config=config, **quiet)
        ca, cb = host(10000 + i), host(30000 + i)
        a.add_local_candidate(ca, ca)
        b.add_local_candidate(cb, cb)
        a.gathering_done()
        b.gathering_done()
        pairs.append(((a, pa, ca), (b, pb, cb)))
    return pairs


def connect(pairs: list[tuple[Agent, Agent]]) -> int:
    """Signal and connect every pair, one pair after the other; returns how many events were taken."""
    now = 1.0
    for (a, pa, ca), (b, pb, cb) in pairs:
        a.set_remote_parameters(pb)
        b.set_remote_parameters(pa)
        a.add_remote_candidate(cb)
        a.add_remote_candidate(None)
        b.add_remote_candidate(ca)
        b.add_remote_candidate(None)
    events = 0
    decode = Message.decode
    for (a, _, ca), (b, _, cb) in pairs:
        sides = ((a, b, cb), (b, a, ca))
        for _ in range(200):
            moved = False
            for gen, other, other_base in sides:
                if gen.get_timer() <= now:
                    gen.handle_timer(now)
                for t in gen.datagrams_to_send(now):
                    moved = True
                    other.receive(decode(t.data), t.data, t.base.addr, other_base, now)
                events += len(gen.take_events())
            if not moved:
                if a.nominated is not None and b.nominated is not None and not a._out and not b._out:
                    break
                now = max(now, min(a.get_timer(), b.get_timer()))
    return events


def check(pairs: list[tuple[Agent, Agent]]) -> None:
    bad = sum(1 for (a, *_), (b, *_) in pairs if a.nominated is None or b.nominated is None)
    if bad:
        raise SystemExit(f"{bad} pairs did not nominate")


def cpu_run(n: int) -> float:
    pairs = make_pairs(n)
    gc.collect()
    c0 = time.process_time()
    connect(pairs)
    cpu = time.process_time() - c0
    check(pairs)
    return cpu


def calls_run(n: int) -> dict[str, int]:
    pairs = make_pairs(n)
    profile = cProfile.Profile()
    profile.enable()
    connect(pairs)
    profile.disable()
    check(pairs)
    out: collections.Counter[str] = collections.Counter()
    stats: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for (filename, _line, _name), (_cc, ncalls, *_rest) in stats.items():
        if "iceagent/ice/" in filename or filename.endswith("stun/transaction.py") or "iceagent.ice." in filename:
            out["core"] += ncalls
        elif "iceagent/stun/" in filename or "iceagent.stun." in filename or "<stun" in filename:
            out["codec"] += ncalls
        elif filename == "~":
            out["builtins"] += ncalls
        else:
            out["other"] += ncalls
    return out


def gc_run(n: int) -> tuple[int, int, collections.Counter[str]]:
    """(net GC-tracked allocations, young collections with the collector on, survivors by type)."""
    pairs = make_pairs(n)
    young = 0

    def count(phase: str, info: dict[str, int]) -> None:
        nonlocal young
        if phase == "start" and info["generation"] == 0:
            young += 1

    gc.collect()
    gc.callbacks.append(count)
    connect(pairs)
    gc.callbacks.remove(count)
    check(pairs)

    pairs = make_pairs(n)
    gc.collect()
    gc.freeze()  # everything made so far leaves the young generation: what is left there is the connect's
    gc.disable()
    try:
        before = gc.get_count()[0]
        connect(pairs)
        net = gc.get_count()[0] - before
        survivors = collections.Counter(type(o).__name__ for o in gc.get_objects(generation=0))
    finally:
        gc.enable()
        gc.unfreeze()
    check(pairs)
    return net, young, survivors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="agent pairs (default 1000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs, the median counts (default 5)")
    parser.add_argument(
        "--no-pair-state-events",
        action="store_true",
        help="IceGeneration(pair_state_events=False): only pair state changes to FAILED are events",
    )
    args = parser.parse_args()
    global PAIR_STATE_EVENTS
    PAIR_STATE_EVENTS = not args.no_pair_state_events
    agents = 2 * args.n
    cpus = [cpu_run(args.n) for _ in range(args.runs)]
    calls = calls_run(args.n)
    net, young, survivors = gc_run(args.n)
    print(f"{args.n} pairs ({agents} agents), per agent:")
    print(
        f"  CPU        {statistics.median(cpus) / agents * 1e6:6.1f} us (median of {args.runs}; "
        f"min {min(cpus) / agents * 1e6:.1f})"
    )
    total = sum(calls.values())
    print(
        f"  calls      {total / agents:6.1f}  ("
        + ", ".join(f"{k} {calls[k] / agents:.1f}" for k in ("core", "codec", "builtins", "other"))
        + ")"
    )
    print(f"  gc net     {net / agents:6.1f}  GC-tracked objects allocated minus freed; {young} young collections")
    print("  survivors  " + ", ".join(f"{k} {v / agents:.2f}" for k, v in survivors.most_common(8)))


if __name__ == "__main__":
    main()
