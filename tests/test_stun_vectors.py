"""The STUN test vectors of RFC 5769 (and RFC 8489 appendix B.1), byte for byte."""

from __future__ import annotations

import pytest

from iceagent.stun import Attr, Message, MessageClass, Method, long_term_key, looks_like_stun, userhash


def unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


SHORT_TERM_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
TID_A = unhex("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae")

# RFC 5769 2.1: sample request (software "STUN test client", username "evtj:h6vY"; padding is 0x20 here).
SAMPLE_REQUEST = unhex("""
    00 01 00 58  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 10  53 54 55 4e  20 74 65 73  74 20 63 6c  69 65 6e 74
    00 24 00 04  6e 00 01 ff
    80 29 00 08  93 2f f9 b1  51 26 3b 36
    00 06 00 09  65 76 74 6a  3a 68 36 76  59 20 20 20
    00 08 00 14  9a ea a7 0c  bf d8 cb 56  78 1e f2 b5  b2 d3 f2 49  c1 b5 71 a2
    80 28 00 04  e5 7a 3b cf
""")

# RFC 5769 2.2: sample IPv4 response (software "test vector", mapped address 192.0.2.1:32853).
SAMPLE_IPV4_RESPONSE = unhex("""
    01 01 00 3c  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
    00 20 00 08  00 01 a1 47  e1 12 a6 43
    00 08 00 14  2b 91 f5 99  fd 9e 90 c3  8c 74 89 f9  2a f9 ba 53  f0 6b e7 d7
    80 28 00 04  c0 7d 4c 96
""")

# RFC 5769 2.3: sample IPv6 response (mapped address [2001:db8:1234:5678:11:2233:4455:6677]:32853).
SAMPLE_IPV6_RESPONSE = unhex("""
    01 01 00 48  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
    80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
    00 20 00 14  00 02 a1 47  01 13 a9 fa  a5 d3 f1 79  bc 25 f4 b5  be d2 b9 d9
    00 08 00 14  a3 82 95 4e  4b e6 7b f1  17 84 c9 7c  82 92 c2 75  bf e3 ed 41
    80 28 00 04  c8 fb 0b 4c
""")

# RFC 5769 2.4: request with long-term authentication (no FINGERPRINT).
LONG_TERM_REQUEST = unhex("""
    00 01 00 60  21 12 a4 42  78 ad 34 33  c6 ad 72 c0  29 da 41 2e
    00 06 00 12  e3 83 9e e3  83 88 e3 83  aa e3 83 83  e3 82 af e3  82 b9 00 00
    00 15 00 1c  66 2f 2f 34  39 39 6b 39  35 34 64 36  4f 4c 33 34  6f 4c 39 46  53 54 76 79
                 36 34 73 41
    00 14 00 0b  65 78 61 6d  70 6c 65 2e  6f 72 67 00
    00 08 00 14  f6 70 24 65  6d d6 4a 3e  02 b8 e0 71  2e 85 c9 a2  8c a8 96 66
""")
LONG_TERM_USERNAME = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"  # "マトリックス", unchanged by SASLprep
LONG_TERM_PASSWORD = "TheMatrIX"  # "The<U+00AD>M<U+00AA>tr<U+2168>" after SASLprep
LONG_TERM_NONCE = "f//499k954d6OL34oL9FSTvy64sA"
REALM = "example.org"

# RFC 8489 B.1 as corrected by errata 6268: USERHASH and MESSAGE-INTEGRITY-SHA256 (key: MD5, no
# PASSWORD-ALGORITHM). The original RFC text has a wrong length field (0x90).
SHA256_REQUEST = unhex("""
    00 01 00 88  21 12 a4 42  78 ad 34 33  c6 ad 72 c0  29 da 41 2e
    00 1e 00 20  4a 3c f3 8f  ef 69 92 bd  a9 52 c6 78  04 17 da 0f  24 81 94 15  56 9e 60 b2
                 05 c4 6e 41  40 7f 17 04
    00 15 00 29  6f 62 4d 61  74 4a 6f 73  32 41 41 41  43 66 2f 2f  34 39 39 6b  39 35 34 64
                 36 4f 4c 33  34 6f 4c 39  46 53 54 76  79 36 34 73  41 00 00 00
    00 14 00 0b  65 78 61 6d  70 6c 65 2e  6f 72 67 00
    00 1c 00 20  fd 8c 27 38  60 d2 e1 8e  bc a4 c8 9b  69 73 be fa  7e e8 ec c6  9e 96 42 db
                 32 6f ab 65  a0 b9 55 ba
""")


def test_sample_request() -> None:
    msg = Message.decode(SAMPLE_REQUEST)
    assert msg.method is Method.BINDING
    assert msg.message_class is MessageClass.REQUEST
    assert msg.transaction_id == TID_A
    assert msg.attributes[:4] == [
        (Attr.SOFTWARE, "STUN test client"),
        (Attr.PRIORITY, 0x6E0001FF),
        (Attr.ICE_CONTROLLED, 0x932FF9B151263B36),
        (Attr.USERNAME, "evtj:h6vY"),
    ]
    assert msg.get(Attr.MESSAGE_INTEGRITY) == unhex("9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2")
    assert msg.get(Attr.FINGERPRINT) == 0xE57A3BCF
    assert msg.verify_integrity(SHORT_TERM_PASSWORD)
    assert msg.verify_integrity(SHORT_TERM_PASSWORD.decode())  # a str key is used as UTF-8
    assert not msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBu")
    assert msg.verify_fingerprint()
    assert msg.unknown_required == []
    assert looks_like_stun(SAMPLE_REQUEST)


def test_sample_ipv4_response() -> None:
    msg = Message.decode(SAMPLE_IPV4_RESPONSE)
    assert (msg.method, msg.message_class, msg.transaction_id) == (Method.BINDING, MessageClass.SUCCESS, TID_A)
    assert msg.get(Attr.SOFTWARE) == "test vector"
    assert msg.get(Attr.XOR_MAPPED_ADDRESS) == ("192.0.2.1", 32853)
    assert msg.verify_integrity(SHORT_TERM_PASSWORD)
    assert msg.verify_fingerprint()


def test_sample_ipv6_response() -> None:
    msg = Message.decode(SAMPLE_IPV6_RESPONSE)
    assert (msg.method, msg.message_class, msg.transaction_id) == (Method.BINDING, MessageClass.SUCCESS, TID_A)
    assert msg.get(Attr.SOFTWARE) == "test vector"
    assert msg.get(Attr.XOR_MAPPED_ADDRESS) == ("2001:db8:1234:5678:11:2233:4455:6677", 32853)
    assert msg.verify_integrity(SHORT_TERM_PASSWORD)
    assert msg.verify_fingerprint()


def test_long_term_request() -> None:
    msg = Message.decode(LONG_TERM_REQUEST)
    assert msg.transaction_id == unhex("78ad3433c6ad72c029da412e")
    assert msg.get(Attr.USERNAME) == LONG_TERM_USERNAME
    assert msg.get(Attr.NONCE) == LONG_TERM_NONCE
    assert msg.get(Attr.REALM) == REALM
    key = long_term_key(LONG_TERM_USERNAME, REALM, LONG_TERM_PASSWORD)
    assert key == unhex("e8ca7ad59d5eb0518e312911d2dab2a9")  # MD5("マトリックス:example.org:TheMatrIX")
    assert msg.verify_integrity(key)
    assert not msg.verify_integrity(long_term_key(LONG_TERM_USERNAME, REALM, "TheMatrix"))
    assert not msg.verify_fingerprint()  # this vector has no FINGERPRINT
    assert Attr.FINGERPRINT not in msg


@pytest.mark.parametrize(
    ("vector", "tid", "attributes", "key", "fingerprint", "differs_only_in_padding"),
    [
        (
            SAMPLE_REQUEST,
            TID_A,
            [
                (Attr.SOFTWARE, "STUN test client"),
                (Attr.PRIORITY, 0x6E0001FF),
                (Attr.ICE_CONTROLLED, 0x932FF9B151263B36),
                (Attr.USERNAME, "evtj:h6vY"),
            ],
            SHORT_TERM_PASSWORD,
            True,
            True,  # the vector pads USERNAME with spaces, we pad with zeros
        ),
        (
            LONG_TERM_REQUEST,
            unhex("78ad3433c6ad72c029da412e"),
            [(Attr.USERNAME, LONG_TERM_USERNAME), (Attr.NONCE, LONG_TERM_NONCE), (Attr.REALM, REALM)],
            long_term_key(LONG_TERM_USERNAME, REALM, LONG_TERM_PASSWORD),
            False,
            False,
        ),
    ],
)
def test_encode_reproduces_requests(
    vector: bytes,
    tid: bytes,
    attributes: list[tuple[Attr, object]],
    key: bytes,
    fingerprint: bool,
    differs_only_in_padding: bool,
) -> None:
    wire = Message(Method.BINDING, MessageClass.REQUEST, tid, attributes).encode(
        integrity_key=key, fingerprint=fingerprint
    )
    assert len(wire) == len(vector)
    if differs_only_in_padding:
        # Padding bytes are covered by the HMAC, so MI and FP differ too: compare everything else.
        assert wire[:72] == vector[:72].replace(b"h6vY   ", b"h6vY\0\0\0")
        assert Message.decode(wire).verify_integrity(key)
    else:
        assert wire == vector


def test_encode_reproduces_xor_mapped_addresses() -> None:
    for vector, address in [
        (SAMPLE_IPV4_RESPONSE, ("192.0.2.1", 32853)),
        (SAMPLE_IPV6_RESPONSE, ("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
    ]:
        wire = Message(Method.BINDING, MessageClass.SUCCESS, TID_A, [(Attr.XOR_MAPPED_ADDRESS, address)]).encode()
        start = vector.index(b"\x00\x20\x00")  # the XOR-MAPPED-ADDRESS header in the vector
        assert wire[20:] == vector[start : start + len(wire) - 20]


def test_rfc8489_sha256_and_userhash() -> None:
    msg = Message.decode(SHA256_REQUEST)
    assert msg.get(Attr.USERHASH) == userhash(LONG_TERM_USERNAME, REALM)
    assert msg.get(Attr.NONCE) == "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"
    assert msg.get(Attr.REALM) == REALM
    assert Attr.MESSAGE_INTEGRITY not in msg
    assert len(msg.get(Attr.MESSAGE_INTEGRITY_SHA256) or b"") == 32
    assert msg.verify_integrity(long_term_key(LONG_TERM_USERNAME, REALM, LONG_TERM_PASSWORD))
    assert not msg.verify_integrity(long_term_key(LONG_TERM_USERNAME, REALM, LONG_TERM_PASSWORD, "sha256"))


def test_vectors_decode_the_same_through_the_shape_cache() -> None:
    """Decoding a layout many times switches to a compiled decoder: results must not change."""
    for vector in (SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE, LONG_TERM_REQUEST, SHA256_REQUEST):
        first = Message.decode(vector)
        for _ in range(40):
            again = Message.decode(vector)
            assert again == first
            assert again.verify_integrity(SHORT_TERM_PASSWORD) == first.verify_integrity(SHORT_TERM_PASSWORD)
            assert again.verify_fingerprint() == first.verify_fingerprint()
