"""The STUN message codec (RFC 8489 5, 6, 14): header, attributes, MESSAGE-INTEGRITY(-SHA256), FINGERPRINT.

Sans-IO: bytes in, `Message` out, and back. `Message.decode` raises only `StunDecodeError`; a decoded
message keeps its raw bytes so `verify_integrity` and `verify_fingerprint` check what was on the wire.
The fast paths live in private modules: HMAC with its key pads cached in `_crypto.py`, the decoders
compiled per attribute layout in `_fastdecode.py`, the pooled random bytes in `_random.py`.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, overload

from ..errors import IceError
from ._crypto import (
    SHA1_INNER,
    SHA1_OUTER,
    compare_digest,
    hmac_sha1,
    hmac_sha256,
    long_term_key,
    seal_short_term,
    sha1_pads,
    userhash,
)
from ._fastdecode import SHAPES, Security, header_error, learn
from ._random import POOL, random_bytes
from .attributes import (
    ATTR_BY_INT,
    COOKIE_BYTES,
    DECODE_TABLE,
    ENCODERS,
    ERROR_REASONS,
    FINGERPRINT_XOR,
    KIND_BYTES,
    KIND_NONE,
    KIND_SECURITY,
    KIND_TEXT,
    KIND_U32,
    KIND_U64,
    MAGIC_COOKIE,
    SECURITY_ATTRS,
    AddressAttr,
    Attr,
    BytesAttr,
    IntAttr,
    PasswordAlgorithm,
    TextAttr,
)

__all__ = [
    "MAGIC_COOKIE",
    "Attr",
    "Message",
    "MessageClass",
    "Method",
    "PasswordAlgorithm",
    "StunDecodeError",
    "encode_attributes",
    "long_term_key",
    "looks_like_stun",
    "random_bytes",
    "seal",
    "seal_short_term",
    "userhash",
]


class StunDecodeError(IceError, ValueError):
    """Bytes that are not a well-formed STUN message (RFC 8489 5, 14); the message says what is wrong."""


class Method(enum.IntEnum):
    """STUN methods: Binding (RFC 8489 18.2) and the TURN methods (RFC 8656 17)."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009


class MessageClass(enum.IntEnum):
    """The two class bits C1 C0 of the message type, in place (RFC 8489 5)."""

    REQUEST = 0x000
    INDICATION = 0x010
    SUCCESS = 0x100
    ERROR = 0x110


_HEADER_TID = struct.Struct("!HHI12s")
_ATTR_HDR = struct.Struct("!HH")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_LEN = struct.Struct("!H")
_MI_HDR = _ATTR_HDR.pack(Attr.MESSAGE_INTEGRITY, 20)
_MI256_HDR = _ATTR_HDR.pack(Attr.MESSAGE_INTEGRITY_SHA256, 32)
_FP_TLV = struct.Struct("!HHI")
_MAX_LENGTH = 0xFFFC  # the largest multiple of 4 the 16-bit length field can hold

_MI_TYPE = int(Attr.MESSAGE_INTEGRITY)
_MI256_TYPE = int(Attr.MESSAGE_INTEGRITY_SHA256)
_FP_TYPE = int(Attr.FINGERPRINT)
# Enum member access (Attr.X) costs ~100 ns on Python 3.11; the hot paths use these module constants.
_ATTR_MI = Attr.MESSAGE_INTEGRITY
_ATTR_MI256 = Attr.MESSAGE_INTEGRITY_SHA256
_ATTR_FP = Attr.FINGERPRINT
_NO_SECURITY: Security = (-1, -1, -1, -1, b"")

# The private modules' caches, read on the hot paths through bound methods: a method call on an imported
# name compiles without LOAD_METHOD on CPython 3.11 (a bound method made per call, ~40 ns).
_shape_for = SHAPES.get
_sha1_inner_for, _sha1_outer_for = SHA1_INNER.get, SHA1_OUTER.get
_random_take = POOL.take

_METHOD_BY_INT: dict[int, Method] = {int(m): m for m in Method}
_CLASS_BY_INT: dict[int, MessageClass] = {int(c): c for c in MessageClass}

AddressValue = tuple[str, int]
BytesLike = bytes | bytearray | memoryview


def _type_to_method_class(mtype: int) -> tuple[Method | int, MessageClass]:
    """Split the 14-bit message type into method M0-M11 and class C0, C1 (RFC 8489 5, figure 3)."""
    m = (mtype & 0x000F) | ((mtype >> 1) & 0x0070) | ((mtype >> 2) & 0x0F80)
    return _METHOD_BY_INT.get(m, m), _CLASS_BY_INT[mtype & 0x0110]


def _method_class_to_type(method: int, message_class: int) -> int:
    """Interleave method bits and class bits into the message type (RFC 8489 5, figure 3)."""
    return (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | message_class


_TYPES: dict[int, tuple[Method | int, MessageClass]] = {
    _method_class_to_type(m, c): (m, c) for m in Method for c in MessageClass
}
_TYPE_OF: dict[tuple[int, int], int] = {(m, c): t for t, (m, c) in _TYPES.items()}


def _as_key(key: BytesLike | str) -> bytes:
    """A key as bytes: str keys (ICE passwords) are used as UTF-8 (RFC 8489 9.1.1)."""
    return key.encode() if isinstance(key, str) else bytes(key)


def encode_attributes(attributes: Sequence[tuple[Attr | int, Any]], transaction_id: bytes) -> bytes:
    """The attribute section of a message (RFC 8489 14), without MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT
    entries (`seal` adds those). The transaction id is needed by XOR-MAPPED-ADDRESS over IPv6 (14.2).

    Raises ValueError for a value an attribute cannot carry."""
    parts = []
    t: Attr | int = 0
    try:
        for t, v in attributes:
            enc = ENCODERS.get(t)
            if enc is None:
                if t in SECURITY_ATTRS:
                    continue
                if not 0 <= t <= 0xFFFF:
                    raise ValueError(f"attribute type {t} does not fit in 16 bits")
                if not isinstance(v, (bytes, bytearray, memoryview)):
                    raise TypeError(f"an unknown attribute's value must be bytes, not {type(v).__name__}")
                parts.append(_ATTR_HDR.pack(t, len(v)) + v + b"\x00" * (-len(v) & 3))
            else:
                parts.append(enc(t, v, transaction_id))
    except (ValueError, TypeError, AttributeError, OverflowError, struct.error) as e:
        raise ValueError(f"cannot encode {_attr_name(t)}: {e}") from e
    return b"".join(parts)


def seal(
    method: Method | int,
    message_class: MessageClass,
    transaction_id: bytes,
    body: bytes,
    integrity_key: BytesLike | str | None = None,
    integrity: Literal["sha1", "sha256", "both"] = "sha1",
    fingerprint: bool = False,
) -> bytes:
    """A message on the wire from its encoded attributes (`encode_attributes`, or bytes cached by a caller
    that sends the same attributes often): header, then MESSAGE-INTEGRITY ("sha1"),
    MESSAGE-INTEGRITY-SHA256 ("sha256") or both with `integrity_key`, then FINGERPRINT if asked
    (RFC 8489 5, 14.5-14.7). Raises ValueError for more than 65535 bytes of attributes."""
    mtype = _TYPE_OF.get((method, message_class))
    if mtype is None:
        mtype = _method_class_to_type(method, message_class)
    if integrity_key is not None and integrity == "sha1" and fingerprint:  # short-term: every ICE check
        key = integrity_key if type(integrity_key) is bytes else _as_key(integrity_key)
        return seal_short_term(mtype, transaction_id, body, key)
    tid = transaction_id
    n = len(body)
    total = n + (8 if fingerprint else 0)
    if integrity_key is not None:
        if integrity not in ("sha1", "sha256", "both"):
            raise ValueError(f"integrity must be 'sha1', 'sha256' or 'both', not {integrity!r}")
        total += 24 if integrity == "sha1" else 36 if integrity == "sha256" else 60
    if total > _MAX_LENGTH:
        raise ValueError(f"message attributes are {total} bytes, more than {_MAX_LENGTH}")
    if integrity_key is not None:
        key = integrity_key if type(integrity_key) is bytes else _as_key(integrity_key)
        if integrity != "sha256":
            n += 24
            body += _MI_HDR + hmac_sha1(key, _HEADER_TID.pack(mtype, n, MAGIC_COOKIE, tid) + body)
        if integrity != "sha1":
            n += 36
            mac = hmac_sha256(key, _HEADER_TID.pack(mtype, n, MAGIC_COOKIE, tid) + body)
            body += _MI256_HDR + mac
    if fingerprint:
        data = _HEADER_TID.pack(mtype, n + 8, MAGIC_COOKIE, tid) + body
        return data + _FP_TLV.pack(_FP_TYPE, 4, zlib.crc32(data) ^ FINGERPRINT_XOR)
    return _HEADER_TID.pack(mtype, n, MAGIC_COOKIE, tid) + body


class Message:
    """One STUN message (RFC 8489 5): method, class, 12-byte transaction id and (type, value) attributes.

    `attributes` is a list in wire order; types are `Attr` members, or plain ints for unknown types
    (whose values are raw bytes). Decoded messages list MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT too;
    `encode` skips those entries and computes them from its own arguments.
    """

    __slots__ = (
        "_fields",
        "_raw",
        "_security",
        "_unknown",
        "attributes",
        "message_class",
        "method",
        "transaction_id",
    )

    method: Method | int
    message_class: MessageClass
    transaction_id: bytes
    attributes: list[tuple[Attr | int, Any]]

    def __init__(
        self,
        method: Method | int,
        message_class: MessageClass | int,
        transaction_id: BytesLike | None = None,
        attributes: Iterable[tuple[Attr | int, Any]] = (),
    ) -> None:
        m: Method | int | None = _METHOD_BY_INT.get(method)
        if m is None:
            if not 0 <= method <= 0xFFF:
                raise ValueError(f"method {method:#x} does not fit in 12 bits")
            m = method
        self.method = m
        c = _CLASS_BY_INT.get(message_class)
        if c is None:
            raise ValueError(f"{message_class!r} is not a message class")
        self.message_class = c
        if transaction_id is None:
            transaction_id = _random_take(12)
        else:
            if type(transaction_id) is not bytes:
                transaction_id = bytes(transaction_id)
            if len(transaction_id) != 12:
                raise ValueError(f"transaction id must be 12 bytes, not {len(transaction_id)}")
        self.transaction_id = transaction_id
        self.attributes = list(attributes)
        self._raw: bytes | None = None
        self._security = _NO_SECURITY  # where the security attributes are (_fastdecode.Security)
        self._unknown: tuple[int, ...] | None = None
        self._fields: Any = None  # what ICE reads in a check (ice.checks.CheckFields), filled by compiled decoders

    # ---- reading attributes ----

    @overload
    def get(self, attr: AddressAttr) -> AddressValue | None: ...
    @overload
    def get(self, attr: TextAttr) -> str | None: ...
    @overload
    def get(self, attr: IntAttr) -> int | None: ...
    @overload
    def get(self, attr: BytesAttr) -> bytes | None: ...
    @overload
    def get(self, attr: Attr | int, default: Any = None) -> Any: ...

    def get(self, attr: Attr | int, default: Any = None) -> Any:
        """The value of the first attribute of type `attr`, or `default` when there is none."""
        for t, v in self.attributes:
            if t == attr:
                return v
        return default

    def get_all(self, attr: Attr | int) -> list[Any]:
        """Every value of type `attr` in wire order (XOR-PEER-ADDRESS may repeat, RFC 8656 9.1)."""
        return [v for t, v in self.attributes if t == attr]

    def __contains__(self, attr: object) -> bool:
        """`Attr.USE_CANDIDATE in msg`: whether an attribute of that type is present."""
        for t, _ in self.attributes:
            if t == attr:
                return True
        return False

    @property
    def unknown_required(self) -> list[int]:
        """Comprehension-required (< 0x8000) attribute types this codec does not know: a server answers a
        request carrying any with 420 and UNKNOWN-ATTRIBUTES listing them (RFC 8489 6.3.1)."""
        if self._unknown is not None:
            return list(self._unknown)
        return [t for t, _ in self.attributes if t < 0x8000 and t not in ATTR_BY_INT]

    @property
    def raw(self) -> bytes | None:
        """The bytes this message was decoded from, or None for a message built in code."""
        return self._raw

    # ---- building responses ----

    def success_response(self, attributes: Iterable[tuple[Attr | int, Any]] = ()) -> Message:
        """A success response to this request: same method and transaction id (RFC 8489 6.3.1.1)."""
        return Message(self.method, MessageClass.SUCCESS, self.transaction_id, attributes)

    def error_response(
        self, code: int, reason: str | None = None, attributes: Iterable[tuple[Attr | int, Any]] = ()
    ) -> Message:
        """An error response with ERROR-CODE first (RFC 8489 6.3.1.1, 14.8); `reason` defaults to the RFC's
        phrase for `code`. For 420, pass `[(Attr.UNKNOWN_ATTRIBUTES, request.unknown_required)]`."""
        if reason is None:
            reason = ERROR_REASONS.get(code, "")
        return Message(
            self.method,
            MessageClass.ERROR,
            self.transaction_id,
            [(Attr.ERROR_CODE, (code, reason)), *attributes],
        )

    # ---- integrity (RFC 8489 14.5, 14.6, 14.7) ----

    def verify_integrity(self, key: BytesLike | str) -> bool:
        """Check MESSAGE-INTEGRITY-SHA256 if present, else MESSAGE-INTEGRITY, against `key` (RFC 8489 9.1.3,
        9.2.4); False when neither is present or the message was not decoded from bytes."""
        raw = self._raw
        if raw is None:
            return False
        if type(key) is not bytes:
            key = _as_key(key)
        mi, pos, n, _, head = self._security
        if pos >= 0:
            # The length field counts up to the end of MESSAGE-INTEGRITY-SHA256 (RFC 8489 14.6).
            mac = hmac_sha256(key, raw[:2] + _LEN.pack(pos + n - 16) + raw[4:pos])
            return compare_digest(mac[:n], raw[pos + 4 : pos + 4 + n])
        if mi < 0:
            return False
        # HMAC-SHA1 inline, on _crypto's cached pads (the hot path of every check: a call costs ~2% of a
        # decode); its length field counts up to the end of MESSAGE-INTEGRITY (RFC 8489 14.5).
        inner, outer = _sha1_inner_for(key), _sha1_outer_for(key)
        if inner is None or outer is None:
            inner, outer = sha1_pads(key)
        (h := inner.copy()).update(head + raw[4:mi])
        (o := outer.copy()).update(h.digest())
        return compare_digest(o.digest(), raw[mi + 4 : mi + 24])

    def verify_fingerprint(self) -> bool:
        """Check FINGERPRINT: CRC-32 of all before it XOR 0x5354554e (RFC 8489 14.7); False if absent."""
        raw = self._raw
        pos = self._security[3]
        if raw is None or pos < 0:
            return False
        # FINGERPRINT is last (decode enforces it), so the length field already counts it.
        value: int = _U32.unpack_from(raw, pos + 4)[0]
        return (zlib.crc32(raw[:pos]) ^ FINGERPRINT_XOR) == value

    def _verify_short_term(self, key: bytes, fingerprint_required: bool) -> bool | None:
        """`verify_fingerprint` and then `verify_integrity(key)` in one call, as ICE checks every check and
        answer (RFC 8445 7.3, 7.2.5; RFC 8489 14.5-14.7): None when FINGERPRINT is wrong, or absent while
        `fingerprint_required` (drop the message), else whether the integrity holds. `key` is bytes."""
        raw = self._raw
        if raw is None:  # built in code: nothing on the wire to check
            return None if fingerprint_required or _ATTR_FP in self else False
        mi, pos, _, fp, head = self._security
        if fp >= 0:
            if (zlib.crc32(raw[:fp]) ^ FINGERPRINT_XOR) != _U32.unpack_from(raw, fp + 4)[0]:
                return None
        elif fingerprint_required:
            return None
        if pos >= 0 or mi < 0:  # MESSAGE-INTEGRITY-SHA256, or no integrity at all: not ICE's short-term case
            return self.verify_integrity(key)
        inner, outer = _sha1_inner_for(key), _sha1_outer_for(key)  # verify_integrity's HMAC-SHA1, inline
        if inner is None or outer is None:
            inner, outer = sha1_pads(key)
        (h := inner.copy()).update(head + raw[4:mi])
        (o := outer.copy()).update(h.digest())
        return compare_digest(o.digest(), raw[mi + 4 : mi + 24])

    # ---- the wire ----

    def encode(
        self,
        integrity_key: BytesLike | str | None = None,
        integrity: Literal["sha1", "sha256", "both"] = "sha1",
        fingerprint: bool = False,
    ) -> bytes:
        """The message on the wire (RFC 8489 5, 14). With `integrity_key`, append MESSAGE-INTEGRITY
        ("sha1"), MESSAGE-INTEGRITY-SHA256 ("sha256") or both in that order; then FINGERPRINT if asked
        (RFC 8489 14.5-14.7).

        Raises ValueError for a value an attribute cannot carry, or a message over 65535 bytes of attributes.
        """
        body = encode_attributes(self.attributes, self.transaction_id)
        return seal(self.method, self.message_class, self.transaction_id, body, integrity_key, integrity, fingerprint)

    @classmethod
    def decode(cls, data: BytesLike) -> Message:
        """Parse one STUN message (RFC 8489 5, 14). Raises StunDecodeError, and only that, when `data` is
        not exactly one well-formed message with the magic cookie.

        Attributes after MESSAGE-INTEGRITY (but MESSAGE-INTEGRITY-SHA256 and FINGERPRINT) and after
        MESSAGE-INTEGRITY-SHA256 (but FINGERPRINT) are ignored (RFC 8489 14.5, 14.6); any attribute
        after FINGERPRINT is an error (RFC 8489 14.7).
        """
        if type(data) is not bytes:
            try:
                data = bytes(memoryview(data))
            except TypeError as e:
                raise StunDecodeError(f"not bytes: {type(data).__name__}") from e
        end = len(data)
        if end < 20:
            raise StunDecodeError(f"{end} bytes is shorter than the 20-byte header")
        mtype, length, cookie, tid = _HEADER_TID.unpack_from(data)
        if mtype & 0xC000 or cookie != MAGIC_COOKIE or length & 3 or length + 20 != end:
            raise StunDecodeError(header_error(mtype, length, cookie, end))
        key = mtype << 16 | length
        shape = _shape_for(key)
        attributes = None
        msg = object.__new__(cls)
        msg._fields = None
        if shape is not None:
            decode_layout, security, unknown, method, message_class = shape
            try:
                attributes = decode_layout(data, tid, msg)
            except (ValueError, IndexError, KeyError, OverflowError, OSError, struct.error):
                pass  # a bad value: the generic decoder below says precisely what is wrong
        if attributes is None:
            attributes, security, unknown = _decode_attributes(data, tid)
            method, message_class = _TYPES.get(mtype) or _type_to_method_class(mtype)
            learn(key, data, security, unknown, method, message_class)
        msg.method = method
        msg.message_class = message_class
        msg.transaction_id = tid
        msg.attributes = attributes
        msg._raw = data
        msg._security = security
        msg._unknown = unknown
        return msg

    # ---- dunder ----

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.method == other.method
            and self.message_class == other.message_class
            and self.transaction_id == other.transaction_id
            and self.attributes == other.attributes
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        method = self.method.name if isinstance(self.method, Method) else f"{self.method:#05x}"
        attrs = ", ".join(f"({_attr_name(t)}, {v!r})" for t, v in self.attributes)
        return (
            f"Message({method}, {self.message_class.name}, transaction_id={self.transaction_id.hex()}, "
            f"attributes=[{attrs}])"
        )


def _decode_attributes(
    data: bytes, tid: bytes
) -> tuple[list[tuple[Attr | int, Any]], Security, tuple[int, ...]]:
    """Walk and decode the attributes of a message whose header is already checked (RFC 8489 14): returns
    the attributes, the offsets of the security attributes and the unknown comprehension-required types."""
    attributes: list[tuple[Attr | int, Any]] = []
    append = attributes.append
    unknown: list[int] = []
    security = _NO_SECURITY
    table = DECODE_TABLE
    end = len(data)
    pos = 20
    t = 0
    v: Any
    try:
        while pos < end:
            # pos and end are multiples of 4, so a whole attribute header is always there.
            t, n = _ATTR_HDR.unpack_from(data, pos)
            start = pos + 4
            nxt = start + ((n + 3) & ~3)
            if nxt > end:
                raise StunDecodeError(f"{_attr_name(t)} of length {n} overruns the message")
            entry = table.get(t)
            if entry is None:
                if t < 0x8000:
                    unknown.append(t)
                append((t, data[start : start + n]))
            else:
                # The common kinds are decoded inline, without a call.
                a, kind, dec = entry
                if kind == KIND_TEXT:
                    v = data[start : start + n].decode()
                elif kind == KIND_U32:
                    if n != 4:
                        raise ValueError(f"length {n}, must be 4")
                    v = _U32.unpack_from(data, start)[0]
                elif kind == KIND_U64:
                    if n != 8:
                        raise ValueError(f"length {n}, must be 8")
                    v = _U64.unpack_from(data, start)[0]
                elif kind == KIND_NONE:
                    if n:
                        raise ValueError(f"length {n}, must be 0")
                    v = None
                elif kind == KIND_SECURITY:
                    security = _decode_security(data, pos, append)
                    break
                elif kind == KIND_BYTES:
                    v = data[start : start + n]
                else:
                    v = dec(data, start, n, tid)
                append((a, v))
            pos = nxt
    except StunDecodeError:
        raise
    except (ValueError, IndexError, KeyError, OverflowError, OSError, struct.error) as e:
        raise StunDecodeError(f"bad {_attr_name(t)}: {e}") from e
    return attributes, security, tuple(unknown)


def _decode_security(
    data: bytes, pos: int, append: Callable[[tuple[Attr | int, Any]], None]
) -> Security:
    """Decode the tail that starts at the first MESSAGE-INTEGRITY(-SHA256) or FINGERPRINT at `pos`
    (RFC 8489 14.5-14.7); returns where they are (`_fastdecode.Security`)."""
    mi = mi256 = mi256_len = fp = -1
    end = len(data)
    while pos < end:
        t, n = _ATTR_HDR.unpack_from(data, pos)
        start = pos + 4
        nxt = start + ((n + 3) & ~3)
        if nxt > end:
            raise StunDecodeError(f"{_attr_name(t)} of length {n} overruns the message")
        if fp >= 0:
            raise StunDecodeError(f"{_attr_name(t)} after FINGERPRINT")
        if t == _FP_TYPE:
            if n != 4:
                raise StunDecodeError(f"bad FINGERPRINT: length {n}, must be 4")
            fp = pos
            append((_ATTR_FP, _U32.unpack_from(data, start)[0]))
        elif mi256 >= 0:
            pass  # after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT counts (RFC 8489 14.6)
        elif t == _MI256_TYPE:
            if n < 16 or n > 32 or n & 3:
                raise StunDecodeError(f"bad MESSAGE-INTEGRITY-SHA256: length {n}, must be 16..32 in steps of 4")
            mi256, mi256_len = pos, n
            append((_ATTR_MI256, data[start : start + n]))
        elif mi >= 0:
            pass  # after MESSAGE-INTEGRITY only MI-SHA256 and FINGERPRINT count (RFC 8489 14.5)
        elif t == _MI_TYPE:
            if n != 20:
                raise StunDecodeError(f"bad MESSAGE-INTEGRITY: length {n}, must be 20")
            mi = pos
            append((_ATTR_MI, data[start : start + n]))
        pos = nxt
    # the first 4 bytes MESSAGE-INTEGRITY's HMAC covers: the type, the length up to its end (RFC 8489 14.5)
    return mi, mi256, mi256_len, fp, data[:2] + _LEN.pack(mi + 4) if mi >= 0 else b""


def _attr_name(t: object) -> str:
    """An attribute type as the RFCs write it, for error messages and repr."""
    if not isinstance(t, int):
        return f"attribute {t!r}"
    a = ATTR_BY_INT.get(t)
    return a.name.replace("_", "-") if a is not None else f"attribute {t:#06x}"


def looks_like_stun(data: BytesLike) -> bool:
    """Cheap test for the demultiplexer: top two bits 0, magic cookie, length field = len - 20 and a
    multiple of 4 (RFC 8489 5, RFC 7983). It does not parse the attributes."""
    return (
        len(data) >= 20
        and data[0] < 0x40
        and data[4:8] == COOKIE_BYTES
        and not data[3] & 3
        and (data[2] << 8 | data[3]) == len(data) - 20
    )
