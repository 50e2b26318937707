"""screen_check takes the integrity verdict (`verified: bool`), no longer the local password's bytes: a caller
still passing the key (a truthy non-bool) must fail closed (401), not be taken as "integrity holds"; and
bench/stun_codec.py's "check: screen (MI)" row must still compute the MESSAGE-INTEGRITY it is named for."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest
from test_session import A_PARAMS, B_PARAMS

from iceagent.ice.checks import check_request, read_check, screen_check
from iceagent.stun.message import Message

TID = bytes(range(12))


def _bad_integrity_check() -> Message:
    # signed with the wrong password: FINGERPRINT right, MESSAGE-INTEGRITY wrong for A's password
    data = check_request(TID, B_PARAMS, A_PARAMS, 1845501695, True, 7, False, None, b"not A's password")
    return Message.decode(data)


def test_screen_check_fails_closed_when_given_the_old_key_argument() -> None:
    """Passing the key (the pre-02a51a6 signature) must not authenticate a forged check: 401, not None."""
    msg = _bad_integrity_check()
    assert msg._verify_short_term(A_PARAMS.pwd.encode(), True) is False  # the verdict the session computes
    rejection = screen_check(msg, read_check(msg), A_PARAMS, A_PARAMS.pwd.encode())  # type: ignore[arg-type]
    assert rejection is not None, "a check with a wrong MESSAGE-INTEGRITY passed screen_check"
    assert Message.decode(rejection).get(0x0009)[0] == 401


def test_bench_stun_codec_screen_row_still_verifies_message_integrity(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/stun_codec.py's 'check: screen (MI)' row is documented (bench/README.md) as screen_check *with*
    MESSAGE-INTEGRITY; since 02a51a6 it passes the key where the verdict goes, so no HMAC is computed and
    its own sanity assert (`screen_check(...) is None`) holds vacuously."""
    pytest.importorskip("aioice")
    path = pathlib.Path(__file__).resolve().parent.parent / "bench" / "stun_codec.py"
    spec = importlib.util.spec_from_file_location("_review_stun_codec", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases = dict(module.ice_cases())
    calls = []
    real_vi, real_vst = Message.verify_integrity, Message._verify_short_term
    monkeypatch.setattr(Message, "verify_integrity", lambda self, *a: calls.append(1) or real_vi(self, *a))
    monkeypatch.setattr(Message, "_verify_short_term", lambda self, *a: calls.append(1) or real_vst(self, *a))
    cases["check: screen (MI)"](8)
    assert calls, "the 'check: screen (MI)' row computed no MESSAGE-INTEGRITY"
