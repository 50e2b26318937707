"""Signaling helpers for tests: hand parameters and candidates from one agent to the other."""

from __future__ import annotations

import trio

from iceagent import Agent, Candidate, IceStream


async def signal(src: Agent, dst: Agent, *, end: bool = True) -> None:
    """Give `dst` everything `src` has to offer: parameters, candidates (via SDP), end-of-candidates."""
    dst.set_remote_parameters(src.local_parameters)
    async for cand in src.gather():
        dst.add_remote_candidate(Candidate.from_sdp(cand.to_sdp()))
    if end:
        dst.add_remote_candidate(None)


async def connect_both(a: Agent, b: Agent) -> tuple[IceStream, IceStream]:
    """Signal both ways and connect both agents concurrently."""
    await signal(a, b)
    await signal(b, a)
    streams: dict[str, IceStream] = {}

    async def conn(key: str, agent: Agent) -> None:
        streams[key] = await agent.connect()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn, "a", a)
        nursery.start_soon(conn, "b", b)
    return streams["a"], streams["b"]
