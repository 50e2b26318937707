"""`iceagent demo`: two agents in one process connect, show the pair matrix, timings and a data exchange.

This is the interim demo: both agents on loopback (127.0.0.1, nothing leaves the machine). The
front-door issue moves it onto the simulated NATs of the vnet plugin with embedded STUN and TURN.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import trio
from rich.console import Console

from .agent import Agent, IceStream
from .config import IceConfig
from .display import print_pairs
from .ice.candidate import Candidate
from .states import IceState


def register(subparsers: Any) -> None:
    from .cli import add_command

    p = add_command(subparsers, "demo", run, help="two agents connect on loopback and exchange data")
    p.add_argument("--address", default="127.0.0.1", help="local address for both agents (default 127.0.0.1)")
    p.add_argument("--count", type=int, default=2000, help="datagrams to exchange (default 2000)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")


async def _signal(src: Agent, dst: Agent) -> None:
    dst.set_remote_parameters(src.local_parameters)
    async for cand in src.gather():
        dst.add_remote_candidate(Candidate.from_sdp(cand.to_sdp()))
    dst.add_remote_candidate(None)


async def _exchange(sa: IceStream, sb: IceStream, count: int) -> tuple[int, float]:
    """Send `count` 1000-byte datagrams a->b in windows of 64 acknowledged by b; returns (received, seconds)."""
    payload = b"x" * 1000
    received = 0
    all_in = trio.Event()
    start = trio.current_time()

    async def receiver() -> None:
        nonlocal received
        while received < count:
            await sb.receive()
            received += 1
            if received % 32 == 0 or received == count:
                await sb.send(b"ack")
        all_in.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        sent = 0
        while sent < count:
            burst = min(64, count - sent)
            for _ in range(burst):
                await sa.send(payload)
            sent += burst
            with trio.move_on_after(0.2):
                await sa.receive()
        with trio.move_on_after(1.0):
            await all_in.wait()
        nursery.cancel_scope.cancel()
    return received, trio.current_time() - start


async def _demo(args: argparse.Namespace) -> dict[str, Any]:
    from . import open_agent

    cfg = IceConfig(global_pacing=False)
    addresses = [args.address]
    t0 = trio.current_time()
    async with (
        open_agent(controlling=True, host_addresses=addresses, config=cfg, name="A") as a,
        open_agent(controlling=False, host_addresses=addresses, config=cfg, name="B") as b,
    ):
        await _signal(a, b)
        await _signal(b, a)
        t_signal = trio.current_time()
        streams: dict[str, IceStream] = {}

        async def conn(key: str, agent: Agent) -> None:
            streams[key] = await agent.connect()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn, "a", a)
            nursery.start_soon(conn, "b", b)
        t_connected = trio.current_time()
        with trio.move_on_after(2):
            await a.state.wait_value(IceState.COMPLETED)
        t_completed = trio.current_time()
        received, seconds = await _exchange(streams["a"], streams["b"], args.count)
        pair = a.selected_pair
        assert pair is not None
        return {
            "agents": {"A": a.stats(), "B": b.stats()},
            "selected_pair": {"local": pair.local.to_sdp(), "remote": pair.remote.to_sdp()},
            "rtt_ms": None if pair.rtt is None else pair.rtt * 1000,
            "gather_ms": (t_signal - t0) * 1000,
            "connect_ms": (t_connected - t_signal) * 1000,
            "complete_ms": (t_completed - t_signal) * 1000,
            "datagrams_sent": args.count,
            "datagrams_received": received,
            "rate_datagrams_per_s": received / seconds if seconds > 0 else None,
        }


def run(args: argparse.Namespace) -> int:
    summary = trio.run(_demo, args)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    console = Console()
    for name in ("A", "B"):
        print_pairs(
            summary["agents"][name], title=f"agent {name} ({summary['agents'][name]['state']})", console=console
        )
    sel = summary["selected_pair"]
    console.print(f"selected pair: {sel['local']}  <->  {sel['remote']}")
    rtt = summary["rtt_ms"]
    console.print(
        f"gathering {summary['gather_ms']:.1f} ms, connected in {summary['connect_ms']:.1f} ms, "
        f"nominated in {summary['complete_ms']:.1f} ms, rtt {'-' if rtt is None else f'{rtt:.3f}'} ms"
    )
    rate = summary["rate_datagrams_per_s"] or 0.0
    console.print(
        f"data: {summary['datagrams_received']}/{summary['datagrams_sent']} datagrams of 1000 bytes, "
        f"{rate:,.0f} datagrams/s ({rate * 8000 / 1e6:,.1f} Mbit/s)"
    )
    sys.stdout.flush()
    return 0 if summary["datagrams_received"] == summary["datagrams_sent"] else 1
