"""ICE candidates (RFC 8445 5.1) and their SDP `a=candidate` form (RFC 8839 5.1).

Grammar (RFC 8839 5.1, with RFC 6544 4.5 `tcptype`)::

    candidate-attribute = "candidate" ":" foundation SP component-id SP transport SP priority SP
                          connection-address SP port SP "typ" SP cand-type
                          [SP "raddr" SP connection-address] [SP "rport" SP port] *(SP cand-extension)

Parsing is strict about the fields ICE needs and lenient where browsers differ:

- `a=` and `candidate:` are optional; surrounding whitespace (a trailing CRLF) is ignored, and tokens
  may be separated by any run of whitespace.
- keywords (`candidate`, `typ`, the candidate types, `UDP`/`TCP`, `raddr`, `rport`, `tcptype` and its
  values) are case-insensitive, as ABNF literals are (RFC 5234 2.3), and stored in lower case.
- `raddr`/`rport`, `tcptype`, `generation` and `ufrag` may appear anywhere after the type, each at most
  once; every other name/value pair is kept, in order, in `extensions`.
- `connection-address` is an IPv4 or IPv6 literal or a host name (an mDNS `<uuid>.local` name), kept
  exactly as given.  `raddr`/`rport` are optional for every type (browsers hide them behind
  `0.0.0.0 0` or leave them out).

Canonical form, the one `to_sdp()` writes: single spaces, keywords in lower case, numbers without
leading zeros, and after the type: raddr, rport, tcptype, generation, ufrag, then the extensions in
order.  That is what Chrome, Firefox (apart from its upper-case `UDP`/`TCP`) and Safari emit.  A line
whose known attributes come in another order is remembered as parsed, so `to_sdp()` gives exactly the
same line back; the remembered order is not part of equality and is dropped by `attrs.evolve()`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import sys
from collections.abc import Iterable

import attrs

from .._addresses import category, parse_ip
from ..errors import CandidateParseError
from ._text import clip as _clip
from ._text import int_text as _int_text
from .parameters import MAX_PACING, MIN_PACING, IceParameters, IceParametersError

__all__ = [
    "CANDIDATE_TYPES",
    "MAX_PACING",
    "MIN_PACING",
    "TCP_TYPES",
    "TRANSPORTS",
    "Candidate",
    "CandidateParseError",
    "IceParameters",
    "IceParametersError",
    "check_candidate",
    "unusable_address",
    "unusable_reason",
]

#: Candidate types (RFC 8445 5.1.1, RFC 8839 5.1 `candidate-types`).
MDNS_ENDINGS = ("l", "L", ".")
"""How a `.local` name (trailing dots and any case allowed) can end: what `is_mdns` looks at first."""
CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
#: Transports this agent can use (RFC 8839 5.1 `transport`, RFC 6544).
TRANSPORTS = frozenset({"udp", "tcp"})
#: ICE-TCP connection directions (RFC 6544 4.5).
TCP_TYPES = frozenset({"active", "passive", "so"})

_MAX_PRIORITY = 2**32 - 1
#: Largest `generation` accepted: a legacy extension without a grammar of its own, so any signed 64-bit value.
_MAX_GENERATION = 2**63 - 1
#: Digits a number token may have once leading zeros are gone: every field fits in 10, and a longer token is
#: refused before `int()` sees it (Python refuses more than 4300 digits with its own ValueError).
_MAX_DIGITS = 20
# The attributes after `typ` that have their own fields, in canonical order.
_KNOWN = ("raddr", "rport", "tcptype", "generation", "ufrag")
_FIELD_NAMES = (
    "foundation",
    "component-id",
    "transport",
    "priority",
    "connection-address",
    "port",
    "'typ'",
    "candidate type",
)
_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]{1,32}")  # foundation = 1*32ice-char
_DIGITS = re.compile(r"[0-9]+")
_IPV4ISH = re.compile(r"[0-9.]+")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")
# RFC 3261 token: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_VCHARS = re.compile(r"[\x21-\x7e]+")  # extension-att-value = *VCHAR

# A parsed order of the attributes after `typ`: a known name, or None for "the next extension".
_Layout = tuple[str | None, ...]


def _to_extensions(value: Iterable[Iterable[str]]) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for pair in value:
        name, val = pair
        pairs.append((str(name), str(val)))
    return tuple(pairs)


def _lower(value: str) -> str:
    """Lower case, as one shared string per spelling: every candidate carries a transport and a type, and
    `str.lower` makes a new string each time."""
    return sys.intern(value.lower())


def _number(what: str, token: str, low: int, high: int) -> int:
    if not _DIGITS.fullmatch(token):
        raise CandidateParseError(f"{what} {_clip(token)} is not a number")
    if len(token.lstrip("0")) > _MAX_DIGITS:
        raise CandidateParseError(f"{what} {_clip(token)} out of range ({low}..{high})")
    value = int(token)
    if value < low or value > high:
        raise CandidateParseError(f"{what} {_clip(token)} out of range ({low}..{high})")
    return value


def _address(what: str, token: str) -> str:
    """Check a `connection-address` (RFC 8839 5.1, RFC 4566): an IP literal or a host name, kept as given."""
    if ":" in token:
        try:
            ipaddress.IPv6Address(token)
        except ValueError:
            raise CandidateParseError(f"{what} {_clip(token)} is not a valid IPv6 address") from None
        return token
    if _IPV4ISH.fullmatch(token):
        try:
            ipaddress.IPv4Address(token)
        except ValueError:
            raise CandidateParseError(f"{what} {_clip(token)} is not a valid IPv4 address") from None
        return token
    labels = token[:-1].split(".") if token.endswith(".") else token.split(".")
    if len(token) > 254 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise CandidateParseError(f"{what} {_clip(token)} is not an IP address or a host name")
    return token


@attrs.frozen(cache_hash=True)
class Candidate:
    """One transport address a peer may be reached at (RFC 8445 5.1); immutable and hashable.

    `to_sdp()` of a line parsed by `from_sdp()` in canonical form gives the same line back (see the
    module docstring for what canonical means and for lines in another order).
    """

    foundation: str
    component: int
    transport: str = attrs.field(converter=_lower)  # "udp" | "tcp" (lower case)
    priority: int
    address: str  # an IP literal, or a `<uuid>.local` name (mDNS)
    port: int
    type: str = attrs.field(converter=_lower)  # "host" | "srflx" | "prflx" | "relay"
    related_address: str | None = None
    related_port: int | None = None
    tcptype: str | None = None  # "active" | "passive" | "so"
    generation: int | None = None
    ufrag: str | None = None
    # unknown extension attributes, in order
    extensions: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_to_extensions)
    # The order of the attributes after `typ` as parsed, when not canonical (not compared, not hashed).
    _layout: _Layout | None = attrs.field(default=None, init=False, eq=False, repr=False)

    # ---- derived helpers ----

    @property
    def addr(self) -> tuple[str, int]:
        """The transport address `(address, port)`."""
        return (self.address, self.port)

    @property
    def related_addr(self) -> tuple[str, int] | None:
        """The related address `(raddr, rport)` (RFC 8839 5.1), or None unless both are present."""
        if self.related_address is None or self.related_port is None:
            return None
        return (self.related_address, self.related_port)

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The address as an `ipaddress` object, or None for a host name (an mDNS candidate)."""
        try:
            return ipaddress.ip_address(self.address)
        except ValueError:
            return None

    @property
    def family(self) -> int | None:
        """4 or 6 for an IP address, None for a host name (resolve it first, RFC 8839 5.1)."""
        ip = self.ip
        return None if ip is None else ip.version

    @property
    def is_mdns(self) -> bool:
        """True for an mDNS host name such as `<uuid>.local` (draft-ietf-mmusic-mdns-ice-candidates)."""
        address = self.address
        if not address.endswith(MDNS_ENDINGS):  # an IP address: one call (every remote candidate asks)
            return False
        return address.rstrip(".").lower().endswith(".local")

    @property
    def type_preference(self) -> int:
        """The type preference encoded in the priority: its top 8 bits (RFC 8445 5.1.2.1)."""
        return (self.priority >> 24) & 0xFF

    @property
    def local_preference(self) -> int:
        """The local preference encoded in the priority: bits 8..23 (RFC 8445 5.1.2.1)."""
        return (self.priority >> 8) & 0xFFFF

    # ---- SDP ----

    @classmethod
    def from_sdp(cls, line: str) -> Candidate:
        """Parse an `a=candidate` value, with or without `a=` and `candidate:` (RFC 8839 5.1).

        Raises CandidateParseError, naming the offending token, for a malformed line, an unknown
        transport or candidate type, or a value out of range.
        """
        if not isinstance(line, str):
            raise CandidateParseError(f"a candidate line is a str, not {type(line).__name__}")
        text = line.strip()
        if text[:2].lower() == "a=":
            text = text[2:]
        if text[:10].lower() == "candidate:":
            text = text[10:]
        tokens = text.split()
        if len(tokens) > 6 and tokens[6].lower() != "typ":
            raise CandidateParseError(f"missing 'typ' after the port: got {tokens[6]!r}")
        if len(tokens) < len(_FIELD_NAMES):
            missing = _FIELD_NAMES[len(tokens)]
            if len(tokens) == 6:
                raise CandidateParseError(f"missing 'typ' at the end of {_clip(line.strip(), 200)}")
            raise CandidateParseError(f"missing {missing} in {_clip(line.strip(), 200)}")
        foundation, component, transport, priority, address, port, _, cand_type = tokens[:8]
        if not _ICE_CHARS.fullmatch(foundation):
            raise CandidateParseError(f"foundation {foundation!r} is not 1 to 32 of A-Z a-z 0-9 + /")
        component_id = _number("component-id", component, 1, 256)
        transport_lc = transport.lower()
        if transport_lc not in TRANSPORTS:
            raise CandidateParseError(f"unsupported transport {transport!r} (expected UDP or TCP)")
        priority_value = _number("priority", priority, 0, _MAX_PRIORITY)
        address = _address("connection-address", address)
        port_number = _number("port", port, 0, 65535)
        type_lc = cand_type.lower()
        if type_lc not in CANDIDATE_TYPES:
            raise CandidateParseError(
                f"unknown candidate type {cand_type!r} (expected host, srflx, prflx or relay)"
            )

        known: dict[str, str] = {}
        extensions: list[tuple[str, str]] = []
        layout: list[str | None] = []
        rest = tokens[8:]
        if len(rest) % 2:
            raise CandidateParseError(f"extension {rest[-1]!r} has no value")
        for name, value in zip(rest[::2], rest[1::2], strict=True):
            name_lc = name.lower()
            if name_lc in _KNOWN:
                if name_lc in known:
                    raise CandidateParseError(f"duplicate {name_lc!r} ({_clip(known[name_lc])} and {_clip(value)})")
                known[name_lc] = value
                layout.append(name_lc)
            else:
                if not _TOKEN.fullmatch(name):
                    raise CandidateParseError(f"extension name {name!r} is not a token")
                if not _VCHARS.fullmatch(value):
                    raise CandidateParseError(f"extension {name!r} value {_clip(value)} is not printable ASCII")
                extensions.append((name, value))
                layout.append(None)

        related_address = _address("raddr", known["raddr"]) if "raddr" in known else None
        related_port = _number("rport", known["rport"], 0, 65535) if "rport" in known else None
        tcptype: str | None = None
        if "tcptype" in known:
            tcptype = known["tcptype"].lower()
            if tcptype not in TCP_TYPES:
                raise CandidateParseError(
                    f"unknown tcptype {known['tcptype']!r} (expected active, passive or so)"
                )
        generation = _number("generation", known["generation"], 0, _MAX_GENERATION) if "generation" in known else None
        ufrag: str | None = None
        if "ufrag" in known:
            ufrag = known["ufrag"]
            if not _VCHARS.fullmatch(ufrag):
                raise CandidateParseError(f"ufrag {ufrag!r} is not printable ASCII")

        candidate = cls(
            foundation=foundation,
            component=component_id,
            transport=transport_lc,
            priority=priority_value,
            address=address,
            port=port_number,
            type=type_lc,
            related_address=related_address,
            related_port=related_port,
            tcptype=tcptype,
            generation=generation,
            ufrag=ufrag,
            extensions=tuple(extensions),
        )
        parsed_layout = tuple(layout)
        if parsed_layout != candidate._canonical_layout():
            object.__setattr__(candidate, "_layout", parsed_layout)
        return candidate

    def _known_values(self) -> dict[str, str]:
        """The present known attributes after `typ`, in canonical order, as SDP strings."""
        values: dict[str, str] = {}
        if self.related_address is not None:
            values["raddr"] = self.related_address
        if self.related_port is not None:
            values["rport"] = str(self.related_port)
        if self.tcptype is not None:
            values["tcptype"] = self.tcptype
        if self.generation is not None:
            values["generation"] = str(self.generation)
        if self.ufrag is not None:
            values["ufrag"] = self.ufrag
        return values

    def _canonical_layout(self) -> _Layout:
        return tuple(self._known_values()) + (None,) * len(self.extensions)

    def to_sdp(self) -> str:
        """Serialize as `candidate:...`, without `a=` (RFC 8839 5.1), in canonical form.

        A candidate parsed from a line with its attributes in another order is written in that order.
        """
        known = self._known_values()
        layout = self._layout
        if (
            layout is None
            or sorted(name for name in layout if name is not None) != sorted(known)
            or layout.count(None) != len(self.extensions)
        ):
            layout = self._canonical_layout()
        parts = [
            f"candidate:{self.foundation}",
            str(self.component),
            self.transport.lower(),
            str(self.priority),
            self.address,
            str(self.port),
            "typ",
            self.type,
        ]
        extensions = iter(self.extensions)
        for name in layout:
            if name is None:
                parts.extend(next(extensions))
            else:
                parts += (name, known[name])
        return " ".join(parts)


def check_candidate(candidate: Candidate) -> None:
    """Raise CandidateParseError unless every field of a Candidate built by hand is in the range
    `from_sdp` accepts (RFC 8839 5.1): component 1-256, priority below 2**32, generation below 2**63,
    ports 0-65535, a known transport and type. Remote candidates go through it before they reach a socket."""
    c = candidate  # the common case first, without a call: plain ints in range, no related port or generation
    if (
        c.component.__class__ is int
        and 1 <= c.component <= 256
        and c.priority.__class__ is int
        and 0 <= c.priority <= _MAX_PRIORITY
        and c.port.__class__ is int
        and 0 <= c.port <= 65535
        and c.related_port is None
        and c.generation is None
        and c.address.__class__ is str
        and c.address
        and c.transport in TRANSPORTS
        and c.type in CANDIDATE_TYPES
    ):
        return
    if not isinstance(candidate.address, str) or not candidate.address:
        raise CandidateParseError(f"connection-address {candidate.address!r} is not a string")
    numbers = (
        ("component-id", candidate.component, 1, 256),
        ("priority", candidate.priority, 0, _MAX_PRIORITY),
        ("port", candidate.port, 0, 65535),
        ("rport", candidate.related_port, 0, 65535),
        ("generation", candidate.generation, 0, _MAX_GENERATION),
    )
    for what, value, low, high in numbers:
        if value is None and what in ("rport", "generation"):
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise CandidateParseError(f"{what} {value!r} is not an integer")
        if not low <= value <= high:
            raise CandidateParseError(f"{what} {_int_text(value)} out of range ({low}..{high})")
    if candidate.transport not in TRANSPORTS:
        raise CandidateParseError(f"unsupported transport {candidate.transport!r} (expected udp or tcp)")
    if candidate.type not in CANDIDATE_TYPES:
        raise CandidateParseError(f"unknown candidate type {candidate.type!r}")


def unusable_reason(candidate: Candidate) -> str | None:
    """Why a remote candidate's transport address can reach no peer, or None if it may.

    "unspecified" (0.0.0.0/8, ::; RFC 6890: not a destination), "multicast" (224.0.0.0/4, ff00::/8),
    "broadcast" (255.255.255.255) and "port-0" (RFC 768: not a destination port) addresses are never a
    peer's: checks and data sent there would reach the whole local network or nobody (a hostile peer
    could aim the agent's checks at a LAN's multicast groups). IPv6 addresses that embed an IPv4 one are
    judged by it too; host names (`.local`) are judged once resolved. An active ICE-TCP candidate
    keeps its port: it receives no connections (RFC 6544 4.5 signals 9, some stacks 0)."""
    reason = _unusable_ip(candidate.address)  # unusable_address(address, port), inline (every remote candidate)
    if reason is not None:
        return reason
    if candidate.port == 0 and (candidate.transport != "tcp" or candidate.tcptype != "active"):
        return "port-0"
    return None


def unusable_address(address: str, port: int | None) -> str | None:
    """`unusable_reason` for a bare address (a host name passes); `port` None is not judged. An IPv6 address
    that embeds an IPv4 one (mapped, NAT64, 6to4, ...: `iceagent._addresses.forms`) is judged as both."""
    reason = _unusable_ip(address)
    if reason is not None:
        return reason
    if port == 0:
        return "port-0"
    return None


@functools.lru_cache(maxsize=256)
def _unusable_ip(address: str) -> str | None:
    """The address part of `unusable_address`: parsing an IP with the ipaddress module costs more than the rest
    of a check's handling, and the same few addresses come back for every candidate, check and source (a
    bounded cache: at most 256 entries per process, whatever peers send)."""
    ip = parse_ip(address)
    return None if ip is None else category(ip, _UNUSABLE)


_UNUSABLE = frozenset({"unspecified", "multicast", "broadcast"})
