"""RFC 5780 NAT behaviour discovery, sans-IO: the RFC 4787 vocabulary and the classification rules.

Everything here is a pure function of what the server answered (mapped addresses, which CHANGE-REQUEST
tests got an answer, which lifetime probes were still alive): no socket, clock or Trio. The Trio side
(`probe.py`) sends the requests and feeds the answers in.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping, Sequence

import attrs

from ...errors import IceError
from ...uri import format_host_port
from ..attributes import Attr
from ..message import Message, MessageClass, Method

__all__ = [
    "ADF",
    "ADM",
    "ALL_CLASSES",
    "APDF",
    "APDM",
    "EIF",
    "EIM",
    "Address",
    "FilteringBehavior",
    "MappingBehavior",
    "MappingLifetime",
    "NatClass",
    "NatDiscoveryError",
    "check_change_request_source",
    "check_other_address",
    "classic_name",
    "classify_filtering",
    "classify_mapping",
    "is_behind_nat",
    "is_binding_response",
    "lifetime_bounds",
    "lifetime_idles",
    "mapped_address",
    "nat_type",
    "no_nat_notes",
    "normalize_address",
    "raise_for_error",
    "settle_hairpinning",
    "short_name",
]

Address = tuple[str, int]


class NatDiscoveryError(IceError):
    """The server cannot be used for RFC 5780 discovery, or it answered inconsistently (RFC 5780 4, 7)."""


class MappingBehavior(enum.Enum):
    """How a NAT maps an internal endpoint to external ones (RFC 4787 4.1, found by RFC 5780 4.3)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"

    @property
    def abbreviation(self) -> str:
        """EIM, ADM or APDM (RFC 4787 4.1)."""
        return {"endpoint-independent": "EIM", "address-dependent": "ADM", "address-and-port-dependent": "APDM"}[
            self.value
        ]


class FilteringBehavior(enum.Enum):
    """Which inbound packets a NAT lets through to a mapping (RFC 4787 5, found by RFC 5780 4.4)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"

    @property
    def abbreviation(self) -> str:
        """EIF, ADF or APDF (RFC 4787 5)."""
        return {"endpoint-independent": "EIF", "address-dependent": "ADF", "address-and-port-dependent": "APDF"}[
            self.value
        ]


EIM = MappingBehavior.ENDPOINT_INDEPENDENT
ADM = MappingBehavior.ADDRESS_DEPENDENT
APDM = MappingBehavior.ADDRESS_AND_PORT_DEPENDENT
EIF = FilteringBehavior.ENDPOINT_INDEPENDENT
ADF = FilteringBehavior.ADDRESS_DEPENDENT
APDF = FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT

NatClass = tuple[MappingBehavior, FilteringBehavior]
"""A (mapping, filtering) pair; no NAT counts as endpoint-independent mapping (RFC 5780 4.3)."""

ALL_CLASSES: tuple[NatClass, ...] = tuple((m, f) for m in MappingBehavior for f in FilteringBehavior)


@attrs.frozen
class MappingLifetime:
    """Bounds on how long an idle UDP mapping lives (RFC 5780 4.6, RFC 4787 4.3 REQ-1)."""

    at_least: float  # a mapping idle this long (seconds) still answered; 0.0 if even the shortest probe failed
    at_most: float | None  # a mapping idle this long was gone; None: every probe up to `bound` was alive
    bound: float  # the longest idle time probed

    def describe(self) -> str:
        """A few words: "between 25 s and 30 s", "more than 60 s", "less than 5 s"."""
        if self.at_most is None:
            return f"more than {self.bound:g} s (the longest probe)"
        if self.at_least <= 0:
            return f"less than {self.at_most:g} s"
        return f"between {self.at_least:g} s and {self.at_most:g} s"


# --- names --------------------------------------------------------------------------------------------------


def classic_name(behind_nat: bool, mapping: MappingBehavior, filtering: FilteringBehavior) -> str:
    """The RFC 3489 name of a behaviour ("port-restricted cone", ...), as far as one exists (RFC 5780 1)."""
    if not behind_nat:
        if filtering is EIF:
            return "no NAT (open internet)"
        return f"no NAT, but a firewall with {filtering.value} filtering"
    if mapping is EIM:
        return {EIF: "full cone", ADF: "restricted cone", APDF: "port-restricted cone"}[filtering]
    if mapping is APDM and filtering is APDF:
        return "symmetric"
    return "symmetric-like"  # RFC 3489 has no name for ADM or for APDM without APDF


def short_name(nat: NatClass) -> str:
    """The RFC 4787 abbreviations of a (mapping, filtering) pair: "EIM+APDF"."""
    return f"{nat[0].abbreviation}+{nat[1].abbreviation}"


def nat_type(behind_nat: bool, mapping: MappingBehavior, filtering: FilteringBehavior) -> str:
    """One lower-case token of RFC 4787 abbreviations: "eim-apdf"; without a NAT "none" (or "none-adf").

    The same notation names the vnet plugin's NAT presets; the core only defines the notation (RFC 4787 4.1, 5).
    """
    if not behind_nat:
        return "none" if filtering is EIF else f"none-{filtering.abbreviation.lower()}"
    return f"{mapping.abbreviation.lower()}-{filtering.abbreviation.lower()}"


# --- reading the server's answers --------------------------------------------------------------------------


def normalize_address(address: Address) -> Address:
    """`address` with its IP in canonical text (no zone, no leading zeros) so that equal addresses compare equal."""
    host, port = address
    try:
        return str(ipaddress.ip_address(host.partition("%")[0])), int(port)
    except ValueError:
        return host, int(port)


def is_binding_response(msg: Message) -> bool:
    """A Binding success or error response (RFC 8489 6.3): what ends a discovery transaction."""
    return msg.method is Method.BINDING and msg.message_class in (MessageClass.SUCCESS, MessageClass.ERROR)


def raise_for_error(msg: Message, server: Address, what: str) -> None:
    """Raise `NatDiscoveryError` naming the test `what` if `msg` is an error response (RFC 8489 14.8, 14.9)."""
    if msg.message_class is not MessageClass.ERROR:
        return
    code, reason = msg.get(Attr.ERROR_CODE) or (0, "no ERROR-CODE")
    unknown = msg.get(Attr.UNKNOWN_ATTRIBUTES)
    detail = ""
    if unknown:
        names = ", ".join(_attr_name(t) for t in unknown)
        detail = f" (it does not understand {names}: it does not implement RFC 5780)"
    raise NatDiscoveryError(
        f"STUN server {format_host_port(server)} answered {what} with error {code} {reason}{detail}"
    )


def _attr_name(code: int) -> str:
    try:
        return Attr(code).name.replace("_", "-")
    except ValueError:
        return f"{code:#06x}"


def mapped_address(msg: Message) -> Address:
    """The (XOR-)MAPPED-ADDRESS of a Binding success response (RFC 8489 14.1, 14.2), normalized."""
    mapped = msg.get(Attr.XOR_MAPPED_ADDRESS) or msg.get(Attr.MAPPED_ADDRESS)
    if mapped is None:
        raise NatDiscoveryError("the STUN server's Binding response has no XOR-MAPPED-ADDRESS (RFC 8489 14.2)")
    return normalize_address(mapped)


def check_other_address(server: Address, other: Address | None, software: str | None) -> Address:
    """The server's OTHER-ADDRESS if it makes RFC 5780 possible: same family, another IP and port (RFC 5780 7.4)."""
    where = format_host_port(server)
    name = f" ({software})" if software else ""
    if other is None:
        raise NatDiscoveryError(
            f"STUN server {where}{name} does not support RFC 5780 NAT behaviour discovery: its Binding response "
            "has no OTHER-ADDRESS. Use a server with two IP addresses, e.g. 'iceagent serve --stun IP:3478 --alt "
            "IP2' or coturn with two --listening-ip addresses"
        )
    other = normalize_address(other)
    if ipaddress.ip_address(other[0]).version != ipaddress.ip_address(server[0]).version:
        raise NatDiscoveryError(f"STUN server {where} gave OTHER-ADDRESS {format_host_port(other)} of another family")
    if other[0] == server[0] or other[1] == server[1]:
        raise NatDiscoveryError(
            f"STUN server {where} gave OTHER-ADDRESS {format_host_port(other)}, which must differ from the "
            "primary address in both IP and port (RFC 5780 7.4)"
        )
    return other


def check_change_request_source(
    server: Address, what: str, change_ip: bool, expected: Address, source: Address
) -> None:
    """Raise unless an answer to CHANGE-REQUEST came from the address it asked for (RFC 5780 6.1)."""
    if source == expected:
        return
    changed = "IP and port" if change_ip else "port"
    raise NatDiscoveryError(
        f"STUN server {format_host_port(server)} answered {what}, which asks for a reply from its other "
        f"{changed} ({format_host_port(expected)}), from {format_host_port(source)} instead: it does "
        "not honour CHANGE-REQUEST (RFC 5780 6.1)"
    )


# --- classification ----------------------------------------------------------------------------------------


def is_behind_nat(mapped: Address, local: Address, local_ips: Iterable[str]) -> bool:
    """False when test I's mapped address is this host's own (port and one of its IPs): no NAT (RFC 5780 4.3)."""
    return not (mapped[1] == local[1] and mapped[0] in set(local_ips))


def classify_mapping(mapped: Sequence[Address]) -> MappingBehavior | None:
    """RFC 5780 4.3 from the mapped addresses of tests I, II (and III); None while test III is still needed.

    I = II: endpoint-independent; II = III: address-dependent; otherwise address-and-port-dependent.
    """
    if len(mapped) < 2:
        raise ValueError("the mapping behaviour needs the mapped addresses of tests I and II")
    first, second = mapped[0], mapped[1]
    if second == first:
        return EIM
    if len(mapped) < 3:
        return None
    return ADM if mapped[2] == second else APDM


def classify_filtering(answered_other_ip_and_port: bool, answered_other_port: bool) -> FilteringBehavior:
    """RFC 5780 4.4 from which CHANGE-REQUEST tests got an answer: test II (other IP and port), III (other port)."""
    if answered_other_ip_and_port:
        return EIF
    return ADF if answered_other_port else APDF


def settle_hairpinning(
    received: bool | None, mapping: MappingBehavior, filtering: FilteringBehavior
) -> tuple[bool | None, str | None]:
    """The hairpinning verdict (RFC 5780 4.5) and a note when a refused hairpin cannot be told from filtering.

    Without endpoint-independent mapping or filtering, the hairpinned packet comes from a new mapping that
    the filter refuses whether or not the NAT hairpins (RFC 4787 6): "not received" is then undecided.
    """
    if received is False and mapping is not EIM and filtering is not EIF:
        return None, (
            "hairpinning: undecided; without endpoint-independent mapping or filtering a hairpinned packet comes "
            "from a new mapping that the filter refuses whether or not the NAT hairpins (RFC 4787 6)"
        )
    return received, None


def no_nat_notes(hairpinning: bool, lifetime: bool) -> list[str]:
    """The notes of a run that found no NAT (RFC 5780 4.3): the tests asked for do not apply."""
    notes = ["the mapped address is the local address: no NAT between this host and the server"]
    if hairpinning:
        notes.append("hairpinning: not applicable without a NAT")
    if lifetime:
        notes.append("mapping lifetime: not applicable without a NAT")
    return notes


def lifetime_idles(bound: float, probes: int) -> list[float]:
    """The idle times of the lifetime probes: `bound`*k/`probes` seconds for k = 1..probes (RFC 5780 4.6)."""
    return [bound * k / probes for k in range(1, probes + 1)]


def lifetime_bounds(alive: Mapping[float, bool], bound: float) -> MappingLifetime:
    """Bounds on the mapping lifetime from which idle times still got an answer (RFC 5780 4.6).

    The upper bound is the shortest idle time whose mapping was gone; the lower bound the longest one
    below it that still answered (0.0 if none did).
    """
    dead = [idle for idle, ok in alive.items() if not ok]
    at_most = min(dead) if dead else None
    at_least = max((idle for idle, ok in alive.items() if ok and (at_most is None or idle < at_most)), default=0.0)
    return MappingLifetime(at_least=at_least, at_most=at_most, bound=bound)
