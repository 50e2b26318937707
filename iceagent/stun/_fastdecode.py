"""Decoders compiled per attribute layout: the fast path of `Message.decode` (RFC 8489 14).

An agent sees the same message layouts over and over: every connectivity check from a peer has the same
attribute types and lengths at the same offsets, only the values differ. Once a layout (keyed by message
type and length) has been decoded generically a few times, compile a decoder for it: one struct unpack of
every header and value, a comparison of the headers with the layout's, and the attribute list built
directly. A message whose headers differ makes the decoder return None and takes the generic walk, so
results never differ (tests/test_stun_fuzz.py, fuzz/targets.py).

Two layouts may share a key: an ICE check from the controlling side and one from the controlled side have
the same type and length, only ICE-CONTROLLING and ICE-CONTROLLED differ. When a key's second layout
(with the same security offsets) is compiled, its decoder tries both, so neither side's checks keep taking
the generic walk (and the key's shape no longer flips between the two at every recompile).

A compiled layout also does part of its reader's work: it decodes an IPv4 XOR-*-ADDRESS inline (RFC 8489
14.2), and one of a Binding request fills the fields an ICE agent reads in a check (`CHECK_FIELD_SLOTS`,
RFC 8445 7.3) as it decodes, so `iceagent.ice.checks.read_check` makes no second pass over the attributes.

Private to `iceagent.stun`; it never imports `message.py`, which owns the generic decoder and the cache's
one caller.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from socket import AF_INET, inet_ntop
from typing import Any, NoReturn

from .attributes import (
    CHECK_FIELD_SLOTS,
    CHECK_FIELDS_EMPTY,
    DECODE_TABLE,
    KIND_BYTES,
    KIND_NONE,
    KIND_SECURITY,
    KIND_TEXT,
    KIND_U32,
    KIND_U64,
    KIND_XOR_ADDRESS,
    MAGIC_COOKIE,
    Attr,
)

__all__ = ["MAX_SHAPES", "SHAPES", "Decoder", "Security", "Shape", "compile_decoder", "header_error", "layout", "learn"]

Decoder = Callable[[bytes, bytes, Any], "list[tuple[Attr | int, Any]] | None"]
"""`(data, transaction_id, message) -> attributes`, or None when `data`'s headers are not the compiled layout's.
A Binding request's decoder also sets `message._fields`: what an ICE agent reads in a check, in the slots of
`CHECK_FIELD_SLOTS` (RFC 8445 7.3), so that `read_check` need not walk the attributes again."""

Security = tuple[int, int, int, int, bytes]
"""Where a message's security attributes are: the offsets of MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256, its
length, FINGERPRINT (-1: absent), and the first 4 bytes MESSAGE-INTEGRITY's HMAC covers (the type and the
length field counting up to its end, RFC 8489 14.5; empty without it). The same for every message of a layout."""

Shape = tuple[
    Decoder,
    Security,  # where the layout's security attributes are
    tuple[int, ...],  # its unknown comprehension-required types
    Any,  # the method (Method | int) and class (MessageClass) of the key's message type, as message.py
    Any,  # gave them: kept here so the fast path does not split the type again
]
"""A decoder compiled for one attribute layout, and what is constant for that layout (a tuple: unpacked at
once on the hot path)."""

SHAPES: dict[int, Shape] = {}
"""Compiled layouts by `message type << 16 | length`; cleared when full (bounded state, DESIGN.md)."""
_SAMPLES: dict[int, bytes] = {}
"""A message of the layout last compiled for each key of SHAPES (cleared with it): a second layout of the
key is compiled together with it."""
_SEEN: dict[int, int] = {}
_SHAPE_AFTER = 16  # generic decodes of one key before its shape is compiled (then again at 32, 64, ...)
_SHAPE_MAX_ATTRIBUTES = 24  # bigger layouts are rare and slow to compile: they stay on the generic path
MAX_SHAPES = 256
_MAX_SEEN = 4096
_ATTR_HDR = struct.Struct("!HH")
_FP_TYPE = int(Attr.FINGERPRINT)
_BINDING_REQUEST = b"\x00\x01"  # the message type of a Binding request (RFC 8489 5)


def _not_ipv4(family: int) -> NoReturn:
    """An 8-byte address value whose family is not IPv4: the generic decoder says what is wrong."""
    raise ValueError(f"bad address (length 8, family {family})")


_GLOBALS = {  # what the compiled XOR-address decoding uses (RFC 8489 14.2)
    "_ntop": inet_ntop,
    "_AF4": AF_INET,
    "_pack32": struct.Struct("!I").pack,
    "_COOKIE": MAGIC_COOKIE,
    "_C16": MAGIC_COOKIE >> 16,
    "_not_ipv4": _not_ipv4,
}


def learn(
    key: int,
    data: bytes,
    security: Security,
    unknown: tuple[int, ...],
    method: Any,
    message_class: Any,
) -> None:
    """Count generic decodes per key; compile the layout of `data` at 16, 32, 64... of them."""
    seen = _SEEN.get(key, 0) + 1
    if len(_SEEN) >= _MAX_SEEN:
        _SEEN.clear()
    _SEEN[key] = seen
    if seen >= _SHAPE_AFTER and not seen & (seen - 1):
        samples = [data]
        known, sample = SHAPES.get(key), _SAMPLES.get(key)
        if known is not None and sample is not None and known[1:3] == (security, unknown):
            if layout(sample) != layout(data):  # another layout of the key: decode both (module docstring)
                samples.append(sample)
        try:
            decoder = _compile(samples, security)
        except Exception:  # a bug here must not break decoding: the generic path stays correct
            decoder = None
        if decoder is not None:
            if len(SHAPES) >= MAX_SHAPES:
                SHAPES.clear()
                _SAMPLES.clear()
            SHAPES[key] = (decoder, security, unknown, method, message_class)
            _SAMPLES[key] = data


def compile_decoder(data: bytes, security: Security) -> Decoder | None:
    """Generate the decoder of the layout of `data`, a message the generic decoder accepted with the
    security offsets `security` (None when the layout has too many attributes to be worth it)."""
    return _compile([data], security)


def _compile(samples: list[bytes], security: Security) -> Decoder | None:
    """The decoder of the layouts of `samples` (messages of one key with the security offsets `security`),
    tried in that order; None when one has too many attributes to be worth it."""
    namespace: dict[str, Any] = dict(_GLOBALS)
    body = []
    for k, data in enumerate(samples):
        part = _layout_source(data, security, namespace, "" if k == 0 else str(k))
        if part is None:
            return None
        body.append(part)
    source = "def decode(data, tid, msg):\n" + "".join(body) + "    return None\n"
    exec(compile(source, "<stun message shape>", "exec"), namespace)
    decoder: Decoder = namespace["decode"]
    return decoder


def _layout_source(data: bytes, security: Security, namespace: dict[str, Any], tag: str) -> str | None:
    """The lines of a decoder that return the attributes of a message of the layout of `data`, its names in
    `namespace` suffixed with `tag` (the first layout's `unpack` and `expected` are unsuffixed)."""
    attrs = layout(data)
    if not attrs or len(attrs) > _SHAPE_MAX_ATTRIBUTES:
        return None
    mi, mi256, _, fp, _ = security
    first_security = min((p for p in (mi, mi256, fp) if p >= 0), default=len(data))
    fmt = ["!"]
    names: list[str] = []
    headers: list[str] = []
    expected: list[int] = []
    items: list[str] = []
    lines: list[str] = []  # before the list is built
    fields: list[str] | None = None
    if data[:2] == _BINDING_REQUEST:  # fill read_check's fields: the first of a repeated type counts
        fields = [repr(v) for v in CHECK_FIELDS_EMPTY]
        filled: set[int] = set()
    pos = 20
    for i, (t, n) in enumerate(attrs):
        pad = -n & 3
        fmt.append("I")
        names.append(f"h{i}")
        headers.append(f"h{i}")
        expected.append(t << 16 | n)
        start = pos + 4
        pos = start + n + pad
        if start - 4 >= first_security and start - 4 not in (mi, mi256, fp):
            fmt.append(f"{n + pad}x")  # ignored after MESSAGE-INTEGRITY(-SHA256): header checked, value skipped
            continue
        entry = DECODE_TABLE.get(t)
        namespace[f"A{tag}_{i}"] = entry[0] if entry is not None else t
        kind = entry[1] if entry is not None else KIND_BYTES
        slot = CHECK_FIELD_SLOTS.get(t)
        if fields is not None and slot is not None and slot not in filled:
            filled.add(slot)
            fields[slot] = "True" if slot in (4, 6) else f"v{i}"
        if t == _FP_TYPE or kind in (KIND_U32, KIND_U64):
            fmt.append("Q" if kind == KIND_U64 else "I")
            names.append(f"v{i}")
            items.append(f"(A{tag}_{i}, v{i})")
        elif kind == KIND_NONE:
            items.append(f"(A{tag}_{i}, None)")
        elif kind == KIND_XOR_ADDRESS and n == 8:  # IPv4 inline: family, port and address XOR cookie (14.2)
            fmt.append("xBHI")
            names.extend((f"f{i}", f"p{i}", f"v{i}"))
            items.append(
                f"(A{tag}_{i}, (_ntop(_AF4, _pack32(v{i} ^ _COOKIE)), p{i} ^ _C16) if f{i} == 1 else _not_ipv4(f{i}))"
            )
        elif kind in (KIND_TEXT, KIND_BYTES, KIND_SECURITY):
            fmt.append(f"{n}s{pad}x")
            names.append(f"v{i}")
            if kind == KIND_TEXT:
                lines.append(f"v{i} = v{i}.decode()")
            items.append(f"(A{tag}_{i}, v{i})")
        else:
            assert entry is not None
            fmt.append(f"{n + pad}x")
            namespace[f"D{tag}_{i}"] = entry[2]
            items.append(f"(A{tag}_{i}, D{tag}_{i}(data, {start}, {n}, tid))")
    namespace[f"unpack{tag}"] = struct.Struct("".join(fmt)).unpack_from
    namespace[f"expected{tag}"] = tuple(expected)
    lines.append(f"attributes = [{', '.join(items)}]")
    if fields is not None:
        lines.append(f"msg._fields = ({', '.join(fields)})")
    return (
        f"    ({', '.join(names)},) = unpack{tag}(data, 20)\n"
        f"    if ({', '.join(headers)},) == expected{tag}:\n"
        + "".join(f"        {line}\n" for line in lines)
        + "        return attributes\n"
    )


def layout(data: bytes) -> list[tuple[int, int]]:
    """(type, length) of every attribute of a well-formed message, ignored ones included."""
    out = []
    pos, end = 20, len(data)
    while pos < end:
        t, n = _ATTR_HDR.unpack_from(data, pos)
        out.append((t, n))
        pos += 4 + n + (-n & 3)
    return out


def header_error(mtype: int, length: int, cookie: int, end: int) -> str:
    """What is wrong with a header that failed the checks of RFC 8489 5."""
    if mtype & 0xC000:
        return "the first two bits are not zero"
    if cookie != MAGIC_COOKIE:
        return f"magic cookie is {cookie:#010x}, not 0x2112a442 (RFC 3489 is unsupported)"
    if length & 3:
        return f"length field {length} is not a multiple of 4"
    return f"length field {length} does not match the {end - 20} bytes after the header"
