"""The outcome of RFC 5780 discovery: the behaviours found, their evidence, and their meaning (sans-IO)."""

from __future__ import annotations

from typing import Any

import attrs

from . import model
from .explain import direct_connection_possible, explain_direct_connectivity
from .model import ALL_CLASSES, Address, FilteringBehavior, MappingBehavior, MappingLifetime, NatClass

__all__ = ["NatDiscoveryResult"]


@attrs.frozen
class NatDiscoveryResult:
    """What RFC 5780 discovery found (RFC 5780 4.3-4.6), in RFC 4787 terms, with its evidence."""

    server: Address  # the primary address asked (test I)
    other_address: Address  # the server's OTHER-ADDRESS (RFC 5780 7.4)
    local: Address  # the local address of the mapping tests' socket (as bound)
    mapped: Address  # the mapped address of test I
    behind_nat: bool  # False when the mapped address is the local one (RFC 5780 4.3)
    mapping: MappingBehavior
    filtering: FilteringBehavior
    mapped_addresses: tuple[Address, ...]  # mapped addresses of tests I, II, III (fewer when I or II decided)
    hairpinning: bool | None = None  # None: not tested, or not decidable (see `notes`)
    mapping_lifetime: MappingLifetime | None = None  # None: not measured (or no NAT)
    software: str | None = None  # the server's SOFTWARE (RFC 8489 14.14)
    elapsed: float = 0.0  # seconds the discovery took
    notes: tuple[str, ...] = ()  # caveats: undecidable hairpinning, no NAT, ...

    @property
    def nat_type(self) -> str:
        """The behaviour in lower-case RFC 4787 abbreviations: "eim-apdf"; "none" without a NAT (RFC 4787 4.1, 5)."""
        return model.nat_type(self.behind_nat, self.mapping, self.filtering)

    @property
    def port_preserved(self) -> bool:
        """The mapped port equals the local port (RFC 4787 4.2.1 port preservation, or no NAT)."""
        return self.mapped[1] == self.local[1]

    @property
    def classic_name(self) -> str:
        """The RFC 3489 name ("full cone", "restricted cone", "port-restricted cone", "symmetric", ...)."""
        return model.classic_name(self.behind_nat, self.mapping, self.filtering)

    @property
    def direct_connectivity(self) -> str:
        """What this means for direct connections with peers (see `explain_direct_connectivity`)."""
        return explain_direct_connectivity(self.behind_nat, self.mapping, self.filtering)

    def reachable_peers(self) -> list[NatClass]:
        """The peer behaviours a direct ICE connection works with (`direct_connection_possible`)."""
        return [peer for peer in ALL_CLASSES if direct_connection_possible((self.mapping, self.filtering), peer)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (addresses as {"address", "port"}, enums as their values)."""

        def addr(a: Address) -> dict[str, Any]:
            return {"address": a[0], "port": a[1]}

        lifetime = self.mapping_lifetime
        return {
            "behind_nat": self.behind_nat,
            "mapping": self.mapping.value,
            "filtering": self.filtering.value,
            "nat_type": self.nat_type,
            "classic_name": self.classic_name,
            "hairpinning": self.hairpinning,
            "mapping_lifetime": None if lifetime is None else attrs.asdict(lifetime),
            "port_preserved": self.port_preserved,
            "direct_connectivity": self.direct_connectivity,
            "direct_peers": [model.short_name(p) for p in self.reachable_peers()],
            "local": addr(self.local),
            "mapped": addr(self.mapped),
            "mapped_addresses": [addr(a) for a in self.mapped_addresses],
            "server": addr(self.server),
            "other_address": addr(self.other_address),
            "software": self.software,
            "elapsed_ms": round(self.elapsed * 1000, 3),
            "notes": list(self.notes),
        }
