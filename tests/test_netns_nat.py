"""ICE and RFC 5780 discovery through real Linux NATs (nftables in network namespaces; root only).

Each test builds its own namespaces with tests/netns.py (a public "internet" with the embedded STUN
server on two IPs, two NAT routers, two private hosts; coturn on a third public IP where a test needs
a relay), runs agents (tests/netns_peer.py) or `iceagent nat` inside the private namespaces, and
removes everything afterwards, even on failure.
Real clock: every wait is bounded by `trio.fail_after`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from netns import EXPECTED_TYPE, NAT_KINDS, PRIVATE, TURN_IP, WAN, NetnsWorld, open_worlds, require_root

pytestmark = pytest.mark.netns

World = Callable[..., NetnsWorld]


@pytest.fixture
def netns_world(tmp_path: Path) -> Iterator[World]:
    """`netns_world("cone", "symmetric")` builds a world; every world is removed after the test."""
    with open_worlds(tmp_path) as build:
        yield build


# --- `iceagent nat` inside the private namespaces ----------------------------------------------------------


async def _iceagent_nat(world: NetnsWorld, side: str, *extra: str) -> dict[str, Any]:
    argv = world.nat_argv(side, "--json", "--timeout", "1", "--rto", "0.2", *extra)
    with trio.fail_after(30):
        proc = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


async def test_iceagent_nat_classifies_kernel_nats(netns_world: World) -> None:
    """`iceagent nat` behind each kind of nftables NAT finds the RFC 4787 behaviour its rules give."""
    world = netns_world(*NAT_KINDS)  # one site per kind, classified at once
    results: dict[str, dict[str, Any]] = {}

    async def classify(side: str) -> None:
        results[side] = await _iceagent_nat(world, side, "--hairpin")

    async with trio.open_nursery() as nursery:
        for side in world.sides:
            nursery.start_soon(classify, side)
    found = {world.kinds[side]: results[side]["nat_type"] for side in world.sides}
    assert found == EXPECTED_TYPE
    for side in world.sides:
        kind, doc = world.kinds[side], results[side]
        assert doc["behind_nat"] is True
        assert doc["mapped"]["address"] == WAN[side]
        assert doc["local"]["address"] == PRIVATE[side]
        # masquerade and SNAT keep the source port when they can; fully-random never does (on purpose)
        assert doc["port_preserved"] is (kind != "symmetric"), (kind, doc)
        # Linux does not hairpin with these rules; with APDM + APDF the test cannot tell (RFC 5780 4.5)
        assert doc["hairpinning"] is (None if kind == "symmetric" else False), (kind, doc)


async def test_iceagent_nat_measures_conntrack_lifetime(netns_world: World) -> None:
    """RFC 5780 4.6 against conntrack: nf_conntrack_udp_timeout set to 2 s inside the router namespace."""
    world = netns_world("cone", udp_timeout=2)
    doc = await _iceagent_nat(world, "a", "--lifetime", "--lifetime-max", "3", "--lifetime-probes", "2")
    assert doc["nat_type"] == "eim-apdf"
    assert doc["mapping_lifetime"] == {"at_least": 1.5, "at_most": 3.0, "bound": 3.0}


# --- two agents, one per private namespace -----------------------------------------------------------------


class Peer:
    """An agent process (tests/netns_peer.py) and its JSON-lines pipe."""

    def __init__(self, side: str, process: trio.Process) -> None:
        self.side = side
        self.process = process
        self.events: list[dict[str, Any]] = []
        self.finished = trio.Event()

    async def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            await self.process.stdin.send_all((json.dumps(command) + "\n").encode())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # it exited; its stderr log says why

    async def events_from(self) -> Any:
        assert self.process.stdout is not None
        buffer = b""
        while True:
            chunk = await self.process.stdout.receive_some(65536)
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)

    def event(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["event"] == name), None)


async def _relay(src: Peer, dst: Peer, until: tuple[str, ...] = ("received", "failed")) -> None:
    """Signaling: src's parameters and trickled candidates to dst; note when src reached an event of `until`."""
    async for event in src.events_from():
        src.events.append(event)
        kind = event["event"]
        if kind == "local":
            await dst.send({"cmd": "remote", "ufrag": event["ufrag"], "pwd": event["pwd"]})
        elif kind == "candidate":
            await dst.send({"cmd": "candidate", "sdp": event["sdp"]})
        elif kind == "gathered":
            await dst.send({"cmd": "candidate", "sdp": None})
        if kind in until:
            src.finished.set()
    src.finished.set()  # it exited


async def run_agents(
    world: NetnsWorld,
    *,
    failed_timeout: float = 5.0,
    limit: float = 30.0,
    turn: bool = False,
    until: tuple[str, ...] = ("received", "failed"),
) -> dict[str, Peer]:
    """Run agent A (controlling) and B in their namespaces until both exchanged data or failed (or reached
    another event of `until`, e.g. "completed"). With `turn`, both have the world's coturn as a `turn:`
    server: call `world.start_coturn()` first."""
    peers: dict[str, Peer] = {}
    try:
        for side in "ab":
            argv = ["ip", "netns", "exec", world.priv[side]]
            argv += world.peer_argv(side, controlling=side == "a", failed_timeout=failed_timeout, turn=turn)
            with world.open_log(f"peer-{side}") as stderr:
                process = await trio.lowlevel.open_process(
                    argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
                )
            world.adopt(process)  # ended by PID by the fixture, whatever happens here
            peers[side] = Peer(side, process)
        with trio.fail_after(limit):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_relay, peers["a"], peers["b"], until)
                nursery.start_soon(_relay, peers["b"], peers["a"], until)
                for peer in peers.values():
                    await peer.finished.wait()
                for peer in peers.values():
                    await peer.send({"cmd": "close"})
                for peer in peers.values():
                    await peer.process.wait()
                nursery.cancel_scope.cancel()
    except trio.TooSlowError:
        logs = "\n".join(f"--- peer {s}:\n{world.log(f'peer-{s}')[-3000:]}" for s in "ab")
        events = {s: p.events for s, p in peers.items()}
        pytest.fail(f"agents did not finish within {limit} s; events: {events}\n{logs}")
    finally:
        for peer in peers.values():  # the pipes (the processes themselves are the fixture's to end)
            for stream in (peer.process.stdin, peer.process.stdout):
                if stream is not None:
                    await stream.aclose()
    return peers


def _pair(peer: Peer) -> dict[str, Any]:
    received = peer.event("received")
    assert received is not None, f"peer {peer.side} did not receive data: {peer.events}"
    pair: dict[str, Any] = received["pair"]
    return pair


async def test_direct_connection_between_cone_nats(netns_world: World) -> None:
    """Two port-restricted cones (masquerade + drop): a direct srflx/srflx pair (RFC 8445, RFC 4787 EIM)."""
    world = netns_world("cone", "cone")
    peers = await run_agents(world)
    for side, other in (("a", "b"), ("b", "a")):
        peer = peers[side]
        assert peer.event("failed") is None
        assert peer.event("received")["data"] == f"hello from {other.upper()}"  # type: ignore[index]
        pair = _pair(peer)
        assert (pair["local"]["type"], pair["remote"]["type"]) == ("srflx", "srflx")
        assert pair["local"]["address"] == WAN[side]
        assert pair["remote"]["address"] == WAN[other]


async def test_symmetric_against_full_cone_connects_through_prflx(netns_world: World) -> None:
    """APDM (fully-random) against a full cone: the symmetric side's new mapping is learnt as peer-reflexive."""
    world = netns_world("symmetric", "full-cone")
    peers = await run_agents(world)
    a, b = _pair(peers["a"]), _pair(peers["b"])
    assert (a["local"]["type"], a["remote"]["type"]) == ("prflx", "srflx")
    assert (b["local"]["type"], b["remote"]["type"]) == ("srflx", "prflx")
    # the prflx candidate is A's NAT mapping towards B: A's router address with a port the STUN server never saw
    assert a["local"]["address"] == b["remote"]["address"] == WAN["a"]
    assert a["local"]["port"] == b["remote"]["port"]
    srflx_a = [e["sdp"] for e in peers["a"].events if e["event"] == "candidate" and " typ srflx" in e["sdp"]]
    assert srflx_a and all(f" {a['local']['port']} typ srflx" not in sdp for sdp in srflx_a)


async def test_symmetric_against_symmetric_needs_a_relay(netns_world: World) -> None:
    """APDM + APDF on both sides, STUN only: no direct path exists (RFC 4787 4.1, 5), both agents fail.
    (With coturn they connect: the next test.)"""
    world = netns_world("symmetric", "symmetric")
    peers = await run_agents(world, failed_timeout=3.0)
    for peer in peers.values():
        failed = peer.event("failed")
        assert failed is not None, f"peer {peer.side} did not fail: {peer.events}"
        assert peer.event("connected") is None


async def test_symmetric_nats_connect_through_coturn(netns_world: World) -> None:
    """The same two symmetric NATs (`masquerade fully-random`), with coturn in the public namespace
    (listening and relaying on its public address 198.51.100.3): the agents connect through the relay,
    data flows both ways, and the pair nomination settles on is relayed too.

    Which relayed pair wins is not fixed on real clocks: each side's relay works with anything that can
    reach coturn (permissions are per IP, RFC 8656 9, and a NAT passes what comes back from the relayed
    address it sent to), so relay/relay and a side's NAT mapping (prflx) against the other's relay all
    succeed; see docs/nat.md, "With a TURN server"."""
    world = netns_world("symmetric", "symmetric")
    world.start_coturn()
    try:
        peers = await run_agents(world, turn=True, until=("completed", "failed"))
    except BaseException:
        print(world.coturn_log()[-5000:])
        raise
    for side, other in (("a", "b"), ("b", "a")):
        peer = peers[side]
        assert peer.event("failed") is None, (peer.events, world.log(f"peer-{side}")[-3000:])
        assert peer.event("received")["data"] == f"hello from {other.upper()}"  # type: ignore[index]
        relays = [e["sdp"] for e in peer.events if e["event"] == "candidate" and " typ relay " in e["sdp"]]
        assert len(relays) == 1 and f" {TURN_IP} " in relays[0], peer.events  # its allocation on coturn
    for event in ("received", "completed"):  # the pair the greetings went over, the nominated pair
        pairs = {side: peers[side].event(event)["pair"] for side in "ab"}  # type: ignore[index]
        a, b = pairs["a"], pairs["b"]
        assert "relay" in (a["local"]["type"], a["remote"]["type"]), f"{event}: no relay in A's pair {a}"
        # Both agents name the same path: A's local end is B's remote end and vice versa.
        assert (a["local"]["address"], a["local"]["port"]) == (b["remote"]["address"], b["remote"]["port"])
        assert (a["remote"]["address"], a["remote"]["port"]) == (b["local"]["address"], b["local"]["port"])
        for side, pair in pairs.items():
            local = pair["local"]
            if local["type"] == "relay":
                assert local["address"] == TURN_IP, pair
            else:  # its NAT's mapping towards the other's relayed address, learnt from the check response
                assert (local["type"], local["address"]) == ("prflx", WAN[side]), pair
    for side in "ab":
        completed = peers[side].event("completed")
        assert completed is not None and completed["state"] == "completed", peers[side].events
        assert completed["pair"]["nominated"], completed


def test_unknown_nat_kind_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown NAT kind 'cgnat'"):
        NetnsWorld("cone", "cgnat", logdir=tmp_path)


def test_without_root_the_tests_fail_and_say_how_to_deselect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.fail.Exception, match=r"need root .*-m 'not netns'"):
        require_root()
