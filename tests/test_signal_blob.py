"""The copy-paste signaling blob: round trip, compactness, and a clear error for every bad input."""

from __future__ import annotations

import base64
import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iceagent import Candidate, IceParameters
from iceagent.cli.signal_blob import (
    DEFAULT_MAX_AGE,
    BlobError,
    BlobVersionError,
    SignalBlob,
    StaleBlobError,
)

PARAMS = IceParameters(ufrag="abcd1234", pwd="0123456789abcdefghijkl+/")
CANDIDATES = (
    Candidate.from_sdp("candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host"),
    Candidate.from_sdp("candidate:2 1 udp 1694498815 198.51.100.7 61000 typ srflx raddr 192.0.2.1 rport 5000"),
    Candidate.from_sdp("candidate:3 1 udp 16777215 203.0.113.9 49152 typ relay raddr 0.0.0.0 rport 0"),
    Candidate.from_sdp("candidate:4 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active generation 0"),
)
NOW = 1_700_000_000.0


def _pack(doc: object, prefix: str = "ice1.") -> str:
    raw = json.dumps(doc).encode()
    return prefix + base64.urlsafe_b64encode(zlib.compress(raw)).rstrip(b"=").decode()


def _doc(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {"r": "offer", "u": PARAMS.ufrag, "p": PARAMS.pwd, "c": [], "e": True, "t": int(NOW)}
    doc.update(changes)
    return doc


def test_round_trip() -> None:
    blob = SignalBlob("offer", PARAMS, CANDIDATES, created=NOW)
    text = blob.encode()
    assert text.startswith("ice1.")
    assert "\n" not in text and "=" not in text and "+" not in text and "/" not in text
    assert SignalBlob.decode(text, now=NOW) == blob
    back = SignalBlob.decode(text, expect="offer", now=NOW + 10)
    assert [c.to_sdp() for c in back.candidates] == [c.to_sdp() for c in CANDIDATES]
    assert back.end_of_candidates and back.offer_ufrag is None


def test_answer_fields_and_pacing() -> None:
    params = IceParameters(ufrag="wxyz", pwd="p" * 22, pacing=20)
    blob = SignalBlob("answer", params, (), end_of_candidates=False, created=NOW, offer_ufrag="abcd1234")
    back = SignalBlob.decode(blob.encode(), expect="answer", now=NOW)
    assert back == blob
    assert back.parameters.pacing == 20 and not back.end_of_candidates


def test_compact_and_wrapped_paste() -> None:
    many = tuple(
        Candidate.from_sdp(f"candidate:{i} 1 udp 2130706431 192.0.2.{i} {5000 + i} typ host") for i in range(1, 9)
    )
    text = SignalBlob("offer", PARAMS, many, created=NOW).encode()
    sdp_size = sum(len(c.to_sdp()) for c in many)
    assert len(text) < sdp_size * 0.6  # much smaller than the SDP lines it carries
    wrapped = "\n".join(text[i : i + 30] for i in range(0, len(text), 30))  # a terminal wrapped it
    assert SignalBlob.decode(f"  '{wrapped}'\r\n", now=NOW).candidates == many


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty input"),
        ("hello world", "not an iceagent blob: expected a line starting with 'ice1.'"),
        ("a=candidate:1 1 udp 1 192.0.2.1 1 typ host", "looks like SDP"),
        ("ice1.", "damaged (not base64url)"),
        ("ice1.@@@@", "damaged (not base64url)"),
        ("ice1.AAAA", "damaged (checksum or format)"),
        ("ice1." + "A" * 70000, "too long"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(BlobError) as info:
        SignalBlob.decode(text, now=NOW)
    assert message in str(info.value)


def test_truncated_and_damaged() -> None:
    text = SignalBlob("offer", PARAMS, CANDIDATES, created=NOW).encode()
    with pytest.raises(BlobError, match=r"truncated|damaged"):
        SignalBlob.decode(text[:-10], now=NOW)
    flipped = text[:20] + ("B" if text[20] != "B" else "C") + text[21:]
    with pytest.raises(BlobError, match=r"damaged|truncated"):
        SignalBlob.decode(flipped, now=NOW)


def test_other_version() -> None:
    with pytest.raises(BlobVersionError, match="format version 2; this iceagent reads version 1"):
        SignalBlob.decode(_pack(_doc(), prefix="ice2."), now=NOW)
    with pytest.raises(BlobVersionError):
        SignalBlob.decode("ICE7.whatever", now=NOW)


def test_stale_and_future() -> None:
    text = SignalBlob("offer", PARAMS, (), created=NOW).encode()
    assert SignalBlob.decode(text, now=NOW + DEFAULT_MAX_AGE - 1).created == NOW
    with pytest.raises(StaleBlobError, match=r"the offer is stale: made 11 min ago \(the limit is 10 min\)"):
        SignalBlob.decode(text, now=NOW + 660)
    with pytest.raises(StaleBlobError, match="in the future: is a clock wrong"):
        SignalBlob.decode(text, now=NOW - 3 * 3600)
    assert SignalBlob.decode(text, max_age=None, now=NOW + 10**7).created == NOW
    with pytest.raises(StaleBlobError, match="made 30 s ago"):
        SignalBlob.decode(text, max_age=10, now=NOW + 30)


def test_wrong_role() -> None:
    text = SignalBlob("offer", PARAMS, (), created=NOW).encode()
    with pytest.raises(BlobError, match="this is an offer, not an answer: paste it into 'iceagent answer'"):
        SignalBlob.decode(text, expect="answer", now=NOW)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1, 2], "not an object"),
        (_doc(r="hello"), "role is 'hello'"),
        (_doc(r=None), "no valid role"),
        (_doc(u="ab"), "ufrag is not 4 to 256 ice-chars"),
        (_doc(u="abc d"), "ufrag is not 4 to 256 ice-chars"),
        (_doc(p="short"), "pwd is not 22 to 256 ice-chars"),
        (_doc(c="candidate"), "no valid candidate list"),
        (_doc(c=[5]), "candidate 1 of the blob is not a string"),
        (_doc(c=["1 1 udp 1 192.0.2.1 5000 typ host", "1 1 udp x"]), "candidate 2 of the blob is malformed"),
        (_doc(c=["1 1 udp 1 192.0.2.1 1 typ host"] * 300), "at most 256"),
        (_doc(e="yes"), "end-of-candidates"),
        (_doc(t="now"), "creation time"),
        (_doc(t=True), "creation time"),
        (_doc(t=float("nan")), "creation time"),
        (_doc(o=5), "offer reference"),
        (_doc(pc=-1), "pacing"),
    ],
)
def test_bad_content(doc: object, message: str) -> None:
    with pytest.raises(BlobError) as info:
        SignalBlob.decode(_pack(doc), now=NOW)
    assert message in str(info.value)


def test_decompression_bomb() -> None:
    bomb = _pack({"r": "offer", "x": "a" * 10_000_000})
    assert len(bomb) < 64 * 1024
    with pytest.raises(BlobError, match="more than 256 KiB"):
        SignalBlob.decode(bomb, now=NOW)


def test_not_json() -> None:
    packed = base64.urlsafe_b64encode(zlib.compress(b"\xff\xfe not json")).rstrip(b"=").decode()
    with pytest.raises(BlobError, match="damaged"):
        SignalBlob.decode("ice1." + packed, now=NOW)
    nested = base64.urlsafe_b64encode(zlib.compress(b"[" * 100_000)).rstrip(b"=").decode()
    with pytest.raises(BlobError, match="damaged"):
        SignalBlob.decode("ice1." + nested, now=NOW)


@given(st.text(max_size=300))
def test_any_text_gives_blob_error_or_blob(text: str) -> None:
    try:
        SignalBlob.decode(text, now=NOW)
    except BlobError:
        pass
    try:
        SignalBlob.decode("ice1." + text, now=NOW)
    except BlobError:
        pass


@given(st.binary(max_size=300))
def test_any_payload_gives_blob_error_or_blob(data: bytes) -> None:
    for payload in (data, zlib.compress(data)):
        text = "ice1." + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
        try:
            SignalBlob.decode(text, now=NOW)
        except BlobError:
            pass


# ---- numbers out of range (issue 12): only BlobError, never OverflowError or int()'s own ValueError ----

HUGE = 10**400


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_doc(t=HUGE), "401-digit number"),
        (_doc(pc=HUGE), "401-digit number"),
        (_doc(t=10**19), "creation time"),  # short enough to read, too late to be a clock
        (_doc(t=-1), "creation time"),
        (_doc(t=1e300), "creation time"),
        (_doc(pc=0), "pacing 0 ms is out of range (1..1000 ms"),
        (_doc(pc=1001), "pacing 1001 ms is out of range"),
        (_doc(pc=10**19), "out of range"),
        (_doc(pc=20.5), "pacing must be an integer"),
        (_doc(c=[f"1 1 udp 1 192.0.2.1 {HUGE} typ host"]), "candidate 1 of the blob is malformed: port"),
        (_doc(c=[f"1 1 udp {HUGE} 192.0.2.1 5000 typ host"]), "malformed: priority"),
        (_doc(c=[f"1 {HUGE} udp 1 192.0.2.1 5000 typ host"]), "malformed: component-id"),
        (_doc(c=[f"1 1 udp 1 192.0.2.1 5000 typ host generation {HUGE}"]), "malformed: generation"),
        (_doc(c=[f"1 1 udp 1 192.0.2.1 5000 typ srflx raddr 0.0.0.0 rport {HUGE}"]), "malformed: rport"),
        (_doc(c=["1 1 udp 1 192.0.2.1 5000 typ host generation " + "9" * 5000]), "malformed: generation"),
    ],
)
def test_huge_numbers_are_blob_errors(doc: dict[str, object], message: str) -> None:
    with pytest.raises(BlobError) as info:
        SignalBlob.decode(_pack(doc), now=NOW)
    assert message in str(info.value)
    assert len(str(info.value)) < 300  # the number is not echoed whole


def test_numbers_longer_than_python_reads_are_blob_errors() -> None:
    """json.loads would raise ValueError for more than 4300 digits (sys.int_info.str_digits_check_threshold)."""
    raw = json.dumps(_doc(t=0)).replace('"t": 0', '"t": ' + "9" * 5000).encode()
    text = "ice1." + base64.urlsafe_b64encode(zlib.compress(raw)).rstrip(b"=").decode()
    with pytest.raises(BlobError, match="5000-digit number"):
        SignalBlob.decode(text, now=NOW)


@given(st.sampled_from(["t", "pc", "e", "u", "c"]), st.integers(-(10**450), 10**450) | st.floats())
def test_any_number_in_any_field_gives_blob_error_or_blob(key: str, value: object) -> None:
    try:
        SignalBlob.decode(_pack(_doc(**{key: value})), now=NOW, max_age=None)
    except BlobError:
        pass
