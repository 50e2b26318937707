"""TURN (RFC 8656): the sans-IO client, ChannelData framing, and (in `iceagent.turn.allocation`) the Trio driver.

`TurnClient` is the client state machine of one allocation, fed bytes and times; `open_allocation`
(import it from `iceagent.turn.allocation`) runs one on a real or virtual network and gives an
`Allocation`, the transport of a relay candidate. The embedded server lives in `iceagent.turn.server`.
This package's `__init__` imports nothing from Trio, and nothing at all until a name is asked for: the
names below load their module on first use (PEP 562), so that an agent without TURN servers, which
only needs `iceagent.turn.transports` for the plugin hook, does not load the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy_names import lazy_names

if TYPE_CHECKING:
    from .auth import LongTermCredential
    from .client import TurnClient
    from .errors import (
        TurnAllocationLost,
        TurnAllocationMismatch,
        TurnAuthenticationError,
        TurnConnectionError,
        TurnError,
        TurnForbidden,
        TurnInsufficientCapacity,
        TurnQuotaReached,
        TurnRedirectError,
        TurnServerError,
        TurnTimeout,
        TurnUnsupported,
        TurnUnsupportedFamily,
    )
    from .events import (
        Allocated,
        AllocateFailed,
        AllocationLost,
        AllocationState,
        ChannelBindFailed,
        ChannelBound,
        PermissionFailed,
        PermissionInstalled,
        Redirected,
        Refreshed,
        Released,
        TurnEvent,
    )
    from .framing import (
        CHANNEL_DATA_MAX,
        CHANNEL_MAX,
        CHANNEL_MIN,
        ChannelDataError,
        StreamDeframer,
        decode_channel_data,
        encode_channel_data,
        is_channel_data,
    )

#: Each public name and the submodule that defines it, imported on first access (PEP 562).
_LAZY = {
    "LongTermCredential": "auth",
    "TurnClient": "client",
    "TurnAllocationLost": "errors",
    "TurnAllocationMismatch": "errors",
    "TurnAuthenticationError": "errors",
    "TurnConnectionError": "errors",
    "TurnError": "errors",
    "TurnForbidden": "errors",
    "TurnInsufficientCapacity": "errors",
    "TurnQuotaReached": "errors",
    "TurnRedirectError": "errors",
    "TurnServerError": "errors",
    "TurnTimeout": "errors",
    "TurnUnsupported": "errors",
    "TurnUnsupportedFamily": "errors",
    "Allocated": "events",
    "AllocateFailed": "events",
    "AllocationLost": "events",
    "AllocationState": "events",
    "ChannelBindFailed": "events",
    "ChannelBound": "events",
    "PermissionFailed": "events",
    "PermissionInstalled": "events",
    "Redirected": "events",
    "Refreshed": "events",
    "Released": "events",
    "TurnEvent": "events",
    "CHANNEL_DATA_MAX": "framing",
    "CHANNEL_MAX": "framing",
    "CHANNEL_MIN": "framing",
    "ChannelDataError": "framing",
    "StreamDeframer": "framing",
    "decode_channel_data": "framing",
    "encode_channel_data": "framing",
    "is_channel_data": "framing",
}

__all__ = [
    "CHANNEL_DATA_MAX",
    "CHANNEL_MAX",
    "CHANNEL_MIN",
    "AllocateFailed",
    "Allocated",
    "AllocationLost",
    "AllocationState",
    "ChannelBindFailed",
    "ChannelBound",
    "ChannelDataError",
    "LongTermCredential",
    "PermissionFailed",
    "PermissionInstalled",
    "Redirected",
    "Refreshed",
    "Released",
    "StreamDeframer",
    "TurnAllocationLost",
    "TurnAllocationMismatch",
    "TurnAuthenticationError",
    "TurnClient",
    "TurnConnectionError",
    "TurnError",
    "TurnEvent",
    "TurnForbidden",
    "TurnInsufficientCapacity",
    "TurnQuotaReached",
    "TurnRedirectError",
    "TurnServerError",
    "TurnTimeout",
    "TurnUnsupported",
    "TurnUnsupportedFamily",
    "decode_channel_data",
    "encode_channel_data",
    "is_channel_data",
]

#: The submodules the package imported when it loaded everything at once: still reachable as attributes.
_SUBMODULES = ("auth", "client", "errors", "events", "framing")

if not TYPE_CHECKING:  # mypy sees the imports above, so a misspelt name stays an error for it
    __getattr__, __dir__ = lazy_names(globals(), _LAZY, _SUBMODULES)
