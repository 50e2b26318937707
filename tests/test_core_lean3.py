"""What a check and its answer cost the sans-IO core (issue 15 item 3, session 10): FINGERPRINT and
MESSAGE-INTEGRITY are checked in one call, still both on every message (RFC 8445 7.2.5, 7.3; RFC 8489
14.5, 14.7), and the functions run once per check or answer make no closure cells. Counted, never timed."""

from __future__ import annotations

import pytest
from test_session import A_PARAMS, B_PARAMS

from iceagent.ice.checklist import CheckList
from iceagent.ice.checks import check_request
from iceagent.ice.session import IceSession
from iceagent.stun.attributes import Attr
from iceagent.stun.message import Message, MessageClass, Method

TID = bytes(range(12))
KEY = B_PARAMS.pwd.encode()


def _check() -> bytes:
    return check_request(TID, A_PARAMS, B_PARAMS, 1845501695, True, 7, False, None, KEY)


def test_a_sound_check_passes_both() -> None:
    assert Message.decode(_check())._verify_short_term(KEY, True) is True


def test_a_wrong_key_fails_the_integrity_only() -> None:
    """False (answer 401 / ignore), not None: the FINGERPRINT was right."""
    msg = Message.decode(_check())
    assert msg._verify_short_term(b"another password", True) is False
    assert msg._verify_short_term(b"another password", False) is False


def test_a_wrong_fingerprint_drops_the_message_whatever_the_integrity() -> None:
    data = bytearray(_check())
    data[-1] ^= 1  # the FINGERPRINT value (RFC 8489 14.7)
    msg = Message.decode(bytes(data))
    assert msg._verify_short_term(KEY, True) is None
    assert msg._verify_short_term(KEY, False) is None
    assert msg.verify_integrity(KEY)  # the integrity alone still holds: only the fingerprint is off


def test_a_missing_fingerprint_drops_a_check_but_not_an_answer() -> None:
    """Checks must carry FINGERPRINT (RFC 8445 7.3, RFC 7983); an answer without one is judged by its integrity."""
    msg = Message(Method.BINDING, MessageClass.REQUEST, TID, [(Attr.USERNAME, "bUfr:aUfr"), (Attr.PRIORITY, 1)])
    decoded = Message.decode(msg.encode(integrity_key=KEY))
    assert decoded._verify_short_term(KEY, True) is None
    assert decoded._verify_short_term(KEY, False) is True
    assert decoded._verify_short_term(b"x", False) is False


def test_a_tampered_attribute_fails_the_fingerprint_first() -> None:
    data = bytearray(_check())
    data[43] ^= 0xFF  # the PRIORITY value (after USERNAME "bUfr:aUfr" and its padding): covered by both
    assert Message.decode(bytes(data))._verify_short_term(KEY, True) is None


def test_a_message_built_in_code_has_nothing_on_the_wire_to_check() -> None:
    msg = Message(Method.BINDING, MessageClass.SUCCESS, TID, [(Attr.XOR_MAPPED_ADDRESS, ("192.0.2.1", 5))])
    assert msg._verify_short_term(KEY, True) is None
    assert msg._verify_short_term(KEY, False) is False  # no FINGERPRINT entry: judged by integrity, which fails
    msg.attributes.append((Attr.FINGERPRINT, 0))
    assert msg._verify_short_term(KEY, False) is None  # a FINGERPRINT that is there must be right


@pytest.mark.parametrize(
    "function",
    [
        IceSession._check_succeeded,
        IceSession._check_received,
        CheckList.add_valid,
        CheckList.pair_up,
        CheckList.set_state,
    ],
)
def test_check_and_answer_functions_make_no_closure_cells(function: object) -> None:
    """A comprehension or generator over a local makes a cell (a GC-tracked object) on every call of the
    function that holds it, whether or not its branch runs: the functions run once per check or answer
    have none (their rare branches are methods or plain loops)."""
    assert function.__code__.co_cellvars == ()  # type: ignore[attr-defined]


def test_has_sendable_makes_no_closure_cell() -> None:
    assert CheckList.has_sendable.fget.__code__.co_cellvars == ()  # type: ignore[attr-defined]
