"""The agent's connection and gathering states (RFC 8445 6.1.3 and the W3C RTCIceConnectionState names)."""

from __future__ import annotations

import enum


class IceState(enum.Enum):
    """Connection state of an agent, as `agent.state.value`."""

    NEW = "new"
    CHECKING = "checking"
    CONNECTED = "connected"
    COMPLETED = "completed"
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    CLOSED = "closed"


class GatheringState(enum.Enum):
    """Gathering state of the current generation, as `agent.gathering_state.value`."""

    NEW = "new"
    GATHERING = "gathering"
    COMPLETE = "complete"
