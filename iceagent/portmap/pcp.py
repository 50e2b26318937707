"""Sans-IO PCP (RFC 6887): the MAP opcode, its response validation, version negotiation and epochs.

A MAP request (11.1) asks the PCP server on the default gateway (UDP 5351) to forward an external port
to the client's internal address and port for a lifetime. A response is trusted only when it comes from
the server's address and port (8.3, checked by the caller), is a well-formed PCP response of at most
1100 bytes (7), answers MAP, and carries the request's nonce, protocol and internal port (11.3). A
server that speaks only NAT-PMP answers with a version-0 "Unsupported Version" (RFC 6886 9); a PCP
server of another version names it in UNSUPP_VERSION (RFC 6887 9): both raise `UnsupportedVersion`.
"""

from __future__ import annotations

import ipaddress
import struct

import attrs

from .errors import PortMapDecodeError, PortMapRefused, UnsupportedVersion

__all__ = [
    "MAX_MESSAGE",
    "EpochTracker",
    "PcpMapping",
    "decode_map_response",
    "encode_map_request",
    "is_version_mismatch",
]

VERSION = 2
OP_MAP = 1
#: RFC 6887 7: a PCP message is at most 1100 bytes, a multiple of 4.
MAX_MESSAGE = 1100
HEADER = 24
MAP_BODY = 36
PROTOCOL_UDP = 17
PROTOCOL_TCP = 6
#: RFC 6887 7.4 result codes.
RESULT_NAMES = {
    0: "SUCCESS",
    1: "UNSUPP_VERSION",
    2: "NOT_AUTHORIZED",
    3: "MALFORMED_REQUEST",
    4: "UNSUPP_OPCODE",
    5: "UNSUPP_OPTION",
    6: "MALFORMED_OPTION",
    7: "NETWORK_FAILURE",
    8: "NO_RESOURCES",
    9: "UNSUPP_PROTOCOL",
    10: "USER_EX_QUOTA",
    11: "CANNOT_PROVIDE_EXTERNAL",
    12: "ADDRESS_MISMATCH",
    13: "EXCESSIVE_REMOTE_PEERS",
}


@attrs.frozen
class PcpMapping:
    """A granted mapping (11.4): the external address and port, the lifetime in seconds, the server epoch."""

    external_address: str
    external_port: int
    lifetime: int
    epoch: int


def _ip16(address: str) -> bytes:
    """An address as PCP carries it: 16 bytes, IPv4 as IPv4-mapped IPv6 (5)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return b"\x00" * 10 + b"\xff\xff" + ip.packed
    return ip.packed


def _from_ip16(data: bytes) -> str:
    ip = ipaddress.IPv6Address(data)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)


def encode_map_request(
    nonce: bytes,
    client_address: str,
    internal_port: int,
    lifetime: int,
    *,
    suggested_port: int = 0,
    suggested_address: str | None = None,
    protocol: int = PROTOCOL_UDP,
) -> bytes:
    """A MAP request (7.1, 11.1): `client_address` is the request's source address (the base's IP),
    `nonce` 12 random bytes kept for the mapping's life (refreshes and the delete reuse it); lifetime 0
    deletes the mapping (15). The suggested external address defaults to the all-zeros one of the family."""
    if len(nonce) != 12:
        raise ValueError("a PCP mapping nonce is 12 bytes (RFC 6887 11.1)")
    if not 0 < internal_port < 65536 or not 0 <= suggested_port < 65536 or not 0 <= lifetime < 2**32:
        raise ValueError(f"PCP MAP request out of range: {internal_port=} {suggested_port=} {lifetime=}")
    if suggested_address is None:
        suggested_address = "::" if ":" in client_address else "0.0.0.0"
    header = struct.pack("!BBHI", VERSION, OP_MAP, 0, lifetime) + _ip16(client_address)
    body = nonce + struct.pack("!B3xHH", protocol, internal_port, suggested_port) + _ip16(suggested_address)
    return header + body


def is_version_mismatch(data: bytes) -> int | None:
    """The version a server named when it does not speak ours: 0 for a NAT-PMP-only server's "Unsupported
    Version" (RFC 6886 9), or the version of a PCP UNSUPP_VERSION response (RFC 6887 9); else None."""
    if len(data) < 4:
        return None
    if data[0] == 0 and data[1] >= 128 and struct.unpack_from("!H", data, 2)[0] == 1:
        return 0
    if data[0] != 0 and data[1] & 0x80 and data[3] == 1:
        return data[0]
    return None


def _check_options(data: bytes) -> None:
    """Walk the options after the MAP body (7.3): each TLV must fit; their contents are not needed."""
    offset = HEADER + MAP_BODY
    while offset < len(data):
        if offset + 4 > len(data):
            raise PortMapDecodeError("PCP response with a truncated option header")
        (length,) = struct.unpack_from("!H", data, offset + 2)
        padded = (length + 3) & ~3
        offset += 4 + padded
        if offset > len(data):
            raise PortMapDecodeError(f"PCP option of {length} bytes runs past the end of the response")


def decode_map_response(data: bytes, nonce: bytes, internal_port: int, protocol: int = PROTOCOL_UDP) -> PcpMapping:
    """Validate and decode the answer to a MAP request (7.2, 11.3).

    Raises `UnsupportedVersion` (fall back, RFC 6887 9), `PortMapRefused` for another result code (the
    lifetime of an error response is how long not to ask again, 7.4), and `PortMapDecodeError` for
    anything that is not an answer to this request (the caller drops it and keeps waiting, 8.3)."""
    version = is_version_mismatch(data)
    if version is not None and version != VERSION:
        raise UnsupportedVersion("PCP", version)
    if not HEADER <= len(data) <= MAX_MESSAGE or len(data) % 4:
        raise PortMapDecodeError(f"PCP response of {len(data)} bytes (24 to 1100, a multiple of 4)")
    if data[0] != VERSION:
        raise PortMapDecodeError(f"PCP response with version {data[0]}, not {VERSION}")
    if data[1] != 0x80 | OP_MAP:
        raise PortMapDecodeError(f"PCP message {data[1]:#04x} is not a MAP response")
    result = data[3]
    (lifetime, epoch) = struct.unpack_from("!II", data, 4)
    if len(data) >= HEADER + MAP_BODY and data[HEADER : HEADER + 12] != nonce:
        raise PortMapDecodeError("PCP MAP response with another mapping nonce")
    if result != 0:
        raise PortMapRefused("PCP", result, RESULT_NAMES.get(result, "unknown result code"))
    if len(data) < HEADER + MAP_BODY:
        raise PortMapDecodeError(f"PCP MAP success response of {len(data)} bytes, shorter than 60")
    proto, internal, external = struct.unpack_from("!B3xHH", data, HEADER + 12)
    if proto != protocol or internal != internal_port:
        raise PortMapDecodeError(
            f"PCP MAP response for protocol {proto} port {internal}, not {protocol} {internal_port}"
        )
    if lifetime and not external:
        raise PortMapDecodeError("PCP MAP response with a lifetime but no external port")
    _check_options(data)
    address = _from_ip16(data[HEADER + 20 : HEADER + 36])
    return PcpMapping(address, external, lifetime, epoch)


@attrs.define
class EpochTracker:
    """Detects a PCP server that lost its state (RFC 6887 8.5): its epoch must advance with the client's
    clock, within 1/16 plus 2 s; when it does not, every mapping must be made again (`check` says False)."""

    client_time: float | None = None
    server_epoch: int = 0

    def check(self, now: float, epoch: int) -> bool:
        """Record an answer's epoch seen at `now`; False when the server's state was lost since the last."""
        previous, previous_epoch = self.client_time, self.server_epoch
        self.client_time, self.server_epoch = now, epoch
        if previous is None:
            return True
        if epoch + 1 < previous_epoch:
            return False
        client_delta = now - previous
        server_delta = epoch - previous_epoch
        slow_server = client_delta + 2 < server_delta - server_delta / 16
        slow_client = server_delta + 2 < client_delta - client_delta / 16
        return not (slow_server or slow_client)
