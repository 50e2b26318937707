"""Priorities (RFC 8445 5.1.2, 6.1.2.3, 7.1.1), RFC 8421 interleaving, RFC 6544 TCP, foundations."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iceagent.ice.candidate import Candidate
from iceagent.ice.priority import (
    DEFAULT_OTHER_PREFERENCE,
    MAX_LOCAL_PREFERENCE,
    MAX_PRIORITY,
    TCP_DIRECTION_PREFERENCES,
    TYPE_PREFERENCES,
    candidate_priority,
    compute_priority,
    foundation,
    interleave_addresses,
    local_preferences,
    pair_priority,
    prflx_priority,
    tcp_direction_preference,
    tcp_local_preference,
    type_preference,
)

# ---- RFC 8445 5.1.2 ----


def test_type_preferences() -> None:
    assert dict(TYPE_PREFERENCES) == {"host": 126, "prflx": 110, "srflx": 100, "relay": 0}
    assert type_preference("host") == 126
    assert type_preference("PRFLX") == 110
    assert type_preference("srflx") == 100
    assert type_preference("relay") == 0
    with pytest.raises(ValueError, match="'local'"):
        type_preference("local")


def test_type_preferences_are_read_only() -> None:
    with pytest.raises(TypeError):
        TYPE_PREFERENCES["host"] = 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("cand_type", "component", "local_pref", "priority"),
    [
        ("host", 1, 65535, 2130706431),  # the contract example's priority
        ("host", 2, 65535, 2130706430),
        ("prflx", 1, 65535, 1862270975),
        ("srflx", 1, 65535, 1694498815),
        ("relay", 1, 65535, 16777215),
        ("relay", 256, 0, 0),
        ("host", 256, 0, 126 << 24),
        ("host", 1, 32542, 2122260223),  # Chrome's IPv4 host candidate
        ("host", 1, 32512, 2122252543),  # Firefox's host candidate
        ("srflx", 1, 65535 - 1, 1694498559),
    ],
)
def test_candidate_priority(cand_type: str, component: int, local_pref: int, priority: int) -> None:
    assert candidate_priority(cand_type, component, local_pref) == priority
    c = Candidate("1", component, "udp", priority, "10.0.0.1", 9, cand_type)
    assert c.type_preference == TYPE_PREFERENCES[cand_type]
    assert c.local_preference == local_pref


def test_candidate_priority_defaults() -> None:
    assert candidate_priority("host") == 2130706431
    assert candidate_priority("host") > candidate_priority("prflx") > candidate_priority("srflx")
    assert candidate_priority("srflx") > candidate_priority("relay")


def test_compute_priority_formula_and_ranges() -> None:
    assert compute_priority(126, 65535, 1) == 2**24 * 126 + 2**8 * 65535 + 255
    for args, name in [
        ((127, 0, 1), "type preference 127"),
        ((-1, 0, 1), "type preference -1"),
        ((0, 65536, 1), "local preference 65536"),
        ((0, -1, 1), "local preference -1"),
        ((0, 0, 0), "component 0"),
        ((0, 0, 257), "component 257"),
    ]:
        with pytest.raises(ValueError, match=name):
            compute_priority(*args)
    with pytest.raises(TypeError):
        compute_priority(126, 1.5, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        compute_priority(True, 1, 1)


@given(st.integers(0, 126), st.integers(0, 65535), st.integers(1, 256))
def test_priority_decomposes(type_pref: int, local_pref: int, component: int) -> None:
    p = compute_priority(type_pref, local_pref, component)
    assert 0 <= p <= MAX_PRIORITY
    c = Candidate("1", component, "udp", p, "10.0.0.1", 9, "host")
    assert (c.type_preference, c.local_preference, 256 - (p & 0xFF)) == (type_pref, local_pref, component)


# ---- RFC 8445 7.1.1: PRIORITY of a check ----


def test_prflx_priority() -> None:
    assert prflx_priority(2130706431) == 1862270975
    assert prflx_priority(candidate_priority("relay", 2, 1234)) == candidate_priority("prflx", 2, 1234)
    assert prflx_priority(candidate_priority("srflx", 1, 40000)) == candidate_priority("prflx", 1, 40000)
    with pytest.raises(ValueError, match="priority 4294967296"):
        prflx_priority(2**32)


# ---- RFC 6544 4.2 ----


def test_tcp_direction_preferences() -> None:
    for cand_type in ("host", "relay"):
        assert tcp_direction_preference(cand_type, "active") == 6
        assert tcp_direction_preference(cand_type, "passive") == 4
        assert tcp_direction_preference(cand_type, "so") == 2
    for cand_type in ("srflx", "prflx"):
        assert tcp_direction_preference(cand_type, "so") == 6
        assert tcp_direction_preference(cand_type, "active") == 4
        assert tcp_direction_preference(cand_type, "passive") == 2
    assert set(TCP_DIRECTION_PREFERENCES) == set(TYPE_PREFERENCES)
    with pytest.raises(ValueError, match="'both'"):
        tcp_direction_preference("host", "both")
    with pytest.raises(ValueError, match="'local'"):
        tcp_direction_preference("local", "active")


@pytest.mark.parametrize(
    ("cand_type", "tcptype", "local_pref"),
    [
        ("host", "active", 2**13 * 6 + 8191),  # 57343
        ("host", "passive", 2**13 * 4 + 8191),  # 40959
        ("host", "so", 2**13 * 2 + 8191),  # 24575
        ("relay", "active", 57343),
        ("srflx", "so", 57343),
        ("srflx", "active", 40959),
        ("srflx", "passive", 24575),
    ],
)
def test_tcp_local_preference(cand_type: str, tcptype: str, local_pref: int) -> None:
    assert tcp_local_preference(cand_type, tcptype) == local_pref


def test_tcp_priorities() -> None:
    active = candidate_priority("host", 1, tcp_local_preference("host", "active"))
    passive = candidate_priority("host", 1, tcp_local_preference("host", "passive"))
    so = candidate_priority("host", 1, tcp_local_preference("host", "so"))
    assert active == (126 << 24) + (57343 << 8) + 255 == 2128609279
    assert passive == 2124414975
    assert so == 2120220671
    assert active > passive > so
    # a single-address UDP host candidate stays ahead of every TCP host candidate
    assert candidate_priority("host") > active


def test_tcp_other_pref_and_direction_override() -> None:
    assert tcp_local_preference("host", "active", 0) == 6 << 13
    assert tcp_local_preference("host", "active", 100, direction_pref=7) == (7 << 13) + 100
    assert tcp_local_preference("host", "active", direction_pref=0) == DEFAULT_OTHER_PREFERENCE
    with pytest.raises(ValueError, match="other-pref 8192"):
        tcp_local_preference("host", "active", 8192)
    with pytest.raises(ValueError, match="direction-pref 8"):
        tcp_local_preference("host", "active", direction_pref=8)


def test_tcp_other_pref_for_multihomed() -> None:
    prefs = local_preferences(["10.0.0.1", "2001:db8::1"], maximum=DEFAULT_OTHER_PREFERENCE)
    assert prefs == {"2001:db8::1": 8191, "10.0.0.1": 8190}
    assert tcp_local_preference("host", "passive", prefs["10.0.0.1"]) == (4 << 13) + 8190


# ---- RFC 8421: multihomed and dual-stack ----


def test_interleave_alternates_families_ipv6_first() -> None:
    addresses = ["10.0.0.2", "192.168.1.2", "2001:db8::1", "2001:db8::2", "2001:db8::3"]
    assert interleave_addresses(addresses) == [
        "2001:db8::1",
        "10.0.0.2",
        "2001:db8::2",
        "192.168.1.2",
        "2001:db8::3",
    ]


def test_interleave_ipv4_first() -> None:
    addresses = ["2001:db8::1", "2001:db8::2", "10.0.0.2", "192.168.1.2", "172.16.0.1"]
    assert interleave_addresses(addresses, prefer_ipv6=False) == [
        "10.0.0.2",
        "2001:db8::1",
        "192.168.1.2",
        "2001:db8::2",
        "172.16.0.1",
    ]


def test_interleave_many_ipv6_one_ipv4() -> None:
    # RFC 8421 4: an IPv4 candidate is promoted among many IPv6 ones rather than left last
    addresses = [f"2001:db8::{i}" for i in range(1, 6)] + ["192.0.2.1"]
    assert interleave_addresses(addresses)[:3] == ["2001:db8::1", "192.0.2.1", "2001:db8::2"]


def test_interleave_single_family_keeps_order() -> None:
    assert interleave_addresses(["10.0.0.3", "10.0.0.1", "10.0.0.2"]) == ["10.0.0.3", "10.0.0.1", "10.0.0.2"]
    assert interleave_addresses(["::1", "fe80::1%eth0"]) == ["::1", "fe80::1%eth0"]
    assert interleave_addresses([]) == []


def test_interleave_drops_duplicates() -> None:
    assert interleave_addresses(["2001:db8::1", "10.0.0.1", "2001:DB8:0::1", "10.0.0.1"]) == [
        "2001:db8::1",
        "10.0.0.1",
    ]


def test_interleave_rejects_names() -> None:
    with pytest.raises(ValueError, match=r"'host\.local'"):
        interleave_addresses(["10.0.0.1", "host.local"])


def test_local_preferences_example() -> None:
    prefs = local_preferences(["192.168.1.2", "10.0.0.2", "2001:db8::1"])
    assert prefs == {"2001:db8::1": 65535, "192.168.1.2": 65534, "10.0.0.2": 65533}
    assert list(prefs) == ["2001:db8::1", "192.168.1.2", "10.0.0.2"]


def test_local_preferences_single_address_is_max() -> None:
    assert local_preferences(["127.0.0.1"]) == {"127.0.0.1": MAX_LOCAL_PREFERENCE}


def test_local_preferences_give_interleaved_priorities() -> None:
    v4 = ["192.0.2.1", "198.51.100.1", "203.0.113.1"]
    v6 = ["2001:db8::a", "2001:db8::b", "2001:db8::c"]
    prefs = local_preferences(v4 + v6)
    hosts = sorted(prefs, key=lambda a: candidate_priority("host", 1, prefs[a]), reverse=True)
    families = [6 if ":" in a else 4 for a in hosts]
    assert families == [6, 4, 6, 4, 6, 4]
    # srflx candidates of the same bases are interleaved the same way, below every host candidate
    srflx = [candidate_priority("srflx", 1, prefs[a]) for a in hosts]
    assert srflx == sorted(srflx, reverse=True)
    assert max(srflx) < min(candidate_priority("host", 1, p) for p in prefs.values())


def test_local_preferences_limits() -> None:
    with pytest.raises(ValueError, match="3 addresses"):
        local_preferences(["10.0.0.1", "10.0.0.2", "10.0.0.3"], maximum=1)
    with pytest.raises(ValueError, match="maximum 65536"):
        local_preferences(["10.0.0.1"], maximum=65536)


@given(st.lists(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str), max_size=20))
def test_local_preferences_unique_and_fair(addresses: list[str]) -> None:
    prefs = local_preferences(addresses)
    assert len(set(prefs.values())) == len(prefs)
    ordered = list(prefs)
    assert [prefs[a] for a in ordered] == sorted(prefs.values(), reverse=True)
    # never two of one family in a row while the other family still has addresses left
    fams = [6 if ":" in a else 4 for a in ordered]
    for i in range(1, len(fams)):
        if fams[i] == fams[i - 1]:
            assert all(f == fams[i] for f in fams[i:])


# ---- RFC 8445 5.1.1.3: foundations ----


def test_foundation_same_tuple_same_foundation() -> None:
    a = foundation("host", "192.168.1.2", "udp")
    assert a == foundation("host", "192.168.1.2", "udp")
    assert a == foundation("HOST", "192.168.1.2", "UDP")
    assert foundation("srflx", "192.168.1.2", "udp", "198.51.100.1") == foundation(
        "srflx", "192.168.1.2", "udp", "198.51.100.1"
    )


def test_foundation_compares_addresses_not_text() -> None:
    assert foundation("host", "2001:db8::1") == foundation("host", "2001:DB8:0:0::1")
    assert foundation("srflx", "10.0.0.1", server_address="2001:db8::5") == foundation(
        "srflx", "10.0.0.1", server_address="2001:db8:0::5"
    )


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("host", "10.0.0.1", "udp", None), ("srflx", "10.0.0.1", "udp", None)),  # type
        (("host", "10.0.0.1", "udp", None), ("host", "10.0.0.2", "udp", None)),  # base IP
        (("host", "10.0.0.1", "udp", None), ("host", "10.0.0.1", "tcp", None)),  # transport
        (
            ("srflx", "10.0.0.1", "udp", "198.51.100.1"),
            ("srflx", "10.0.0.1", "udp", "198.51.100.2"),
        ),  # server
        (("srflx", "10.0.0.1", "udp", None), ("srflx", "10.0.0.1", "udp", "198.51.100.1")),
        (("relay", "203.0.113.9", "udp", "198.51.100.1"), ("srflx", "203.0.113.9", "udp", "198.51.100.1")),
    ],
)
def test_foundation_differs(
    one: tuple[str, str, str, str | None], other: tuple[str, str, str, str | None]
) -> None:
    assert foundation(*one) != foundation(*other)


def test_foundation_same_base_different_port_shares() -> None:
    # the port is not part of the tuple: two host candidates on one IP (UDP sockets) share a foundation
    assert foundation("host", "10.0.0.1", "udp") == foundation("host", "10.0.0.1")


def test_foundation_is_short_stable_ice_chars() -> None:
    f = foundation("host", "127.0.0.1", "udp")
    assert re.fullmatch(r"[0-9a-f]{8}", f)
    assert f == "64a3f910"  # stable across runs and processes
    c = Candidate.from_sdp(f"candidate:{f} 1 udp 2130706431 127.0.0.1 5000 typ host")
    assert c.foundation == f


@given(
    st.sampled_from(["host", "srflx", "prflx", "relay"]),
    st.ip_addresses().map(str),
    st.sampled_from(["udp", "tcp"]),
    st.none() | st.ip_addresses().map(str),
)
def test_foundation_always_valid(cand_type: str, base: str, transport: str, server: str | None) -> None:
    f = foundation(cand_type, base, transport, server)
    assert re.fullmatch(r"[A-Za-z0-9+/]{1,32}", f)


# ---- RFC 8445 6.1.2.3: pair priority ----


def test_pair_priority_formula() -> None:
    g, d = 2130706431, 1694498815
    assert pair_priority(g, d) == 2**32 * d + 2 * g + 1
    assert pair_priority(d, g) == 2**32 * d + 2 * g
    assert pair_priority(g, g) == 2**32 * g + 2 * g


def test_pair_priority_tie_break_term() -> None:
    # the same two candidates, roles swapped: the +1 term orders them deterministically
    hi, lo = candidate_priority("host"), candidate_priority("srflx")
    assert pair_priority(hi, lo) - pair_priority(lo, hi) == 1
    assert pair_priority(5, 5) % 2 == 0
    assert pair_priority(6, 5) % 2 == 1


def test_pair_priority_extremes() -> None:
    assert pair_priority(0, 0) == 0
    assert pair_priority(MAX_PRIORITY, MAX_PRIORITY) == 2**64 + 2**32 - 2  # may exceed 64 bits
    assert pair_priority(MAX_PRIORITY, 0) == 2 * MAX_PRIORITY + 1
    assert pair_priority(0, MAX_PRIORITY) == 2 * MAX_PRIORITY
    with pytest.raises(ValueError, match="controlling priority 4294967296"):
        pair_priority(2**32, 1)
    with pytest.raises(ValueError, match="controlled priority -1"):
        pair_priority(1, -1)


def test_pair_priority_orders_by_min_first() -> None:
    # the worse candidate of a pair dominates: host/srflx beats any pair with a relay candidate
    host, srflx, relay = candidate_priority("host"), candidate_priority("srflx"), candidate_priority("relay")
    assert pair_priority(srflx, host) > pair_priority(MAX_PRIORITY, relay)
    assert pair_priority(host, srflx) > pair_priority(relay, MAX_PRIORITY)


@given(st.integers(0, MAX_PRIORITY), st.integers(0, MAX_PRIORITY))
def test_pair_priority_properties(g: int, d: int) -> None:
    p = pair_priority(g, d)
    assert 0 <= p < 2**65
    assert p == 2**32 * min(g, d) + 2 * max(g, d) + (1 if g > d else 0)
    assert p & 1 == (1 if g > d else 0)
    if g != d:
        assert abs(pair_priority(g, d) - pair_priority(d, g)) == 1
