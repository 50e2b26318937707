"""ICE-lite interop on 127.0.0.1 (RFC 8445 2.5, 6.1.1): libnice in lite mode against a full iceagent, and a
lite iceagent against full libnice and full aioice.

The peers run in subprocesses driven with JSON lines (tests/libnice_peer.py under Debian's Python with
python3-gi, tests/aioice_peer.py); see tests/test_interop_libnice.py and test_interop_aioice.py. Real
sockets and processes, so the real clock under `trio.fail_after`.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from json_peer import JsonPeer
from test_interop_aioice import aioice_peer
from test_interop_aioice import data_both_ways as aioice_data_both_ways
from test_interop_aioice import exchange as aioice_exchange
from test_interop_libnice import _libnice_available, data_both_ways, libnice_peer

from iceagent import Agent, Candidate, IceConfig, IceParameters, IceState, open_agent

LO = ["127.0.0.1"]
FAST = IceConfig(global_pacing=False)
TIMEOUT = 30

pytestmark = pytest.mark.interop

needs_libnice = pytest.mark.skipif(
    not _libnice_available(), reason="needs Debian's python3-gi and gir1.2-nice-0.1 (.ci/run installs them)"
)


async def exchange_udp(agent: Agent, peer: JsonPeer) -> list[Candidate]:
    """Signal both ways over UDP candidates only, with the peer's a=ice-lite as it reports it. A full agent
    whose peer is lite controls from the moment it knows (6.1.1), before any check (no 487 round)."""
    local = await peer.expect("local")
    theirs = [Candidate.from_sdp(line) for line in local["candidates"]]
    await peer.command("remote", ufrag=agent.local_parameters.ufrag, pwd=agent.local_parameters.pwd)
    async for cand in agent.gather():
        await peer.command("candidate", sdp=cand.to_sdp())
    await peer.command("candidate", sdp=None)
    agent.set_remote_parameters(IceParameters(local["ufrag"], local["pwd"], lite=local["lite"]))
    if local["lite"]:  # no remote candidate yet, so no check went out: the role comes from a=ice-lite alone
        await trio.testing.wait_all_tasks_blocked()
        assert agent.controlling
    for cand in theirs:
        if cand.transport == "udp":
            agent.add_remote_candidate(cand)
    agent.add_remote_candidate(None)
    return theirs


def requests_sent(agent: Agent) -> int:
    return sum(p["requests_sent"] for p in agent.stats()["pairs"])


@needs_libnice
async def test_full_iceagent_against_libnice_lite() -> None:
    """libnice with NICE_AGENT_OPTION_LITE_MODE: iceagent, opened controlled, learns the peer is lite and
    takes the controlling role (6.1.1), checks and nominates; libnice reaches READY, data flows."""
    with trio.fail_after(TIMEOUT):
        async with libnice_peer("--controlled", "--lite") as peer, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as agent:
            theirs = await exchange_udp(agent, peer)
            assert all(c.type == "host" for c in theirs)  # a lite libnice offers host candidates only
            stream = await agent.connect()
            assert agent.controlling
            connected = await peer.expect("connected")
            await agent.state.wait_value(IceState.COMPLETED)
            pair = agent.selected_pair
            assert pair is not None and pair.nominated and pair.rtt is not None
            assert Candidate.from_sdp(connected["pair"]["remote"]).port == pair.local.port
            await data_both_ways(stream, peer)
        assert peer.process.returncode == 0


@needs_libnice
async def test_lite_iceagent_against_full_libnice() -> None:
    """A lite iceagent answers full libnice's checks, sends none, and connects on its USE-CANDIDATE."""
    with trio.fail_after(TIMEOUT):
        async with libnice_peer("--controlling") as peer, open_agent(
            controlling=False, lite=True, host_addresses=LO, config=FAST
        ) as agent:
            await exchange_udp(agent, peer)
            stream = await agent.connect()
            connected = await peer.expect("connected")
            await agent.state.wait_value(IceState.COMPLETED)
            pair = agent.selected_pair
            assert pair is not None and pair.nominated and pair.rtt is None
            assert Candidate.from_sdp(connected["pair"]["remote"]).port == pair.local.port
            await data_both_ways(stream, peer)
            assert requests_sent(agent) == 0
        assert peer.process.returncode == 0


async def test_lite_iceagent_against_full_aioice() -> None:
    """aioice (controlling, aggressive nomination) against a lite iceagent."""
    with trio.fail_after(TIMEOUT):
        async with aioice_peer("controlling") as peer, open_agent(
            controlling=False, lite=True, host_addresses=LO, config=FAST
        ) as agent:
            _, (theirs,) = await aioice_exchange(agent, peer)
            await peer.command("connect")
            stream = await agent.connect()
            connected = await peer.expect("connected")
            await agent.state.wait_value(IceState.COMPLETED)
            pair = agent.selected_pair
            assert pair is not None and pair.nominated and pair.remote.port == theirs.port
            assert Candidate.from_sdp(connected["pair"]["remote"]).port == pair.local.port
            await aioice_data_both_ways(stream, peer)
            assert requests_sent(agent) == 0
        assert peer.process.returncode == 0
