"""The supervisor (DESIGN.md nursery tree): consent freshness, keepalives, the disconnected and failed
timers and automatic restart.

It is a state machine polled with `now` by the driver loop of the agent's current session, not a task
of its own: one task less per agent, and it sees every change that loop sees (bench/scale.py).
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from ..ice.pair import CandidatePair
from ..states import IceState
from ..stun.message import Message, MessageClass, Method

if TYPE_CHECKING:
    from .core import Agent

class Supervisor:
    """One per agent; lives across ICE generations (its restart back-off does too)."""

    __slots__ = (
        "_agent",
        "_backoff",
        "_consent_pair",
        "_early_consent",
        "_last_rx",
        "_last_rx_at",
        "_last_tx",
        "_last_tx_at",
        "_next_consent",
        "_restart_at",
    )

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._backoff = agent.config.restart_backoff
        self._restart_at: float | None = None
        self._consent_pair: CandidatePair | None = None
        self._next_consent = 0.0
        self._early_consent = 0.0
        self._last_rx = -1
        self._last_rx_at = 0.0
        self._last_tx = -1
        self._last_tx_at = 0.0

    def poll(self, now: float) -> float:
        """Do what is due at `now`; returns when to poll again (math.inf: only after a change)."""
        agent = self._agent
        cfg = agent.config
        state = agent.state.value
        if state is IceState.FAILED:
            # automatic restart with exponential back-off (DESIGN.md "Contract": auto_restart)
            if not agent.auto_restart:
                return math.inf
            if self._restart_at is None:
                self._restart_at = now + self._backoff
                self._backoff = min(self._backoff * 2, cfg.restart_backoff * 16)
            if now < self._restart_at:
                return self._restart_at
            self._restart_at = None
            agent._restart_now()
            return math.inf  # the new session's driver polls from now on
        self._restart_at = None
        route, runner = agent._route, agent._route_runner
        if route is None or runner is None:
            if state is not IceState.CHECKING:
                return math.inf
            if agent._checking_since is None:
                agent._checking_since = now
            give_up = agent._checking_since + cfg.failed_timeout
            if now < give_up:
                return give_up
            agent._fail(f"no candidate pair succeeded within failed_timeout={cfg.failed_timeout:g} s")
            return self.poll(now)
        self._backoff = cfg.restart_backoff
        pair = route[2]
        if pair is not self._consent_pair:
            self._consent_pair = pair
            self._next_consent = now + cfg.consent_interval * random.uniform(0.8, 1.2)
            self._last_rx, self._last_rx_at = -1, now
            self._last_tx, self._last_tx_at = -1, now
            self._early_consent = now + cfg.consent_interval * 0.8
        # consent freshness (RFC 7675 5.1): lost after consent_timeout without a successful check
        last_ok = max(pair.last_consent or 0.0, agent._selected_at)
        if now - last_ok > cfg.consent_timeout:
            agent._route_lost(f"consent expired: no answer to consent checks for {cfg.consent_timeout:g} s (RFC 7675)")
            return self.poll(now)
        rx = pair.bytes_received + pair.responses_received + pair.requests_received
        if rx != self._last_rx:
            self._last_rx, self._last_rx_at = rx, now
            if state is IceState.DISCONNECTED:
                agent._set_state(IceState.COMPLETED if pair.nominated else IceState.CONNECTED)
        elif now - self._last_rx_at > cfg.disconnected_timeout and state in (IceState.CONNECTED, IceState.COMPLETED):
            agent._set_state(IceState.DISCONNECTED)
        # An idle pair hears only consent traffic, and the randomized gaps (0.8-1.2 x consent_interval on
        # each side) can add up to more than disconnected_timeout. After half of it in silence, our next
        # consent check goes out early in its randomization window (RFC 7675 5.1: 0.8-0.9 x instead of
        # 0.8-1.2 x), so only a dead path stays silent that long.
        early = max(self._last_rx_at + cfg.disconnected_timeout / 2, self._early_consent)
        due = min(self._next_consent, early)
        if now >= due:
            runner.send_consent(pair, now)
            self._next_consent = due = now + cfg.consent_interval * random.uniform(0.8, 1.2)
            self._early_consent = now + cfg.consent_interval * random.uniform(0.8, 0.9)
        # Keepalive (RFC 8445 11): a Binding indication when nothing at all was sent on the pair for
        # keepalive_interval (only happens when consent checks are further apart than that).
        tx = pair.requests_sent + pair.responses_sent + pair.bytes_sent
        if tx != self._last_tx:
            self._last_tx, self._last_tx_at = tx, now
        elif now >= self._last_tx_at + cfg.keepalive_interval:
            self._last_tx_at = now
            keepalive = Message(Method.BINDING, MessageClass.INDICATION)  # no response, no integrity
            runner.send_soon(route[0], keepalive.encode(fingerprint=True), route[1])
        # the disconnected timer is checked every quarter of it (at most every second): traffic is
        # counted on the pair, not signalled
        tick = min(1.0, cfg.disconnected_timeout / 4)
        return min(now + tick, due, self._last_tx_at + cfg.keepalive_interval)
