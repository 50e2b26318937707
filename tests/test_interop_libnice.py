"""Interop over ICE-TCP (RFC 6544): iceagent against libnice (an independent C implementation) on 127.0.0.1.

libnice runs in a subprocess under Debian's own Python (tests/libnice_peer.py, python3-gi and
gir1.2-nice-0.1, driven with JSON lines). Both roles, and both directions of the TCP connection: which
candidates each side is told decides who connects (an active candidate connects to a passive one).
iceagent's UDP is blocked in the TCP-only cases (a Network whose bind_udp fails), libnice's is off.
Real sockets and processes, so the real clock under `trio.fail_after`.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pluggy
import pytest
import trio
from json_peer import JsonPeer, open_json_peer
from test_ice_tcp import UdpBlocked

from iceagent import Agent, Candidate, IceConfig, IceParameters, IceState, IceStream, open_agent
from iceagent.ice.pair import CandidatePair, PairState
from iceagent.net.os import OSNetwork
from iceagent.plugins import create_plugin_manager

hookimpl = pluggy.HookimplMarker("iceagent")

DEBIAN_PYTHON = "/usr/bin/python3"
PEER_SCRIPT = Path(__file__).with_name("libnice_peer.py")
LO = ["127.0.0.1"]
FAST = IceConfig(global_pacing=False)
TIMEOUT = 30


def _libnice_available() -> bool:
    try:
        probe = subprocess.run(
            [DEBIAN_PYTHON, "-c", "import gi; gi.require_version('Nice', '0.1'); from gi.repository import Nice"],
            capture_output=True, timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        not _libnice_available(), reason="needs Debian's python3-gi and gir1.2-nice-0.1 (.ci/run installs them)"
    ),
]


def libnice_peer(*args: str) -> AbstractAsyncContextManager[JsonPeer]:
    """Run tests/libnice_peer.py under Debian's Python (see tests/json_peer.py for how it ends)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}  # not our venv's settings
    return open_json_peer([DEBIAN_PYTHON, str(PEER_SCRIPT), *args], "libnice", env=env)


async def exchange(
    agent: Agent, peer: JsonPeer, *, give: set[str | None], take: set[str | None], options: tuple[str, ...] = ()
) -> list[Candidate]:
    """Signal both ways; only our candidates whose tcptype is in `give` reach libnice, only libnice's in
    `take` reach us (None = UDP); `options`: the ice-options libnice is said to announce. Returns libnice's
    candidates."""
    local = await peer.expect("local")
    theirs = [Candidate.from_sdp(line) for line in local["candidates"]]
    await peer.command("remote", ufrag=agent.local_parameters.ufrag, pwd=agent.local_parameters.pwd)
    async for cand in agent.gather():
        if cand.tcptype in give:
            await peer.command("candidate", sdp=cand.to_sdp())
    await peer.command("candidate", sdp=None)
    agent.set_remote_parameters(IceParameters(local["ufrag"], local["pwd"], options=options))
    for cand in theirs:
        if cand.tcptype in take:
            agent.add_remote_candidate(cand)
    agent.add_remote_candidate(None)
    return theirs


async def data_both_ways(stream: IceStream, peer: JsonPeer) -> None:
    mine = [b"iceagent-%d-" % i + os.urandom(i * 37 % 1200) for i in range(20)]
    for p in mine:
        await stream.send(p)
    assert [await stream.receive() for _ in mine] == mine  # libnice echoes them
    theirs = [b"libnice-%d-" % i + os.urandom(i * 53 % 1200) for i in range(20)]
    await peer.command("send", data=[p.hex() for p in theirs])
    got = []
    for _ in theirs:
        got.append(await stream.receive())
        await stream.send(got[-1])
    assert got == theirs
    sent = await peer.expect("sent")
    assert [bytes.fromhex(h) for h in sent["echoes"]] == theirs


@pytest.mark.parametrize("controlling", [True, False], ids=["iceagent-controlling", "libnice-controlling"])
@pytest.mark.parametrize("iceagent_tcptype", ["active", "passive"])
async def test_tcp_only(controlling: bool, iceagent_tcptype: str) -> None:
    """iceagent's `iceagent_tcptype` candidate against libnice's opposite one, over TCP only."""
    libnice_tcptype = "passive" if iceagent_tcptype == "active" else "active"
    role = "--controlled" if controlling else "--controlling"
    with trio.fail_after(TIMEOUT):
        async with libnice_peer(role, "--tcp-only") as peer, open_agent(
            controlling=controlling, host_addresses=LO, tcp=True, network=UdpBlocked(OSNetwork()), config=FAST
        ) as agent:
            await exchange(agent, peer, give={iceagent_tcptype}, take={libnice_tcptype})
            stream = await agent.connect()
            connected = await peer.expect("connected")
            await agent.state.wait_value(IceState.COMPLETED)
            pair = agent.selected_pair
            assert pair is not None and pair.nominated
            assert pair.local.transport == "tcp" and pair.local.tcptype == iceagent_tcptype
            if iceagent_tcptype == "passive":  # libnice connected to us: its candidate was learned
                assert pair.remote.type == "prflx" and pair.remote.tcptype == "active"
            theirs_local = Candidate.from_sdp(connected["pair"]["local"])
            assert theirs_local.transport == "tcp" and theirs_local.tcptype == libnice_tcptype
            await data_both_ways(stream, peer)
            assert agent.stats()["state"] == "completed"
        assert peer.process.returncode == 0


@pytest.mark.parametrize("controlling", [True, False], ids=["iceagent-controlling", "libnice-controlling"])
async def test_udp_and_tcp_udp_wins(controlling: bool) -> None:
    role = "--controlled" if controlling else "--controlling"
    everything: set[str | None] = {None, "active", "passive"}
    with trio.fail_after(TIMEOUT):
        async with libnice_peer(role) as peer, open_agent(
            controlling=controlling, host_addresses=LO, tcp=True, config=FAST
        ) as agent:
            theirs = await exchange(agent, peer, give=everything, take=everything)
            assert {c.transport for c in theirs} == {"udp", "tcp"}
            stream = await agent.connect()
            connected = await peer.expect("connected")
            await agent.state.wait_value(IceState.COMPLETED)
            pair = agent.selected_pair
            assert pair is not None and pair.local.transport == "udp"
            assert Candidate.from_sdp(connected["pair"]["local"]).transport == "udp"
            await data_both_ways(stream, peer)


def test_libnice_parses_our_tcp_candidate_lines() -> None:
    """Our `tcptype` lines (lower-case `tcp`, RFC 6544 4.5) are read by libnice as we wrote them."""
    script = (
        "import gi; gi.require_version('Nice', '0.1'); from gi.repository import Nice, GLib\n"
        "a = Nice.Agent.new(GLib.MainContext.default(), Nice.Compatibility.RFC5245); s = a.add_stream(1)\n"
        "import sys\n"
        "for line in sys.stdin.read().splitlines():\n"
        "    c = a.parse_remote_candidate_sdp(s, 'a=' + line)\n"
        "    print(a.generate_local_candidate_sdp(c))\n"
    )
    lines = [
        "candidate:1 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active",
        "candidate:1 1 tcp 1518272255 127.0.0.1 40000 typ host tcptype passive",
    ]
    out = subprocess.run([DEBIAN_PYTHON, "-c", script], input="\n".join(lines), capture_output=True, text=True,
                         timeout=20, check=True).stdout.splitlines()
    parsed = [Candidate.from_sdp(x) for x in out]
    for ours, theirs in zip(lines, parsed, strict=True):
        mine = Candidate.from_sdp(ours)
        assert (theirs.transport, theirs.tcptype, theirs.port, theirs.priority) == (
            mine.transport, mine.tcptype, mine.port, mine.priority)


class PairEvents:
    """Observer: the pairs of ours that succeeded, and renominations."""

    def __init__(self) -> None:
        self.succeeded: list[CandidatePair] = []
        self.changed = trio.Event()
        self.renominated = trio.Event()
        self.checked_by_peer: set[tuple[str, tuple[str, int]]] = set()  # (our address, their address)

    @hookimpl
    def iceagent_pair_state_changed(self, agent: Agent, pair: CandidatePair, old: PairState, new: PairState) -> None:
        if new is PairState.SUCCEEDED:
            self.succeeded.append(pair)
            self.changed.set()
            self.changed = trio.Event()

    @hookimpl
    def iceagent_renomination(self, agent: Agent, old: CandidatePair, new: CandidatePair) -> None:
        self.renominated.set()

    @hookimpl
    def iceagent_check(self, direction: str, kind: str, local: Candidate, remote: tuple[str, int]) -> None:
        if direction == "receive" and kind == "request":
            self.checked_by_peer.add((local.address, remote))
            self.changed.set()
            self.changed = trio.Event()

    async def checked_routes(self, count: int) -> None:
        while len(self.checked_by_peer) < count:
            await self.changed.wait()

    async def other_pair(self, agent: Agent, first: CandidatePair) -> CandidatePair:
        """A pair valid on both sides whose two candidates both differ from `first`'s: libnice checked it
        (we answered), ours checked it (checks go on after nomination with renomination)."""
        while True:
            for pair in agent._runner().ice.valid_pairs:
                if pair.local.address != first.local.address and pair.remote.address != first.remote.address:
                    if (pair.local.address, pair.remote_address) in self.checked_by_peer:
                        return pair
            await self.changed.wait()


async def test_libnice_follows_our_renomination() -> None:
    """libnice (controlled, NICE_AGENT_OPTION_SUPPORT_RENOMINATION) reads our NOMINATION attribute (0xC001,
    draft-thatcher-ice-renomination): after we renominate a pair between the other addresses of both
    sides (libnice follows a NOMINATION only to a pair whose two candidates both differ from its selected
    pair's), its selected pair moves there, without a restart, and data flows."""
    events = PairEvents()
    pm = create_plugin_manager(load_entrypoints=False)
    pm.register(events)
    config = IceConfig(global_pacing=False, renomination=True)
    with trio.fail_after(TIMEOUT):
        async with libnice_peer("--controlled", "--renomination", "--second-address") as peer, open_agent(
            controlling=True, host_addresses=["127.0.0.1", "127.0.0.2"], config=config, plugin_manager=pm
        ) as agent:
            # libnice hears of us first and checks every pair (a pair it validates only before it completes
            # can be renominated to), then we hear of libnice and connect
            local = await peer.expect("local")
            await peer.learn(agent)
            await events.checked_routes(4)
            agent.set_remote_parameters(IceParameters(local["ufrag"], local["pwd"], options=("renomination",)))
            for line in local["candidates"]:
                candidate = Candidate.from_sdp(line)
                if candidate.transport == "udp":
                    agent.add_remote_candidate(candidate)
            agent.add_remote_candidate(None)
            stream = await agent.connect()
            await peer.expect("connected")
            await agent.state.wait_value(IceState.COMPLETED)
            first = agent.selected_pair
            assert first is not None
            second = await events.other_pair(agent, first)
            runner = agent._runner()
            assert runner.gen.renominate(second)
            runner.wake()
            await events.renominated.wait()
            assert agent.selected_pair is second and agent.generation.value == 0
            await data_both_ways(stream, peer)  # libnice echoes what it got on its new pair
            await peer.command("stats")
            stats = await peer.expect("stats")
            theirs = Candidate.from_sdp(stats["pair"]["local"]), Candidate.from_sdp(stats["pair"]["remote"])
            assert (theirs[0].address, theirs[1].address) == (second.remote.address, second.local.address), stats
            assert (theirs[0].port, theirs[1].port) == (second.remote.port, second.local.port), stats
        assert peer.process.returncode == 0
