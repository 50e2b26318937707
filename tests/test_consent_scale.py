"""Consent freshness (RFC 7675) at scale: what many idle agents in one process cost (bench/consent.py).

Agents connected in one burst must not keep their consent checks in step (a burst of thousands every few
seconds makes every scheduling round of the process long), an idle pair sends no consent check sooner than
its randomized time needs, and closing an agent does only its own work.
"""

from __future__ import annotations

import random
from typing import Any

import trio
from agent_helpers import connect_both
from test_agent_signal_turn import count_self_wakes
from test_session import A_HOST, B_HOST

from iceagent import IceConfig, IceState, open_agent
from iceagent.ice.pair import CandidatePair, PairState
from iceagent.ice.supervisor import SendConsent, Supervisor

IDLE = IceConfig(consent_interval=5.0, disconnected_timeout=5.0, keepalive_interval=1000.0, consent_timeout=1000.0)


class Highest:
    """A `Uniform` that always draws the top of the range (deterministic timers)."""

    def uniform(self, a: float, b: float) -> float:
        return b


def valid_pair() -> CandidatePair:
    return CandidatePair(local=A_HOST, remote=B_HOST, state=PairState.SUCCEEDED, valid=True)


def next_consent(sup: Supervisor, pair: CandidatePair, at: float, until: float) -> float | None:
    """Poll `sup` at each time it asks for, from `at`, until it sends a consent check (its time) or `until`."""
    while at <= until:
        actions, next_at = sup.poll(at, state=IceState.COMPLETED, pair=pair, selected_at=0.0)
        if any(isinstance(a, SendConsent) for a in actions):
            return at
        at = next_at
    return None


def test_agents_selected_together_send_their_first_consent_checks_spread_out() -> None:
    """Twenty pairs selected at the same instant (one burst of connections): their first consent checks go at
    randomized times within 0.8-1.2 x the interval (RFC 7675 5.1), not all at 0.8 x, so that the process's
    later checks do not come in bursts of thousands."""
    rng = random.Random(5)
    firsts = []
    for _ in range(20):
        sup = Supervisor(IDLE, auto_restart=False, rng=rng)
        pair = valid_pair()
        _, at = sup.poll(0.0, state=IceState.COMPLETED, pair=pair, selected_at=0.0)
        first = next_consent(sup, pair, at, 10.0)
        assert first is not None
        firsts.append(first)
    assert all(4.0 - 1e-9 <= f <= 6.0 + 1e-9 for f in firsts), firsts
    assert len({round(f, 6) for f in firsts}) >= 15, firsts


async def test_closing_a_connected_agent_sends_no_wake_up_to_its_own_socket(monkeypatch: Any) -> None:
    """Closing an idle agent whose session task waits on its own socket cancels that task: no wake-up
    datagram to the socket on the way (each costs a send and a round of the scheduler per agent closed)."""
    woken = count_self_wakes(monkeypatch)
    config = IceConfig(global_pacing=False)
    with trio.fail_after(10):
        async with open_agent(host_addresses=["127.0.0.1"], config=config) as a:
            async with open_agent(controlling=False, host_addresses=["127.0.0.1"], config=config) as b:
                await connect_both(a, b)
                await a.state.wait_value(IceState.COMPLETED)
                await b.state.wait_value(IceState.COMPLETED)
                await trio.testing.wait_all_tasks_blocked()
                woken.clear()
            assert woken == []
