"""The STUN codec (RFC 8489 5, 14; RFC 8445 16.1; RFC 8656 18; RFC 5780 7): bytes on the wire, literally."""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from typing import Any

import pytest

from iceagent.errors import IceError
from iceagent.stun import (
    MAGIC_COOKIE,
    Attr,
    Message,
    MessageClass,
    Method,
    PasswordAlgorithm,
    StunDecodeError,
    long_term_key,
    looks_like_stun,
    userhash,
)

TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
KEY = b"8h3x5QmB0bqkqJ1aXq2nTz"


def unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def frame(body: bytes | str, mtype: int = 0x0001, tid: bytes = TID) -> bytes:
    """A STUN message with this body (hex or bytes) and a correct length field."""
    if isinstance(body, str):
        body = unhex(body)
    return struct.pack("!HHI", mtype, len(body), MAGIC_COOKIE) + tid + body


def body_of(attributes: list[tuple[Any, Any]], tid: bytes = TID) -> bytes:
    return Message(Method.BINDING, MessageClass.REQUEST, tid, attributes).encode()[20:]


# ---- header: message types (RFC 8489 5, RFC 8656 17) ----


@pytest.mark.parametrize(
    ("method", "message_class", "mtype"),
    [
        (Method.BINDING, MessageClass.REQUEST, 0x0001),
        (Method.BINDING, MessageClass.INDICATION, 0x0011),
        (Method.BINDING, MessageClass.SUCCESS, 0x0101),
        (Method.BINDING, MessageClass.ERROR, 0x0111),
        (Method.ALLOCATE, MessageClass.REQUEST, 0x0003),
        (Method.ALLOCATE, MessageClass.SUCCESS, 0x0103),
        (Method.ALLOCATE, MessageClass.ERROR, 0x0113),
        (Method.REFRESH, MessageClass.REQUEST, 0x0004),
        (Method.REFRESH, MessageClass.ERROR, 0x0114),
        (Method.SEND, MessageClass.INDICATION, 0x0016),
        (Method.DATA, MessageClass.INDICATION, 0x0017),
        (Method.CREATE_PERMISSION, MessageClass.REQUEST, 0x0008),
        (Method.CREATE_PERMISSION, MessageClass.SUCCESS, 0x0108),
        (Method.CHANNEL_BIND, MessageClass.REQUEST, 0x0009),
        (Method.CHANNEL_BIND, MessageClass.ERROR, 0x0119),
        (0xFFF, MessageClass.REQUEST, 0x3EEF),
        (0xFFF, MessageClass.ERROR, 0x3FFF),
        (0x0A0, MessageClass.SUCCESS, 0x0340),
    ],
)
def test_message_type(method: int, message_class: MessageClass, mtype: int) -> None:
    wire = Message(method, message_class, TID).encode()
    assert wire == struct.pack("!HHI", mtype, 0, MAGIC_COOKIE) + TID
    msg = Message.decode(wire)
    assert msg.method == method and msg.message_class is message_class
    assert type(msg.method) is (Method if method in set(Method) else int)
    assert msg.attributes == []


def test_unknown_method_keeps_its_number_and_round_trips() -> None:
    msg = Message.decode(frame("", mtype=0x0340))
    assert msg.method == 0x0A0 and not isinstance(msg.method, Method)
    assert msg.encode() == frame("", mtype=0x0340)


def test_constructor_checks_and_defaults() -> None:
    a = Message(Method.BINDING, MessageClass.REQUEST)
    b = Message(Method.BINDING, MessageClass.REQUEST)
    assert len(a.transaction_id) == 12 and a.transaction_id != b.transaction_id
    assert Message(1, 0x100, bytearray(TID)).message_class is MessageClass.SUCCESS
    assert Message(1, 0x100, bytearray(TID)).transaction_id == TID
    with pytest.raises(ValueError, match="12 bytes"):
        Message(Method.BINDING, MessageClass.REQUEST, b"short")
    with pytest.raises(ValueError, match="12 bits"):
        Message(0x1000, MessageClass.REQUEST)
    with pytest.raises(ValueError, match="message class"):
        Message(Method.BINDING, 0x001)


# ---- attributes, byte for byte ----

ATTRIBUTE_CASES: list[tuple[Any, Any, str]] = [
    (Attr.MAPPED_ADDRESS, ("192.0.2.1", 32853), "0001 0008 0001 8055 c0000201"),
    (
        Attr.MAPPED_ADDRESS,
        ("2001:db8::1", 3478),
        "0001 0014 0002 0d96 20010db8 00000000 00000000 00000001",
    ),
    (Attr.XOR_MAPPED_ADDRESS, ("192.0.2.1", 32853), "0020 0008 0001 a147 e112a643"),
    (
        Attr.XOR_MAPPED_ADDRESS,
        ("2001:db8:1234:5678:11:2233:4455:6677", 32853),
        "0020 0014 0002 a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9",
    ),
    (Attr.XOR_PEER_ADDRESS, ("192.0.2.1", 32853), "0012 0008 0001 a147 e112a643"),
    (Attr.XOR_RELAYED_ADDRESS, ("192.0.2.1", 32853), "0016 0008 0001 a147 e112a643"),
    (Attr.ALTERNATE_SERVER, ("198.51.100.2", 3478), "8023 0008 0001 0d96 c6336402"),
    (Attr.RESPONSE_ORIGIN, ("198.51.100.2", 3478), "802b 0008 0001 0d96 c6336402"),
    (Attr.OTHER_ADDRESS, ("198.51.100.3", 3479), "802c 0008 0001 0d97 c6336403"),
    (Attr.USERNAME, "a:b", "0006 0003 613a62 00"),
    (Attr.USERNAME, "", "0006 0000"),
    (Attr.REALM, "example.org", "0014 000b 6578616d706c652e6f7267 00"),
    (Attr.NONCE, "n", "0015 0001 6e 000000"),
    (Attr.SOFTWARE, "é", "8022 0002 c3a9 0000"),
    (Attr.ALTERNATE_DOMAIN, "example.net", "8003 000b 6578616d706c652e6e6574 00"),
    (
        Attr.ERROR_CODE,
        (420, "Unknown Attribute"),
        "0009 0015 00000414 556e6b6e6f776e20417474726962757465 000000",
    ),
    (Attr.ERROR_CODE, (487, "Role Conflict"), "0009 0011 00000457 526f6c6520436f6e666c696374 000000"),
    (Attr.ERROR_CODE, (300, ""), "0009 0004 00000300"),
    (Attr.UNKNOWN_ATTRIBUTES, [0x1234, 0x0042, 0x7FFF], "000a 0006 1234 0042 7fff 0000"),
    (Attr.UNKNOWN_ATTRIBUTES, [], "000a 0000"),
    (Attr.PRIORITY, 0x6E0001FF, "0024 0004 6e0001ff"),
    (Attr.ICE_CONTROLLED, 0x0102030405060708, "8029 0008 0102030405060708"),
    (Attr.ICE_CONTROLLING, 0xFFFFFFFFFFFFFFFF, "802a 0008 ffffffffffffffff"),
    (Attr.USE_CANDIDATE, None, "0025 0000"),
    (Attr.CHANNEL_NUMBER, 0x4001, "000c 0004 4001 0000"),
    (Attr.LIFETIME, 600, "000d 0004 00000258"),
    (Attr.NOMINATION, 3, "c001 0004 00000003"),  # libwebrtc's NOMINATION (draft-thatcher-ice-renomination)
    (Attr.REQUESTED_TRANSPORT, 17, "0019 0004 11 000000"),
    (Attr.REQUESTED_ADDRESS_FAMILY, 2, "0017 0004 02 000000"),
    (Attr.EVEN_PORT, True, "0018 0001 80 000000"),
    (Attr.EVEN_PORT, False, "0018 0001 00 000000"),
    (Attr.DONT_FRAGMENT, None, "001a 0000"),
    (Attr.RESERVATION_TOKEN, unhex("0102030405060708"), "0022 0008 0102030405060708"),
    (Attr.CHANGE_REQUEST, (True, True), "0003 0004 00000006"),
    (Attr.CHANGE_REQUEST, (True, False), "0003 0004 00000004"),
    (Attr.CHANGE_REQUEST, (False, True), "0003 0004 00000002"),
    (Attr.RESPONSE_PORT, 5000, "0027 0004 1388 0000"),
    (Attr.PADDING, b"\xff" * 5, "0026 0005 ffffffffff 000000"),
    (
        Attr.PASSWORD_ALGORITHMS,
        [(PasswordAlgorithm.SHA256, b""), (PasswordAlgorithm.MD5, b"")],
        "8002 0008 0002 0000 0001 0000",
    ),
    (Attr.PASSWORD_ALGORITHMS, [(7, b"\x01")], "8002 0008 0007 0001 01 000000"),
    (Attr.PASSWORD_ALGORITHM, (PasswordAlgorithm.MD5, b""), "001d 0004 0001 0000"),
    (Attr.USERHASH, b"\xab" * 32, "001e 0020" + "ab" * 32),
    (Attr.DATA, b"hello", "0013 0005 68656c6c6f 000000"),
    (Attr.DATA, b"", "0013 0000"),
    (0x7777, b"\x01", "7777 0001 01 000000"),
    (0xC0FF, b"abcd", "c0ff 0004 61626364"),
]


@pytest.mark.parametrize(
    ("attr", "value", "wire"), ATTRIBUTE_CASES, ids=[f"{a!s}-{w[:9]}" for a, _, w in ATTRIBUTE_CASES]
)
def test_attribute_wire_format(attr: Any, value: Any, wire: str) -> None:
    assert body_of([(attr, value)]).hex() == unhex(wire).hex()
    msg = Message.decode(frame(wire))
    assert msg.attributes == [(attr, value)]
    assert type(msg.attributes[0][0]) is type(attr)
    assert msg.get(attr) == value


def test_decoded_padding_value_is_not_checked() -> None:
    # RFC 8489 14: padding bits "MUST be ignored by the receiver"; RFC 5769 2.1 pads with spaces.
    assert Message.decode(frame("0006 0003 613a62 ff")).get(Attr.USERNAME) == "a:b"


def test_ipv6_zone_is_dropped_and_addresses_come_back_as_socket_text() -> None:
    assert body_of([(Attr.XOR_PEER_ADDRESS, ("fe80::1%eth0", 9))]) == body_of([(Attr.XOR_PEER_ADDRESS, ("fe80::1", 9))])
    msg = Message.decode(frame(body_of([(Attr.MAPPED_ADDRESS, ("2001:DB8:0:0::0:1", 1))])))
    assert msg.get(Attr.MAPPED_ADDRESS) == ("2001:db8::1", 1)


def test_unknown_attributes_are_kept_and_required_ones_reported() -> None:
    msg = Message.decode(frame("7777 0001 01 000000  c0ff 0000  0006 0001 61 000000  0042 0000"))
    assert msg.attributes == [(0x7777, b"\x01"), (0xC0FF, b""), (Attr.USERNAME, "a"), (0x0042, b"")]
    assert msg.unknown_required == [0x7777, 0x0042]
    built = Message(Method.BINDING, MessageClass.REQUEST, TID, [(0x7777, b""), (Attr.PRIORITY, 1), (0x9999, b"")])
    assert built.unknown_required == [0x7777]


def test_get_get_all_and_contains() -> None:
    msg = Message.decode(
        frame(
            body_of(
                [
                    (Attr.XOR_PEER_ADDRESS, ("192.0.2.1", 1)),
                    (Attr.USE_CANDIDATE, None),
                    (Attr.XOR_PEER_ADDRESS, ("192.0.2.2", 2)),
                ]
            )
        )
    )
    assert msg.get(Attr.XOR_PEER_ADDRESS) == ("192.0.2.1", 1)
    assert msg.get_all(Attr.XOR_PEER_ADDRESS) == [("192.0.2.1", 1), ("192.0.2.2", 2)]
    assert Attr.USE_CANDIDATE in msg and 0x0025 in msg
    assert msg.get(Attr.USE_CANDIDATE, "absent") is None  # present, value None
    assert Attr.ICE_CONTROLLING not in msg
    assert msg.get(Attr.ICE_CONTROLLING) is None
    assert msg.get(Attr.ICE_CONTROLLING, 7) == 7
    assert msg.get_all(Attr.PRIORITY) == []


# ---- MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256, FINGERPRINT (RFC 8489 14.5-14.7) ----


def reference_mac(wire: bytes, pos: int, length: int, digest: str) -> bytes:
    """HMAC over the message up to `pos` with the length field set to `length`, by the book."""
    return hmac.new(KEY, wire[:2] + struct.pack("!H", length) + wire[4:pos], digest).digest()


def test_integrity_and_fingerprint_bytes() -> None:
    wire = Message(Method.BINDING, MessageClass.REQUEST, TID, [(Attr.USERNAME, "a:b")]).encode(
        integrity_key=KEY, fingerprint=True
    )
    # header | USERNAME (8) | MESSAGE-INTEGRITY (24) | FINGERPRINT (8)
    assert wire[:4] == unhex("0001 0028")
    assert wire[20:28] == unhex("0006 0003 613a6200")
    assert wire[28:32] == unhex("0008 0014")
    # The HMAC's length field counts up to the end of MESSAGE-INTEGRITY, not FINGERPRINT.
    assert wire[32:52] == reference_mac(wire, 28, 8 + 24, "sha1")
    assert wire[52:56] == unhex("8028 0004")
    assert struct.unpack("!I", wire[56:60])[0] == zlib.crc32(wire[:52]) ^ 0x5354554E
    msg = Message.decode(wire)
    assert msg.verify_integrity(KEY) and msg.verify_fingerprint()
    assert msg.raw == wire


def test_integrity_sha256_and_both() -> None:
    wire = Message(Method.BINDING, MessageClass.REQUEST, TID, [(Attr.USERNAME, "a:b")]).encode(
        integrity_key=KEY, integrity="sha256"
    )
    assert wire[:4] == unhex("0001 002c")  # 8 + 36
    assert wire[28:32] == unhex("001c 0020")
    assert wire[32:64] == reference_mac(wire, 28, 8 + 36, "sha256")
    assert Message.decode(wire).verify_integrity(KEY)

    both = Message(Method.BINDING, MessageClass.REQUEST, TID, [(Attr.USERNAME, "a:b")]).encode(
        integrity_key=KEY, integrity="both", fingerprint=True
    )
    # USERNAME 8 | MI 24 | MI-SHA256 36 | FP 8
    assert both[:4] == unhex("0001 004c")
    assert both[32:52] == reference_mac(both, 28, 8 + 24, "sha1")
    assert both[52:56] == unhex("001c 0020")
    assert both[56:88] == reference_mac(both, 52, 8 + 24 + 36, "sha256")
    msg = Message.decode(both)
    assert [t for t, _ in msg.attributes] == [
        Attr.USERNAME,
        Attr.MESSAGE_INTEGRITY,
        Attr.MESSAGE_INTEGRITY_SHA256,
        Attr.FINGERPRINT,
    ]
    assert msg.verify_integrity(KEY) and msg.verify_fingerprint()


def test_verify_integrity_prefers_sha256() -> None:
    wire = Message(Method.BINDING, MessageClass.REQUEST, TID, [(Attr.USERNAME, "a:b")]).encode(
        integrity_key=KEY, integrity="both"
    )
    spoiled = bytearray(wire)
    spoiled[32] ^= 1  # break MESSAGE-INTEGRITY (SHA-1) only; the SHA-256 one covers it, so it fails too
    assert not Message.decode(bytes(spoiled)).verify_integrity(KEY)
    spoiled = bytearray(wire)
    spoiled[-1] ^= 1  # break MESSAGE-INTEGRITY-SHA256 only
    assert not Message.decode(bytes(spoiled)).verify_integrity(KEY)


@pytest.mark.parametrize("size", [16, 20, 24, 28, 32])
def test_truncated_sha256_integrity_is_accepted(size: int) -> None:
    body = unhex("0006 0003 613a6200")
    header = struct.pack("!HHI", 0x0001, len(body) + 4 + size, MAGIC_COOKIE) + TID
    mac = hmac.new(KEY, header + body, "sha256").digest()[:size]
    wire = header + body + struct.pack("!HH", 0x001C, size) + mac
    msg = Message.decode(wire)
    assert msg.get(Attr.MESSAGE_INTEGRITY_SHA256) == mac
    assert msg.verify_integrity(KEY)
    assert not msg.verify_integrity(b"wrong")


@pytest.mark.parametrize("size", [0, 4, 12, 18, 36, 64])
def test_sha256_integrity_of_other_lengths_is_rejected(size: int) -> None:
    with pytest.raises(StunDecodeError, match="MESSAGE-INTEGRITY-SHA256"):
        Message.decode(frame(struct.pack("!HH", 0x001C, size) + bytes(size + (-size & 3))))


def test_verification_is_false_without_the_attribute_or_bytes() -> None:
    plain = Message.decode(Message(Method.BINDING, MessageClass.REQUEST, TID).encode())
    assert not plain.verify_integrity(KEY)
    assert not plain.verify_fingerprint()
    built = Message(Method.BINDING, MessageClass.REQUEST, TID)
    assert not built.verify_integrity(KEY) and not built.verify_fingerprint()
    assert built.raw is None


def test_tampering_breaks_integrity_and_fingerprint() -> None:
    wire = Message(Method.BINDING, MessageClass.REQUEST, TID, [(Attr.PRIORITY, 1)]).encode(
        integrity_key=KEY, fingerprint=True
    )
    spoiled = bytearray(wire)
    spoiled[27] ^= 0x01  # PRIORITY value
    msg = Message.decode(bytes(spoiled))
    assert msg.get(Attr.PRIORITY) == 0
    assert not msg.verify_integrity(KEY)
    assert not msg.verify_fingerprint()


def test_attributes_after_message_integrity_are_ignored() -> None:
    signed = Message(Method.BINDING, MessageClass.REQUEST, TID, [(Attr.USERNAME, "a:b")]).encode(integrity_key=KEY)
    # Append SOFTWARE and an unknown comprehension-required attribute after MESSAGE-INTEGRITY, then FINGERPRINT.
    tail = unhex("8022 0001 78 000000  7777 0000")
    body = signed[20:] + tail
    without_fp = struct.pack("!HHI", 0x0001, len(body) + 8, MAGIC_COOKIE) + TID + body
    wire = without_fp + struct.pack("!HHI", 0x8028, 4, zlib.crc32(without_fp) ^ 0x5354554E)
    msg = Message.decode(wire)
    assert [t for t, _ in msg.attributes] == [Attr.USERNAME, Attr.MESSAGE_INTEGRITY, Attr.FINGERPRINT]
    assert Attr.SOFTWARE not in msg
    assert msg.unknown_required == []
    assert msg.verify_integrity(KEY)  # its length field stops at MESSAGE-INTEGRITY
    assert msg.verify_fingerprint()


def test_attributes_after_message_integrity_sha256_are_ignored() -> None:
    signed = Message(Method.BINDING, MessageClass.REQUEST, TID, [(Attr.USERNAME, "a:b")]).encode(
        integrity_key=KEY, integrity="sha256"
    )
    tail = unhex("0008 0014" + "00" * 20 + "0024 0004 00000001")  # a MESSAGE-INTEGRITY, a PRIORITY
    msg = Message.decode(frame(signed[20:] + tail))
    assert [t for t, _ in msg.attributes] == [Attr.USERNAME, Attr.MESSAGE_INTEGRITY_SHA256]
    assert msg.verify_integrity(KEY)


def test_a_second_message_integrity_is_ignored() -> None:
    signed = Message(Method.BINDING, MessageClass.REQUEST, TID, [(Attr.USERNAME, "a:b")]).encode(integrity_key=KEY)
    msg = Message.decode(frame(signed[20:] + unhex("0008 0014" + "00" * 20)))
    assert msg.get_all(Attr.MESSAGE_INTEGRITY) == [signed[-20:]]
    assert msg.verify_integrity(KEY)


def test_encode_computes_security_attributes_itself() -> None:
    wire = Message(Method.BINDING, MessageClass.REQUEST, TID, [(Attr.USERNAME, "a:b")]).encode(
        integrity_key=KEY, fingerprint=True
    )
    decoded = Message.decode(wire)
    assert len(decoded.attributes) == 3
    assert decoded.encode(integrity_key=KEY, fingerprint=True) == wire  # old MI/FP entries are skipped
    assert decoded.encode() == Message(Method.BINDING, MessageClass.REQUEST, TID, [(Attr.USERNAME, "a:b")]).encode()


def test_str_and_bytes_like_keys() -> None:
    wire = Message(Method.BINDING, MessageClass.REQUEST, TID).encode(integrity_key="pässword")
    msg = Message.decode(wire)
    assert msg.verify_integrity("pässword".encode())
    assert msg.verify_integrity(bytearray("pässword".encode()))
    assert (
        Message(Method.BINDING, MessageClass.REQUEST, TID).encode(integrity_key=memoryview(b"p\xc3\xa4ssword")) == wire
    )


def test_long_keys_are_hashed_first() -> None:
    # RFC 2104 2: a key longer than the hash block (64 bytes) is hashed before use.
    key = bytes(range(100))
    wire = Message(Method.BINDING, MessageClass.REQUEST, TID, [(Attr.USERNAME, "u")]).encode(integrity_key=key)
    assert wire[-20:] == hmac.new(key, wire[:2] + struct.pack("!H", 8 + 24) + wire[4:-24], "sha1").digest()
    assert Message.decode(wire).verify_integrity(key)


def test_unknown_integrity_algorithm() -> None:
    with pytest.raises(ValueError, match="integrity"):
        Message(Method.BINDING, MessageClass.REQUEST, TID).encode(integrity_key=KEY, integrity="md5")  # type: ignore[arg-type]


def test_long_term_key_and_userhash() -> None:
    assert long_term_key("alice", "example.org", "secret") == unhex("543e1aec5d3614f03141652d6ada51b2")
    sha = unhex("d1659fff7a501be15962adc35514ca6a5868905695f2dd1093741f931e000a1f")
    assert long_term_key("alice", "example.org", "secret", algorithm="sha256") == sha
    assert long_term_key("alice", "example.org", "secret", algorithm=PasswordAlgorithm.SHA256) == sha
    assert (
        long_term_key("alice", "example.org", "secret", algorithm=1)
        == hashlib.md5(b"alice:example.org:secret").digest()
    )
    with pytest.raises(ValueError, match="password algorithm"):
        long_term_key("alice", "example.org", "secret", algorithm="sha1")
    assert userhash("alice", "example.org") == hashlib.sha256(b"alice:example.org").digest()


# ---- malformed input: StunDecodeError and nothing else ----

BAD_MESSAGES = {
    "empty": b"",
    "short header": frame("")[:19],
    "top bits set": frame("", mtype=0x8001),
    "top bit 2 set": frame("", mtype=0x4001),
    "wrong cookie (RFC 3489)": unhex("0001 0000 2112a443") + TID,
    "length not a multiple of 4": unhex("0001 0001 2112a442") + TID + b"\x00",
    "length field too long": unhex("0001 0008 2112a442") + TID + bytes(4),
    "length field too short": unhex("0001 0004 2112a442") + TID + bytes(8),
    "value overruns the message": frame("0006 0008 61626364"),
    "bad address family": frame("0001 0008 0003 0000 c0000201"),
    "IPv4 address of the wrong length": frame("0001 000c 0001 0000 c0000201 00000000"),
    "IPv6 family with IPv4 length": frame("0020 0008 0002 0000 c0000201"),
    "empty address": frame("0001 0000"),
    "1-byte address": frame("0001 0001 00 000000"),
    "non-UTF-8 USERNAME": frame("0006 0002 fffe 0000"),
    "non-UTF-8 REALM": frame("0014 0001 80 000000"),
    "non-UTF-8 ERROR-CODE reason": frame("0009 0005 00000400 ff 000000"),
    "ERROR-CODE too short": frame("0009 0002 0000 0000"),
    "ERROR-CODE number over 99": frame("0009 0004 00000464"),
    "UNKNOWN-ATTRIBUTES of odd length": frame("000a 0003 123456 00"),
    "PRIORITY too long": frame("0024 0008 00000001 00000000"),
    "PRIORITY too short": frame("0024 0002 0001 0000"),
    "ICE-CONTROLLING too short": frame("802a 0004 00000001"),
    "ICE-CONTROLLED too long": frame("8029 000c 00000000 00000000 00000000"),
    "USE-CANDIDATE with a value": frame("0025 0004 00000000"),
    "DONT-FRAGMENT with a value": frame("001a 0001 00 000000"),
    "LIFETIME too long": frame("000d 0008 00000000 00000000"),
    "CHANNEL-NUMBER too short": frame("000c 0002 4000 0000"),
    "REQUESTED-TRANSPORT too short": frame("0019 0001 11 000000"),
    "REQUESTED-ADDRESS-FAMILY too long": frame("0017 0008 01000000 00000000"),
    "RESPONSE-PORT too long": frame("0027 0008 1388 0000 00000000"),
    "CHANGE-REQUEST too long": frame("0003 0008 00000006 00000000"),
    "EVEN-PORT too long": frame("0018 0004 80000000"),
    "RESERVATION-TOKEN too short": frame("0022 0004 01020304"),
    "USERHASH too short": frame("001e 001f" + "ab" * 31 + "00"),
    "PASSWORD-ALGORITHMS truncated": frame("8002 0002 0001 0000"),
    "PASSWORD-ALGORITHMS parameters overrun": frame("8002 0004 0001 0008"),
    "PASSWORD-ALGORITHM too short": frame("001d 0002 0001 0000"),
    "PASSWORD-ALGORITHM parameter length mismatch": frame("001d 0004 0001 0004"),
    "MESSAGE-INTEGRITY too short": frame("0008 0010" + "00" * 16),
    "MESSAGE-INTEGRITY too long": frame("0008 0018" + "00" * 24),
    "FINGERPRINT too long": frame("8028 0008 00000000 00000000"),
    "attribute after FINGERPRINT": frame("8028 0004 00000000  0006 0000"),
    "unknown attribute after FINGERPRINT": frame("8028 0004 00000000  c0ff 0000"),
    "FINGERPRINT after FINGERPRINT": frame("8028 0004 00000000  8028 0004 00000000"),
    "attribute after MESSAGE-INTEGRITY overruns": frame("0008 0014" + "00" * 20 + "0006 0008 61626364"),
}


@pytest.mark.parametrize("data", BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_malformed_messages_raise_stun_decode_error(data: bytes) -> None:
    with pytest.raises(StunDecodeError) as info:
        Message.decode(data)
    assert isinstance(info.value, ValueError) and isinstance(info.value, IceError)
    assert str(info.value)  # says what is wrong


def test_decode_error_messages_name_the_problem() -> None:
    with pytest.raises(StunDecodeError, match="magic cookie"):
        Message.decode(BAD_MESSAGES["wrong cookie (RFC 3489)"])
    with pytest.raises(StunDecodeError, match="after FINGERPRINT"):
        Message.decode(BAD_MESSAGES["attribute after FINGERPRINT"])
    with pytest.raises(StunDecodeError, match="USERNAME"):
        Message.decode(BAD_MESSAGES["non-UTF-8 USERNAME"])
    with pytest.raises(StunDecodeError, match="PRIORITY"):
        Message.decode(BAD_MESSAGES["PRIORITY too long"])


def test_decode_accepts_bytes_like_and_rejects_other_types() -> None:
    wire = frame("0024 0004 00000001")
    assert Message.decode(bytearray(wire)).get(Attr.PRIORITY) == 1
    assert Message.decode(memoryview(wire)).get(Attr.PRIORITY) == 1
    with pytest.raises(StunDecodeError):
        Message.decode("not bytes")  # type: ignore[arg-type]
    with pytest.raises(StunDecodeError):
        Message.decode(12)  # type: ignore[arg-type]


def test_bad_values_in_known_layouts_still_raise() -> None:
    """After a layout is compiled (seen many times), a bad value in that layout is still an error."""
    good = frame("0006 0002 6869 0000  0020 0008 0001 a147 e112a643")
    for _ in range(40):
        assert Message.decode(good).get(Attr.USERNAME) == "hi"
    with pytest.raises(StunDecodeError, match="USERNAME"):
        Message.decode(frame("0006 0002 fffe 0000  0020 0008 0001 a147 e112a643"))
    with pytest.raises(StunDecodeError, match="XOR-MAPPED-ADDRESS"):
        Message.decode(frame("0006 0002 6869 0000  0020 0008 0003 a147 e112a643"))
    other = Message.decode(frame("0006 0002 6869 0000  0024 0004 00000007  0025 0000"))  # same length
    assert other.attributes == [(Attr.USERNAME, "hi"), (Attr.PRIORITY, 7), (Attr.USE_CANDIDATE, None)]


# ---- encode errors ----

BAD_VALUES = [
    (Attr.XOR_MAPPED_ADDRESS, ("192.0.2.1", 70000)),
    (Attr.MAPPED_ADDRESS, ("not-an-ip", 1)),
    (Attr.MAPPED_ADDRESS, ("192.0.2.1",)),
    (Attr.PRIORITY, -1),
    (Attr.PRIORITY, 2**32),
    (Attr.PRIORITY, "1"),
    (Attr.ICE_CONTROLLING, 2**64),
    (Attr.CHANNEL_NUMBER, 0x10000),
    (Attr.REQUESTED_TRANSPORT, 256),
    (Attr.USERNAME, b"bytes"),
    (Attr.USE_CANDIDATE, True),
    (Attr.RESERVATION_TOKEN, b"\x00" * 7),
    (Attr.USERHASH, b"\x00" * 31),
    (Attr.ERROR_CODE, (200, "OK")),
    (Attr.ERROR_CODE, (700, "x")),
    (Attr.UNKNOWN_ATTRIBUTES, [0x10000]),
    (Attr.DATA, b"\x00" * 65536),
    (0x7777, "not bytes"),
    (0x10000, b""),
    (-1, b""),
    ("USERNAME", "a"),
]


@pytest.mark.parametrize(("attr", "value"), BAD_VALUES)
def test_encode_rejects_values_an_attribute_cannot_carry(attr: Any, value: Any) -> None:
    with pytest.raises(ValueError, match="cannot encode"):
        Message(Method.BINDING, MessageClass.REQUEST, TID, [(attr, value)]).encode()


def test_encode_rejects_messages_over_the_length_field() -> None:
    big = Message(Method.SEND, MessageClass.INDICATION, TID, [(Attr.DATA, bytes(65528))])
    assert len(big.encode()) == 20 + 65532
    with pytest.raises(ValueError, match="more than"):
        big.encode(fingerprint=True)
    with pytest.raises(ValueError, match="more than"):
        big.encode(integrity_key=KEY)


# ---- responses, repr, equality ----


def test_success_and_error_responses() -> None:
    request = Message(Method.ALLOCATE, MessageClass.REQUEST, TID, [(Attr.REQUESTED_TRANSPORT, 17)])
    ok = request.success_response([(Attr.LIFETIME, 600)])
    assert (ok.method, ok.message_class, ok.transaction_id) == (Method.ALLOCATE, MessageClass.SUCCESS, TID)
    assert ok.attributes == [(Attr.LIFETIME, 600)]
    err = request.error_response(401, attributes=[(Attr.REALM, "example.org")])
    assert (err.method, err.message_class, err.transaction_id) == (Method.ALLOCATE, MessageClass.ERROR, TID)
    assert err.attributes == [(Attr.ERROR_CODE, (401, "Unauthenticated")), (Attr.REALM, "example.org")]
    assert request.error_response(438).get(Attr.ERROR_CODE) == (438, "Stale Nonce")
    assert request.error_response(487).get(Attr.ERROR_CODE) == (487, "Role Conflict")
    assert request.error_response(599).get(Attr.ERROR_CODE) == (599, "")
    assert request.error_response(400, "Nope").get(Attr.ERROR_CODE) == (400, "Nope")
    wire = err.encode()
    assert wire[:2] == unhex("0113")
    assert wire[20:28] == unhex("0009 0013 00000401")  # 4 + len("Unauthenticated")


def test_repr_and_equality() -> None:
    msg = Message(Method.BINDING, MessageClass.REQUEST, TID, [(Attr.PRIORITY, 5), (0x7777, b"")])
    assert repr(msg) == (
        "Message(BINDING, REQUEST, transaction_id=b7e7a701bc34d686fa87dfae, "
        "attributes=[(PRIORITY, 5), (attribute 0x7777, b'')])"
    )
    assert msg == Message.decode(msg.encode())
    assert msg != Message(Method.BINDING, MessageClass.SUCCESS, TID, [(Attr.PRIORITY, 5), (0x7777, b"")])
    assert msg != "message"
    assert "0x0a0" in repr(Message(0x0A0, MessageClass.REQUEST, TID))


# ---- the demultiplexer's first test ----


def test_looks_like_stun() -> None:
    stun = Message(Method.BINDING, MessageClass.REQUEST, TID, [(Attr.PRIORITY, 1)]).encode(fingerprint=True)
    assert looks_like_stun(stun)
    assert looks_like_stun(bytearray(stun))
    assert looks_like_stun(memoryview(stun))
    assert not looks_like_stun(stun[:19])
    assert not looks_like_stun(stun[:-4])  # length field no longer matches
    assert not looks_like_stun(stun + b"\x00\x00\x00\x00")
    assert not looks_like_stun(b"\x40" + stun[1:])  # top bits
    assert not looks_like_stun(stun[:4] + b"\x21\x12\xa4\x43" + stun[8:])  # cookie
    assert not looks_like_stun(unhex("0001 0001 2112a442") + TID + b"\x00")  # length not a multiple of 4
    assert not looks_like_stun(unhex("8060 0000") + bytes(28))  # RTP
    assert not looks_like_stun(unhex("4000 0004") + bytes(4))  # ChannelData


def test_random_bytes_pool_gives_fresh_bytes_and_forked_children_do_not_repeat_them() -> None:
    import os

    from iceagent.stun.message import random_bytes

    ids = {random_bytes(12) for _ in range(2000)}  # crosses several 4 KiB refills
    assert len(ids) == 2000 and all(len(i) == 12 for i in ids)
    assert len(random_bytes(5000)) == 5000  # larger than a pool: straight from os.urandom
    assert Message(Method.BINDING, MessageClass.REQUEST).transaction_id != Message(
        Method.BINDING, MessageClass.REQUEST
    ).transaction_id
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what it draws next must not be what the parent draws next
        os.write(write, random_bytes(12))
        os._exit(0)
    os.close(write)
    mine = random_bytes(12)
    theirs = os.read(read, 12)
    os.waitpid(pid, 0)
    os.close(read)
    assert len(theirs) == 12 and theirs != mine
