"""The iceagent_check observer hook (iceagent.hookspecs): every STUN check an agent sends or receives."""

from __future__ import annotations

from typing import Any

from ..ice.candidate import Candidate
from ..ice.pair import CandidatePair
from ..logs import get_logger
from ..net.base import Address
from ..stun.message import Message, MessageClass

__all__ = ["AgentObservers", "CheckObserver"]

log = get_logger("iceagent.agent")

_CHECK_KINDS = {
    MessageClass.REQUEST: "request",
    MessageClass.INDICATION: "indication",
    MessageClass.SUCCESS: "success",
    MessageClass.ERROR: "error",
}


class CheckObserver:
    """Calls the hook for one agent; made only when some plugin implements it (it costs a decode per packet)."""

    __slots__ = ("_agent", "_hook")

    def __init__(self, agent: Any, hook: Any) -> None:
        self._agent = agent
        self._hook = hook

    @classmethod
    def create(cls, agent: Any) -> CheckObserver | None:
        """The observer for `agent` (which has `name` and `plugin_manager`), or None when no plugin listens."""
        hook = getattr(agent.plugin_manager.hook, "iceagent_check", None)
        if hook is None or not hook.get_hookimpls():
            return None
        return cls(agent, hook)

    def __call__(
        self, direction: str, msg: Message | bytes, base: Candidate, remote: Address, pair: CandidatePair | None
    ) -> None:
        """Report one check; a plugin that raises is logged, never allowed to end the agent."""
        try:
            if isinstance(msg, bytes):
                msg = Message.decode(msg)
            self._hook(
                agent=self._agent,
                pair=pair,
                direction=direction,
                kind=_CHECK_KINDS[msg.message_class],
                transaction_id=msg.transaction_id,
                local=base,
                remote=remote,
                message=msg,
            )
        except Exception:
            log.exception("%s: observer hook iceagent_check raised", self._agent.name)


#: Observer hooks (iceagent.hookspecs) the agent calls itself; iceagent_check is the CheckObserver's.
_AGENT_HOOKS = (
    "iceagent_candidate_gathered",
    "iceagent_pair_state_changed",
    "iceagent_state_changed",
    "iceagent_selected_pair_changed",
    "iceagent_renomination",
    "iceagent_network_changed",
)


class AgentObservers:
    """The agent-level observer hooks some plugin implements, looked up once when the agent opens
    (observers are registered before agents open, as docs/guide-plugins.md says)."""

    __slots__ = ("_agent", "_callers")

    def __init__(self, agent: Any, callers: dict[str, Any]) -> None:
        self._agent = agent
        self._callers = callers

    @classmethod
    def create(cls, agent: Any) -> AgentObservers | None:
        """The observers of `agent` (which has `name` and `plugin_manager`), or None when no plugin listens."""
        callers = {}
        for name in _AGENT_HOOKS:
            caller = getattr(agent.plugin_manager.hook, name, None)
            if caller is not None and caller.get_hookimpls():
                callers[name] = caller
        return cls(agent, callers) if callers else None

    def listens(self, name: str) -> bool:
        """Whether a plugin implements hook `name`."""
        return name in self._callers

    def call(self, name: str, **kwargs: Any) -> None:
        """Call hook `name` if a plugin implements it; a plugin that raises is logged, never fatal."""
        caller = self._callers.get(name)
        if caller is None:
            return
        try:
            caller(agent=self._agent, **kwargs)
        except Exception:
            log.exception("%s: observer hook %s raised", self._agent.name, name)
