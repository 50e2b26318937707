"""Moved: RFC 5780 NAT behaviour discovery now lives in `iceagent.stun.nat_discovery`.

This module re-exports the public names it had, for one release; import them from
`iceagent.stun.nat_discovery` instead (`model`: the RFC 4787 vocabulary and classification, sans-IO;
`explain`: what a behaviour means for direct connections; `result`: `NatDiscoveryResult`; `probe`:
`discover_nat` on Trio). `iceagent.nat` is kept for one release and then removed.
"""

from __future__ import annotations

from .stun.nat_discovery import (
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
    NatDiscoveryResult,
    classic_name,
    direct_connection_possible,
    discover_nat,
    explain_direct_connectivity,
)

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
