"""What the sans-IO core does again per check and per answer (issue 14 item 5, issue 15 item 3, session 12):
a session keeps the USERNAME attribute of its checks and both short-term keys (RFC 8445 7.2.2, 7.3) instead
of encoding them for every check, consent check (RFC 7675) and answer; a generation hands an IceSession's
Binding requests and answers to it without the `handle_stun` call; `seal_short_term` packs what
MESSAGE-INTEGRITY covers and the message up to FINGERPRINT in one pack each (RFC 8489 14.5, 14.7). The bytes
on the wire are the same. Counted with sys.setprofile, never timed; no sockets, no clock."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import pytest
from test_core_lean2 import _connect, _pair
from test_session import A_PARAMS, B_PARAMS, B_TB, cand, decode, feed, request, response_to, session

from iceagent.config import IceConfig
from iceagent.ice.candidate import IceParameters
from iceagent.ice.checks import check_request
from iceagent.ice.generation import IceGeneration
from iceagent.ice.lite import LiteSession
from iceagent.ice.session import IceSession
from iceagent.stun import _crypto
from iceagent.stun.attributes import Attr
from iceagent.stun.message import Message, MessageClass, Method

LOCAL = cand("10.0.0.1", 1000)
REMOTE = ("10.0.0.2", 2000)


@contextmanager
def _calls() -> Iterator[Counter[str]]:
    """Calls made meanwhile: Python functions by name, C functions and methods as "c:NAME"; a C method of
    `_crypto._HEADER_TID` (the separate header pack) counts under "header pack" too."""
    counted: Counter[str] = Counter()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            counted[frame.f_code.co_name] += 1
        elif event == "c_call":
            counted["c:" + getattr(arg, "__name__", "?")] += 1
            if getattr(arg, "__self__", None) is _crypto._HEADER_TID:
                counted["header pack"] += 1

    sys.setprofile(profile)
    try:
        yield counted
    finally:
        sys.setprofile(None)


def _connected() -> IceSession:
    """A's session, controlling, with a valid pair to B (a check answered)."""
    s = session(controlling=True)
    s.add_local_candidate(LOCAL, LOCAL)
    s.set_remote_parameters(B_PARAMS)
    s.add_remote_candidate(cand(*REMOTE))
    t = s.next_check(0.0)
    assert t is not None
    feed(s, response_to(t, ("10.0.0.1", 1000)), base=LOCAL, remote=REMOTE, now=0.02)
    assert s.valid_pairs
    return s


def _same_as_check_request(data: bytes, local: IceParameters, remote: IceParameters) -> None:
    """`data` is the check `check_request` makes with its attributes, and its integrity holds for `remote`'s
    password (RFC 8445 7.2.2)."""
    m = decode(data)
    expected = check_request(
        m.transaction_id,
        local,
        remote,
        m.get(Attr.PRIORITY),
        m.get(Attr.ICE_CONTROLLING) is not None,
        m.get(Attr.ICE_CONTROLLING) or m.get(Attr.ICE_CONTROLLED),
        m.get(Attr.USE_CANDIDATE, "absent") != "absent",
        m.get(Attr.NOMINATION),
    )
    assert data == expected
    assert m.get(Attr.USERNAME) == f"{remote.ufrag}:{local.ufrag}"
    assert m.verify_integrity(remote.pwd) and m.verify_fingerprint()


def test_consent_checks_and_answers_encode_no_credentials() -> None:
    """Ten consent checks (RFC 7675 5.1) and ten answered checks encode neither password nor the USERNAME
    (each check encoded two strings, each answer one); the checks are the bytes `check_request` makes."""
    s = _connected()
    pair = s.valid_pairs[0]
    checks = [request(tid=b"request-%04d" % i) for i in range(10)]
    with _calls() as counted:
        sent = [s.consent_check(pair, 1.0 + i) for i in range(10)]
        answers = [feed(s, check, base=LOCAL, remote=REMOTE, now=2.0 + i) for i, check in enumerate(checks)]
    assert counted["c:encode"] == 0, counted.most_common(12)
    for t in sent:
        _same_as_check_request(t.data, A_PARAMS, B_PARAMS)
    for answer in answers:
        assert answer is not None
        m = decode(answer)
        assert m.message_class is MessageClass.SUCCESS and m.verify_integrity(A_PARAMS.pwd)


def test_new_remote_parameters_get_their_own_username_and_key() -> None:
    """After other remote parameters (another object, another ufrag and password) the checks carry the new
    USERNAME and integrity: the credentials are made once for them (two strings encoded), then reused."""
    s = _connected()
    pair = s.valid_pairs[0]
    other = IceParameters(ufrag="cUfr", pwd="cPassword0123456789abcd")
    s.set_remote_parameters(other)
    with _calls() as counted:
        first = s.consent_check(pair, 1.0)
        again = s.consent_check(pair, 2.0)
    assert counted["c:encode"] == 2, counted.most_common(12)
    for t in (first, again):
        _same_as_check_request(t.data, A_PARAMS, other)
        assert not decode(t).verify_integrity(B_PARAMS.pwd)


def test_a_generation_hands_checks_and_answers_to_its_session_without_handle_stun(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight pairs connect without one IceSession.handle_stun call (two per check before: the check and its
    answer), with the same nominations; a lite session's own handle_stun still runs (it notes the time of a
    check, RFC 8445 2.5), a Binding indication (a keepalive, RFC 8445 11) asks nothing of the session, and a
    handle_stun put in IceSession's place (a test injecting a bug) is the one called."""
    pairs = [_pair(i) for i in range(10)]
    _connect(*pairs[0])  # warm the compiled STUN layouts
    with _calls() as counted:
        for a, b, ca, cb in pairs[2:]:
            _connect(a, b, ca, cb)
    assert counted["handle_stun"] == 0 and counted["_handle_request"] == counted["_handle_response"] == 24
    assert all(a.nominated is not None and b.nominated is not None for a, b, _, _ in pairs[2:])

    lite = IceGeneration(
        local=IceParameters(ufrag="aUfr", pwd=A_PARAMS.pwd, lite=True),
        controlling=False,
        tie_breaker=1,
        config=IceConfig(),
    )
    assert isinstance(lite.session, LiteSession)
    lite.add_local_candidate(LOCAL, LOCAL)
    lite.set_remote_parameters(B_PARAMS)
    data = request(controlling=B_TB, controlled=None)
    with _calls() as counted:
        lite.receive(Message.decode(data), data, REMOTE, LOCAL, 3.0)
    assert counted["handle_stun"] == 2 and lite.session.last_check_at == 3.0  # its own, then IceSession's
    assert [t.remote for t in lite.datagrams_to_send(3.0)] == [REMOTE]

    a = pairs[1][0]
    keepalive = Message(Method.BINDING, MessageClass.INDICATION, b"indication01").encode(fingerprint=True)
    with _calls() as counted:
        a.receive(Message.decode(keepalive), keepalive, REMOTE, LOCAL, 4.0)
    assert counted["_handle_request"] + counted["_handle_response"] + counted["_update_failed"] == 0
    assert a.datagrams_to_send(4.0) == [] and not a.events

    seen: list[Message] = []
    monkeypatch.setattr(IceSession, "handle_stun", lambda self, message, *args: seen.append(message))
    a.receive(Message.decode(data), data, REMOTE, LOCAL, 5.0)
    assert [m.transaction_id for m in seen] == [b"request-0001"] and a.datagrams_to_send(5.0) == []


def test_sealing_packs_no_separate_header_and_gives_the_encoders_bytes() -> None:
    """`seal_short_term` makes no header pack of its own (two per message before, each then joined to the
    body); for bodies of 0 to 400 bytes its bytes are Message.encode's with MESSAGE-INTEGRITY and
    FINGERPRINT, and it keeps packers for at most `_SEALED_MAX` lengths (docs/security.md: bounded state)."""
    key = b"key"
    with _calls() as counted:
        _crypto.seal_short_term(0x0001, b"t" * 12, b"", key)
    assert counted["header pack"] == 0
    for size in range(0, 404, 4):
        attributes = [(Attr.SOFTWARE, "s" * (size - 4))] if size else []  # attributes of `size` bytes
        message = Message(Method.BINDING, MessageClass.REQUEST, b"t" * 12, attributes)
        sealed = _crypto.seal_short_term(0x0001, b"t" * 12, message.encode()[20:], key)
        assert sealed == message.encode(integrity_key=key, fingerprint=True)
        assert 1 <= len(_crypto._SEALED) <= _crypto._SEALED_MAX
