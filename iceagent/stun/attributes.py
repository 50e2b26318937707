"""STUN attribute types and their value codecs (RFC 8489 14, RFC 8445 16.1, RFC 8656 18, RFC 5780 7).

Each known attribute has an encoder, `(type, value, transaction_id) -> bytes` giving the whole padded TLV,
and a decoder, `(data, start, length, transaction_id) -> value` reading the value in place. Decoders
raise ValueError (or struct.error) on a malformed value; `Message.decode` turns that into StunDecodeError.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton
from typing import Any, Literal

MAGIC_COOKIE = 0x2112A442
"""The fixed value of header bytes 4..7; also the XOR key of the XOR-*-ADDRESS attributes (RFC 8489 5)."""

COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")
FINGERPRINT_XOR = 0x5354554E
"""FINGERPRINT is the CRC-32 of the message XOR this value ("STUN"), RFC 8489 14.7."""


class Attr(enum.IntEnum):
    """STUN attribute types: RFC 8489 18.3, RFC 8445 16.1, RFC 8656 18, RFC 5780 7.

    Types below 0x8000 are comprehension-required: an agent that does not know one must reject the request.
    """

    MAPPED_ADDRESS = 0x0001
    CHANGE_REQUEST = 0x0003
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    DATA = 0x0013
    REALM = 0x0014
    NONCE = 0x0015
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    EVEN_PORT = 0x0018
    REQUESTED_TRANSPORT = 0x0019
    DONT_FRAGMENT = 0x001A
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    RESERVATION_TOKEN = 0x0022
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    PADDING = 0x0026
    RESPONSE_PORT = 0x0027
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A
    RESPONSE_ORIGIN = 0x802B
    OTHER_ADDRESS = 0x802C
    #: draft-thatcher-ice-renomination 4 (libwebrtc's type): a 32-bit nomination value, comprehension-optional
    NOMINATION = 0xC001


class PasswordAlgorithm(enum.IntEnum):
    """Values of PASSWORD-ALGORITHM(S): which hash makes the long-term key (RFC 8489 18.5)."""

    MD5 = 0x0001
    SHA256 = 0x0002


ATTR_BY_INT: dict[int, Attr] = {int(a): a for a in Attr}
"""int -> Attr for every known type (a dict lookup is much cheaper than calling the enum)."""

# Attribute types by the Python type of their decoded value (the decoders below), for the overloads of
# `Message.get`: (host, port) addresses, text, integers, raw bytes.
AddressAttr = Literal[
    Attr.MAPPED_ADDRESS,
    Attr.XOR_MAPPED_ADDRESS,
    Attr.XOR_PEER_ADDRESS,
    Attr.XOR_RELAYED_ADDRESS,
    Attr.ALTERNATE_SERVER,
    Attr.RESPONSE_ORIGIN,
    Attr.OTHER_ADDRESS,
]
TextAttr = Literal[Attr.USERNAME, Attr.REALM, Attr.NONCE, Attr.SOFTWARE, Attr.ALTERNATE_DOMAIN]
IntAttr = Literal[
    Attr.PRIORITY,
    Attr.ICE_CONTROLLED,
    Attr.ICE_CONTROLLING,
    Attr.LIFETIME,
    Attr.CHANNEL_NUMBER,
    Attr.REQUESTED_TRANSPORT,
    Attr.REQUESTED_ADDRESS_FAMILY,
    Attr.RESPONSE_PORT,
    Attr.FINGERPRINT,
    Attr.NOMINATION,
]
BytesAttr = Literal[
    Attr.DATA,
    Attr.USERHASH,
    Attr.RESERVATION_TOKEN,
    Attr.PADDING,
    Attr.MESSAGE_INTEGRITY,
    Attr.MESSAGE_INTEGRITY_SHA256,
]

ERROR_REASONS: dict[int, str] = {
    300: "Try Alternate",
    400: "Bad Request",
    401: "Unauthenticated",
    403: "Forbidden",
    420: "Unknown Attribute",
    437: "Allocation Mismatch",
    438: "Stale Nonce",
    440: "Address Family not Supported",
    441: "Wrong Credentials",
    442: "Unsupported Transport Protocol",
    443: "Peer Address Family Mismatch",
    486: "Allocation Quota Reached",
    487: "Role Conflict",
    500: "Server Error",
    508: "Insufficient Capacity",
}
"""Default reason phrases of ERROR-CODE (RFC 8489 14.8, RFC 8656 19, RFC 8445 7.3.1.1)."""

CHECK_FIELD_SLOTS: dict[int, int] = {
    Attr.USERNAME: 0,
    Attr.PRIORITY: 1,
    Attr.ICE_CONTROLLING: 2,
    Attr.ICE_CONTROLLED: 3,
    Attr.USE_CANDIDATE: 4,
    Attr.NOMINATION: 5,
    Attr.MESSAGE_INTEGRITY: 6,
    Attr.MESSAGE_INTEGRITY_SHA256: 6,
}
"""The attributes an ICE agent reads in a check (RFC 8445 7.3) and their slot in the fields tuple that
`iceagent.ice.checks.read_check` returns; slots 4 and 6 say whether USE-CANDIDATE and a MESSAGE-INTEGRITY(-SHA256)
are there. Compiled Binding-request layouts fill the tuple as they decode (`_fastdecode`)."""
CHECK_FIELDS_EMPTY = (None, None, None, None, False, None, False)
"""The fields tuple of a message with none of the CHECK_FIELD_SLOTS attributes."""

# Attributes the codec computes itself: never taken from `Message.attributes` on encode (RFC 8489 14.5-14.7).
SECURITY_ATTRS = frozenset({Attr.MESSAGE_INTEGRITY, Attr.MESSAGE_INTEGRITY_SHA256, Attr.FINGERPRINT})

Encoder = Callable[[int, Any, bytes], bytes]
Decoder = Callable[[bytes, int, int, bytes], Any]

_HDR = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_TLV_U32 = struct.Struct("!HHI")
_TLV_U64 = struct.Struct("!HHQ")
_TLV_U16_PAD2 = struct.Struct("!HHH2x")
_TLV_U8_PAD3 = struct.Struct("!HHB3x")
_TLV_FLAGS = struct.Struct("!HH3xB")
_TLV_ADDR_HDR = struct.Struct("!HHxBH")
_ALG_HDR = struct.Struct("!HH")
_PAD = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")
"""Zero padding after a value of length n: `_PAD[n & 3]` (RFC 8489 14: values are padded to 4 bytes)."""

FAMILY_IPV4 = 0x01
FAMILY_IPV6 = 0x02


def tlv(attr_type: int, value: bytes) -> bytes:
    """One attribute on the wire: type, length, value, zero padding to 4 bytes (RFC 8489 14)."""
    n = len(value)
    if n > 0xFFFF:
        raise ValueError(f"attribute value is {n} bytes, more than 65535")
    return _HDR.pack(attr_type, n) + value + _PAD[n & 3]


# ---- addresses (RFC 8489 14.1, 14.2) ----


def _pack_host(host: str) -> tuple[int, bytes]:
    """The family and packed bytes of an IPv4 or IPv6 literal (an IPv6 zone `%eth0` is dropped)."""
    try:
        return FAMILY_IPV4, inet_pton(AF_INET, host)
    except OSError:
        pass
    try:
        return FAMILY_IPV6, inet_pton(AF_INET6, host.partition("%")[0])
    except OSError:
        raise ValueError(f"not an IP address: {host!r}") from None


def _enc_address(t: int, value: tuple[str, int], tid: bytes) -> bytes:
    """MAPPED-ADDRESS and friends: 0, family, port, address (RFC 8489 14.1)."""
    host, port = value
    family, packed = _pack_host(host)
    return _TLV_ADDR_HDR.pack(t, 4 + len(packed), family, port) + packed


def _enc_xor_address(t: int, value: tuple[str, int], tid: bytes) -> bytes:
    """XOR-MAPPED-ADDRESS and friends: port and address XOR cookie (and tid for IPv6), RFC 8489 14.2."""
    host, port = value
    family, packed = _pack_host(host)
    if family == FAMILY_IPV4:
        x = _U32.pack(_U32.unpack(packed)[0] ^ MAGIC_COOKIE)
    else:
        x = (int.from_bytes(packed, "big") ^ int.from_bytes(COOKIE_BYTES + tid, "big")).to_bytes(16, "big")
    return _TLV_ADDR_HDR.pack(t, 4 + len(x), family, port ^ (MAGIC_COOKIE >> 16)) + x


def _dec_address(data: bytes, s: int, n: int, tid: bytes) -> tuple[str, int]:
    """Decode a plain address value (RFC 8489 14.1)."""
    if n == 8 and data[s + 1] == FAMILY_IPV4:
        return inet_ntop(AF_INET, data[s + 4 : s + 8]), _U16.unpack_from(data, s + 2)[0]
    if n == 20 and data[s + 1] == FAMILY_IPV6:
        return inet_ntop(AF_INET6, data[s + 4 : s + 20]), _U16.unpack_from(data, s + 2)[0]
    raise ValueError(f"bad address (length {n}, family {data[s + 1] if n >= 2 else None})")


def _dec_xor_address(data: bytes, s: int, n: int, tid: bytes) -> tuple[str, int]:
    """Decode an XOR'd address value (RFC 8489 14.2)."""
    if n == 8 and data[s + 1] == FAMILY_IPV4:
        a = _U32.unpack_from(data, s + 4)[0] ^ MAGIC_COOKIE
        return inet_ntop(AF_INET, _U32.pack(a)), _U16.unpack_from(data, s + 2)[0] ^ (MAGIC_COOKIE >> 16)
    if n == 20 and data[s + 1] == FAMILY_IPV6:
        a = int.from_bytes(data[s + 4 : s + 20], "big") ^ int.from_bytes(COOKIE_BYTES + tid, "big")
        port = _U16.unpack_from(data, s + 2)[0] ^ (MAGIC_COOKIE >> 16)
        return inet_ntop(AF_INET6, a.to_bytes(16, "big")), port
    raise ValueError(f"bad address (length {n}, family {data[s + 1] if n >= 2 else None})")


# ---- text and opaque bytes ----


def _enc_text(t: int, value: str, tid: bytes) -> bytes:
    """UTF-8 text: USERNAME, REALM, NONCE, SOFTWARE, ALTERNATE-DOMAIN (RFC 8489 14.3, 14.9, 14.10, 14.14)."""
    b = value.encode()
    n = len(b)
    if n > 0xFFFF:
        raise ValueError(f"attribute value is {n} bytes, more than 65535")
    return _HDR.pack(t, n) + b + _PAD[n & 3]


def _dec_text(data: bytes, s: int, n: int, tid: bytes) -> str:
    return data[s : s + n].decode()


def _enc_bytes(t: int, value: bytes, tid: bytes) -> bytes:
    """Opaque bytes: DATA, PADDING and unknown attributes."""
    n = len(value)
    if n > 0xFFFF:
        raise ValueError(f"attribute value is {n} bytes, more than 65535")
    return _HDR.pack(t, n) + value + _PAD[n & 3]


def _dec_bytes(data: bytes, s: int, n: int, tid: bytes) -> bytes:
    return data[s : s + n]


def _fixed_bytes(size: int) -> tuple[Encoder, Decoder]:
    """Opaque bytes of one exact size: USERHASH (32, RFC 8489 14.4), RESERVATION-TOKEN (8, RFC 8656 18.10)."""

    def enc(t: int, value: bytes, tid: bytes) -> bytes:
        if len(value) != size:
            raise ValueError(f"value must be {size} bytes, not {len(value)}")
        return _HDR.pack(t, size) + value + _PAD[size & 3]

    def dec(data: bytes, s: int, n: int, tid: bytes) -> bytes:
        if n != size:
            raise ValueError(f"length {n}, must be {size}")
        return data[s : s + n]

    return enc, dec


# ---- integers and flags ----


def _enc_u32(t: int, value: int, tid: bytes) -> bytes:
    """32-bit unsigned: PRIORITY (RFC 8445 16.1), LIFETIME (RFC 8656 18.2), NOMINATION (renomination draft)."""
    return _TLV_U32.pack(t, 4, value)


def _dec_u32(data: bytes, s: int, n: int, tid: bytes) -> int:
    if n != 4:
        raise ValueError(f"length {n}, must be 4")
    return int(_U32.unpack_from(data, s)[0])


def _enc_u64(t: int, value: int, tid: bytes) -> bytes:
    """64-bit tie-breaker: ICE-CONTROLLED, ICE-CONTROLLING (RFC 8445 16.1)."""
    return _TLV_U64.pack(t, 8, value)


def _dec_u64(data: bytes, s: int, n: int, tid: bytes) -> int:
    if n != 8:
        raise ValueError(f"length {n}, must be 8")
    return int(_U64.unpack_from(data, s)[0])


def _enc_u16_pad2(t: int, value: int, tid: bytes) -> bytes:
    """A 16-bit number then 2 reserved bytes: CHANNEL-NUMBER (RFC 8656 18.1), RESPONSE-PORT (RFC 5780 7.5)."""
    return _TLV_U16_PAD2.pack(t, 4, value)


def _dec_u16_pad2(data: bytes, s: int, n: int, tid: bytes) -> int:
    if n != 4:
        raise ValueError(f"length {n}, must be 4")
    return int(_U16.unpack_from(data, s)[0])


def _enc_u8_pad3(t: int, value: int, tid: bytes) -> bytes:
    """8-bit number, 3 reserved bytes: REQUESTED-TRANSPORT, -ADDRESS-FAMILY (RFC 8656 18.6, 18.8)."""
    return _TLV_U8_PAD3.pack(t, 4, value)


def _dec_u8_pad3(data: bytes, s: int, n: int, tid: bytes) -> int:
    if n != 4:
        raise ValueError(f"length {n}, must be 4")
    return data[s]


def _enc_none(t: int, value: None, tid: bytes) -> bytes:
    """Presence-only attributes: USE-CANDIDATE (RFC 8445 16.1), DONT-FRAGMENT (RFC 8656 18.9)."""
    if value is not None:
        raise ValueError(f"value must be None, not {value!r}")
    return _HDR.pack(t, 0)


def _dec_none(data: bytes, s: int, n: int, tid: bytes) -> None:
    if n != 0:
        raise ValueError(f"length {n}, must be 0")
    return None


def _enc_even_port(t: int, value: bool, tid: bytes) -> bytes:
    """EVEN-PORT: one byte whose top bit R asks to reserve the next port too (RFC 8656 18.7)."""
    return _TLV_U8_PAD3.pack(t, 1, 0x80 if value else 0)


def _dec_even_port(data: bytes, s: int, n: int, tid: bytes) -> bool:
    if n != 1:
        raise ValueError(f"length {n}, must be 1")
    return bool(data[s] & 0x80)


def _enc_change_request(t: int, value: tuple[bool, bool], tid: bytes) -> bytes:
    """CHANGE-REQUEST: flags A (change IP, 0x4) and B (change port, 0x2) (RFC 5780 7.2)."""
    change_ip, change_port = value
    return _TLV_FLAGS.pack(t, 4, (0x04 if change_ip else 0) | (0x02 if change_port else 0))


def _dec_change_request(data: bytes, s: int, n: int, tid: bytes) -> tuple[bool, bool]:
    if n != 4:
        raise ValueError(f"length {n}, must be 4")
    flags = data[s + 3]
    return bool(flags & 0x04), bool(flags & 0x02)


# ---- structured values ----


def _enc_error_code(t: int, value: tuple[int, str], tid: bytes) -> bytes:
    """ERROR-CODE: class (hundreds digit, 3..6) and number, then a UTF-8 reason (RFC 8489 14.8)."""
    code, reason = value
    if not 300 <= code <= 699:
        raise ValueError(f"error code {code} is not in 300..699")
    return tlv(t, bytes((0, 0, code // 100, code % 100)) + reason.encode())


def _dec_error_code(data: bytes, s: int, n: int, tid: bytes) -> tuple[int, str]:
    if n < 4:
        raise ValueError(f"length {n}, must be at least 4")
    number = data[s + 3]
    if number > 99:
        raise ValueError(f"error number {number} is more than 99")
    return (data[s + 2] & 0x07) * 100 + number, data[s + 4 : s + n].decode()


def _enc_unknown_attributes(t: int, value: list[int], tid: bytes) -> bytes:
    """UNKNOWN-ATTRIBUTES: a list of 16-bit attribute types (RFC 8489 14.13)."""
    return tlv(t, struct.pack(f"!{len(value)}H", *value))


def _dec_unknown_attributes(data: bytes, s: int, n: int, tid: bytes) -> list[int]:
    if n & 1:
        raise ValueError(f"length {n} is odd")
    return list(struct.unpack_from(f"!{n // 2}H", data, s))


def _pack_algorithm(alg: int, params: bytes) -> bytes:
    return _ALG_HDR.pack(alg, len(params)) + params + _PAD[len(params) & 3]


def _enc_password_algorithms(t: int, value: list[tuple[int, bytes]], tid: bytes) -> bytes:
    """PASSWORD-ALGORITHMS: a list of (algorithm, parameters), each padded to 4 bytes (RFC 8489 14.11)."""
    return tlv(t, b"".join(_pack_algorithm(alg, params) for alg, params in value))


def _dec_password_algorithms(data: bytes, s: int, n: int, tid: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos, end = s, s + n
    while pos < end:
        if pos + 4 > end:
            raise ValueError("truncated algorithm header")
        alg, plen = _ALG_HDR.unpack_from(data, pos)
        pos += 4
        if pos + plen > end:
            raise ValueError("algorithm parameters overrun the attribute")
        out.append((alg, data[pos : pos + plen]))
        pos += (plen + 3) & ~3
    if pos > end:
        raise ValueError("algorithm parameter padding overruns the attribute")
    return out


def _enc_password_algorithm(t: int, value: tuple[int, bytes], tid: bytes) -> bytes:
    """PASSWORD-ALGORITHM: the one (algorithm, parameters) the client chose (RFC 8489 14.12)."""
    alg, params = value
    return tlv(t, _pack_algorithm(alg, params))


def _dec_password_algorithm(data: bytes, s: int, n: int, tid: bytes) -> tuple[int, bytes]:
    if n < 4:
        raise ValueError(f"length {n}, must be at least 4")
    alg, plen = _ALG_HDR.unpack_from(data, s)
    if not 4 + plen <= n <= 4 + ((plen + 3) & ~3):
        raise ValueError(f"parameter length {plen} does not match the attribute length {n}")
    return alg, data[s + 4 : s + 4 + plen]


def _dec_message_integrity(data: bytes, s: int, n: int, tid: bytes) -> bytes:
    if n != 20:
        raise ValueError(f"length {n}, must be 20")
    return data[s : s + n]


def _dec_message_integrity_sha256(data: bytes, s: int, n: int, tid: bytes) -> bytes:
    if n < 16 or n > 32 or n & 3:
        raise ValueError(f"length {n}, must be 16..32 in steps of 4")
    return data[s : s + n]


_userhash = _fixed_bytes(32)
_reservation_token = _fixed_bytes(8)

ENCODERS: dict[int, Encoder] = {
    Attr.MAPPED_ADDRESS: _enc_address,
    Attr.ALTERNATE_SERVER: _enc_address,
    Attr.RESPONSE_ORIGIN: _enc_address,
    Attr.OTHER_ADDRESS: _enc_address,
    Attr.XOR_MAPPED_ADDRESS: _enc_xor_address,
    Attr.XOR_PEER_ADDRESS: _enc_xor_address,
    Attr.XOR_RELAYED_ADDRESS: _enc_xor_address,
    Attr.USERNAME: _enc_text,
    Attr.REALM: _enc_text,
    Attr.NONCE: _enc_text,
    Attr.SOFTWARE: _enc_text,
    Attr.ALTERNATE_DOMAIN: _enc_text,
    Attr.PRIORITY: _enc_u32,
    Attr.LIFETIME: _enc_u32,
    Attr.NOMINATION: _enc_u32,
    Attr.ICE_CONTROLLED: _enc_u64,
    Attr.ICE_CONTROLLING: _enc_u64,
    Attr.CHANNEL_NUMBER: _enc_u16_pad2,
    Attr.RESPONSE_PORT: _enc_u16_pad2,
    Attr.REQUESTED_TRANSPORT: _enc_u8_pad3,
    Attr.REQUESTED_ADDRESS_FAMILY: _enc_u8_pad3,
    Attr.USE_CANDIDATE: _enc_none,
    Attr.DONT_FRAGMENT: _enc_none,
    Attr.EVEN_PORT: _enc_even_port,
    Attr.CHANGE_REQUEST: _enc_change_request,
    Attr.ERROR_CODE: _enc_error_code,
    Attr.UNKNOWN_ATTRIBUTES: _enc_unknown_attributes,
    Attr.PASSWORD_ALGORITHMS: _enc_password_algorithms,
    Attr.PASSWORD_ALGORITHM: _enc_password_algorithm,
    Attr.DATA: _enc_bytes,
    Attr.PADDING: _enc_bytes,
    Attr.USERHASH: _userhash[0],
    Attr.RESERVATION_TOKEN: _reservation_token[0],
}
"""Encoders of the attributes a caller may give; MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT are absent on
purpose (`Message.encode` computes them)."""

DECODERS: dict[int, Decoder] = {
    Attr.MAPPED_ADDRESS: _dec_address,
    Attr.ALTERNATE_SERVER: _dec_address,
    Attr.RESPONSE_ORIGIN: _dec_address,
    Attr.OTHER_ADDRESS: _dec_address,
    Attr.XOR_MAPPED_ADDRESS: _dec_xor_address,
    Attr.XOR_PEER_ADDRESS: _dec_xor_address,
    Attr.XOR_RELAYED_ADDRESS: _dec_xor_address,
    Attr.USERNAME: _dec_text,
    Attr.REALM: _dec_text,
    Attr.NONCE: _dec_text,
    Attr.SOFTWARE: _dec_text,
    Attr.ALTERNATE_DOMAIN: _dec_text,
    Attr.PRIORITY: _dec_u32,
    Attr.LIFETIME: _dec_u32,
    Attr.NOMINATION: _dec_u32,
    Attr.ICE_CONTROLLED: _dec_u64,
    Attr.ICE_CONTROLLING: _dec_u64,
    Attr.CHANNEL_NUMBER: _dec_u16_pad2,
    Attr.RESPONSE_PORT: _dec_u16_pad2,
    Attr.REQUESTED_TRANSPORT: _dec_u8_pad3,
    Attr.REQUESTED_ADDRESS_FAMILY: _dec_u8_pad3,
    Attr.USE_CANDIDATE: _dec_none,
    Attr.DONT_FRAGMENT: _dec_none,
    Attr.EVEN_PORT: _dec_even_port,
    Attr.CHANGE_REQUEST: _dec_change_request,
    Attr.ERROR_CODE: _dec_error_code,
    Attr.UNKNOWN_ATTRIBUTES: _dec_unknown_attributes,
    Attr.PASSWORD_ALGORITHMS: _dec_password_algorithms,
    Attr.PASSWORD_ALGORITHM: _dec_password_algorithm,
    Attr.DATA: _dec_bytes,
    Attr.PADDING: _dec_bytes,
    Attr.USERHASH: _userhash[1],
    Attr.RESERVATION_TOKEN: _reservation_token[1],
    Attr.MESSAGE_INTEGRITY: _dec_message_integrity,
    Attr.MESSAGE_INTEGRITY_SHA256: _dec_message_integrity_sha256,
    Attr.FINGERPRINT: _dec_u32,
}
"""Decoders of every known attribute, keyed by the int type; unknown types decode to their raw bytes."""

# How the decode loop handles each type: the common kinds inline (no call), the rest through the decoder.
KIND_CALL = 0
KIND_TEXT = 1
KIND_U32 = 2
KIND_U64 = 3
KIND_NONE = 4
KIND_BYTES = 5
KIND_SECURITY = 6
KIND_XOR_ADDRESS = 7  # decoded through the call by the generic loop; inline for IPv4 by compiled layouts
_KINDS: dict[Decoder, int] = {
    _dec_xor_address: KIND_XOR_ADDRESS,
    _dec_text: KIND_TEXT,
    _dec_u32: KIND_U32,
    _dec_u64: KIND_U64,
    _dec_none: KIND_NONE,
    _dec_bytes: KIND_BYTES,
}

DECODE_TABLE: dict[int, tuple[Attr, int, Decoder]] = {
    int(t): (ATTR_BY_INT[t], KIND_SECURITY if t in SECURITY_ATTRS else _KINDS.get(d, KIND_CALL), d)
    for t, d in DECODERS.items()
}
"""int type -> (Attr, kind, decoder): the single lookup the decode loop does per attribute. A KIND_*
other than KIND_CALL promises the decoder is the matching inline one (text, u32, ...)."""

assert set(DECODERS) == set(Attr), "every Attr needs a decoder"
assert set(ENCODERS) == set(Attr) - SECURITY_ATTRS, "every Attr but the security ones needs an encoder"
