"""TURN (RFC 8656): the sans-IO client, ChannelData framing, and (in `iceagent.turn.allocation`) the Trio driver.

`TurnClient` is the client state machine of one allocation, fed bytes and times; `open_allocation`
(import it from `iceagent.turn.allocation`) runs one on a real or virtual network and gives an
`Allocation`, the transport of a relay candidate. The embedded server lives in `iceagent.turn.server`.
This package's `__init__` imports nothing from Trio.
"""

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
