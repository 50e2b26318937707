"""`iceagent demo --roam`: host A moves to a new LAN behind another NAT mid-transfer; the data keeps going.

Both agents run with `auto_restart=True`. The vnet unplugs A's interface and plugs it into a new LAN
(as a laptop moving from one Wi-Fi to another); A's interface watcher reports the address gone, A
restarts at once (DESIGN.md "Continual gathering"), the demo re-signals as an application would, and
the gap in the data, each way, is printed (simulated time unless `--real-time`).
"""

from __future__ import annotations

import argparse
import itertools
from typing import Any

import trio

from ..agent import Agent, IceStream
from ..config import IceConfig
from ..ice.candidate import Candidate
from ..states import IceState
from ..uri import IceServer

#: Seconds between two datagrams of the demo's stream (each way), and so the resolution of the gap.
TICK = 0.02
#: When A moves, and how long the demo goes on after it (seconds of the stream).
MOVE_AT, AFTER = 2.0, 4.0


async def _offer(src: Agent, dst: Agent) -> None:
    dst.set_remote_parameters(src.local_parameters)
    async for cand in src.gather():
        dst.add_remote_candidate(Candidate.from_sdp(cand.to_sdp()))


async def _exchange(a: Agent, b: Agent) -> None:
    """Offer/answer: A's parameters (restarting B when they are new), B's back, candidates both ways."""
    b.set_remote_parameters(a.local_parameters)
    a.set_remote_parameters(b.local_parameters)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_offer, a, b)
        nursery.start_soon(_offer, b, a)


async def _stream(src: IceStream, dst: IceStream, arrivals: list[float]) -> None:
    async def receive() -> None:
        while True:
            await dst.receive()
            arrivals.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        while True:
            await src.send(b"x" * 200)
            await trio.sleep(TICK)


def _gap(arrivals: list[float], moved_at: float, end: float) -> float | None:
    """The longest silence from the last arrival before the move on (None: the data did not resume, i.e.
    nothing arrived in the last second)."""
    before = [i for i, t in enumerate(arrivals) if t <= moved_at]
    if not before or arrivals[-1] < end - 1.0:
        return None
    return max(b - a for a, b in itertools.pairwise(arrivals[before[-1]:]))


def _where(agent: Agent) -> str:
    pair = agent.selected_pair
    if pair is None:
        return "no pair"
    return f"{pair.local.type} {pair.local.address}:{pair.local.port} -> {pair.remote.address}:{pair.remote.port}"


async def roam_demo(args: argparse.Namespace, scenario: Any) -> dict[str, Any]:
    """Run the roaming demo on a vnet scenario; returns the summary."""
    from iceagent_vnet import Lan, Router, nat_preset  # the scenario came from the vnet plugin: it is there

    from .. import open_agent
    from ..stun.server import open_stun_server
    from ..turn.server import open_turn_server
    from .demo import TURN_PASSWORD, TURN_USER

    (stun_ip, stun_port), (alt_ip, _) = scenario.stun_addresses[:2]
    turn_ip, turn_port = scenario.turn_address
    servers = [
        IceServer(urls=[f"stun:{stun_ip}:{stun_port}"]),
        IceServer(urls=[f"turn:{turn_ip}:{turn_port}?transport=udp"], username=TURN_USER, credential=TURN_PASSWORD),
    ]
    config = IceConfig(failed_timeout=20.0)
    host = scenario.host_a
    async with (
        open_stun_server(scenario.server_network, [f"{stun_ip}:{stun_port}"], alternate=alt_ip),
        open_turn_server(scenario.server_network, [f"{turn_ip}:{turn_port}"], users={TURN_USER: TURN_PASSWORD},
                         realm="vnet"),
        open_agent(controlling=True, network=scenario.network_a, ice_servers=servers, name="A",
                   auto_restart=True, config=config) as a,
        open_agent(controlling=False, network=scenario.network_b, ice_servers=servers, name="B",
                   auto_restart=True, config=config) as b,
        trio.open_nursery() as nursery,
    ):
        await _exchange(a, b)
        sa, sb = await a.connect(), await b.connect()
        with trio.move_on_after(5):
            await a.state.wait_value(IceState.COMPLETED)
        before = {"address": host.address, "pair": _where(a)}

        async def resignal() -> None:
            async for _generation in a.generation.eventual_values(lambda g: g > 0):
                await _exchange(a, b)

        nursery.start_soon(resignal)
        a_to_b: list[float] = []
        b_to_a: list[float] = []
        nursery.start_soon(_stream, sa, sb, a_to_b)
        nursery.start_soon(_stream, sb, sa, b_to_a)
        await trio.sleep(MOVE_AT)
        new_lan = Lan("192.168.3.0/24", name="lan_c")
        router = Router(scenario.internet, new_lan, nat=nat_preset(args.nat_a), name="nat_c")
        moved_at = trio.current_time()
        host.detach(host.attachments[0])
        host.attach(new_lan)
        await trio.sleep(AFTER)
        end = trio.current_time()
        summary = {
            "clock": "real" if args.real_time else "simulated",
            "before": before,
            "after": {"address": host.address, "behind": router.public_address, "pair": _where(a)},
            "gap_a_to_b_s": _gap(a_to_b, moved_at, end),
            "gap_b_to_a_s": _gap(b_to_a, moved_at, end),
            "datagrams_a_to_b": len(a_to_b),
            "datagrams_b_to_a": len(b_to_a),
            "generation": a.generation.value,
            "state": a.state.value.value,
        }
        nursery.cancel_scope.cancel()
    return summary


def describe(summary: dict[str, Any]) -> list[str]:
    """The lines `iceagent demo --roam` prints."""

    def gap(value: float | None) -> str:
        return "data did not resume" if value is None else f"{value * 1000:.0f} ms"

    return [
        f"before: A at {summary['before']['address']}, pair {summary['before']['pair']}",
        f"A moved to {summary['after']['address']} on a new LAN behind {summary['after']['behind']}; "
        f"restarted ({summary['generation']} restart(s)), now {summary['state']}, pair {summary['after']['pair']}",
        f"gap in the data: A->B {gap(summary['gap_a_to_b_s'])}, B->A {gap(summary['gap_b_to_a_s'])} "
        f"({summary['clock']} time; consent alone would have taken 30 s)",
        f"datagrams delivered: A->B {summary['datagrams_a_to_b']}, B->A {summary['datagrams_b_to_a']} "
        f"(one every {TICK * 1000:g} ms each way)",
    ]
