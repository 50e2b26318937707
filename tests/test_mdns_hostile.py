"""Hostile mDNS packets cost work linear in their size (RFC 1035 4.1.4 compression, 2.3.4 lengths), and
the parser raises only MdnsWireError; work is counted (function calls, pointer follows), never timed."""

from __future__ import annotations

import pytest
from dnslib import AAAA, NSEC, PTR, QTYPE, RR, SRV, TXT, A, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st
from mdns_hostile import HEADER_SIZE, chain_packet, counting_calls, long_name_packet, pointer

from iceagent.mdns.wire import (
    MAX_MESSAGE,
    MAX_PARSED,
    MAX_RECORDS,
    MdnsWireError,
    ParseWork,
    Record,
    _decode,
    build_query,
    build_response,
    parse,
    parse_packet,
)

#: Python and C function calls allowed per byte of packet (a valid packet costs about 4; dnslib's own name
#: decoder cost 58 per byte at chain depth 50 and 767 at depth 900).
CALLS_PER_BYTE = 10

RESPONSE = bytes.fromhex("0000" "8400" "0000" "0001" "0000" "0000")  # a response header with one answer
A_FIELDS = bytes.fromhex("0001" "8001" "00000078" "0004" "0a000001")  # A, IN|cache-flush, 120 s, 10.0.0.1


@pytest.mark.parametrize("depth", [50, 900])
def test_a_pointer_chain_packet_costs_work_linear_in_its_size(depth: int) -> None:
    """The measured attack: one 9000-byte packet whose hundreds of records name the tail of a pointer chain."""
    data = chain_packet(depth)
    assert len(data) > MAX_MESSAGE - 16
    with counting_calls() as calls:
        message = parse(data)
    assert calls() <= CALLS_PER_BYTE * len(data), (calls(), len(data))
    assert message is not None  # a valid (if odd) compression chain: parsed, and correctly
    assert len(message.answers) == MAX_RECORDS - 1  # the first record is the chain's unknown type
    assert set(message.answers) == {Record("x", 1, "10.0.0.1", 120, True)}


def test_hundreds_of_records_named_by_long_suffixes_cost_work_linear_in_the_size() -> None:
    data = long_name_packet()
    work = ParseWork()
    with counting_calls() as calls:
        message = parse_packet(data, work=work)
    assert calls() <= CALLS_PER_BYTE * len(data), (calls(), len(data))
    assert work.labels == 127 and work.steps <= len(data)  # each label read once, not once per record
    assert message.answers[0].name == ".".join(["a"] * 127) and message.answers[1].name == message.answers[0].name
    assert message.answers[2].name == ".".join(["a"] * 126)


@pytest.mark.parametrize("depth", [50, 900, 4000])
def test_each_pointer_of_a_chain_is_followed_once_per_packet(depth: int) -> None:
    data = chain_packet(depth)
    records = min(int.from_bytes(data[6:8], "big"), MAX_PARSED)
    work = ParseWork()
    parse_packet(data, work=work)
    assert work.names == records
    assert work.pointers == depth + records - 1  # the chain once, then one pointer per record naming its tail
    assert work.labels == 1  # "x"
    assert work.steps <= len(data)


def name_packet(name: bytes, prefix: bytes = b"\x01x\x00") -> bytes:
    """A response: a first A record named by `prefix` (at offset 12), then one whose name is `name`."""
    return RESPONSE[:6] + b"\x00\x02" + RESPONSE[8:] + prefix + A_FIELDS + name + A_FIELDS


X_END = HEADER_SIZE + 3 + len(A_FIELDS)  # offset of the second record's name in name_packet


@pytest.mark.parametrize(
    ("name", "why"),
    [
        (pointer(X_END), "a pointer to itself"),
        (pointer(X_END + 2), "a pointer forward"),
        (b"\x01a" + pointer(X_END), "a pointer back to the start of its own name (a loop)"),
        (b"\x01a" + pointer(X_END + 1), "a pointer into its own name"),
        (b"\x41" + bytes(65), "label type 01 (RFC 6891's extended labels are not DNS names here)"),
        (b"\x81" + bytes(2), "label type 10"),
        (b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3f" + b"d" * 63 + b"\x00",
         "257 octets (RFC 1035 2.3.4: at most 255)"),
        (b"\x05ab", "a label past the end"),
        (b"\xc0", "half a pointer"),
    ],
)
def test_malformed_names_are_rejected_with_the_documented_error(name: bytes, why: str) -> None:
    data = name_packet(name)
    with pytest.raises(MdnsWireError):
        parse_packet(data)
    assert parse(data) is None, why


def test_a_long_name_made_of_pointers_is_rejected() -> None:
    """Names over 255 octets built by compression: each record's name adds a 63-octet label to the one
    before; the fourth is 257 octets."""
    data = bytearray(RESPONSE[:6] + b"\x00\x04" + RESPONSE[8:])
    previous = None
    for letter in b"dcba":
        at = len(data)
        data += bytes([63]) + bytes([letter]) * 63 + (pointer(previous) if previous else b"\x00") + A_FIELDS
        previous = at
    with pytest.raises(MdnsWireError, match="255"):
        parse_packet(bytes(data))
    three = data[:previous]
    three[7] = 3  # the first three records alone: 193 octets at most
    assert len(parse_packet(bytes(three)).answers) == 3


def test_header_counts_beyond_the_packet_are_rejected_before_parsing() -> None:
    data = bytes.fromhex("0000" "8400" "0000" "0400" "0000" "0000") + bytes(4000)  # 1024 answers in 4000 bytes
    work = ParseWork()
    with pytest.raises(MdnsWireError, match="counts more records"):
        parse_packet(data, work=work)
    assert work.names == 0


def test_a_valid_maximal_compression_packet_parses_like_dnslib() -> None:
    """Real responders compress every name; the answer equals dnslib's own decoding."""
    names = [f"h{i}.sub.example.local" for i in range(MAX_PARSED // 2)]  # an answer and an NSEC each
    data = build_response([(n, "10.0.0.1" if i % 2 else "fd00::1") for i, n in enumerate(names)])
    work = ParseWork()
    message = parse_packet(data, work=work)
    assert [r.name for r in message.answers] == names[:MAX_RECORDS]
    assert str(_decode(data, ParseWork())) == str(DNSRecord.parse(data))
    assert work.steps <= len(data)


@pytest.mark.parametrize(("questions", "answers"), [(1400, 0), (0, 550), (100, 300)])
def test_parsing_stops_after_max_parsed_entries(questions: int, answers: int) -> None:
    """A 9000-byte packet holds well over a thousand compressed questions or hundreds of address records;
    dnslib builds several objects for each, so only the first MAX_PARSED are read, the rest ignored."""
    data = bytearray(RESPONSE[:4] + questions.to_bytes(2, "big") + answers.to_bytes(2, "big") + bytes(4))
    for i in range(questions):
        data += (b"\x01q\x00" if i == 0 else pointer(HEADER_SIZE)) + b"\x00\x01\x00\x01"
    first = len(data)
    for i in range(answers):
        data += (b"\x01x\x00" if i == 0 else pointer(first)) + A_FIELDS
    assert len(data) <= MAX_MESSAGE
    work = ParseWork()
    message = parse_packet(bytes(data), work=work)
    assert work.names == MAX_PARSED
    assert len(message.questions) == min(questions, MAX_RECORDS)
    assert len(message.answers) == min(MAX_PARSED - min(questions, MAX_PARSED), answers, MAX_RECORDS)


def zoo(names: list[str]) -> bytes:
    """A response with every record type that carries names in its data, compressed by dnslib."""
    record = DNSRecord.question(names[0], "PTR")
    record.header.qr = 1
    for i, name in enumerate(names):
        other = names[(i + 1) % len(names)]
        record.add_answer(RR(name, QTYPE.PTR, rdata=PTR(other), ttl=4500))
        record.add_answer(RR(name, QTYPE.SRV, rdata=SRV(0, 0, 9, other), ttl=120))
        record.add_answer(RR(name, QTYPE.TXT, rdata=TXT(["k=v"]), ttl=4500))
        record.add_ar(RR(other, QTYPE.A, rdata=A("10.0.0.2"), ttl=120))
        record.add_ar(RR(other, QTYPE.AAAA, rdata=AAAA("fd00::2"), ttl=120))
        record.add_ar(RR(other, QTYPE.NSEC, rdata=NSEC(other, ["A", "AAAA"]), ttl=120))
    return bytes(record.pack())


LABEL = st.text("abcDEF-09", min_size=1, max_size=12)
NAME = st.lists(LABEL, min_size=1, max_size=4).map(lambda labels: ".".join([*labels, "local"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(NAME, min_size=1, max_size=12))
def test_compressed_packets_decode_exactly_as_dnslib_in_linear_work(names: list[str]) -> None:
    data = zoo(names)
    work = ParseWork()
    assert str(_decode(data, work)) == str(DNSRecord.parse(data))
    assert work.steps <= len(data)
    assert parse_packet(data).additional  # the A and AAAA records are there


SEEDS = [
    chain_packet(20, 400),
    zoo(["a.b.local", "c.b.local", "a.c.b.local"]),
    build_response([("one.local", "10.0.0.1"), ("two.one.local", "fd00::1")], negative=[("n.local", "10.0.0.3")]),
    build_query(["q.local", "r.q.local"], [1, 28, 255], unicast=True),
]


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 2**16), st.sampled_from(
    [0x00, 0x01, 0x02, 0x3F, 0x40, 0x80, 0xC0, 0xFF, 0x0C, 0x0E])), min_size=1, max_size=8), st.integers(0, 2**16))
def test_mutated_packets_raise_only_the_documented_error_in_linear_work(
        seed: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed)
    for at, byte in edits:
        data[at % len(data)] = byte
    data = data[: max(HEADER_SIZE, len(data) - cut % 64)]
    work = ParseWork()
    try:
        parse_packet(bytes(data), work=work)
    except MdnsWireError:
        pass
    assert work.steps <= len(data) and work.names <= len(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=1200))
def test_random_bytes_raise_only_the_documented_error(data: bytes) -> None:
    for packet in (data, RESPONSE + data):
        work = ParseWork()
        try:
            parse_packet(packet, work=work)
        except MdnsWireError:
            pass
        assert work.steps <= len(packet)
