"""`iceagent demo`: two agents, each behind its own simulated NAT, connect through the virtual internet.

Everything runs in this process on the vnet plugin (found through the `iceagent_networks` hook), with
the embedded STUN server (RFC 5780 pair of addresses) and the embedded TURN server on the virtual
internet; nothing is sent off the machine. By default the simulated clock runs (MockClock with
autojump), so times printed are simulated network times; `--real-time` uses the wall clock.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import trio
import trio.testing
from rich.console import Console
from rich.live import Live

from ..agent import Agent, IceStream
from ..config import IceConfig
from ..hookspecs import hookimpl
from ..ice.candidate import Candidate
from ..plugins import create_plugin_manager, get_plugin_manager
from ..states import IceState
from ..uri import IceServer
from .display import pair_table, print_pairs

TURN_USER, TURN_PASSWORD = "demo", "demo-secret"


def register(subparsers: Any) -> None:
    from . import add_command

    p = add_command(subparsers, "demo", run,
                    help="two agents behind simulated NATs connect through STUN/TURN on a virtual internet")
    p.add_argument("--nat-a", default="eim-apdf",
                   help="NAT of agent A: none, full-cone, restricted-cone, port-restricted, symmetric, or "
                        "{eim,adm,apdm}-{eif,adf,apdf} (default eim-apdf)")
    p.add_argument("--nat-b", default="symmetric", help="NAT of agent B (default symmetric)")
    p.add_argument("--loss", type=float, default=0.0, help="datagram loss rate on the internet, 0..1 (default 0)")
    p.add_argument("--rtt", type=float, default=0.06, help="internet round-trip time in seconds (default 0.06)")
    p.add_argument("--relay-only", action="store_true", help="ice_transport_policy='relay' on both agents")
    p.add_argument("--seed", type=int, default=1, help="seed of the link randomness (default 1)")
    p.add_argument("--real-time", action="store_true", help="run on the wall clock instead of simulated time")
    p.add_argument("--count", type=int, default=1000, help="datagrams to exchange (default 1000)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary only")
    p.add_argument("--roam", action="store_true",
                   help="host A moves to a new LAN (behind a NAT like --nat-a) mid-transfer; print the gap in the data")


class LiveMatrix:
    """Observer plugin: redraws both agents' pair matrices whenever a pair or a state changes."""

    def __init__(self, live: Live | None) -> None:
        self.live = live
        self.agents: dict[str, Agent] = {}

    def _refresh(self) -> None:
        if self.live is None:
            return
        from rich.console import Group

        self.live.update(Group(*(pair_table(a.stats(), title=f"agent {n} ({a.state.value.value})")
                                 for n, a in sorted(self.agents.items()))))

    @hookimpl
    def iceagent_pair_state_changed(self, agent: Agent, pair: object, old: object, new: object) -> None:
        self.agents[agent.name] = agent
        self._refresh()

    @hookimpl
    def iceagent_state_changed(self, agent: Agent, old: IceState, new: IceState) -> None:
        self.agents[agent.name] = agent
        self._refresh()


async def _signal(src: Agent, dst: Agent) -> None:
    dst.set_remote_parameters(src.local_parameters)
    async for cand in src.gather():
        dst.add_remote_candidate(Candidate.from_sdp(cand.to_sdp()))
    dst.add_remote_candidate(None)


async def _exchange(sa: IceStream, sb: IceStream, count: int) -> tuple[int, float]:
    """`count` 1000-byte datagrams a->b in windows of 32 acknowledged by b: (received, seconds)."""
    payload = b"x" * 1000
    received = 0
    all_in = trio.Event()

    async def receiver() -> None:
        nonlocal received
        while received < count:
            await sb.receive()
            received += 1
            if received % 16 == 0 or received == count:
                await sb.send(b"ack")
        all_in.set()

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        sent = 0
        while sent < count:
            burst = min(32, count - sent)
            for _ in range(burst):
                await sa.send(payload)
            sent += burst
            with trio.move_on_after(0.5):
                await sa.receive()
        with trio.move_on_after(2.0):
            await all_in.wait()
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    return received, elapsed


async def _demo(args: argparse.Namespace, scenario: Any, live: Live | None) -> dict[str, Any]:
    from .. import open_agent
    from ..stun.server import open_stun_server
    from ..turn.server import open_turn_server

    (stun_ip, stun_port), (alt_ip, _) = scenario.stun_addresses[:2]
    turn_ip, turn_port = scenario.turn_address
    servers = [
        IceServer(urls=[f"stun:{stun_ip}:{stun_port}"]),
        IceServer(urls=[f"turn:{turn_ip}:{turn_port}?transport=udp"], username=TURN_USER, credential=TURN_PASSWORD),
    ]
    policy = "relay" if args.relay_only else "all"
    observer = LiveMatrix(live)
    pm = create_plugin_manager()
    pm.register(observer)
    config = IceConfig(failed_timeout=20.0)
    async with (
        open_stun_server(scenario.server_network, [f"{stun_ip}:{stun_port}"], alternate=alt_ip),
        open_turn_server(scenario.server_network, [f"{turn_ip}:{turn_port}"], users={TURN_USER: TURN_PASSWORD},
                         realm="vnet"),
    ):
        t0 = trio.current_time()
        async with (
            open_agent(controlling=True, network=scenario.network_a, ice_servers=servers, name="A",
                       ice_transport_policy=policy, config=config, plugin_manager=pm) as a,
            open_agent(controlling=False, network=scenario.network_b, ice_servers=servers, name="B",
                       ice_transport_policy=policy, config=config, plugin_manager=pm) as b,
        ):
            observer.agents = {"A": a, "B": b}
            await _signal(a, b)
            await _signal(b, a)
            t_gathered = trio.current_time()
            streams: dict[str, IceStream] = {}

            async def conn(key: str, agent: Agent) -> None:
                streams[key] = await agent.connect()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn, "a", a)
                nursery.start_soon(conn, "b", b)
            t_connected = trio.current_time()
            with trio.move_on_after(5):
                await a.state.wait_value(IceState.COMPLETED)
                await b.state.wait_value(IceState.COMPLETED)
            t_completed = trio.current_time()
            received, seconds = await _exchange(streams["a"], streams["b"], args.count)
            pair = a.selected_pair
            assert pair is not None
            return {
                "nat_a": args.nat_a,
                "nat_b": args.nat_b,
                "loss": args.loss,
                "rtt_s": args.rtt,
                "seed": args.seed,
                "clock": "real" if args.real_time else "simulated",
                "agents": {"A": a.stats(), "B": b.stats()},
                "selected_pair": {"local": pair.local.to_sdp(), "remote": pair.remote.to_sdp(),
                                  "types": f"{pair.local.type}/{pair.remote.type}"},
                "pair_rtt_ms": None if pair.rtt is None else pair.rtt * 1000,
                "gather_ms": (t_gathered - t0) * 1000,
                "connect_ms": (t_connected - t_gathered) * 1000,
                "complete_ms": (t_completed - t_gathered) * 1000,
                "datagrams_sent": args.count,
                "datagrams_received": received,
                "rate_datagrams_per_s": received / seconds if seconds > 0 else None,
            }


def _scenario(args: argparse.Namespace) -> Any:
    factories: dict[str, Any] = {}
    for result in get_plugin_manager().hook.iceagent_networks():
        factories.update(result or {})
    factory = factories.get("vnet")
    if factory is None:
        return None
    return factory(nat_a=args.nat_a, nat_b=args.nat_b, loss=args.loss, rtt=args.rtt, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    from . import UsageError

    if not 0 <= args.loss < 1:
        raise UsageError(f"--loss must be in [0, 1), not {args.loss}")
    try:
        scenario = _scenario(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if scenario is None:
        print("iceagent demo: the virtual network plugin is not installed; install it with\n"
              "    pip install -e plugins/iceagent-vnet     (from the iceagent source tree)", file=sys.stderr)
        return 2
    console = Console() if sys.stdout.isatty() else Console(width=160, no_color=True, highlight=False)
    clock = None if args.real_time else trio.testing.MockClock(autojump_threshold=0)
    if args.roam:
        from .demo_roam import describe, roam_demo

        roamed = trio.run(roam_demo, args, scenario, clock=clock)
        print(json.dumps(roamed, indent=2) if args.json else "\n".join(describe(roamed)))
        return 0
    use_live = console.is_terminal and args.real_time and not args.json
    if not args.json:
        console.print(f"A behind {args.nat_a}, B behind {args.nat_b}; internet rtt {args.rtt * 1000:g} ms, "
                      f"loss {args.loss:.0%}; STUN and TURN servers on the virtual internet"
                      f"{'; relay only' if args.relay_only else ''} ({'real' if args.real_time else 'simulated'} time)")
    if use_live:
        with Live(console=console, refresh_per_second=10) as live:
            summary = trio.run(_demo, args, scenario, live, clock=clock)
    else:
        summary = trio.run(_demo, args, scenario, None, clock=clock)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    for name in ("A", "B"):
        print_pairs(summary["agents"][name], title=f"agent {name} ({summary['agents'][name]['state']})",
                    console=console)
    sel = summary["selected_pair"]
    console.print(f"selected pair ({sel['types']}): {sel['local']}  <->  {sel['remote']}", soft_wrap=True)
    rtt = summary["pair_rtt_ms"]
    console.print(
        f"gathering {summary['gather_ms']:.1f} ms, connected {summary['connect_ms']:.1f} ms later, "
        f"nominated at {summary['complete_ms']:.1f} ms, pair rtt {'-' if rtt is None else f'{rtt:.1f}'} ms"
    )
    rate = summary["rate_datagrams_per_s"] or 0.0
    console.print(
        f"data: {summary['datagrams_received']}/{summary['datagrams_sent']} datagrams of 1000 bytes delivered, "
        f"{rate:,.0f} datagrams/s ({rate * 8000 / 1e6:,.1f} Mbit/s, {summary['clock']} time)"
    )
    if summary["datagrams_received"] < summary["datagrams_sent"]:
        console.print("(datagrams are not retransmitted: what the simulated loss took stays lost)")
    return 0
