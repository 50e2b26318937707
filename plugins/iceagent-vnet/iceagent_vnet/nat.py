"""NAT behaviour (RFC 4787) and the sans-IO translation table of a NAT: mappings, filtering, lifetime.

The table never reads a clock: every call takes `now`. The router feeds it packets.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from typing import Any

import attrs

from .addresses import Address, is_ipv6, normalize_ip


class Dependency(enum.Enum):
    """What a NAT's mapping or filtering depends on (RFC 4787 4.1 and 5)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"

    @property
    def short(self) -> str:
        """The prefix "ei", "ad" or "apd" of EIM/EIF, ADM/ADF, APDM/APDF."""
        return _SHORT[self]

    @classmethod
    def parse(cls, value: Dependency | str) -> Dependency:
        """A Dependency from itself, its value, or a short name ("ei", "eim", "eif", "ad", "adm", "apdf", ...)."""
        if isinstance(value, Dependency):
            return value
        text = str(value).lower().replace("_", "-")
        for dep in cls:
            if text in (dep.value, dep.short, dep.short + "m", dep.short + "f", dep.name.lower().replace("_", "-")):
                return dep
        raise ValueError(
            f"unknown NAT dependency {value!r}: use one of " + ", ".join(f"{d.value!r} ({d.short!r})" for d in cls)
        )


_SHORT = {
    Dependency.ENDPOINT_INDEPENDENT: "ei",
    Dependency.ADDRESS_DEPENDENT: "ad",
    Dependency.ADDRESS_AND_PORT_DEPENDENT: "apd",
}

EIM = EIF = Dependency.ENDPOINT_INDEPENDENT
ADM = ADF = Dependency.ADDRESS_DEPENDENT
APDM = APDF = Dependency.ADDRESS_AND_PORT_DEPENDENT


def _dependency(value: Dependency | str) -> Dependency:
    return Dependency.parse(value)


def _positive(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"NatBehavior.{attribute.name} must be > 0, not {value!r}")


def _port_range(_inst: Any, _attribute: attrs.Attribute[Any], value: tuple[int, int]) -> None:
    low, high = value
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"NatBehavior.port_range must satisfy 1 <= low <= high <= 65535, not {value!r}")


@attrs.frozen
class NatBehavior:
    """The behaviour of a NAT, in RFC 4787's terms; the ground truth a NAT classifier is checked against.

    * mapping: RFC 4787 4.1 (EIM, ADM, APDM); filtering: RFC 4787 5 (EIF, ADF, APDF);
    * hairpinning: RFC 4787 6 (REQ-9): a packet from the LAN to a mapped address is turned back
      with its source translated to the sender's external address;
    * port_preservation: RFC 4787 4.2.1: a new mapping keeps the internal port when it is free;
    * mapping_lifetime: RFC 4787 4.3 (REQ-5 says >= 120 s) for UDP, tcp_lifetime: RFC 5382 REQ-5;
    * inbound_refresh: RFC 4787 4.3 (REQ-6: outbound traffic always refreshes; inbound only if this is set);
    * port_range: external ports handed out.
    """

    mapping: Dependency = attrs.field(default=EIM, converter=_dependency)
    filtering: Dependency = attrs.field(default=APDF, converter=_dependency)
    hairpinning: bool = True
    port_preservation: bool = False
    mapping_lifetime: float = attrs.field(default=120.0, validator=_positive)
    tcp_lifetime: float = attrs.field(default=7440.0, validator=_positive)
    inbound_refresh: bool = False
    port_range: tuple[int, int] = attrs.field(default=(1024, 65535), validator=_port_range)

    @property
    def name(self) -> str:
        """The "{eim|adm|apdm}-{eif|adf|apdf}" name of this combination: the preset name, in the notation of
        iceagent's `NatDiscoveryResult.nat_type`, so a discovery result names the preset it ran behind."""
        return f"{self.mapping.short}m-{self.filtering.short}f"

    def describe(self) -> str:
        """A one-line human description."""
        parts = [f"{self.mapping.value} mapping", f"{self.filtering.value} filtering"]
        parts.append("hairpinning" if self.hairpinning else "no hairpinning")
        if self.port_preservation:
            parts.append("port preservation")
        parts.append(f"lifetime {self.mapping_lifetime:g} s")
        return ", ".join(parts)

    def lifetime(self, proto: str) -> float:
        """Mapping lifetime for `proto` ("udp" or "tcp")."""
        return self.tcp_lifetime if proto == "tcp" else self.mapping_lifetime


def _combinations() -> dict[str, NatBehavior | None]:
    out: dict[str, NatBehavior | None] = {}
    for m in Dependency:
        for f in Dependency:
            behavior = NatBehavior(mapping=m, filtering=f)
            out[behavior.name] = behavior
    return out


PRESETS: dict[str, NatBehavior | None] = {
    "none": None,
    "full-cone": NatBehavior(mapping=EIM, filtering=EIF),
    "restricted-cone": NatBehavior(mapping=EIM, filtering=ADF),
    "port-restricted": NatBehavior(mapping=EIM, filtering=APDF),
    "symmetric": NatBehavior(mapping=APDM, filtering=APDF),
    **_combinations(),
}
"""Named NAT behaviours: "none" (plain routing), the classic cone names, and every "{m}-{f}" combination."""


def nat_preset(name: str, **overrides: Any) -> NatBehavior | None:
    """The NatBehavior named `name` (None for "none"), with fields overridden; ValueError lists valid names."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise ValueError(f"unknown NAT preset {name!r}; valid names: {', '.join(PRESETS)}")
    behavior = PRESETS[key]
    if behavior is None:
        if overrides:
            raise ValueError(f"NAT preset 'none' (no NAT) takes no options, got {sorted(overrides)}")
        return None
    return attrs.evolve(behavior, **overrides) if overrides else behavior


def resolve_nat(spec: NatBehavior | str | None) -> NatBehavior | None:
    """A NatBehavior (or None for plain routing) from a behaviour, a preset name, or None."""
    if spec is None or isinstance(spec, NatBehavior):
        return spec
    if isinstance(spec, str):
        return nat_preset(spec)
    raise TypeError(f"nat must be a NatBehavior, a preset name or None, not {type(spec).__name__}")


@attrs.define(eq=False)
class Mapping:
    """One NAT mapping (RFC 4787 4.1): internal endpoint -> external endpoint, for `remote` if dependent.

    `remote` is what the mapping depends on: None (EIM), the remote IP (ADM) or the remote address (APDM).
    `permissions` are the remote endpoints the internal endpoint sent to through it (RFC 4787 5 filtering).
    """

    proto: str
    internal: Address
    external: Address
    remote: str | Address | None
    created: float
    expires: float
    permissions: set[Address] = attrs.field(factory=set)
    permitted_ips: set[str] = attrs.field(factory=set)
    #: a port forward a port-mapping protocol asked for (RFC 6887 11.1): unfiltered until `expires`
    forward: bool = False


class NatTable:
    """The translation state of one NAT (sans-IO: every call takes `now`)."""

    def __init__(self, behavior: NatBehavior, public: Iterable[str], *, seed: str = "") -> None:
        self.behavior = behavior
        self._public: dict[bool, str] = {}
        self._rng = random.Random(f"nat|{seed}")
        self._by_key: dict[tuple[str, Address, str | Address | None], Mapping] = {}
        self._by_external: dict[tuple[str, Address], Mapping] = {}
        self._forwards: dict[tuple[str, Address], Mapping] = {}
        self._next_purge = 0.0
        self.set_public(public)

    @property
    def public_addresses(self) -> tuple[str, ...]:
        """The external IPs (at most one per family)."""
        return tuple(self._public.values())

    def set_public(self, addresses: Iterable[str]) -> None:
        """Set the external IPs (one per family) and drop every mapping."""
        public: dict[bool, str] = {}
        for address in addresses:
            ip = normalize_ip(address)
            if is_ipv6(ip) in public:
                raise ValueError(f"a NAT has one public address per family; got {public[is_ipv6(ip)]} and {ip}")
            public[is_ipv6(ip)] = ip
        self._public = public
        self.clear()

    def clear(self) -> None:
        """Drop every mapping (a reboot)."""
        self._by_key.clear()
        self._by_external.clear()
        self._forwards.clear()

    def _remove(self, mapping: Mapping) -> None:
        if mapping.forward:
            self._forwards.pop((mapping.proto, mapping.internal), None)
        else:
            self._by_key.pop((mapping.proto, mapping.internal, mapping.remote), None)
        self._by_external.pop((mapping.proto, mapping.external), None)

    def forward(self, proto: str, internal: Address, suggested: int, expires: float, now: float) -> Mapping | None:
        """Make or renew the port forward of `internal` until `expires` (a PCP/NAT-PMP mapping, RFC 6887 11):
        the suggested external port if free, else another; None without a public address or a free port."""
        mapping = self._forwards.get((proto, internal))
        if mapping is not None and mapping.expires > now:
            mapping.expires = expires
            return mapping
        implicit = self._by_key.pop((proto, internal, None), None)  # the endpoint-independent mapping, if any
        if implicit is not None and implicit.expires > now:
            # RFC 6887 11.3: an implicit dynamic mapping of the internal address becomes the explicit one
            implicit.forward, implicit.expires = True, expires
            self._forwards[(proto, internal)] = implicit
            return implicit
        public = self._public.get(is_ipv6(internal[0]))
        if public is None:
            return None
        low, high = self.behavior.port_range
        if low <= suggested <= high and self._port_free(proto, (public, suggested), now):
            port: int | None = suggested
        else:
            port = self._allocate(proto, public, internal[1], now)
        if port is None:
            return None
        mapping = Mapping(proto, internal, (public, port), None, created=now, expires=expires, forward=True)
        self._forwards[(proto, internal)] = mapping
        self._by_external[(proto, mapping.external)] = mapping
        return mapping

    def remove_forward(self, proto: str, internal: Address) -> None:
        """Delete the port forward of `internal` (a mapping request with lifetime 0, RFC 6887 15)."""
        mapping = self._forwards.get((proto, internal))
        if mapping is not None:
            self._remove(mapping)

    def forwards(self, now: float) -> list[Mapping]:
        """The live port forwards."""
        return [m for m in self._forwards.values() if m.expires > now]

    def _dependency_key(self, remote: Address) -> str | Address | None:
        dep = self.behavior.mapping
        if dep is Dependency.ENDPOINT_INDEPENDENT:
            return None
        if dep is Dependency.ADDRESS_DEPENDENT:
            return remote[0]
        return remote

    def _port_free(self, proto: str, external: Address, now: float) -> bool:
        existing = self._by_external.get((proto, external))
        if existing is None:
            return True
        if existing.expires <= now:
            self._remove(existing)
            return True
        return False

    def _allocate(self, proto: str, public: str, internal_port: int, now: float) -> int | None:
        low, high = self.behavior.port_range
        if self.behavior.port_preservation and low <= internal_port <= high:
            if self._port_free(proto, (public, internal_port), now):
                return internal_port
        for _ in range(32):
            port = self._rng.randint(low, high)
            if self._port_free(proto, (public, port), now):
                return port
        start = self._rng.randint(low, high)
        span = high - low + 1
        for i in range(span):
            port = low + (start - low + i) % span
            if self._port_free(proto, (public, port), now):
                return port
        return None

    def outbound(self, proto: str, internal: Address, remote: Address, now: float) -> Mapping | None:
        """The mapping for a packet internal -> remote, created or refreshed (RFC 4787 4.1, 4.3).

        None if the NAT has no public address of the packet's family or has run out of ports.
        """
        if now >= self._next_purge:
            self._purge(now)
        forward = self._forwards.get((proto, internal))
        if forward is not None and forward.expires > now:
            return forward  # a port forward is the endpoint's mapping towards everyone (RFC 6887 11.1)
        key = (proto, internal, self._dependency_key(remote))
        mapping = self._by_key.get(key)
        if mapping is not None and mapping.expires <= now:
            self._remove(mapping)
            mapping = None
        if mapping is None:
            public = self._public.get(is_ipv6(remote[0]))
            if public is None:
                return None
            port = self._allocate(proto, public, internal[1], now)
            if port is None:
                return None
            mapping = Mapping(proto, internal, (public, port), key[2], created=now, expires=now)
            self._by_key[key] = mapping
            self._by_external[(proto, mapping.external)] = mapping
        mapping.expires = now + self.behavior.lifetime(proto)
        mapping.permissions.add(remote)
        mapping.permitted_ips.add(remote[0])
        return mapping

    def lookup(self, proto: str, external: Address, now: float) -> Mapping | None:
        """The live mapping with this external address, if any."""
        mapping = self._by_external.get((proto, external))
        if mapping is not None and mapping.expires <= now:
            self._remove(mapping)
            return None
        return mapping

    def inbound(self, proto: str, external: Address, remote: Address, now: float) -> Mapping | str:
        """The mapping an inbound packet remote -> external passes through, or why it is dropped.

        "no_mapping": nothing is mapped there (or it expired); "filtered": RFC 4787 5 filtering said no.
        """
        mapping = self.lookup(proto, external, now)
        if mapping is None:
            return "no_mapping"
        if mapping.forward:
            return mapping
        dep = self.behavior.filtering
        if dep is Dependency.ADDRESS_DEPENDENT and remote[0] not in mapping.permitted_ips:
            return "filtered"
        if dep is Dependency.ADDRESS_AND_PORT_DEPENDENT and remote not in mapping.permissions:
            return "filtered"
        if self.behavior.inbound_refresh:
            mapping.expires = now + self.behavior.lifetime(proto)
        return mapping

    def _purge(self, now: float) -> None:
        """Drop the expired mappings (RFC 4787 4.3); run from `outbound` at most once per UDP mapping lifetime,
        so a NAT that is never rebooted keeps only the mappings of the last lifetime or two, not every one
        it ever made (a symmetric NAT makes one per destination)."""
        lifetime = self.behavior.mapping_lifetime
        self._next_purge = (now // lifetime + 1) * lifetime
        for mapping in [m for m in self._by_external.values() if m.expires <= now]:
            self._remove(mapping)

    def mappings(self, now: float, proto: str | None = None) -> list[Mapping]:
        """The live mappings (expired ones are purged), oldest first."""
        self._purge(now)
        return sorted(
            (m for m in self._by_external.values() if proto is None or m.proto == proto),
            key=lambda m: (m.created, m.external),
        )
