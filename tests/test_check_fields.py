"""The STUN fast paths of a connectivity check (RFC 8445 7.2.2, 7.3; RFC 8489 14.5, 14.7): checks and their
answers are sealed without the generic encoder, a compiled Binding-request layout hands ICE the fields it
reads without another pass over the attributes, and a compiled layout decodes an IPv4 XOR-MAPPED-ADDRESS
inline. Each gives exactly what the generic path gives."""

from __future__ import annotations

import hmac
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iceagent.ice import checks
from iceagent.ice.candidate import IceParameters
from iceagent.ice.checks import check_request, read_check, read_fields, success_response
from iceagent.stun import _fastdecode, attributes
from iceagent.stun.attributes import FINGERPRINT_XOR, MAGIC_COOKIE, Attr
from iceagent.stun.message import Message, MessageClass, Method, StunDecodeError, seal_short_term

LOCAL = IceParameters(ufrag="lfrag-fields", pwd="l" * 22)  # a USERNAME length no other test uses
REMOTE = IceParameters(ufrag="rfrag-fields", pwd="r" * 22)


class NoPass(list[tuple[Any, Any]]):
    """An attribute list that fails any walk over it: read_check must not need one."""

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        raise AssertionError("walked the attributes")

    def __reversed__(self) -> Iterator[tuple[Any, Any]]:
        raise AssertionError("walked the attributes")


def compiled(wire: bytes) -> Message:
    """`wire` decoded once its layout is compiled (the decoder compiles a layout after 16 generic decodes)."""
    for _ in range(40):
        Message.decode(wire)
    key = int.from_bytes(wire[:2], "big") << 16 | (len(wire) - 20)
    assert key in _fastdecode.SHAPES
    return Message.decode(wire)


def request(attrs: list[tuple[Attr | int, Any]], tid: bytes = bytes(12), trailer: bytes = b"") -> bytes:
    """A Binding request with `attrs`, MESSAGE-INTEGRITY, then `trailer` (attributes after it) and
    FINGERPRINT."""
    signed = Message(Method.BINDING, MessageClass.REQUEST, tid, attrs).encode(integrity_key=b"k")
    if not trailer:
        body = signed[20:]
    else:
        body = signed[20:] + trailer
    n = len(body) + 8
    data = struct.pack("!HHI12s", 0x0001, n, MAGIC_COOKIE, tid) + body
    return data + struct.pack("!HHI", Attr.FINGERPRINT, 4, zlib.crc32(data) ^ FINGERPRINT_XOR)


@pytest.mark.parametrize(
    ("attrs", "trailer", "fields"),
    [
        (  # a controlling check with USE-CANDIDATE
            [(Attr.USERNAME, "rfrag:lfrag"), (Attr.PRIORITY, 7), (Attr.ICE_CONTROLLING, 9), (Attr.USE_CANDIDATE, None)],
            b"",
            ("rfrag:lfrag", 7, 9, None, True, None, True),
        ),
        (  # repeated types: the first counts; NOMINATION; unknown optional attribute
            [(Attr.PRIORITY, 1), (Attr.USERNAME, "a:b"), (Attr.PRIORITY, 2), (0xC0FE, b"x"), (Attr.NOMINATION, 3),
             (Attr.ICE_CONTROLLED, 4), (Attr.ICE_CONTROLLED, 5)],
            b"",
            ("a:b", 1, None, 4, False, 3, True),
        ),
        (  # USE-CANDIDATE after MESSAGE-INTEGRITY is ignored (RFC 8489 14.5)
            [(Attr.USERNAME, "a:b"), (Attr.PRIORITY, 1)],
            struct.pack("!HH", Attr.USE_CANDIDATE, 0),
            ("a:b", 1, None, None, False, None, True),
        ),
    ],
)
def test_a_compiled_check_layout_gives_read_check_its_fields_without_a_walk(
    attrs: list[tuple[Attr | int, Any]], trailer: bytes, fields: tuple[Any, ...]
) -> None:
    msg = compiled(request(attrs, trailer=trailer))
    assert read_fields(msg.attributes) == fields
    msg.attributes = NoPass(msg.attributes)
    assert read_check(msg) == fields


def test_both_roles_sharing_a_layout_key_get_their_own_fields_others_a_walk() -> None:
    # A controlling check without USE-CANDIDATE and a controlled one have the same type and length: one key,
    # two layouts in one compiled decoder (_fastdecode's docstring); each must report its own role.
    def check(controlling: bool, i: int) -> bytes:
        return check_request(transaction_id=i.to_bytes(12, "big"), local=LOCAL, remote=REMOTE, priority=5,
                             controlling=controlling, tie_breaker=i)

    for i in range(80):
        Message.decode(check(i % 2 == 0, i))
    for i in range(4):
        msg = Message.decode(check(i % 2 == 0, 1000 + i))
        expected = read_fields(msg.attributes)
        assert expected[2 if i % 2 == 0 else 3] == 1000 + i
        msg.attributes = NoPass(msg.attributes)
        assert read_check(msg) == expected
    # a check built in code, or of a layout not compiled yet, is walked
    built = Message(Method.BINDING, MessageClass.REQUEST, bytes(12), [(Attr.PRIORITY, 3), (Attr.USE_CANDIDATE, None)])
    assert read_check(built) == (None, 3, None, None, True, None, False)
    fresh = Message.decode(request([(Attr.USERNAME, "x" * 301 + ":y"), (Attr.PRIORITY, 4)]))  # a new layout
    assert read_check(fresh) == ("x" * 301 + ":y", 4, None, None, False, None, True)


def test_a_compiled_layout_decodes_an_ipv4_xor_mapped_address_without_a_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    a, kind, decode = attributes.DECODE_TABLE[Attr.XOR_MAPPED_ADDRESS]

    def counted(*args: Any) -> Any:
        calls.append(args)
        return decode(*args)

    monkeypatch.setitem(attributes.DECODE_TABLE, int(Attr.XOR_MAPPED_ADDRESS), (a, kind, counted))
    ask = Message(Method.BINDING, MessageClass.REQUEST, bytes(12), [(Attr.SOFTWARE, "xor-inline-test")])
    wire = success_response(ask, ("198.51.100.9", 40001), LOCAL)
    key = int.from_bytes(wire[:2], "big") << 16 | (len(wire) - 20)
    monkeypatch.delitem(_fastdecode.SHAPES, key, raising=False)
    monkeypatch.setitem(_fastdecode._SEEN, key, 0)
    msg = compiled(wire)
    calls.clear()
    assert Message.decode(wire).get(Attr.XOR_MAPPED_ADDRESS) == ("198.51.100.9", 40001) == msg.get(
        Attr.XOR_MAPPED_ADDRESS
    )
    assert calls == []
    # the same layout with family 2 in an 8-byte value: the generic decoder's precise error
    bad = bytearray(wire)
    bad[20 + 5] = 2
    with pytest.raises(StunDecodeError, match=r"bad XOR-MAPPED-ADDRESS: bad address \(length 8, family 2\)"):
        Message.decode(bytes(bad))


def test_checks_and_answers_are_sealed_without_the_generic_sealer(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("the generic seal")

    monkeypatch.setattr(checks, "seal", refuse)
    data = check_request(transaction_id=bytes(12), local=LOCAL, remote=REMOTE, priority=1, controlling=True,
                         tie_breaker=2, use_candidate=True, nomination=3)
    msg = Message.decode(data)
    assert msg.verify_integrity(REMOTE.pwd) and msg.verify_fingerprint()
    assert msg.get(Attr.NOMINATION) == 3 and Attr.USE_CANDIDATE in msg
    answer = Message.decode(success_response(msg, ("192.0.2.1", 9), REMOTE))
    assert answer.verify_integrity(REMOTE.pwd) and answer.verify_fingerprint()


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 0x3FFF), st.binary(min_size=12, max_size=12), st.binary(max_size=64).map(
    lambda b: b + bytes(-len(b) & 3)), st.binary(min_size=1, max_size=80))
def test_seal_short_term_is_hmac_sha1_then_crc32(mtype: int, tid: bytes, body: bytes, key: bytes) -> None:
    # RFC 8489 14.5: HMAC-SHA1 over the header (length up to the end of MESSAGE-INTEGRITY) and the
    # attributes before it; 14.7: CRC-32 of all before FINGERPRINT XOR 0x5354554e. Checked with hmac/zlib.
    data = seal_short_term(mtype, tid, body, key)
    n = len(body)
    header = struct.pack("!HHI12s", mtype, n + 24, MAGIC_COOKIE, tid)
    mac = hmac.new(key, header + body, "sha1").digest()
    head = struct.pack("!HHI12s", mtype, n + 32, MAGIC_COOKIE, tid) + body + struct.pack("!HH", 8, 20) + mac
    assert data == head + struct.pack("!HHI", Attr.FINGERPRINT, 4, zlib.crc32(head) ^ FINGERPRINT_XOR)


def test_seal_short_term_refuses_a_message_over_the_length_field() -> None:
    seal_short_term(1, bytes(12), bytes(0xFFFC - 32), b"k")
    with pytest.raises(ValueError, match="more than 65532"):
        seal_short_term(1, bytes(12), bytes(0xFFFC - 28), b"k")
