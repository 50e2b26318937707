"""Sans-IO mDNS: wire parsing of literal packets, the responder's answer rules and the resolver's answer
matching (RFC 6762, draft-ietf-mmusic-mdns-ice-candidates), hostile input included."""

from __future__ import annotations

import pytest
from dnslib import CLASS, QTYPE, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from iceagent.mdns import ResolverCore, Zone, is_valid_name
from iceagent.mdns.resolver import MAX_CACHE
from iceagent.mdns.wire import (
    CACHE_FLUSH,
    MAX_MESSAGE,
    QTYPE_A,
    QTYPE_AAAA,
    ParseWork,
    Question,
    Record,
    build_goodbye,
    build_query,
    build_response,
    parse,
    parse_packet,
)

NAME = "0b5e4e2c-6f0e-4d7d-9d69-8a2f6f9d3a11.local"

# aioice 0.13's query (dnspython, ID 0, no flags, one A question; QM) for NAME
AIOICE_QUERY = bytes.fromhex(
    "000000000001000000000000"
    "2430623565346532632d366630652d346437642d396436392d386132663666396433613131056c6f63616c00"
    "00010001"
)
# aioice 0.13's answer: QR|AA, no question, one A record 10.9.0.2 with class IN|cache-flush, TTL 120
AIOICE_ANSWER = bytes.fromhex(
    "000084000000000100000000"
    "2430623565346532632d366630652d346437642d396436392d386132663666396433613131056c6f63616c00"
    "000180010000007800040a090002"
)

# A response as RFC 6762 lets it arrive: 3 answers, 3 additional records, other types, compression, case.
RICH_ANSWER = bytes.fromhex(
    "0000" "8400" "0000" "0003" "0000" "0003"  # ID 0, QR|AA, an=3, ar=3
    # @12 answer 1: TXT other.local (unsolicited, another type); "local" label at offset 18
    "056f74686572" "056c6f63616c" "00" "0010" "8001" "00000078" "0001" "00"
    # @36 answer 2: A Host-ABC.<ptr 18> (mixed case, compressed), cache-flush, 192.168.1.7
    "08486f73742d414243" "c012" "0001" "8001" "00000078" "0004" "c0a80107"
    # @61 answer 3: AAAA <ptr 36> fd00::7
    "c024" "001c" "8001" "00000078" "0010" "fd000000000000000000000000000007"
    # @89 additional 1: NSEC <ptr 36> next <ptr 36>, bitmap window 0: A, AAAA
    "c024" "002f" "8001" "00000078" "0008" "c024" "0004" "40000008"
    # @109 additional 2: A unasked.<ptr 18> 10.0.0.9 (unsolicited)
    "07756e61736b6564" "c012" "0001" "8001" "00000078" "0004" "0a000009"
    # @133 additional 3: PTR _ice._udp.<ptr 18> -> <ptr 36>
    "045f696365045f756470" "c012" "000c" "0001" "00001194" "0002" "c024"
)
# Only an additional-section answer (answer section holds an unrelated PTR), no cache-flush bit.
ADDITIONAL_ONLY = bytes.fromhex(
    "0000" "8400" "0000" "0001" "0000" "0001"
    # @12 answer: PTR x.local -> <ptr 12>
    "0178" "056c6f63616c" "00" "000c" "0001" "00000078" "0002" "c00c"
    # @33 additional: A HOST-abc.<ptr 14> 192.168.1.8 (class IN without cache-flush)
    "08484f53542d616263" "c00e" "0001" "0001" "00000078" "0004" "c0a80108"
)


def test_parse_aioice_query_and_answer() -> None:
    q = parse(AIOICE_QUERY)
    assert q is not None and not q.response and q.id == 0
    assert q.questions == (Question(NAME, QTYPE_A, unicast=False),)
    a = parse(AIOICE_ANSWER)
    assert a is not None and a.response
    assert a.answers == (Record(NAME, QTYPE_A, "10.9.0.2", 120, cache_flush=True),)


def test_parse_rich_answer_keeps_address_records_only_case_folded() -> None:
    m = parse(RICH_ANSWER)
    assert m is not None and m.response
    assert m.answers == (
        Record("host-abc.local", QTYPE_A, "192.168.1.7", 120, True),
        Record("host-abc.local", QTYPE_AAAA, "fd00::7", 120, True),
    )
    assert m.additional == (Record("unasked.local", QTYPE_A, "10.0.0.9", 120, True),)
    # dnslib agrees on the structure (the vector is well formed)
    d = DNSRecord.parse(RICH_ANSWER)
    assert [QTYPE[r.rtype] for r in d.rr] == ["TXT", "A", "AAAA"]
    assert [QTYPE[r.rtype] for r in d.ar] == ["NSEC", "A", "PTR"]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x00" * 11, "short header"),
        (AIOICE_ANSWER[:-3], "truncated rdata"),
        (bytes.fromhex("000084000000000100000000") + b"\xc0\x0c" + bytes(10), "pointer to itself"),
        (bytes.fromhex("000084000000000100000000") + b"\xc0\x20" + bytes(10), "forward pointer"),
        (bytes.fromhex("0000" "8400" "0000" "ffff" "0000" "0000"), "counts beyond the data"),
        (bytes.fromhex("0000" "8403" "0000" "0000" "0000" "0000"), "non-zero RCODE"),
        (bytes.fromhex("0000" "a400" "0000" "0000" "0000" "0000"), "another OPCODE"),
        (AIOICE_ANSWER + bytes(MAX_MESSAGE), "bigger than 9000 bytes"),
    ],
)
def test_parse_rejects_malformed(data: bytes, why: str) -> None:
    assert parse(data) is None, why


def test_parse_follows_a_pointer_chain_deeper_than_the_recursion_limit() -> None:
    """A chain of 3000 compression pointers, each to the one before (dnslib's decoder recursed once per
    pointer and hit the recursion limit): each pointer is followed once, and the name is read."""
    header = bytes.fromhex("0000" "8400" "0001" "0002" "0000" "0000")
    question = b"\x01x\x00" + bytes.fromhex("00010001")  # "x" at offset 12
    chain = bytearray((0xC000 | 12).to_bytes(2, "big"))  # at offset 31, then 33, 35...
    for i in range(1, 3000):
        chain += (0xC000 | (31 + 2 * (i - 1))).to_bytes(2, "big")
    # answer 1 carries the chain as the rdata of an unknown type; answer 2's name points at its end
    first = b"\xc0\x0c" + bytes.fromhex("ff00" "0001" "00000078") + len(chain).to_bytes(2, "big") + chain
    last = 31 + 2 * 2999
    second = (0xC000 | last).to_bytes(2, "big") + bytes.fromhex("0001" "8001" "00000078" "0004" "0a000001")
    data = header + question + first + second
    assert len(data) <= MAX_MESSAGE
    work = ParseWork()
    message = parse_packet(data, work=work)
    assert message.answers == (Record("x", QTYPE_A, "10.0.0.1", 120, True),)
    assert work.pointers == 3000 + 2 and work.steps <= len(data)  # the chain once, and both answers' names


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_parse_never_raises(data: bytes) -> None:
    parse(data)
    parse(AIOICE_ANSWER[:12] + data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(RICH_ANSWER) - 1), st.integers(0, 255))
def test_parse_never_raises_on_mutated_answers(at: int, byte: int) -> None:
    data = bytearray(RICH_ANSWER)
    data[at] = byte
    parse(bytes(data))
    Zone().handle(bytes(data), ("192.168.1.9", 5353), 4, 0.0)
    ResolverCore().feed(bytes(data), 0.0)


# ---- the responder's rules (RFC 6762 6) ----


def zone_with_name() -> tuple[Zone, str]:
    zone = Zone()
    name = zone.publish("192.168.1.2")
    return zone, name


def test_published_names_are_fresh_uuid4_local_names() -> None:
    zone = Zone()
    names = {zone.publish("192.168.1.2") for _ in range(50)}
    assert len(names) == 50
    assert all(is_valid_name(n) and len(n) == 36 + 6 for n in names)


def test_multicast_answer_ttl_120_cache_flush_no_question_id_zero() -> None:
    zone, name = zone_with_name()
    query = build_query([name.upper()], [QTYPE_A])  # names compare case-insensitively (RFC 6762 16)
    replies = zone.handle(query, ("192.168.1.3", 5353), 4, 10.0)
    assert len(replies) == 1 and replies[0].to is None  # to the group
    d = DNSRecord.parse(replies[0].data)
    assert d.header.id == 0 and d.header.qr == 1 and d.header.aa == 1 and not d.questions
    (a,) = d.rr
    assert QTYPE[a.rtype] == "A" and str(a.rdata) == "192.168.1.2" and a.ttl == 120
    assert a.rclass == CLASS.IN | CACHE_FLUSH
    assert [QTYPE[r.rtype] for r in d.ar] == ["NSEC"]  # "no AAAA for this name" (6.1)


def test_any_and_negative_answers() -> None:
    zone, name = zone_with_name()
    any_reply = zone.handle(build_query([name], [255]), ("192.168.1.3", 5353), 4, 0.0)
    assert [QTYPE[r.rtype] for r in DNSRecord.parse(any_reply[0].data).rr] == ["A"]
    neg = zone.handle(build_query([name], [QTYPE_AAAA]), ("192.168.1.3", 5353), 6, 0.0)
    d = DNSRecord.parse(neg[0].data)
    assert [QTYPE[r.rtype] for r in d.rr] == ["NSEC"]  # the name has no AAAA: say so (6.1)


def test_qu_question_gets_a_unicast_reply() -> None:
    zone, name = zone_with_name()
    replies = zone.handle(build_query([name], [QTYPE_A], unicast=True), ("192.168.1.3", 5353), 4, 0.0)
    assert len(replies) == 1 and replies[0].to == ("192.168.1.3", 5353)
    (a,) = DNSRecord.parse(replies[0].data).rr
    assert str(a.rdata) == "192.168.1.2"


def test_legacy_unicast_query_gets_id_question_short_ttl_no_cache_flush() -> None:
    zone, name = zone_with_name()
    query = DNSRecord.question(name, "A")  # ID random, RD set: what a plain stub resolver sends
    replies = zone.handle(bytes(query.pack()), ("192.168.1.3", 40000), 4, 0.0)
    assert len(replies) == 1 and replies[0].to == ("192.168.1.3", 40000)
    d = DNSRecord.parse(replies[0].data)
    assert d.header.id == query.header.id and d.header.qr == 1
    assert [str(q.qname).rstrip(".") for q in d.questions] == [name]
    (a,) = d.rr
    assert a.ttl <= 10 and a.rclass == CLASS.IN  # no cache-flush bit (6.7)


def test_answers_only_its_own_names() -> None:
    zone, name = zone_with_name()
    other = Zone()
    other_name = other.publish("192.168.1.9")
    assert zone.handle(build_query([other_name], [QTYPE_A]), ("192.168.1.3", 5353), 4, 0.0) == []
    assert other.handle(build_query([name], [QTYPE_A]), ("192.168.1.3", 5353), 4, 0.0) == []
    both = build_query([name, other_name], [QTYPE_A])
    (mine,) = zone.handle(both, ("192.168.1.3", 5353), 4, 0.0)
    assert [str(r.rdata) for r in DNSRecord.parse(mine.data).rr] == ["192.168.1.2"]
    # responses (our own answers looped back, other responders' answers) are never answered
    assert zone.handle(mine.data, ("192.168.1.2", 5353), 4, 0.0) == []


def test_one_multicast_per_second_and_known_answer_suppression() -> None:
    zone, name = zone_with_name()
    query = build_query([name], [QTYPE_A])
    assert len(zone.handle(query, ("192.168.1.3", 5353), 4, 0.0)) == 1
    assert zone.handle(query, ("192.168.1.4", 5353), 4, 0.5) == []  # RFC 6762 6: once a second
    assert len(zone.handle(query, ("192.168.1.4", 5353), 6, 0.5)) == 1  # another interface (family)
    assert len(zone.handle(query, ("192.168.1.4", 5353), 4, 1.0)) == 1
    known = DNSRecord.parse(query)
    known.add_answer(*DNSRecord.parse(build_response([(name, "192.168.1.2")])).rr)
    assert zone.handle(bytes(known.pack()), ("192.168.1.3", 5353), 4, 5.0) == []  # 7.1
    assert zone.stats.suppressed >= 2


def test_unicast_replies_are_rate_limited() -> None:
    zone, name = zone_with_name()
    query = build_query([name], [QTYPE_A], unicast=True)
    sent = sum(len(zone.handle(query, ("192.168.1.3", 5353), 4, 0.0)) for _ in range(1000))
    assert sent <= 21
    assert zone.stats.rate_limited >= 979
    assert len(zone.handle(query, ("192.168.1.3", 5353), 4, 2.0)) == 1  # tokens come back


def test_goodbye_is_ttl_zero() -> None:
    zone, name = zone_with_name()
    d = DNSRecord.parse(build_goodbye(zone.withdraw()))
    assert [(str(r.rname).rstrip("."), r.ttl) for r in d.rr] == [(name, 0)]
    assert zone.handle(build_query([name], [QTYPE_A]), ("192.168.1.3", 5353), 4, 0.0) == []


# ---- the resolver's answer matching (RFC 6762 6, draft 3.2.2) ----


def test_resolver_takes_answers_from_any_section_any_case_and_ignores_unsolicited() -> None:
    core = ResolverCore()
    assert core.want("HOST-ABC.local")
    assert core.feed(RICH_ANSWER, 0.0) == {"host-abc.local": "fd00::7"}  # IPv6 first (draft 3.2.2)
    assert core.stats.unsolicited >= 1
    v4 = ResolverCore(families=[4])
    v4.want("host-abc.local")
    assert v4.feed(RICH_ANSWER, 0.0) == {"host-abc.local": "192.168.1.7"}
    v4.release("host-abc.local")
    assert v4.pending == [] and v4.cached("Host-Abc.local", 1.0) == "192.168.1.7"
    assert v4.cached("host-abc.local", 121.0) is None  # expired with its TTL
    only = ResolverCore(families=[4])
    only.want("host-abc.local")
    assert only.feed(ADDITIONAL_ONLY, 0.0) == {"host-abc.local": "192.168.1.8"}


def test_resolver_ignores_queries_goodbyes_and_names_not_asked() -> None:
    core = ResolverCore()
    assert core.feed(AIOICE_ANSWER, 0.0) == {}  # nobody asked
    assert core.cache_size == 0
    core.want(NAME)
    assert core.feed(AIOICE_QUERY, 0.0) == {}
    assert core.feed(AIOICE_ANSWER, 0.0) == {NAME: "10.9.0.2"}
    core.release(NAME)
    core.want(NAME)
    assert core.feed(build_goodbye([(NAME, "10.9.0.2")]), 1.0) == {}
    assert core.cached(NAME, 1.0) is None  # the goodbye withdrew it (RFC 6762 10.1)


def test_resolver_bounds() -> None:
    core = ResolverCore(max_pending=4)
    assert all(core.want(f"n{i}.local") for i in range(4))
    assert not core.want("n5.local")
    assert core.want("n1.local")  # joining a pending name is free
    big = ResolverCore(families=[4])
    for i in range(MAX_CACHE * 3):
        name = f"h{i}.local"
        big.want(name)
        big.feed(build_response([(name, "10.0.0.1")]), 0.0)
        big.release(name)
    assert big.cache_size == MAX_CACHE
    assert not is_valid_name("a" * 300 + ".local") and not is_valid_name("x.example") and not is_valid_name("a..local")


def test_huge_answer_is_bounded() -> None:
    """An answer with 120 records (and 120 NSECs): at most MAX_RECORDS records are looked at."""
    names = [f"h{i:04d}.local" for i in range(120)]
    data = build_response([(n, "10.0.0.1") for n in names])
    assert len(data) <= MAX_MESSAGE
    core = ResolverCore(families=[4])
    core.want(names[10])
    core.want(names[100])
    assert core.feed(data, 0.0) == {names[10]: "10.0.0.1"}
    assert parse(data + bytes(MAX_MESSAGE)) is None
