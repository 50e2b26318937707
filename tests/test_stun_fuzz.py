"""Property tests of the STUN codec (RFC 8489): decode raises StunDecodeError and nothing else, on random
bytes and on mutated valid messages; encode then decode gives the attributes back; the compiled per-layout
decoders agree with the generic one."""

from __future__ import annotations

import hmac
import socket
import struct
import zlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iceagent.ice.checks import read_fields
from iceagent.stun import (
    MAGIC_COOKIE,
    Attr,
    Message,
    MessageClass,
    Method,
    StunDecodeError,
    _crypto,
    _fastdecode,
    looks_like_stun,
)
from iceagent.stun import message as message_module
from iceagent.stun.attributes import ATTR_BY_INT

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECURITY = {Attr.MESSAGE_INTEGRITY, Attr.MESSAGE_INTEGRITY_SHA256, Attr.FINGERPRINT}


def decode_or_none(data: bytes) -> Message | None:
    """Message.decode, where StunDecodeError is the one allowed failure (anything else fails the test)."""
    try:
        return Message.decode(data)
    except StunDecodeError:
        return None


# ---- strategies ----

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 2**64 - 1)
text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: socket.inet_ntop(socket.AF_INET6, a.packed))  # socket text form
address = st.tuples(st.one_of(ipv4, ipv6), u16)
algorithm = st.tuples(u16, st.binary(max_size=9))

VALUES: dict[Attr, st.SearchStrategy[Any]] = {
    Attr.MAPPED_ADDRESS: address,
    Attr.XOR_MAPPED_ADDRESS: address,
    Attr.XOR_PEER_ADDRESS: address,
    Attr.XOR_RELAYED_ADDRESS: address,
    Attr.ALTERNATE_SERVER: address,
    Attr.RESPONSE_ORIGIN: address,
    Attr.OTHER_ADDRESS: address,
    Attr.USERNAME: text,
    Attr.REALM: text,
    Attr.NONCE: text,
    Attr.SOFTWARE: text,
    Attr.ALTERNATE_DOMAIN: text,
    Attr.PRIORITY: u32,
    Attr.LIFETIME: u32,
    Attr.NOMINATION: u32,
    Attr.ICE_CONTROLLED: u64,
    Attr.ICE_CONTROLLING: u64,
    Attr.CHANNEL_NUMBER: u16,
    Attr.RESPONSE_PORT: u16,
    Attr.REQUESTED_TRANSPORT: u8,
    Attr.REQUESTED_ADDRESS_FAMILY: u8,
    Attr.USE_CANDIDATE: st.none(),
    Attr.DONT_FRAGMENT: st.none(),
    Attr.EVEN_PORT: st.booleans(),
    Attr.CHANGE_REQUEST: st.tuples(st.booleans(), st.booleans()),
    Attr.ERROR_CODE: st.tuples(st.integers(300, 699), text),
    Attr.UNKNOWN_ATTRIBUTES: st.lists(u16, max_size=6),
    Attr.PASSWORD_ALGORITHMS: st.lists(algorithm, max_size=3),
    Attr.PASSWORD_ALGORITHM: algorithm,
    Attr.DATA: st.binary(max_size=40),
    Attr.PADDING: st.binary(max_size=40),
    Attr.USERHASH: st.binary(min_size=32, max_size=32),
    Attr.RESERVATION_TOKEN: st.binary(min_size=8, max_size=8),
}
assert set(VALUES) == set(Attr) - SECURITY

unknown_type = u16.filter(lambda t: t not in ATTR_BY_INT)
attribute = st.one_of(
    st.sampled_from(sorted(VALUES)).flatmap(lambda a: st.tuples(st.just(a), VALUES[a])),
    st.tuples(unknown_type, st.binary(max_size=20)),
)
method = st.one_of(st.sampled_from(list(Method)), st.integers(0, 0xFFF))
message_class = st.sampled_from(list(MessageClass))
tid = st.binary(min_size=12, max_size=12)
key = st.binary(min_size=1, max_size=80)
integrity = st.sampled_from(["sha1", "sha256", "both"])


@st.composite
def messages(draw: st.DrawFn) -> tuple[Message, bytes | None, str, bool]:
    msg = Message(draw(method), draw(message_class), draw(tid), draw(st.lists(attribute, max_size=8)))
    return msg, draw(st.none() | key), draw(integrity), draw(st.booleans())


@st.composite
def wire_messages(draw: st.DrawFn) -> bytes:
    msg, k, how, fp = draw(messages())
    return msg.encode(integrity_key=k, integrity=how, fingerprint=fp)  # type: ignore[arg-type]


def frame(body: bytes, mtype: int = 0x0001, transaction_id: bytes = bytes(12)) -> bytes:
    return struct.pack("!HHI", mtype, len(body), MAGIC_COOKIE) + transaction_id + body


@st.composite
def with_ignored_tail(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A signed message with more attributes after its MESSAGE-INTEGRITY(-SHA256) (ignored, RFC 8489 14.5,
    14.6), then maybe FINGERPRINT; returns it and its key."""
    msg, _, how, _ = draw(messages())
    k = draw(key)
    signed = msg.encode(integrity_key=k, integrity=how)  # type: ignore[arg-type]
    extra = Message(1, 0, bytes(12), draw(st.lists(attribute, min_size=1, max_size=4))).encode()[20:]
    if draw(st.booleans()):
        extra += struct.pack("!HH", 0x0008, 20) + draw(st.binary(min_size=20, max_size=20))
    body = signed[20:] + extra
    fp = draw(st.booleans())
    data = struct.pack("!HHI", struct.unpack("!H", signed[:2])[0], len(body) + 8 * fp, MAGIC_COOKIE)
    data += signed[8:20] + body
    if fp:
        data += struct.pack("!HHI", 0x8028, 4, zlib.crc32(data) ^ 0x5354554E)
    return data, k


@st.composite
def raw_tlvs(draw: st.DrawFn) -> bytes:
    """Attributes with arbitrary values and lengths, known types mostly, under a valid header."""
    types = st.one_of(st.sampled_from(sorted(ATTR_BY_INT)), u16)
    body = b""
    for _ in range(draw(st.integers(0, 6))):
        value = draw(st.binary(max_size=40))
        length = draw(st.one_of(st.just(len(value)), st.integers(0, 48)))
        body += struct.pack("!HH", draw(types), length) + value + bytes(-len(value) & 3)
    return frame(body, draw(st.integers(0, 0x3FFF)))


# ---- decode never raises anything but StunDecodeError ----


@FUZZ
@given(st.binary(max_size=160))
def test_random_bytes(data: bytes) -> None:
    decode_or_none(data)
    looks_like_stun(data)


@FUZZ
@given(st.binary(max_size=120).map(lambda b: b + bytes(-len(b) & 3)), st.integers(0, 0x3FFF))
def test_random_bodies_under_a_valid_header(body: bytes, mtype: int) -> None:
    data = frame(body, mtype)
    assert looks_like_stun(data)
    decode_or_none(data)


@FUZZ
@given(raw_tlvs())
def test_random_attribute_values(data: bytes) -> None:
    decode_or_none(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(wire_messages()))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "length", "attr-length", "insert", "delete", "byte"]))
        if kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif kind == "length" and len(data) >= 4:
            data[2:4] = struct.pack("!H", draw(st.one_of(u16, st.integers(0, 64))))
        elif kind == "attr-length" and len(data) > 24:
            # Rewrite the length field of one attribute header (attribute headers start at 4-byte offsets).
            offsets = list(range(20, len(data) - 3, 4))
            i = draw(st.sampled_from(offsets))
            data[i + 2 : i + 4] = struct.pack("!H", draw(st.one_of(u16, st.integers(0, 48))))
        elif kind == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i : i + draw(st.integers(1, 8))]
        elif kind == "byte" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(u8)
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_messages(data: bytes) -> None:
    msg = decode_or_none(data)
    if msg is not None:
        msg.verify_integrity(b"key")
        msg.verify_integrity(b"key" * 30)
        msg.verify_fingerprint()
        assert isinstance(msg.unknown_required, list)
        repr(msg)


# ---- round trip ----


@FUZZ
@given(messages())
def test_encode_then_decode_gives_the_attributes_back(case: tuple[Message, bytes | None, str, bool]) -> None:
    msg, k, how, fp = case
    wire = msg.encode(integrity_key=k, integrity=how, fingerprint=fp)  # type: ignore[arg-type]
    assert looks_like_stun(wire)
    back = Message.decode(wire)
    assert back.method == msg.method and back.message_class is msg.message_class
    assert back.transaction_id == msg.transaction_id
    assert [(t, v) for t, v in back.attributes if t not in SECURITY] == msg.attributes
    assert back.unknown_required == [t for t, _ in msg.attributes if t < 0x8000 and t not in ATTR_BY_INT]
    assert back.verify_fingerprint() is fp
    if k is None:
        assert not any(t in SECURITY for t, _ in back.attributes if t != Attr.FINGERPRINT)
        assert not back.verify_integrity(b"anything")
    else:
        assert back.verify_integrity(k)
        assert not back.verify_integrity(k + b"x")
        assert (Attr.MESSAGE_INTEGRITY in back) is (how != "sha256")
        assert (Attr.MESSAGE_INTEGRITY_SHA256 in back) is (how != "sha1")
    assert back.encode(integrity_key=k, integrity=how, fingerprint=fp) == wire  # type: ignore[arg-type]


@FUZZ
@given(key, st.binary(max_size=300))
def test_cached_hmac_matches_the_standard_library(k: bytes, data: bytes) -> None:
    assert _crypto.hmac_sha1(k, data) == hmac.digest(k, data, "sha1")
    assert _crypto.hmac_sha256(k, data) == hmac.digest(k, data, "sha256")


@FUZZ
@given(with_ignored_tail())
def test_attributes_after_integrity_are_ignored(case: tuple[bytes, bytes]) -> None:
    data, k = case
    msg = Message.decode(data)
    assert msg.verify_integrity(k)
    types = [t for t, _ in msg.attributes]
    first = min(types.index(t) for t in SECURITY if t in types)
    assert all(t in SECURITY for t in types[first:])
    assert len(types[first:]) == len(set(types[first:]))


# ---- the compiled per-layout decoders agree with the generic walk ----


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(wire_messages(), with_ignored_tail().map(lambda case: case[0])), st.data())
def test_compiled_layout_decoder_agrees_with_the_generic_one(wire: bytes, data: st.DataObject) -> None:
    attributes, security, unknown = message_module._decode_attributes(wire, wire[8:20])
    decode_layout = _fastdecode.compile_decoder(wire, security)
    if decode_layout is None:  # more attributes than compiling is worth
        return
    holder = Fields()
    assert decode_layout(wire, wire[8:20], holder) == attributes
    assert_check_fields(holder, wire, attributes)
    # The same layout with other values (and sometimes other headers): either the shape declines (None),
    # or it gives exactly what the generic walk gives, or both find the message malformed.
    other = bytearray(wire)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(20, len(other) - 1))
        other[i] = data.draw(u8)
    other_bytes = bytes(other)
    try:
        generic: Any = message_module._decode_attributes(other_bytes, other_bytes[8:20])
    except StunDecodeError:
        generic = None
    holder = Fields()
    try:
        fast = decode_layout(other_bytes, other_bytes[8:20], holder)
    except (ValueError, IndexError, KeyError, OverflowError, OSError, struct.error):
        assert generic is None
        return
    if fast is not None:
        assert generic is not None
        assert fast == generic[0]
        assert (security, unknown) == generic[1:]  # what the shape cache keeps for the layout
        assert_check_fields(holder, other_bytes, fast)


class Fields:
    """Stands in for the Message a compiled decoder fills a Binding request's check fields in."""

    _fields: tuple[Any, ...] | None = None


def assert_check_fields(holder: Fields, wire: bytes, attributes: list[Any]) -> None:
    """A compiled Binding-request decoder fills what `read_fields` finds in its attributes; others nothing."""
    if wire[:2] == b"\x00\x01":
        assert holder._fields == read_fields(attributes)
    else:
        assert holder._fields is None


def test_shape_cache_is_used_and_bounded() -> None:
    wire = Message(Method.BINDING, MessageClass.REQUEST, bytes(12), [(Attr.PRIORITY, 1)]).encode(fingerprint=True)
    for _ in range(40):
        Message.decode(wire)
    key = 0x0001 << 16 | (len(wire) - 20)
    assert key in _fastdecode.SHAPES
    assert len(_fastdecode.SHAPES) <= _fastdecode.MAX_SHAPES


def test_two_layouts_of_one_key_both_take_the_compiled_path(monkeypatch: Any) -> None:
    """A controlling and a controlled check have the same type and length (ICE-CONTROLLING and ICE-CONTROLLED
    only differ in type): once both were seen often, both decode through the shape cache, with the generic
    decoder's result; before, the key's shape flipped between them and one side's checks decoded generically."""
    tid = bytes(range(12))

    def check(role: Attr) -> bytes:
        attributes = [(Attr.USERNAME, "abcd:efgh"), (Attr.PRIORITY, 7), (role, 99)]
        return Message(Method.BINDING, MessageClass.REQUEST, tid, attributes).encode(b"k" * 16, fingerprint=True)

    controlling, controlled = check(Attr.ICE_CONTROLLING), check(Attr.ICE_CONTROLLED)
    assert len(controlling) == len(controlled)
    for _ in range(40):
        Message.decode(controlling)
        Message.decode(controlled)
    generic: list[bytes] = []
    real = message_module._decode_attributes
    monkeypatch.setattr(message_module, "_decode_attributes", lambda data, t: generic.append(data) or real(data, t))
    for data in (controlling, controlled) * 3:
        assert Message.decode(data).attributes == real(data, tid)[0]
    assert generic == []
