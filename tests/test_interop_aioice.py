"""Interop: iceagent against aioice (an independent asyncio ICE implementation) on 127.0.0.1.

aioice runs in a subprocess (tests/aioice_peer.py, driven with JSON lines over stdin/stdout), so the
two event loops never share a thread. Gathering is restricted to 127.0.0.1 on both sides; nothing
contacts a STUN server. Real sockets and a real process, so the real clock under `trio.fail_after`.
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aioice
import pytest
import trio
from json_peer import JsonPeer, open_json_peer

from iceagent import Agent, Candidate, IceConfig, IceParameters, IceState, IceStream, open_agent

pytestmark = pytest.mark.interop

PEER_SCRIPT = Path(__file__).with_name("aioice_peer.py")
LO = ["127.0.0.1"]
FAST = IceConfig(global_pacing=False)
#: iceagent offering renomination (a=ice-options:renomination) to aioice, which does not: RFC 8445 nomination
OFFERING_RENOMINATION = IceConfig(global_pacing=False, renomination=True)
CONFIGS = pytest.mark.parametrize("config", [FAST, OFFERING_RENOMINATION], ids=["plain", "renomination-offered"])
TIMEOUT = 20


#: The handle on the aioice subprocess (tests/json_peer.py)
AioicePeer = JsonPeer


def aioice_peer(role: str) -> AbstractAsyncContextManager[JsonPeer]:
    """Run tests/aioice_peer.py in the given role (see tests/json_peer.py for how it ends)."""
    return open_json_peer([sys.executable, str(PEER_SCRIPT), f"--{role}"], "aioice")


async def exchange(agent: Agent, peer: AioicePeer) -> tuple[dict[str, Any], list[Candidate]]:
    """Signal both ways (SDP lines in both directions); returns aioice's parameters and its candidates."""
    local = await peer.expect("local")
    # aioice's candidates parse with iceagent's Candidate.from_sdp
    theirs = [Candidate.from_sdp(line) for line in local["candidates"]]
    assert len(theirs) == 1
    (c,) = theirs
    assert (c.type, c.transport, c.address, c.component) == ("host", "udp", "127.0.0.1", 1)
    assert c.to_sdp() == "candidate:" + local["candidates"][0]  # aioice writes the canonical form
    await peer.command("remote", ufrag=agent.local_parameters.ufrag, pwd=agent.local_parameters.pwd)
    async for cand in agent.gather():
        # and iceagent's parse with aioice's (the peer parses them too, when adding them)
        line = cand.to_sdp()
        parsed = aioice.Candidate.from_sdp(line.removeprefix("candidate:"))
        assert (parsed.host, parsed.port, parsed.priority, parsed.type) == (cand.address, cand.port,
                                                                            cand.priority, cand.type)
        await peer.command("candidate", sdp=line)
    await peer.command("candidate", sdp=None)
    agent.set_remote_parameters(IceParameters(local["ufrag"], local["pwd"]))
    for cand in theirs:
        agent.add_remote_candidate(cand)
    agent.add_remote_candidate(None)
    return local, theirs


def payloads(tag: bytes, n: int = 20) -> list[bytes]:
    """Distinct datagrams: sizes 1..1200, text and binary (some starting with STUN-like bytes)."""
    out = [tag]
    for i in range(1, n):
        size = (i * 97) % 1200 + 1
        body = tag + b"%03d" % i + os.urandom(size)
        out.append(b"\x00\x01" + body if i % 5 == 0 else body)
    return out


async def data_both_ways(stream: IceStream, peer: AioicePeer) -> None:
    # iceagent -> aioice -> echoed back
    mine = payloads(b"iceagent")
    for p in mine:
        await stream.send(p)
    assert [await stream.receive() for _ in mine] == mine
    # aioice -> iceagent -> echoed back
    theirs = payloads(b"aioice")
    await peer.command("send", data=[p.hex() for p in theirs])
    got = []
    for _ in theirs:
        got.append(await stream.receive())
        await stream.send(got[-1])
    assert got == theirs
    sent = await peer.expect("sent")
    assert [bytes.fromhex(h) for h in sent["echoes"]] == theirs
    await peer.command("stats")
    stats = await peer.expect("stats")
    assert stats == {"event": "stats", "received": 2 * len(mine), "echoed": len(mine)}


@CONFIGS
async def test_iceagent_controlling_aioice_controlled(config: IceConfig) -> None:
    with trio.fail_after(TIMEOUT):
        async with aioice_peer("controlled") as peer, open_agent(
            controlling=True, host_addresses=LO, config=config
        ) as agent:
            assert ("renomination" in agent.local_parameters.options) is config.renomination
            _, (theirs,) = await exchange(agent, peer)
            await peer.command("connect")
            stream = await agent.connect()
            assert agent.state.value in (IceState.CONNECTED, IceState.COMPLETED)
            connected = await peer.expect("connected")  # aioice connects once we nominated
            await agent.state.wait_value(IceState.COMPLETED)
            pair = agent.selected_pair
            assert pair is not None and pair.nominated
            (mine,) = [c async for c in agent.gather()]
            assert (pair.local.address, pair.local.port) == (mine.address, mine.port)
            assert (pair.remote.address, pair.remote.port) == ("127.0.0.1", theirs.port)
            assert Candidate.from_sdp(connected["pair"]["local"]).port == theirs.port
            assert Candidate.from_sdp(connected["pair"]["remote"]).port == mine.port
            await data_both_ways(stream, peer)
            st = agent.stats()
            assert st["state"] == "completed"
            assert st["selected_pair"]["nominated"] is True
        assert peer.process.returncode == 0


@CONFIGS
async def test_aioice_controlling_iceagent_controlled(config: IceConfig) -> None:
    with trio.fail_after(TIMEOUT):
        async with aioice_peer("controlling") as peer, open_agent(
            controlling=False, host_addresses=LO, config=config
        ) as agent:
            _, (theirs,) = await exchange(agent, peer)
            await peer.command("connect")
            stream = await agent.connect()
            connected = await peer.expect("connected")
            # aioice nominates aggressively (USE-CANDIDATE on every check): we complete as controlled
            await agent.state.wait_value(IceState.COMPLETED)
            assert agent.controlling is False
            pair = agent.selected_pair
            assert pair is not None and pair.nominated
            (mine,) = [c async for c in agent.gather()]
            assert (pair.local.port, pair.remote.port) == (mine.port, theirs.port)
            assert Candidate.from_sdp(connected["pair"]["local"]).port == theirs.port
            assert Candidate.from_sdp(connected["pair"]["remote"]).port == mine.port
            await data_both_ways(stream, peer)
        assert peer.process.returncode == 0


async def test_peer_reflexive_aioice_candidate_learned_from_its_checks() -> None:
    """iceagent (controlled) never hears of aioice's candidate: it learns it from aioice's checks."""
    with trio.fail_after(TIMEOUT):
        async with aioice_peer("controlling") as peer, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as agent:
            local = await peer.expect("local")
            await peer.learn(agent)
            agent.set_remote_parameters(IceParameters(local["ufrag"], local["pwd"]))  # no candidates
            await peer.command("connect")
            stream = await agent.connect()
            await peer.expect("connected")
            await agent.state.wait_value(IceState.COMPLETED)
            pair = agent.selected_pair
            assert pair is not None and pair.remote.type == "prflx"
            assert pair.remote.port == Candidate.from_sdp(local["candidates"][0]).port
            await data_both_ways(stream, peer)


@pytest.mark.parametrize(
    "line",
    [
        "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
        "candidate:842163049 1 udp 1677729535 203.0.113.7 61665 typ srflx raddr 192.168.1.2 rport 50000",
        "candidate:3 1 udp 16777215 198.51.100.1 3478 typ relay raddr 203.0.113.7 rport 61665 generation 0",
        "candidate:4 1 tcp 1518280447 192.168.1.2 9 typ host tcptype active",
        "candidate:5 2 udp 2130706430 2001:db8::1 50001 typ host",
    ],
)
def test_candidate_lines_parse_both_ways(line: str) -> None:
    ours = Candidate.from_sdp(line)
    theirs = aioice.Candidate.from_sdp(line.removeprefix("candidate:"))
    assert (theirs.foundation, theirs.component, theirs.transport, theirs.priority, theirs.host, theirs.port,
            theirs.type, theirs.related_address, theirs.related_port, theirs.tcptype) == (
        ours.foundation, ours.component, ours.transport, ours.priority, ours.address, ours.port,
        ours.type, ours.related_address, ours.related_port, ours.tcptype)
    # each side's serialization parses back to the same candidate on the other side
    assert Candidate.from_sdp(theirs.to_sdp()) == ours
    assert "candidate:" + theirs.to_sdp() == ours.to_sdp() == line
