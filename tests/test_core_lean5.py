"""What the sans-IO core does again per check and per answer (issue 14 item 5, issue 15 item 3, session 12):
a session keeps the USERNAME attribute of its checks and both short-term keys (RFC 8445 7.2.2, 7.3) instead
of encoding them for every check, consent check (RFC 7675) and answer; `seal_short_term` packs what
MESSAGE-INTEGRITY covers and the message up to FINGERPRINT in one pack each (RFC 8489 14.5, 14.7). The bytes
on the wire are the same. Counted with sys.setprofile, never timed; no sockets, no clock."""

from __future__ import annotations

import hashlib
import hmac
import struct
import sys
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import pytest
from test_session import A_PARAMS, B_PARAMS, cand, decode, feed, request, response_to, session

from iceagent.ice.candidate import IceParameters
from iceagent.ice.checks import check_request
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


def _sealed_by_the_rfc(mtype: int, tid: bytes, body: bytes, key: bytes) -> bytes:
    """An independent encoding: MESSAGE-INTEGRITY over the header (its length counting the 24-byte integrity
    attribute) and the body (RFC 8489 14.5), then FINGERPRINT, CRC-32 XOR 0x5354554E over everything before it
    with the length counting it too (14.7)."""
    covered = struct.pack("!HHI12s", mtype, len(body) + 24, 0x2112A442, tid) + body
    with_mi = covered + struct.pack("!HH", 0x0008, 20) + hmac.new(key, covered, hashlib.sha1).digest()
    data = struct.pack("!HHI12s", mtype, len(body) + 32, 0x2112A442, tid) + with_mi[20:]
    return data + struct.pack("!HHI", 0x8028, 4, zlib.crc32(data) ^ 0x5354554E)


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
        body = message.encode()[20:]
        sealed = _crypto.seal_short_term(0x0001, b"t" * 12, memoryview(body) if size == 8 else body, key)
        assert sealed == _sealed_by_the_rfc(0x0001, b"t" * 12, body, key)
        assert 1 <= len(_crypto._SEALED) <= _crypto._SEALED_MAX


def test_a_sessions_local_parameters_cannot_be_replaced() -> None:
    """The session keeps its own password's bytes (the key of the checks it answers) and its checks' USERNAME:
    replacing `local_parameters` would leave them stale, so it is read-only (a new ufrag/pwd is an ICE restart,
    a new session: RFC 8445 9)."""
    s = session()
    with pytest.raises(AttributeError):
        s.local_parameters = IceParameters(ufrag="other", pwd="otherPassword0123456789")  # type: ignore[misc]
    assert s.local_parameters is A_PARAMS
