"""Pluggy hook specifications of the "iceagent" project (see DESIGN.md, "Plugins").

Gatherers and TURN transports are provided by plugins (the built-in ones too); observer hooks let
tracing, stats and UI plugins watch every agent. Observer hooks are called with `agent=` first.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("iceagent")
hookimpl = pluggy.HookimplMarker("iceagent")


@hookspec
def iceagent_gatherers(options: Any) -> list[Any]:  # type: ignore[empty-body]
    """Return the candidate gatherers this plugin adds for an agent with these GatherOptions.

    Each gatherer has `kind: str` and `async def run(ctx: GatherContext)`; return [] to add none.
    """


@hookspec
def iceagent_turn_transports() -> dict[str, Any]:  # type: ignore[empty-body]
    """Return {transport name: TurnTransportFactory} for reaching TURN servers (udp, tcp, tls built in)."""


@hookspec
def iceagent_networks() -> dict[str, Any]:  # type: ignore[empty-body]
    """Return {name: ScenarioFactory}: named network factories (the vnet plugin provides "vnet")."""


@hookspec
def iceagent_candidate_gathered(agent: Any, candidate: Any) -> None:
    """A local candidate was gathered (and handed to the application by `gather()`)."""


@hookspec
def iceagent_pair_state_changed(agent: Any, pair: Any, old: Any, new: Any) -> None:
    """A candidate pair changed state (FROZEN, WAITING, IN_PROGRESS, SUCCEEDED, FAILED)."""


@hookspec
def iceagent_state_changed(agent: Any, old: Any, new: Any) -> None:
    """The agent's IceState changed."""


@hookspec
def iceagent_selected_pair_changed(agent: Any, pair: Any) -> None:
    """The pair the stream sends on changed (None when the agent lost every pair)."""


@hookspec
def iceagent_renomination(agent: Any, old: Any, new: Any) -> None:
    """Nomination moved from pair `old` to pair `new` without a restart (renomination negotiated,
    draft-thatcher-ice-renomination); iceagent_selected_pair_changed reports the stream's switch too."""


@hookspec
def iceagent_network_changed(agent: Any, changes: Any) -> None:
    """Addresses of the agent's Network came or went (`changes`: a tuple of `iceagent.net.InterfaceChange`),
    before the agent reacts (DESIGN.md "Continual gathering": it restarts at once when the selected pair's
    local address is gone)."""


@hookspec
def iceagent_check(
    agent: Any, pair: Any, direction: str, kind: str, transaction_id: bytes, local: Any, remote: Any, message: Any
) -> None:
    """A connectivity-check STUN message was sent or received (checks, their responses, consent checks).

    `direction` is "send" or "receive"; `kind` is "request", "success", "error" or "indication";
    `pair` is the CandidatePair it belongs to (None if unknown); `local` is the base Candidate,
    `remote` the peer's (ip, port); `message` the decoded stun Message. An agent looks for
    implementations once per ICE generation: register the plugin before opening the agent.
    """
