"""Connectivity under heavy loss through real Linux NATs (issue 16 item 4; root only, like tests/test_netns_nat.py).

Two port-restricted cone NATs (tests/netns.py "cone") whose routers each drop 40 % of the UDP they forward,
at random, in each direction (nftables `numgen random mod 10 < 4 drop` in the forward chain): a datagram
from one private host to the other survives both routers 36 % of the time, a check and its answer 13 %.
The embedded STUN server is in the public namespace; each agent (tests/loss_peer.py) has the default
IceConfig, and its application resends its greeting every 0.3 s until the peer echoes it. Every run of
five must connect and echo within 30 s (see `RETRY`). The levers: up to 5 Binding transactions per base and
server and up to 3 check transactions per pair while unanswered, 10 on a pair the peer's checks reached
(RFC 8489 6.2, paced by RFC 8445 14.2), RFC 8445 14.3's RTO for checks, triggered checks (7.3.1.4), and
a pair that works is not torn down by a lost nomination or consent round (8.1.1, RFC 7675 5.1).
Real clock: every wait is bounded by `trio.fail_after` / `trio.move_on_after`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from netns import PRIVATE, PYTHON, ROOT, STUN_IP, STUN_PORT, NetnsWorld, open_worlds
from test_netns_nat import Peer, World, _relay

pytestmark = [pytest.mark.netns, pytest.mark.slow]

#: Each run must have connected and echoed within this many seconds (issue 16 item 4).
LIMIT = 30.0
RUNS = 5
#: Misses in the first RUNS runs that are answered with RUNS more runs instead of failing (all of which must then
#: pass). A run misses by chance: on the vnet (tests/test_loss_vnet.py) about 1 seed in 250 to 500 does, at the
#: same loss, from every transmission of one side's Binding requests or of a check's round trips being lost. At
#: p = 0.4 % per run, five of five fail a CI run 2 % of the time; with one miss re-drawn, about 35 p^2 = 0.06 %;
#: a regression to 80 % per run still fails 54 % of the time (five of five alone: 67 %).
RETRY = 1


def loss_ruleset(percent: int) -> str:
    """A forward-chain rule dropping `percent` % of forwarded UDP at random, both directions."""
    if percent % 10:
        raise ValueError("loss in steps of 10 %")
    return f"""
table inet ia_loss {{
    chain forward {{
        type filter hook forward priority filter; policy accept;
        meta l4proto udp numgen random mod 10 < {percent // 10} drop
    }}
}}
"""


@pytest.fixture
def lossy_world(tmp_path: Path) -> Iterator[World]:
    """`lossy_world(40)`: two cone NATs dropping 40 % of forwarded UDP each, and the STUN server."""
    with open_worlds(tmp_path) as build:

        def make(percent: int) -> NetnsWorld:
            world = build("cone", "cone")
            for router in world.router.values():
                world.exec(router, "nft", "-f", "-", input=loss_ruleset(percent))
            return world

        yield make


def peer_argv(world: NetnsWorld, side: str) -> list[str]:
    """tests/loss_peer.py in the private namespace of `side` (A controls)."""
    return [
        "ip", "netns", "exec", world.priv[side], PYTHON, str(ROOT / "tests" / "loss_peer.py"),
        "--controlling" if side == "a" else "--controlled", "--host", PRIVATE[side],
        "--stun", f"{STUN_IP}:{STUN_PORT}", "--name", side.upper(), "--resend", "0.3",
    ]  # fmt: skip


async def run_once(world: NetnsWorld, run: int) -> dict[str, Peer]:
    """Both agents until each saw its greeting echoed or failed, or LIMIT passed; then close them."""
    peers: dict[str, Peer] = {}
    try:
        for side in "ab":
            with world.open_log(f"run{run}-peer-{side}") as stderr:
                process = await trio.lowlevel.open_process(
                    peer_argv(world, side), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
                )
            world.adopt(process)
            peers[side] = Peer(side, process)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_relay, peers["a"], peers["b"], ("echoed", "failed"))
            nursery.start_soon(_relay, peers["b"], peers["a"], ("echoed", "failed"))
            with trio.move_on_after(LIMIT):
                for peer in peers.values():
                    await peer.finished.wait()
            for peer in peers.values():
                await peer.send({"cmd": "close"})
            with trio.fail_after(10):
                for peer in peers.values():
                    await peer.process.wait()
            nursery.cancel_scope.cancel()
    finally:
        for peer in peers.values():
            for stream in (peer.process.stdin, peer.process.stdout):
                if stream is not None:
                    await stream.aclose()
    return peers


def outcome(peers: dict[str, Peer]) -> str:
    """"ok", or what each side got to and when (seconds since its process started)."""
    if all(p.event("echoed") is not None for p in peers.values()):
        return "ok"
    return "; ".join(
        f"{s}: {[(e['event'], e.get('t')) for e in p.events if e['event'] != 'candidate']}" for s, p in peers.items()
    )


async def test_connects_and_echoes_at_40_percent_loss_per_router(lossy_world: Any) -> None:
    """Five runs of five connect and echo within 30 s (wall clock here: a generous bound, the issue's limit).
    What makes it: the srflx gatherer's parallel Binding transactions and the repeated checks (docs/nat.md
    "Heavy loss at both NATs"). A run is a random draw that misses now and then by plain bad luck (every
    transmission of a check or of a Binding request lost: see `RETRY`), so one miss buys one more set of five
    runs, all of which must then make it."""
    world = lossy_world(40)
    results = [outcome(await run_once(world, run)) for run in range(RUNS)]
    if results.count("ok") == RUNS - RETRY:
        results += [outcome(await run_once(world, run)) for run in range(RUNS, 2 * RUNS)]
    ok = results.count("ok")
    print(f"\n40 % loss per router: {ok} of {len(results)} connected and echoed within {LIMIT:g} s")
    failures = [f"run {i}: {r}" for i, r in enumerate(results) if r != "ok"]
    logs = "\n".join(f"--- run {i} peer {s}:\n{world.log(f'run{i}-peer-{s}')[-2000:]}"
                     for i, r in enumerate(results) if r != "ok" for s in "ab")  # fmt: skip
    assert len(failures) <= RETRY, "\n".join(failures) + "\n" + logs


def test_loss_ruleset_is_in_steps_of_ten() -> None:
    assert "mod 10 < 4 drop" in loss_ruleset(40)
    with pytest.raises(ValueError, match="steps of 10"):
        loss_ruleset(35)
