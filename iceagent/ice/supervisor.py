"""The keepalive/consent/restart supervisor (DESIGN.md "Concurrency"), sans-IO.

It watches the pair the stream sends on, across ICE generations, and says what is due: consent checks
(RFC 7675 5.1), keepalives (RFC 8445 11), DISCONNECTED after `disconnected_timeout` of silence and back,
consent lost after `consent_timeout`, FAILED when no pair succeeded within `failed_timeout` of
CHECKING, and (with auto_restart) a restart with exponential back-off. It never reads a clock and
never acts: `poll(now, ...)` returns actions for the Trio layer to apply, and when to poll again.
"""

from __future__ import annotations

import math
import random
from typing import Protocol

import attrs

from ..config import IceConfig
from ..states import IceState
from .pair import CandidatePair

__all__ = [
    "Fail",
    "Restart",
    "RouteLost",
    "SendConsent",
    "SendKeepalive",
    "SetState",
    "Supervisor",
    "SupervisorAction",
]


@attrs.frozen
class SendConsent:
    """Send a consent freshness check on `pair` now (RFC 7675 5.1)."""

    pair: CandidatePair


@attrs.frozen
class SendKeepalive:
    """Send a Binding indication on `pair` now: nothing else went out on it for a while (RFC 8445 11)."""

    pair: CandidatePair


@attrs.frozen
class SetState:
    """Move the agent to `state` (DISCONNECTED after silence, back to CONNECTED/COMPLETED on traffic)."""

    state: IceState


@attrs.frozen
class RouteLost:
    """Consent for the selected pair expired (RFC 7675 5.1): the agent stops sending on it."""

    reason: str


@attrs.frozen
class Fail:
    """No pair succeeded within failed_timeout: the agent is FAILED."""

    reason: str


@attrs.frozen
class Restart:
    """auto_restart: restart the FAILED agent now (its back-off has passed)."""


class Uniform(Protocol):
    """A source of uniform random numbers: a `random.Random`, or the `random` module itself."""

    def uniform(self, a: float, b: float) -> float: ...


SupervisorAction = SendConsent | SendKeepalive | SetState | RouteLost | Fail | Restart

#: Actions after which the agent's state or route has changed: apply them, then poll again.
TERMINAL = (RouteLost, Fail, Restart)

#: The states in which silence on the selected pair makes the agent DISCONNECTED.
_LIVE = (IceState.CONNECTED, IceState.COMPLETED)
# enum members as module constants: `IceState.X` costs ~70 ns on CPython 3.11, a global ~7 ns (every poll)
_FAILED, _CHECKING, _DISCONNECTED = IceState.FAILED, IceState.CHECKING, IceState.DISCONNECTED


class Supervisor:
    """One per agent; lives across ICE generations (its restart back-off does too)."""

    __slots__ = (
        "_auto_restart",
        "_backoff",
        "_checking_since",
        "_config",
        "_consent_pair",
        "_early_consent",
        "_last_rx",
        "_last_rx_at",
        "_last_tx",
        "_last_tx_at",
        "_lite",
        "_next_consent",
        "_random",
        "_restart_at",
    )

    def __init__(
        self, config: IceConfig, *, auto_restart: bool, rng: Uniform = random, lite: bool = False
    ) -> None:
        self._config = config
        self._auto_restart = auto_restart
        #: an ICE-lite agent: it sends no consent checks (RFC 7675 is the full peer's job, RFC 8445 2.5) and has
        #: no DISCONNECTED timer (the peer's checks come 4-6 s apart); the pair's `last_consent` is the time of
        #: the peer's latest check, and consent_timeout without one means the peer is gone
        self._lite = lite
        self._random = rng  # injected (tests pass a seeded random.Random); the `random` module by default
        self._backoff = config.restart_backoff
        self._restart_at: float | None = None
        self._checking_since: float | None = None
        self._consent_pair: CandidatePair | None = None
        self._next_consent = 0.0
        self._early_consent = 0.0
        self._last_rx = -1
        self._last_rx_at = 0.0
        self._last_tx = -1
        self._last_tx_at = 0.0

    def checking_started(self, now: float | None) -> None:
        """The agent (re)entered CHECKING at `now` (None: at the next poll that sees it CHECKING, as after a
        restart): failed_timeout counts from then."""
        self._checking_since = now

    def poll(
        self,
        now: float,
        *,
        state: IceState,
        pair: CandidatePair | None,
        selected_at: float,
        checked_at: float | None = None,
    ) -> tuple[list[SupervisorAction], float]:
        """What is due at `now` given the agent's state and selected pair (selected at `selected_at`);
        returns the actions and when to poll again (math.inf: only after a change). After a RouteLost,
        Fail or Restart action nothing else is returned: apply it and poll again. `checked_at` (a lite
        agent): when the full peer's last authenticated check arrived; failed_timeout counts from then,
        since a peer still checking may yet nominate (RFC 8445 2.5: the lite agent waits for it)."""
        cfg = self._config
        if state is _FAILED:
            return self._restart(now)
        self._restart_at = None
        if pair is None:
            if state is not _CHECKING:
                return [], math.inf
            if self._checking_since is None:
                self._checking_since = now
            since = self._checking_since
            if self._lite and checked_at is not None and checked_at > since:
                since = checked_at
            give_up = since + cfg.failed_timeout
            if now < give_up:
                return [], give_up
            if self._lite:
                reason = f"no nomination from the peer within failed_timeout={cfg.failed_timeout:g} s of its last check"
            else:
                reason = f"no candidate pair succeeded within failed_timeout={cfg.failed_timeout:g} s"
            return [Fail(reason)], math.inf
        self._backoff = cfg.restart_backoff
        if pair is not self._consent_pair:
            self._follow(pair, now)
        # consent freshness (RFC 7675 5.1): lost after consent_timeout without a successful check
        last_ok = pair._last_consent or 0.0  # the pair's fields read directly: polled at every STUN input
        if selected_at > last_ok:
            last_ok = selected_at
        if now - last_ok > cfg.consent_timeout:
            reason = (
                f"the peer is gone: no check from it for consent_timeout={cfg.consent_timeout:g} s (a lite "
                "agent, RFC 8445 2.5: the full peer's consent checks stopped, RFC 7675)"
                if self._lite
                else f"consent expired: no answer to consent checks for {cfg.consent_timeout:g} s (RFC 7675)"
            )
            return [RouteLost(reason)], math.inf
        actions: list[SupervisorAction] = []
        # Traffic is counted on the pair, not signalled: the agent polls at every STUN input (its time is
        # then the last receipt's), and the supervisor wakes only when the silence or consent would run
        # out, not on a periodic tick (with thousands of agents per process a 1 s tick was most of their
        # idle work: bench/mux.py).
        at = math.nextafter(last_ok + cfg.consent_timeout, math.inf)  # consent lost
        if not self._lite:  # a lite agent has no DISCONNECTED timer and sends no consent checks (RFC 8445 2.5)
            rx = pair._bytes_received + pair._responses_received + pair._requests_received
            if rx != self._last_rx:
                self._last_rx, self._last_rx_at = rx, now
                if state is _DISCONNECTED:
                    actions.append(SetState(IceState.COMPLETED if pair._nominated else IceState.CONNECTED))
            elif now - self._last_rx_at > cfg.disconnected_timeout and state in _LIVE:
                actions.append(SetState(_DISCONNECTED))
            # An idle pair hears only consent traffic, and the randomized gaps (0.8-1.2 x consent_interval on
            # each side) can add up to more than disconnected_timeout. After half of it in silence, our next
            # consent check goes out early in its randomization window (RFC 7675 5.1: 0.8-0.9 x instead of
            # 0.8-1.2 x), so only a dead path stays silent that long. (Waiting until 3/4 of it saved checks but
            # made lossy idle pairs go DISCONNECTED a fifth more often, a vnet at 15 % loss: kept at half.)
            due = self._last_rx_at + cfg.disconnected_timeout / 2  # (`_consent_due`, inline: once per poll)
            if due < self._early_consent:
                due = self._early_consent
            if self._next_consent < due:
                due = self._next_consent
            if now >= due:
                actions.append(SendConsent(pair))
                self._next_consent = now + cfg.consent_interval * self._random.uniform(0.8, 1.2)
                self._early_consent = now + cfg.consent_interval * self._random.uniform(0.8, 0.9)
                due = self._consent_due()
            if due < at:
                at = due
            if state in _LIVE and now - self._last_rx_at <= cfg.disconnected_timeout:
                silent_at = math.nextafter(self._last_rx_at + cfg.disconnected_timeout, math.inf)
                if silent_at < at:
                    at = silent_at
        # Keepalive (RFC 8445 11, every endpoint, lite ones too): a Binding indication when nothing at all was
        # sent on the pair for keepalive_interval (only happens when consent checks, or for a lite agent the
        # answers to the peer's, are further apart than that).
        tx = pair._requests_sent + pair._responses_sent + pair._bytes_sent
        if tx != self._last_tx:
            self._last_tx, self._last_tx_at = tx, now
        elif now >= self._last_tx_at + cfg.keepalive_interval:
            self._last_tx_at = now
            actions.append(SendKeepalive(pair))
        keepalive_at = self._last_tx_at + cfg.keepalive_interval
        return actions, keepalive_at if keepalive_at < at else at

    def _consent_due(self) -> float:
        """When the next consent check goes: its randomized time, or early in its window after half of
        disconnected_timeout in silence."""
        early = max(self._last_rx_at + self._config.disconnected_timeout / 2, self._early_consent)
        return min(self._next_consent, early)

    def _restart(self, now: float) -> tuple[list[SupervisorAction], float]:
        """FAILED: with auto_restart, restart after a back-off that doubles up to 16x restart_backoff
        (DESIGN.md "Contract": auto_restart) and resets once a pair works again."""
        if not self._auto_restart:
            return [], math.inf
        if self._restart_at is None:
            self._restart_at = now + self._backoff
            self._backoff = min(self._backoff * 2, self._config.restart_backoff * 16)
        if now < self._restart_at:
            return [], self._restart_at
        self._restart_at = None
        self._checking_since = None
        return [Restart()], math.inf

    def _follow(self, pair: CandidatePair, now: float) -> None:
        """A new selected pair: its silence clock starts now, its consent clock at its last consent answer when
        that is recent (a pair kept fresh as an alternate, renomination: its checks stay 0.8-1.2 x apart across
        the move, RFC 7675 5.1), else now."""
        cfg = self._config
        self._consent_pair = pair
        last = pair._last_consent
        if last is not None and now - cfg.consent_interval < last < now:
            now_for_consent = last
        else:
            now_for_consent = now
        self._next_consent = now_for_consent + cfg.consent_interval * self._random.uniform(0.8, 1.2)
        self._last_rx, self._last_rx_at = -1, now
        self._last_tx, self._last_tx_at = -1, now
        # randomized like every later check (RFC 7675 5.1): agents whose pairs were selected in one burst
        # (a server's many peers connecting at once) would otherwise send their first checks, and so all
        # their later ones, in step
        self._early_consent = now_for_consent + cfg.consent_interval * self._random.uniform(0.8, 0.9)
