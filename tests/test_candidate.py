"""Candidate and its `a=candidate` grammar (RFC 8839 5.1, RFC 6544 4.5): real lines, errors, round trips."""

from __future__ import annotations

import ipaddress
import pickle
import uuid
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import iceagent
from iceagent.errors import CandidateParseError, IceError
from iceagent.ice.candidate import Candidate, IceParameters, IceParametersError, check_candidate, unusable_address

MDNS = "1f2e3d4c-5b6a-4789-8abc-def012345678.local"

# Lines as real agents emit them (addresses and ufrags changed); each is canonical, so it round-trips.
CANONICAL_LINES = [
    # the contract example
    "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
    # Chrome: host, srflx, relay, IPv6, TCP active/passive, mDNS, hidden raddr
    "candidate:1467250027 1 udp 2122260223 192.168.0.196 46243 typ host generation 0 ufrag 9kN1 "
    "network-id 1 network-cost 10",
    "candidate:1853887674 1 udp 1686052607 203.0.113.61 36768 typ srflx raddr 192.168.0.196 rport 36768 "
    "generation 0 ufrag 9kN1 network-id 1 network-cost 10",
    "candidate:3745745061 1 udp 41885439 198.51.100.7 52914 typ relay raddr 203.0.113.61 rport 36768 "
    "generation 0 ufrag 9kN1 network-id 1 network-cost 10",
    "candidate:2999745851 1 udp 2122129151 2001:db8:85a3::8a2e:370:7334 49152 typ host generation 0 "
    "ufrag 9kN1 network-id 2 network-cost 10",
    "candidate:1191033019 1 tcp 1518280447 192.168.0.196 9 typ host tcptype active generation 0 ufrag 9kN1 "
    "network-id 1 network-cost 10",
    "candidate:2510573499 1 tcp 1518214911 192.168.0.196 50387 typ host tcptype passive generation 0 "
    "ufrag 9kN1 network-id 1",
    f"candidate:3172225839 1 udp 2113937151 {MDNS} 54321 typ host generation 0 ufrag 9kN1 network-cost 999",
    "candidate:842163049 1 udp 1677729535 203.0.113.9 58322 typ srflx raddr 0.0.0.0 rport 0 generation 0 "
    "ufrag abcd network-id 1 network-cost 10",
    # Safari: mDNS host and srflx with network-cost 999
    f"candidate:2435464025 1 udp 2113937151 {MDNS} 61665 typ host generation 0 ufrag WvWx network-cost 999",
    "candidate:842163049 1 udp 1677729535 203.0.113.9 61665 typ srflx raddr 0.0.0.0 rport 0 generation 0 "
    "ufrag WvWx network-cost 999",
    # aioice (32-character md5 foundation), pion
    "candidate:e6ab5b5e0c0cb6df4c6b0bf3e7b2e1fa 1 udp 2130706431 192.168.1.2 50000 typ host",
    "candidate:1966762133 1 udp 1694498815 203.0.113.5 50000 typ srflx raddr 10.0.0.1 rport 50000",
    "candidate:233762139 1 tcp 1671430143 203.0.113.5 443 typ srflx raddr 10.0.0.1 rport 443 tcptype so",
    # a component-2 (RTCP) candidate and a prflx one
    "candidate:2 2 udp 2130706430 10.1.2.3 5001 typ host",
    "candidate:7 1 udp 1845501695 198.51.100.20 40000 typ prflx raddr 10.1.2.3 rport 5000",
]

# Firefox writes UDP/TCP in upper case; the parsed candidate is written back in lower case.
FIREFOX_LINES = [
    (
        "candidate:0 1 UDP 2122252543 192.168.1.10 49203 typ host",
        "candidate:0 1 udp 2122252543 192.168.1.10 49203 typ host",
    ),
    (
        "candidate:1 1 TCP 2105524479 192.168.1.10 9 typ host tcptype active",
        "candidate:1 1 tcp 2105524479 192.168.1.10 9 typ host tcptype active",
    ),
    (
        "candidate:3 1 UDP 1686052863 203.0.113.5 49203 typ srflx raddr 192.168.1.10 rport 49203",
        "candidate:3 1 udp 1686052863 203.0.113.5 49203 typ srflx raddr 192.168.1.10 rport 49203",
    ),
    (
        f"candidate:0 1 UDP 2122252543 {MDNS} 50000 typ host",
        f"candidate:0 1 udp 2122252543 {MDNS} 50000 typ host",
    ),
]


# ---- the contract ----


def test_contract_round_trip() -> None:
    line = "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"
    assert Candidate.from_sdp(line).to_sdp() == "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"


def test_contract_error() -> None:
    with pytest.raises(iceagent.CandidateParseError) as info:
        Candidate.from_sdp("candidate:1 1 udp notanumber 127.0.0.1 5000 typ host")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, IceError)
    assert "notanumber" in str(info.value)


def test_fields_of_contract_example() -> None:
    c = Candidate.from_sdp("candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host")
    assert c == Candidate("1", 1, "udp", 2130706431, "127.0.0.1", 5000, "host")
    assert attrs.fields(Candidate).foundation.name == "foundation"
    assert [f.name for f in attrs.fields(Candidate)][:13] == [
        "foundation",
        "component",
        "transport",
        "priority",
        "address",
        "port",
        "type",
        "related_address",
        "related_port",
        "tcptype",
        "generation",
        "ufrag",
        "extensions",
    ]


# ---- real lines ----


@pytest.mark.parametrize("line", CANONICAL_LINES)
def test_canonical_lines_round_trip(line: str) -> None:
    c = Candidate.from_sdp(line)
    assert c.to_sdp() == line
    assert Candidate.from_sdp("a=" + line) == c
    assert Candidate.from_sdp(line.removeprefix("candidate:")) == c
    assert Candidate.from_sdp("a=" + line + "\r\n") == c


@pytest.mark.parametrize(("line", "expected"), FIREFOX_LINES)
def test_firefox_lines(line: str, expected: str) -> None:
    c = Candidate.from_sdp(line)
    assert c.transport in ("udp", "tcp")
    assert c.to_sdp() == expected
    assert Candidate.from_sdp(expected) == c


def test_chrome_srflx_fields() -> None:
    c = Candidate.from_sdp(
        "a=candidate:842163049 1 udp 1677729535 203.0.113.9 58322 typ srflx raddr 0.0.0.0 rport 0 "
        "generation 0 ufrag abcd network-id 1 network-cost 10\r\n"
    )
    assert c.foundation == "842163049"
    assert c.component == 1
    assert c.transport == "udp"
    assert c.priority == 1677729535
    assert c.address == "203.0.113.9"
    assert c.port == 58322
    assert c.type == "srflx"
    assert c.related_address == "0.0.0.0"
    assert c.related_port == 0
    assert c.tcptype is None
    assert c.generation == 0
    assert c.ufrag == "abcd"
    assert c.extensions == (("network-id", "1"), ("network-cost", "10"))


def test_chrome_tcp_fields() -> None:
    c = Candidate.from_sdp(CANONICAL_LINES[5])
    assert (c.transport, c.tcptype, c.port, c.type) == ("tcp", "active", 9, "host")
    assert c.extensions == (("network-id", "1"), ("network-cost", "10"))


def test_mdns_candidate_kept_as_given() -> None:
    c = Candidate.from_sdp(f"candidate:0 1 UDP 2122252543 {MDNS} 50000 typ host")
    assert c.address == MDNS
    assert c.is_mdns
    assert c.family is None
    assert c.ip is None
    assert c.addr == (MDNS, 50000)


def test_firefox_srflx_fields() -> None:
    c = Candidate.from_sdp(FIREFOX_LINES[2][0])
    assert c.related_addr == ("192.168.1.10", 49203)
    assert c.generation is None and c.ufrag is None and c.extensions == ()


# ---- tolerance ----


@pytest.mark.parametrize(
    "line",
    [
        "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
        "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
        "1 1 udp 2130706431 127.0.0.1 5000 typ host",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n",
        "  candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host \n",
        "candidate:1  1\tudp 2130706431 127.0.0.1   5000 typ host",
        "candidate: 1 1 udp 2130706431 127.0.0.1 5000 typ host",
        "CANDIDATE:1 1 UDP 2130706431 127.0.0.1 5000 TYP HOST",
        "candidate:1 001 udp 02130706431 127.0.0.1 05000 typ host",
    ],
)
def test_tolerated_forms(line: str) -> None:
    c = Candidate.from_sdp(line)
    assert c == Candidate("1", 1, "udp", 2130706431, "127.0.0.1", 5000, "host")
    assert c.to_sdp() == "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"


def test_keywords_case_insensitive_stored_lower() -> None:
    c = Candidate.from_sdp("candidate:1 1 TCP 1 10.0.0.1 9 typ SRFLX RADDR 10.0.0.2 RPORT 0 TCPTYPE Active")
    assert (c.transport, c.type, c.tcptype) == ("tcp", "srflx", "active")
    assert c.related_addr == ("10.0.0.2", 0)
    assert c.to_sdp() == "candidate:1 1 tcp 1 10.0.0.1 9 typ srflx raddr 10.0.0.2 rport 0 tcptype active"


def test_unknown_extensions_kept_in_order() -> None:
    line = "candidate:1 1 udp 1 10.0.0.1 9 typ host zeta 1 alpha x network-cost 50 alpha y"
    c = Candidate.from_sdp(line)
    assert c.extensions == (("zeta", "1"), ("alpha", "x"), ("network-cost", "50"), ("alpha", "y"))
    assert c.to_sdp() == line


def test_ipv6_variants_kept_as_given() -> None:
    for address in ("::1", "fe80::1%eth0", "2001:DB8::1", "::ffff:192.0.2.1"):
        c = Candidate.from_sdp(f"candidate:1 1 udp 1 {address} 9 typ host")
        assert c.address == address
        assert c.family == 6


def test_host_name_address() -> None:
    c = Candidate.from_sdp("candidate:1 1 udp 1 turn.example.com. 3478 typ relay raddr a-b_c.local rport 1")
    assert c.address == "turn.example.com."
    assert c.family is None
    assert not c.is_mdns
    assert c.related_address == "a-b_c.local"


# ---- non-canonical order ----

NON_CANONICAL = [
    "candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host network-id 1 generation 0 ufrag abc",
    "candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host ufrag abc generation 0",
    "candidate:1 1 tcp 2130706431 10.0.0.1 9 typ host generation 0 tcptype active",
    "candidate:2 1 udp 1694498815 203.0.113.1 5000 typ srflx rport 5000 raddr 10.0.0.1",
    "candidate:2 1 udp 1694498815 203.0.113.1 5000 typ srflx network-cost 10 raddr 10.0.0.1 x y rport 5000",
]


@pytest.mark.parametrize("line", NON_CANONICAL)
def test_non_canonical_order_round_trips_exactly(line: str) -> None:
    c = Candidate.from_sdp(line)
    assert c.to_sdp() == line
    # the parsed order is not part of the value
    canonical = attrs.evolve(c)
    assert canonical == c
    assert hash(canonical) == hash(c)
    assert canonical.to_sdp() != line
    assert Candidate.from_sdp(canonical.to_sdp()) == c


def test_evolve_writes_canonical_order() -> None:
    c = Candidate.from_sdp(NON_CANONICAL[0])
    assert attrs.evolve(c, port=6000).to_sdp() == (
        "candidate:1 1 udp 2130706431 10.0.0.1 6000 typ host generation 0 ufrag abc network-id 1"
    )


def test_repr_hides_layout() -> None:
    c = Candidate.from_sdp(NON_CANONICAL[0])
    assert "layout" not in repr(c)


def test_pickle_keeps_value_and_order() -> None:
    c = Candidate.from_sdp(NON_CANONICAL[4])
    copy = pickle.loads(pickle.dumps(c))
    assert copy == c
    assert copy.to_sdp() == NON_CANONICAL[4]


# ---- helpers and value semantics ----


def test_helpers_ipv4() -> None:
    c = Candidate.from_sdp(CANONICAL_LINES[1])
    assert c.family == 4
    assert c.ip == ipaddress.IPv4Address("192.168.0.196")
    assert not c.is_mdns
    assert c.addr == ("192.168.0.196", 46243)
    assert c.related_addr is None
    assert c.type_preference == 126
    assert c.local_preference == (2122260223 >> 8) & 0xFFFF


def test_helpers_ipv6() -> None:
    c = Candidate.from_sdp(CANONICAL_LINES[4])
    assert c.family == 6
    assert c.addr == ("2001:db8:85a3::8a2e:370:7334", 49152)


def test_type_and_local_preference_of_relay() -> None:
    c = Candidate.from_sdp(CANONICAL_LINES[3])
    assert c.type_preference == 2  # Chrome gives its UDP relay candidates type preference 2
    assert c.local_preference == 32542


def test_is_mdns_case_and_trailing_dot() -> None:
    c = Candidate("1", 1, "udp", 1, "ABC.LOCAL.", 1, "host")
    assert c.is_mdns


def test_related_addr_needs_both() -> None:
    c = Candidate.from_sdp("candidate:1 1 udp 1 10.0.0.1 9 typ srflx raddr 10.0.0.2")
    assert c.related_address == "10.0.0.2"
    assert c.related_port is None
    assert c.related_addr is None
    assert c.to_sdp() == "candidate:1 1 udp 1 10.0.0.1 9 typ srflx raddr 10.0.0.2"


def test_frozen_and_hashable() -> None:
    c = Candidate.from_sdp(CANONICAL_LINES[2])
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        c.port = 1  # type: ignore[misc]
    assert len({c, Candidate.from_sdp(CANONICAL_LINES[2]), Candidate.from_sdp(CANONICAL_LINES[3])}) == 2


def test_constructor_normalizes() -> None:
    c = Candidate(
        "1",
        1,
        "UDP",
        2130706431,
        "10.0.0.1",
        9,
        "HOST",
        extensions=[["network-id", "1"]],
    )
    assert c.transport == "udp"
    assert c.type == "host"
    assert c.extensions == (("network-id", "1"),)
    assert c == Candidate.from_sdp("candidate:1 1 udp 2130706431 10.0.0.1 9 typ host network-id 1")


def test_constructed_candidate_serializes_canonically() -> None:
    c = Candidate(
        foundation="abc+/",
        component=2,
        transport="tcp",
        priority=0,
        address="10.0.0.1",
        port=0,
        type="relay",
        related_address="192.0.2.1",
        related_port=3478,
        tcptype="passive",
        generation=3,
        ufrag="uf",
        extensions=(("network-cost", "999"),),
    )
    assert c.to_sdp() == (
        "candidate:abc+/ 2 tcp 0 10.0.0.1 0 typ relay raddr 192.0.2.1 rport 3478 tcptype passive "
        "generation 3 ufrag uf network-cost 999"
    )
    assert Candidate.from_sdp(c.to_sdp()) == c


def test_boundaries_accepted() -> None:
    c = Candidate.from_sdp(f"candidate:{'A' * 32} 256 udp 4294967295 255.255.255.255 65535 typ host")
    assert (c.component, c.priority, c.port) == (256, 2**32 - 1, 65535)
    c = Candidate.from_sdp("candidate:x 1 udp 0 0.0.0.0 0 typ host generation 4294967296")
    assert (c.priority, c.port, c.generation) == (0, 0, 2**32)


# ---- errors: each names the offending token ----


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "missing foundation"),
        ("a=candidate:", "missing foundation"),
        ("candidate:1", "missing component-id"),
        ("candidate:1 1", "missing transport"),
        ("candidate:1 1 udp", "missing priority"),
        ("candidate:1 1 udp 1", "missing connection-address"),
        ("candidate:1 1 udp 1 10.0.0.1", "missing port"),
        ("candidate:1 1 udp 1 10.0.0.1 5000", "missing 'typ'"),
        ("candidate:1 1 udp 1 10.0.0.1 5000 typ", "missing candidate type"),
        ("candidate:1 1 udp 1 10.0.0.1 5000 host", "missing 'typ'"),
        ("candidate:1 1 udp 1 10.0.0.1 5000 type host", "'type'"),
        ("candidate:1 1 udp notanumber 127.0.0.1 5000 typ host", "priority 'notanumber' is not a number"),
        ("candidate:1 1 udp -1 127.0.0.1 5000 typ host", "priority '-1' is not a number"),
        ("candidate:1 1 udp +1 127.0.0.1 5000 typ host", "priority '+1' is not a number"),
        ("candidate:1 1 udp 1_0 127.0.0.1 5000 typ host", "priority '1_0' is not a number"),
        ("candidate:1 1 udp \u0661 127.0.0.1 5000 typ host", "priority '\u0661' is not a number"),
        ("candidate:1 1 udp 4294967296 127.0.0.1 5000 typ host", "priority '4294967296' out of range"),
        ("candidate:1 x udp 1 127.0.0.1 5000 typ host", "component-id 'x' is not a number"),
        ("candidate:1 0 udp 1 127.0.0.1 5000 typ host", "component-id '0' out of range"),
        ("candidate:1 257 udp 1 127.0.0.1 5000 typ host", "component-id '257' out of range"),
        ("candidate:1 1 dccp 1 127.0.0.1 5000 typ host", "transport 'dccp'"),
        ("candidate:1 1 ssltcp 1 127.0.0.1 5000 typ host", "transport 'ssltcp'"),
        ("candidate:1 1 udp 1 127.0.0.1 70000 typ host", "port '70000' out of range"),
        ("candidate:1 1 udp 1 127.0.0.1 port typ host", "port 'port' is not a number"),
        ("candidate:1 1 udp 1 127.0.0.1 5000 typ local", "candidate type 'local'"),
        ("candidate:1 1 udp 1 127.0.0.1 5000 typ host generation", "extension 'generation' has no value"),
        (
            "candidate:1 1 udp 1 127.0.0.1 5000 typ host network-id 1 network-cost",
            "'network-cost' has no value",
        ),
        ("candidate:1 1 udp 1 127.0.0.1 5000 typ host generation x", "generation 'x' is not a number"),
        ("candidate:1 1 udp 1 127.0.0.1 5000 typ host generation -1", "generation '-1' is not a number"),
        ("candidate:1 1 tcp 1 127.0.0.1 5000 typ host tcptype both", "tcptype 'both'"),
        ("candidate:1 1 udp 1 127.0.0.1 5000 typ srflx raddr 1.2.3 rport 1", "raddr '1.2.3'"),
        (
            "candidate:1 1 udp 1 127.0.0.1 5000 typ srflx raddr 1.2.3.4 rport 65536",
            "rport '65536' out of range",
        ),
        ("candidate:1 1 udp 1 127.0.0.1 5000 typ srflx raddr 1.2.3.4 rport x", "rport 'x' is not a number"),
        ("candidate:1 1 udp 1 127.0.0.1 5000 typ host generation 0 generation 1", "duplicate 'generation'"),
        ("candidate:1 1 udp 1 127.0.0.1 5000 typ host ufrag a UFRAG b", "duplicate 'ufrag'"),
        ("candidate:1 1 udp 1 127.0.0.1 5000 typ host ufrag \u00e9t\u00e9", "ufrag '\u00e9t\u00e9'"),
        ("candidate:1 1 udp 1 127.0.0.1 5000 typ host n@me 1", "extension name 'n@me'"),
        ("candidate:1 1 udp 1 127.0.0.1 5000 typ host name v\u00e4lue", "'v\u00e4lue'"),
        ("candidate:1 1 udp 1 999.0.0.1 5000 typ host", "connection-address '999.0.0.1'"),
        ("candidate:1 1 udp 1 10.0.0 5000 typ host", "connection-address '10.0.0'"),
        ("candidate:1 1 udp 1 2001:db8::g 5000 typ host", "connection-address '2001:db8::g'"),
        ("candidate:1 1 udp 1 [::1] 5000 typ host", "connection-address '[::1]'"),
        ("candidate:1 1 udp 1 a..local 5000 typ host", "connection-address 'a..local'"),
        ("candidate:1 1 udp 1 host/name 5000 typ host", "connection-address 'host/name'"),
        ("candidate:1 1 udp 1 .local 5000 typ host", "connection-address '.local'"),
        (f"candidate:{'a' * 33} 1 udp 1 127.0.0.1 5000 typ host", "foundation 'aaaa"),
        ("candidate:f-1 1 udp 1 127.0.0.1 5000 typ host", "foundation 'f-1'"),
    ],
)
def test_errors_name_the_token(line: str, message: str) -> None:
    with pytest.raises(CandidateParseError) as info:
        Candidate.from_sdp(line)
    assert message in str(info.value)


def test_not_a_string() -> None:
    with pytest.raises(CandidateParseError, match="bytes"):
        Candidate.from_sdp(b"candidate:1 1 udp 1 127.0.0.1 5000 typ host")  # type: ignore[arg-type]


# ---- properties ----

ice_chars = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/", min_size=1, max_size=32
)
token_chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
vchar = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)
ext_names = st.text(token_chars, min_size=1, max_size=12).filter(
    lambda n: n.lower() not in ("raddr", "rport", "tcptype", "generation", "ufrag")
)
addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.builds(lambda u: f"{u}.local", st.uuids(version=4)),
)
ports = st.integers(0, 65535)


@st.composite
def candidates(draw: st.DrawFn) -> Candidate:
    transport = draw(st.sampled_from(["udp", "tcp"]))
    return Candidate(
        foundation=draw(ice_chars),
        component=draw(st.integers(1, 256)),
        transport=transport,
        priority=draw(st.integers(0, 2**32 - 1)),
        address=draw(addresses),
        port=draw(ports),
        type=draw(st.sampled_from(["host", "srflx", "prflx", "relay"])),
        related_address=draw(st.none() | addresses),
        related_port=draw(st.none() | ports),
        tcptype=draw(st.none() | st.sampled_from(["active", "passive", "so"]))
        if transport == "tcp"
        else None,
        generation=draw(st.none() | st.integers(0, 2**32)),
        ufrag=draw(st.none() | vchar),
        extensions=tuple(draw(st.lists(st.tuples(ext_names, vchar), max_size=4))),
    )


@given(candidates())
def test_round_trip_property(c: Candidate) -> None:
    line = c.to_sdp()
    parsed = Candidate.from_sdp(line)
    assert parsed == c
    assert hash(parsed) == hash(c)
    assert parsed.to_sdp() == line
    assert Candidate.from_sdp("a=" + line + "\r\n") == c


@given(candidates(), st.randoms(use_true_random=False))
def test_any_attribute_order_round_trips_exactly(c: Candidate, rnd: object) -> None:
    head, _, tail = c.to_sdp().partition(f" typ {c.type}")
    words = tail.split()
    pairs = [words[i : i + 2] for i in range(0, len(words), 2)]
    rnd.shuffle(pairs)  # type: ignore[attr-defined]
    line = f"{head} typ {c.type}" + "".join(f" {n} {v}" for n, v in pairs)
    parsed = Candidate.from_sdp(line)
    assert parsed.to_sdp() == line
    # known attributes equal; extensions keep their relative order
    assert attrs.evolve(parsed, extensions=c.extensions) == c
    assert sorted(parsed.extensions) == sorted(c.extensions)


@given(st.text(max_size=80))
def test_arbitrary_text_only_raises_parse_error(text: str) -> None:
    try:
        Candidate.from_sdp(text)
    except CandidateParseError:
        pass


@given(candidates(), st.data())
def test_mutated_lines_only_raise_parse_error(c: Candidate, data: st.DataObject) -> None:
    words = c.to_sdp().split(" ")
    i = data.draw(st.integers(0, len(words) - 1))
    words[i] = data.draw(st.text(max_size=10))
    try:
        parsed = Candidate.from_sdp(" ".join(words))
    except CandidateParseError:
        return
    assert Candidate.from_sdp(parsed.to_sdp()) == parsed


def test_uuid_mdns_names() -> None:
    name = f"{uuid.uuid4()}.local"
    c = Candidate.from_sdp(f"candidate:1 1 udp 2122252543 {name} 9 typ host")
    assert c.address == name and c.is_mdns


def test_first_bad_field_is_reported() -> None:
    with pytest.raises(CandidateParseError, match="component-id 'x'"):
        Candidate.from_sdp("candidate:1 x dccp y 1.2.3 z typ nope")
    with pytest.raises(CandidateParseError, match="transport 'dccp'"):
        Candidate.from_sdp("candidate:1 1 dccp y 1.2.3 z typ nope")
    with pytest.raises(CandidateParseError, match="priority 'y'"):
        Candidate.from_sdp("candidate:1 1 udp y 1.2.3 z typ nope")
    with pytest.raises(CandidateParseError, match=r"connection-address '1\.2\.3'"):
        Candidate.from_sdp("candidate:1 1 udp 1 1.2.3 z typ nope")
    with pytest.raises(CandidateParseError, match="port 'z'"):
        Candidate.from_sdp("candidate:1 1 udp 1 1.2.3.4 z typ nope")


# ---- numbers out of range and hostile lengths (issue 12) ----


@pytest.mark.parametrize("field", ["component", "priority", "port", "rport", "generation"])
@pytest.mark.parametrize("digits", [400, 5000])
def test_huge_numbers_are_parse_errors(field: str, digits: int) -> None:
    """Never int()'s own ValueError (over 4300 digits) or a huge int: CandidateParseError, clipped."""
    n = "9" * digits
    values = {"component": "1", "priority": "1", "port": "5000", "rport": "9", "generation": "0"}
    values[field] = n
    line = (f"candidate:1 {values['component']} udp {values['priority']} 192.0.2.1 {values['port']} typ srflx "
            f"raddr 192.0.2.2 rport {values['rport']} generation {values['generation']}")
    with pytest.raises(CandidateParseError, match="out of range") as info:
        Candidate.from_sdp(line)
    assert type(info.value) is CandidateParseError and len(str(info.value)) < 300


def test_leading_zeros_still_read() -> None:
    assert Candidate.from_sdp("candidate:1 1 udp 0000000000000000000000001 192.0.2.1 005000 typ host").port == 5000


def test_check_candidate_refuses_hand_made_out_of_range_fields() -> None:
    good = Candidate.from_sdp("candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host")
    check_candidate(good)
    for field, value in [("port", 10**400), ("port", 65536), ("priority", 2**32), ("component", 257),
                         ("related_port", -1), ("generation", 2**63)]:
        with pytest.raises(CandidateParseError, match="out of range") as info:
            check_candidate(attrs.evolve(good, **{field: value}))
        assert len(str(info.value)) < 100
    for field, value in [("port", True), ("priority", 1.5), ("port", "5000")]:
        with pytest.raises(CandidateParseError, match="not an integer"):
            check_candidate(attrs.evolve(good, **{field: value}))


# ---- IceParameters (RFC 8839 5.4, 5.5) ----


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ufrag": "", "pwd": "p" * 22}, "ufrag '' is not 1 to 256"),
        ({"ufrag": "ab d", "pwd": "p" * 22}, "ufrag 'ab d'"),
        ({"ufrag": "abcd", "pwd": "p\u00e9"}, "pwd"),
        ({"ufrag": "a" * 257, "pwd": "p" * 22}, "ufrag"),
        ({"ufrag": "ab:d", "pwd": "p" * 22}, "ufrag 'ab:d'"),  # a colon would split USERNAME (RFC 8445 7.2.2)
        ({"ufrag": "abcd", "pwd": ""}, "pwd"),
        ({"ufrag": "abcd", "pwd": "p" * 257}, "pwd"),
        ({"ufrag": 1234, "pwd": "p" * 22}, "must be a str"),
        ({"ufrag": "abcd", "pwd": "p" * 22, "pacing": 0}, "pacing 0 ms is out of range (1..1000 ms"),
        ({"ufrag": "abcd", "pwd": "p" * 22, "pacing": 1001}, "out of range"),
        ({"ufrag": "abcd", "pwd": "p" * 22, "pacing": 10**400}, "(a 1329-bit integer) ms is out of range"),
        ({"ufrag": "abcd", "pwd": "p" * 22, "pacing": 10**5000}, "out of range"),
        ({"ufrag": "abcd", "pwd": "p" * 22, "pacing": 20.0}, "integer number of milliseconds"),
        ({"ufrag": "abcd", "pwd": "p" * 22, "pacing": True}, "integer number of milliseconds"),
    ],
)
def test_ice_parameters_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(IceParametersError) as info:
        IceParameters(**kwargs)
    assert message in str(info.value) and isinstance(info.value, ValueError)


def test_ice_parameters_browsers_send_are_accepted() -> None:
    """Chrome: 4-char ufrag, 24-char pwd; Firefox: 8/32 hex; + and / are ice-chars too."""
    IceParameters(ufrag="9kN1", pwd="Tq1S7dk+/X3ehnhLjYdXAjrv")
    IceParameters(ufrag="1f8a2c3d", pwd="0123456789abcdef0123456789abcdef", pacing=1)
    IceParameters(ufrag="u" * 256, pwd="p" * 256, pacing=1000)


def test_ice_parameters_hand_written_signaling_sends_are_accepted() -> None:
    """Shorter or looser credentials than RFC 8839 5.4 asks senders for still work (as with pion, aioice)."""
    IceParameters(ufrag="a", pwd="password")
    IceParameters(ufrag="user-1", pwd="ghost-password:0123")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("64:ff9b::e000:fb", "multicast"),  # NAT64 (RFC 6052) of 224.0.0.251
        ("64:ff9b:1::ffff:ffff", "broadcast"),  # NAT64 local use (RFC 8215)
        ("2002:e000:fb::1", "multicast"),  # 6to4 (RFC 3056)
        ("::224.0.0.251", "multicast"),  # IPv4-compatible (RFC 4291 2.5.5.1)
        ("::ffff:0:e000:fb", "multicast"),  # IPv4-translated (RFC 2765)
        ("64:ff9b::1.2.3.4", None),
        ("64:ff9b::7f00:1", None),  # loopback is the application's business, not a remote peer's trick
        ("2002:c000:207::1", None),
        ("::1", None),
    ],
)
def test_ipv6_forms_of_an_unusable_ipv4_address_are_unusable(address: str, reason: str | None) -> None:
    assert unusable_address(address, 5000) == reason
