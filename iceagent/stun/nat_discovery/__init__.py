"""NAT behaviour discovery (RFC 5780 4) against a STUN server with two addresses, on the `Network` seam.

`discover_nat(network, server)` classifies the NAT between this host and `server` in RFC 4787's terms
(mapping, filtering, and if asked hairpinning and the mapping lifetime); `direct_connection_possible`
says, for two NAT behaviours, whether ICE with host, server-reflexive and peer-reflexive candidates can
connect them without a relay.

* `model`: the RFC 4787 vocabulary and the classification rules, sans-IO (pure functions of the answers);
* `explain`: what a behaviour means for direct ICE connections, sans-IO;
* `result`: `NatDiscoveryResult`, the outcome and its evidence;
* `probe`: `discover_nat`, the Trio side that sends the probes.
"""

from .explain import direct_connection_possible, explain_direct_connectivity
from .model import (
    ADF,
    ADM,
    ALL_CLASSES,
    APDF,
    APDM,
    EIF,
    EIM,
    FilteringBehavior,
    MappingBehavior,
    MappingLifetime,
    NatClass,
    NatDiscoveryError,
    classic_name,
)
from .probe import discover_nat
from .result import NatDiscoveryResult

__all__ = [
    "ADF",
    "ADM",
    "ALL_CLASSES",
    "APDF",
    "APDM",
    "EIF",
    "EIM",
    "FilteringBehavior",
    "MappingBehavior",
    "MappingLifetime",
    "NatClass",
    "NatDiscoveryError",
    "NatDiscoveryResult",
    "classic_name",
    "direct_connection_possible",
    "discover_nat",
    "explain_direct_connectivity",
]
