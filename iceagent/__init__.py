"""iceagent: an ICE agent (RFC 8445) on Trio's structured concurrency.

The public API (DESIGN.md "Contract") is re-exported here; everything else is an implementation detail.
"""

from .agent import Agent, IceStream, open_agent
from .config import IceConfig
from .errors import CandidateParseError, IceError, IceFailed, IceServerError, PortRangeExhausted, StunTimeout
from .ice.candidate import Candidate
from .ice.pair import CandidatePair, PairState
from .ice.parameters import IceParameters, IceParametersError, IceParametersSdpError
from .net.mux import Mux, MuxEndpoint, MuxError, MuxFull, MuxLimits, MuxTcpTransport, MuxTransport, open_mux
from .states import GatheringState, IceState
from .uri import IceServer

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "Candidate",
    "CandidatePair",
    "CandidateParseError",
    "GatheringState",
    "IceConfig",
    "IceError",
    "IceFailed",
    "IceParameters",
    "IceParametersError",
    "IceParametersSdpError",
    "IceServer",
    "IceServerError",
    "IceState",
    "IceStream",
    "Mux",
    "MuxEndpoint",
    "MuxError",
    "MuxFull",
    "MuxLimits",
    "MuxTcpTransport",
    "MuxTransport",
    "PairState",
    "PortRangeExhausted",
    "StunTimeout",
    "__version__",
    "open_agent",
    "open_mux",
]
