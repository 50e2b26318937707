"""What each of thousands of agents in one process keeps (issue 15 item 3): counted, never timed.

Every agent pays for what it holds while idle and connected; bench/footprint.py lists it by line. These
tests pin the pieces that used to be kept for nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio
from agent_helpers import connect_both

from iceagent import Agent, Candidate, IceConfig, open_agent
from iceagent.ice.events import Event
from iceagent.ice.generation import IceGeneration

LO = ["127.0.0.1"]


def test_parsed_candidates_share_their_transport_and_type_strings() -> None:
    """Every candidate carries a transport and a type, lower-cased by its converter: one shared string per
    spelling, not a new one per candidate (str.lower always makes a new string)."""
    a = Candidate.from_sdp("candidate:1 1 UDP 2130706431 10.0.0.1 5000 typ host")
    b = Candidate.from_sdp("candidate:2 1 udp 2130706175 10.0.0.2 5001 typ HOST")
    c = Candidate(foundation="3", component=1, transport="udp", priority=1, address="10.0.0.3", port=1, type="host")
    assert a.transport == b.transport == c.transport == "udp" and a.type == b.type == c.type == "host"
    assert a.transport is b.transport is c.transport
    assert a.type is b.type is c.type


async def test_open_agent_keeps_no_copy_of_its_options_while_the_agent_lives() -> None:
    """open_agent is a generator that lives as long as the agent: the checked address options it passes on to
    GatherOptions are not kept in its frame as well."""
    manager = open_agent(host_addresses=LO, config=IceConfig(global_pacing=False))
    agent = await manager.__aenter__()  # type: ignore[attr-defined]
    try:
        frame_locals = manager.gen.ag_frame.f_locals  # type: ignore[attr-defined]
        assert frame_locals["agent"] is agent
        assert not [name for name, value in frame_locals.items() if type(value) is dict]
    finally:
        await manager.__aexit__(None, None, None)  # type: ignore[attr-defined]


@asynccontextmanager
async def _connected_pair() -> AsyncIterator[tuple[Agent, Agent]]:
    """Two agents on 127.0.0.1, connected (under a 20 s limit)."""
    config = IceConfig(global_pacing=False)
    with trio.fail_after(20):
        async with open_agent(host_addresses=LO, config=config) as a, open_agent(
            controlling=False, host_addresses=LO, config=config
        ) as b:
            await connect_both(a, b)
            yield a, b


async def test_a_connected_agent_made_no_remote_name_resolver() -> None:
    """The resolver of remote `.local` candidates (and its callback) is made by the first such candidate, not
    by every agent: two agents connected over host candidates have none."""
    async with _connected_pair() as agents:
        for agent in agents:
            runner = agent._current
            assert runner is not None and runner._names is None


async def test_an_idle_pump_takes_no_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every datagram an agent reads ends in a pump (and most pumps find no events): a pump with none queued
    does not call the generation to take none (it made two such calls per round)."""
    async with _connected_pair() as (a, _b):
        runner = a._current
        assert runner is not None
        taken: list[IceGeneration] = []
        take = IceGeneration.take_events

        def counting_take(gen: IceGeneration) -> Sequence[Event]:
            taken.append(gen)
            return take(gen)

        monkeypatch.setattr(IceGeneration, "take_events", counting_take)
        for _ in range(10):
            runner.pump(trio.current_time())
        assert runner.gen not in taken
