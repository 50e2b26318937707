"""Sans-IO NAT-PMP (RFC 6886): encode requests, decode and validate responses.

Requests go to the default gateway's UDP port 5351; a response is accepted only from that address and
port (3.1) and only if it answers the request (version 0, opcode 128 + the request's, the internal port).
Result codes other than 0 raise `PortMapRefused` with the RFC's name (3.5).
"""

from __future__ import annotations

import ipaddress
import struct

import attrs

from .errors import PortMapDecodeError, PortMapRefused, UnsupportedVersion

__all__ = [
    "NATPMP_PORT",
    "NatPmpAddress",
    "NatPmpMapping",
    "decode_address",
    "decode_mapping",
    "encode_address_request",
    "encode_map_request",
]

#: The NAT-PMP (and PCP) server port on the gateway (RFC 6886 3.1, RFC 6887 19.1).
NATPMP_PORT = 5351
VERSION = 0
OP_ADDRESS = 0
OP_MAP_UDP = 1
OP_MAP_TCP = 2
#: RFC 6886 3.5 result codes.
RESULT_NAMES = {
    0: "Success",
    1: "Unsupported Version",
    2: "Not Authorized/Refused",
    3: "Network Failure",
    4: "Out of resources",
    5: "Unsupported opcode",
}
#: The longest answer read (the map response is 16 bytes; anything much longer is not NAT-PMP).
MAX_RESPONSE = 64


@attrs.frozen
class NatPmpAddress:
    """The answer to an external address request (RFC 6886 3.2): the gateway's public IPv4 address."""

    address: str
    epoch: int


@attrs.frozen
class NatPmpMapping:
    """The answer to a mapping request (RFC 6886 3.3): the external port and the granted lifetime."""

    internal_port: int
    external_port: int
    lifetime: int
    epoch: int


def encode_address_request() -> bytes:
    """The external address request (3.2): version 0, opcode 0."""
    return bytes((VERSION, OP_ADDRESS))


def encode_map_request(internal_port: int, external_port: int, lifetime: int, *, tcp: bool = False) -> bytes:
    """A mapping request (3.3): the internal port, a suggested external port, the requested lifetime in
    seconds. Lifetime 0 with external port 0 deletes the mapping (3.4)."""
    if not 0 < internal_port < 65536 or not 0 <= external_port < 65536 or not 0 <= lifetime < 2**32:
        raise ValueError(f"NAT-PMP request out of range: {internal_port=} {external_port=} {lifetime=}")
    return struct.pack("!BBHHHI", VERSION, OP_MAP_TCP if tcp else OP_MAP_UDP, 0, internal_port, external_port, lifetime)


def _header(data: bytes, opcode: int) -> tuple[int, int]:
    """Check version, opcode and result; return (result code, epoch seconds). Raises for an error result."""
    if len(data) < 8 or len(data) > MAX_RESPONSE:
        raise PortMapDecodeError(f"NAT-PMP response of {len(data)} bytes (8 to {MAX_RESPONSE} expected)")
    version, op, result, epoch = struct.unpack_from("!BBHI", data)
    if version != VERSION:
        raise PortMapDecodeError(f"NAT-PMP response with version {version}, not 0")
    if op != 128 + opcode:
        raise PortMapDecodeError(f"NAT-PMP response opcode {op} does not answer opcode {opcode}")
    if result == 1:
        raise UnsupportedVersion("NAT-PMP", VERSION)
    if result != 0:
        raise PortMapRefused("NAT-PMP", result, RESULT_NAMES.get(result, "unknown result code"))
    return result, epoch


def decode_address(data: bytes) -> NatPmpAddress:
    """Decode the answer to `encode_address_request()` (3.2); PortMapDecodeError when it is none."""
    _, epoch = _header(data, OP_ADDRESS)
    if len(data) != 12:
        raise PortMapDecodeError(f"NAT-PMP address response of {len(data)} bytes, not 12")
    return NatPmpAddress(str(ipaddress.IPv4Address(data[8:12])), epoch)


def decode_mapping(data: bytes, internal_port: int, *, tcp: bool = False) -> NatPmpMapping:
    """Decode the answer to a mapping request for `internal_port` (3.3); PortMapDecodeError when it is none."""
    _, epoch = _header(data, OP_MAP_TCP if tcp else OP_MAP_UDP)
    if len(data) != 16:
        raise PortMapDecodeError(f"NAT-PMP mapping response of {len(data)} bytes, not 16")
    internal, external, lifetime = struct.unpack_from("!HHI", data, 8)
    if internal != internal_port:
        raise PortMapDecodeError(f"NAT-PMP mapping response for internal port {internal}, not {internal_port}")
    if lifetime and not external:
        raise PortMapDecodeError("NAT-PMP mapping response with a lifetime but no external port")
    return NatPmpMapping(internal, external, lifetime, epoch)
