"""IceParameters.lite/.options and the session-level SDP lines (RFC 8839 5.3-5.6), and the blob carrying them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iceagent import IceParameters, IceParametersError
from iceagent.cli.signal_blob import BlobError, SignalBlob
from iceagent.ice.parameters import MAX_ICE_OPTIONS, IceParametersSdpError

UFRAG, PWD = "9kN1", "Tq1S7dk+/X3ehnhLjYdXAjrv"
NOW = 1_700_000_000.0


def test_defaults_are_a_full_agent_without_options() -> None:
    params = IceParameters(UFRAG, PWD)
    assert params.lite is False and params.options == ()
    assert params.to_sdp() == [f"a=ice-ufrag:{UFRAG}", f"a=ice-pwd:{PWD}"]


def test_to_sdp_writes_every_line() -> None:
    params = IceParameters(UFRAG, PWD, pacing=20, lite=True, options=["trickle", "renomination"])
    assert params.options == ("trickle", "renomination")  # a list becomes a tuple (frozen, hashable)
    assert params.to_sdp() == [
        f"a=ice-ufrag:{UFRAG}",
        f"a=ice-pwd:{PWD}",
        "a=ice-lite",
        "a=ice-options:trickle renomination",
        "a=ice-pacing:20",
    ]


@given(
    lite=st.booleans(),
    pacing=st.none() | st.integers(1, 1000),
    options=st.lists(st.text("abcXYZ019+/", min_size=1, max_size=12), max_size=5, unique=True),
)
def test_round_trip(lite: bool, pacing: int | None, options: list[str]) -> None:
    params = IceParameters(UFRAG, PWD, pacing=pacing, lite=lite, options=options)
    assert IceParameters.from_sdp(params.to_sdp()) == params
    assert IceParameters.from_sdp("\r\n".join(params.to_sdp()) + "\r\n") == params  # one SDP text


def test_from_sdp_in_a_browser_offer() -> None:
    """Without `a=`, among unrelated lines, keyword case ignored, options over two lines added up."""
    sdp = [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "a=group:BUNDLE 0",
        "A=ICE-LITE",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "a=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host",
        f"ice-ufrag:{UFRAG}",
        f"a=ice-pwd:{PWD}  ",
        "a=ice-options:trickle",
        "a=ice-options:renomination trickle",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",  # a BUNDLE offer repeats the credentials in every m-section
        f"a=ice-ufrag:{UFRAG}",
        f"a=ice-pwd:{PWD}",
        "a=ice-lite",
    ]
    params = IceParameters.from_sdp(sdp)
    assert params == IceParameters(UFRAG, PWD, lite=True, options=("trickle", "renomination"))


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        ([f"a=ice-pwd:{PWD}"], "no a=ice-ufrag"),
        ([f"a=ice-ufrag:{UFRAG}"], "no a=ice-pwd"),
        (["a=ice-ufrag:", f"a=ice-pwd:{PWD}"], "needs a value"),
        (["a=ice-ufrag", f"a=ice-pwd:{PWD}"], "needs a value"),
        ([f"a=ice-ufrag:{UFRAG}", f"a=ice-ufrag:{UFRAG}x", f"a=ice-pwd:{PWD}"], "appears twice"),
        ([f"a=ice-ufrag:{UFRAG}", f"a=ice-pwd:{PWD}", "a=ice-lite:yes"], "takes no value"),
        ([f"a=ice-ufrag:{UFRAG}", f"a=ice-pwd:{PWD}", "a=ice-pacing:20", "a=ice-pacing:30"], "different values"),
        ([f"a=ice-ufrag:{UFRAG}", f"a=ice-pwd:{PWD}", "a=ice-pacing:fast"], "1 to 10 digits"),
        ([f"a=ice-ufrag:{UFRAG}", f"a=ice-pwd:{PWD}", "a=ice-pacing:12345678901"], "1 to 10 digits"),
        ([f"a=ice-ufrag:{UFRAG}", f"a=ice-pwd:{PWD}", "a=ice-pacing:5000"], "out of range"),
        ([f"a=ice-ufrag:{UFRAG}", f"a=ice-pwd:{PWD}", "a=ice-options:"], "tokens"),
        ([f"a=ice-ufrag:{UFRAG}", f"a=ice-pwd:{PWD}", "a=ice-options:google-ice"], "ice-option-tag"),
        ([f"a=ice-ufrag:{UFRAG}", f"a=ice-pwd:{PWD}", "a=ice-options:" + " ".join(["t"] * 40)], "tokens"),
        ([f"a=ice-ufrag:{UFRAG}", f"a=ice-pwd:{PWD}", "a=ice-options:" + "t" * 100_000], "too long"),
        ([f"a=ice-ufrag:{UFRAG} x", f"a=ice-pwd:{PWD}"], "visible ASCII"),
        ([f"a=ice-ufrag:{UFRAG}", f"a=ice-pwd:{PWD}", 7], "not int"),
    ],
)
def test_from_sdp_refuses_malformed_lines(lines: list[str], needle: str) -> None:
    with pytest.raises(IceParametersSdpError) as info:
        IceParameters.from_sdp(lines)
    assert isinstance(info.value, ValueError) and isinstance(info.value, IceParametersError)
    assert needle in str(info.value)
    assert len(str(info.value)) < 300  # a hostile 100 kB line is not echoed


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"lite": 1}, "True or False"),
        ({"options": "trickle"}, "sequence of tokens"),
        ({"options": ("trickle", "ice lite")}, "ice-option-tag"),
        ({"options": ("",)}, "ice-option-tag"),
        ({"options": (b"trickle",)}, "bytes"),
        ({"options": ["t"] * (MAX_ICE_OPTIONS + 1)}, f"more than {MAX_ICE_OPTIONS}"),
    ],
)
def test_lite_and_options_are_validated(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(IceParametersError) as info:
        IceParameters(UFRAG, PWD, **kwargs)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_blob_carries_lite_and_options() -> None:
    params = IceParameters("abcd1234", "p" * 22, lite=True, options=("trickle",))
    blob = SignalBlob("answer", params, (), created=NOW, offer_ufrag="wxyz")
    back = SignalBlob.decode(blob.encode(), now=NOW)
    assert back.parameters.lite is True and back.parameters.options == ("trickle",)
    assert back == blob


def test_blob_without_lite_and_options_still_parses() -> None:
    """A blob from before lite/options existed (no "l", no "op") is a full agent without options."""
    old = SignalBlob("offer", IceParameters("abcd1234", "p" * 22), (), created=NOW).encode()
    back = SignalBlob.decode(old, now=NOW)
    assert back.parameters.lite is False and back.parameters.options == ()


@pytest.mark.parametrize(("key", "value"), [("l", "yes"), ("l", 1), ("op", "trickle"), ("op", ["a b"]), ("op", [3])])
def test_blob_refuses_bad_lite_and_options(key: str, value: object) -> None:
    from test_signal_blob import _doc, _pack

    with pytest.raises(BlobError):
        SignalBlob.decode(_pack(_doc(**{key: value})), now=NOW)


_NAMES = st.sampled_from(["a=ice-ufrag:", "a=ice-pwd:", "a=ice-lite", "a=ice-options:", "a=ice-pacing:", "ice-", "a="])


@given(st.lists(st.tuples(_NAMES, st.text(max_size=40)).map("".join) | st.text(max_size=40), max_size=8))
def test_from_sdp_raises_only_its_error(lines: list[str]) -> None:
    """Hostile SDP: IceParameters or IceParametersSdpError, nothing else (DESIGN.md "Security defaults")."""
    try:
        params = IceParameters.from_sdp(lines)
    except IceParametersSdpError:
        return
    assert IceParameters.from_sdp(params.to_sdp()) == params
