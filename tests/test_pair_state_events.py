"""An agent makes every pair state change event only while someone listens (an observer plugin or the debug
log); otherwise its generations make only the changes to FAILED, which the agent itself needs (ICE-TCP,
nomination). Counted on two connected agents over loopback."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
import trio
from agent_helpers import signal

from iceagent import Agent, IceConfig, IceState, open_agent
from iceagent.ice.events import Event, PairStateChanged
from iceagent.ice.generation import IceGeneration

LO = ["127.0.0.1"]
CONFIG = IceConfig(global_pacing=False)


def _spy(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> list[PairStateChanged]:
    """Record the PairStateChanged events of the agent's current generation as its runner takes them."""
    runner = agent._current
    assert runner is not None
    gen = runner.gen
    seen: list[PairStateChanged] = []
    take = IceGeneration.take_events

    def take_events(self: IceGeneration) -> Sequence[Event]:
        events = take(self)
        if self is gen:
            seen.extend(e for e in events if isinstance(e, PairStateChanged))
        return events

    monkeypatch.setattr(IceGeneration, "take_events", take_events)
    return seen


async def _connect(
    debug: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> tuple[bool, list[PairStateChanged]]:
    caplog.set_level(logging.DEBUG if debug else logging.WARNING, logger="iceagent")
    async with (
        open_agent(controlling=True, host_addresses=LO, config=CONFIG) as a,
        open_agent(controlling=False, host_addresses=LO, config=CONFIG) as b,
    ):
        seen = _spy(a, monkeypatch)
        with trio.fail_after(10):
            await signal(a, b)
            await signal(b, a)
            await a.state.wait_value(IceState.COMPLETED)
        assert a._current is not None
        return a._current.gen.pair_state_events, seen


async def test_without_a_listener_the_generation_makes_no_pair_state_events(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    on, seen = await _connect(False, caplog, monkeypatch)
    assert on is False
    assert seen == []  # the pair went Frozen/Waiting -> In-Progress -> Succeeded: nothing made


async def test_with_the_debug_log_every_pair_state_change_is_an_event(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    on, seen = await _connect(True, caplog, monkeypatch)
    assert on is True
    assert [e.new.value for e in seen][-1] == "succeeded"
    assert any("pair " in r.getMessage() and "succeeded" in r.getMessage().lower() for r in caplog.records)
