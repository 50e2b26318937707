"""What the sans-IO core keeps per pair and per check on the connect path (issue 15 item 3, issue 14 item 5,
session 11): the objects the cyclic collector must walk. A pair's RTO state (RFC 8489 6.2.1, RFC 6298) is
plain floats on the pair, no object of its own; the estimator a caller reads is a copy with the same
numbers. Counted, never timed."""

from __future__ import annotations

import gc
import hmac
from typing import Any

import pytest
from test_session import B_PARAMS, cand, decode, feed, request, response_to, session

from iceagent.config import IceConfig
from iceagent.ice import session as session_module
from iceagent.ice.candidate import Candidate
from iceagent.ice.checklist import CheckList
from iceagent.ice.checks import screen_check
from iceagent.ice.session import IceSession
from iceagent.stun import _crypto
from iceagent.stun.attributes import Attr
from iceagent.stun.message import MessageClass
from iceagent.stun.transaction import RtoEstimator

LOCAL = cand("10.0.0.1", 1000)


def _checking() -> IceSession:
    s = session(controlling=True)
    s.add_local_candidate(LOCAL, LOCAL)
    s.set_remote_parameters(B_PARAMS)
    s.add_remote_candidate(cand("10.0.0.2", 2000))
    return s


def _estimators() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is RtoEstimator)


def test_a_checked_and_answered_pair_makes_no_estimator_object() -> None:
    """The first check and its answer leave no RtoEstimator behind (one GC-tracked object per pair before)."""
    s = _checking()
    before = _estimators()
    t = s.next_check(0.0)
    assert t is not None and t.pair is not None
    feed(s, response_to(t, ("10.0.0.1", 1000)), base=LOCAL, remote=t.remote, now=0.02)
    assert t.pair.valid and t.pair.rtt == 0.02
    assert _estimators() == before


def test_the_estimator_read_from_a_pair_is_a_copy_with_its_state() -> None:
    s = _checking()
    pair = s.pairs[0]
    assert pair.rto_estimator is None  # no check sent on it yet
    t = s.next_check(0.0)
    assert t is not None
    fresh = pair.rto_estimator
    assert fresh is not None and (fresh.initial, fresh.srtt, fresh.rttvar) == (IceConfig().rto, None, None)
    feed(s, response_to(t, ("10.0.0.1", 1000)), base=LOCAL, remote=t.remote, now=0.02)
    copy = pair.rto_estimator
    assert copy is not None and (copy.srtt, copy.rttvar) == (0.02, 0.01)
    copy.update(5.0)  # changing the copy changes nothing on the pair
    assert pair.rto_estimator == RtoEstimator(IceConfig().rto, srtt=0.02, rttvar=0.01)


def test_later_samples_and_the_rto_follow_rfc_6298_as_the_estimator_does() -> None:
    """Consent checks answered after 0.3 s, 2.5 s: SRTT and RTTVAR as RtoEstimator.update makes them
    (RFC 6298 2.3), and the next request's RTO is the estimator's (RFC 8489 6.2.1) once above the floor."""
    s = _checking()
    t = s.next_check(0.0)
    assert t is not None and t.pair is not None
    pair = t.pair
    feed(s, response_to(t, ("10.0.0.1", 1000)), base=LOCAL, remote=t.remote, now=0.02)
    reference = RtoEstimator(IceConfig().rto)
    reference.update(0.02)
    now = 1.0
    for rtt in (0.3, 2.5):
        c = s.consent_check(pair, now)
        feed(s, response_to(c, ("10.0.0.1", 1000)), base=LOCAL, remote=c.remote, now=now + rtt)
        reference.update(now + rtt - now)  # the sample as the session measures it
        now += 10.0
    assert pair.rto_estimator == reference
    c = s.consent_check(pair, now)
    request = s._requests.get(c.data[8:20])
    assert request is not None and request.rto == reference.rto > IceConfig().rto


def _screened(monkeypatch: pytest.MonkeyPatch) -> list[bytes | None]:
    """The verdicts `screen_check` gave, recorded as the session calls it."""
    verdicts: list[bytes | None] = []

    def recording(*args: Any) -> bytes | None:
        verdict = screen_check(*args)
        verdicts.append(verdict)
        return verdict

    monkeypatch.setattr(session_module, "screen_check", recording)
    return verdicts


def test_a_check_that_passes_every_screen_is_answered_without_screen_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """USERNAME ours, integrity right, nothing unknown, PRIORITY there: told inline (no call), answered."""
    verdicts = _screened(monkeypatch)
    s = _checking()
    answer = feed(s, request(), base=LOCAL, remote=("10.0.0.2", 2000), now=0.0)
    assert answer is not None and decode(answer).message_class is MessageClass.SUCCESS
    assert verdicts == []


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"username": "zzzz:bUfr"}, 400),  # not our ufrag
        ({"key": b"not the password"}, 401),  # integrity wrong (after the USERNAME test: 400 before 401)
        ({"username": "zzzz:bUfr", "key": b"not the password"}, 400),
        ({"priority": None}, 400),  # no PRIORITY (RFC 8445 7.2.2)
        ({"extra": [(0x7FAA, b"x")]}, 420),  # an unknown comprehension-required attribute (RFC 8489 6.3.1)
    ],
)
def test_a_check_that_fails_a_screen_is_judged_by_screen_check(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], code: int
) -> None:
    """Any test failing: screen_check decides, once, and its error response is the answer; no state changes."""
    verdicts = _screened(monkeypatch)
    s = _checking()
    answer = feed(s, request(**kwargs), base=LOCAL, remote=("10.0.0.2", 2000), now=0.0)
    assert answer is not None and verdicts == [answer]
    assert decode(answer).get(Attr.ERROR_CODE)[0] == code
    assert s.pairs[0].requests_received == 0 and not s._checklist.triggered


def test_a_keys_hmac_pad_states_are_kept_without_a_gc_tracked_object() -> None:
    """The HMAC-SHA1 pads of each key (an agent's password) are kept as two hash states, which the cyclic
    collector does not track, not as an (inner, outer) tuple it counts and walks; MACs stay RFC 2104's."""
    key = b"a password only this test uses"
    data = bytes(range(40))
    assert _crypto.hmac_sha1(key, data) == hmac.digest(key, data, "sha1")  # the miss, then the hit
    assert _crypto.hmac_sha1(key, data) == hmac.digest(key, data, "sha1")
    caches = [v for name, v in vars(_crypto).items() if name.startswith("SHA1") and isinstance(v, dict)]
    cached = [v for cache in caches for v in cache.values()]
    assert cached and not any(gc.is_tracked(v) for v in cached)


def test_the_pad_cache_is_bounded_and_emptied_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over HMAC_CACHE_SIZE keys both tables are emptied together (docs/security.md bounded state); a key
    sealed with after that gets fresh pads and the right MAC."""
    monkeypatch.setattr(_crypto, "HMAC_CACHE_SIZE", 4)
    monkeypatch.setattr(_crypto, "SHA1_INNER", {})
    monkeypatch.setattr(_crypto, "SHA1_OUTER", {})
    monkeypatch.setattr(_crypto, "_sha1_inner_for", _crypto.SHA1_INNER.get)
    monkeypatch.setattr(_crypto, "_sha1_outer_for", _crypto.SHA1_OUTER.get)
    for i in range(9):
        key = f"key {i}".encode()
        assert _crypto.hmac_sha1(key, b"x") == hmac.digest(key, b"x", "sha1")
        assert 1 <= len(_crypto.SHA1_INNER) == len(_crypto.SHA1_OUTER) <= 4


def test_a_pair_keeps_no_route_tuple() -> None:
    """A pair holds its remote address tuple and no (base, address) tuple besides (one GC-tracked object
    less per pair); `route` is made when read, equal to what it was."""
    s = _checking()
    pair = s.pairs[0]
    assert [o for o in gc.get_referents(pair) if type(o) is tuple] == [pair.remote_address]
    assert pair.route == (LOCAL, ("10.0.0.2", 2000)) == (pair.base, pair.remote_address)


def test_the_connect_path_hashes_no_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pairing, a check received, a check sent and its answer find pairs by route without hashing a
    Candidate (a Python-level __hash__ call each, on every check and answer before)."""
    hashed: list[Candidate] = []
    original = Candidate.__hash__

    def counting(self: Candidate) -> int:
        hashed.append(self)
        return original(self)

    monkeypatch.setattr(Candidate, "__hash__", counting)
    s = _checking()
    assert feed(s, request(), base=LOCAL, remote=("10.0.0.2", 2000), now=0.0) is not None
    t = s.next_check(0.0)
    assert t is not None and t.pair is s.pairs[0]
    feed(s, response_to(t, ("10.0.0.1", 1000)), base=LOCAL, remote=t.remote, now=0.02)
    assert s.pairs[0].valid and hashed == []


def test_pairs_from_several_bases_to_one_address_each_have_their_route() -> None:
    """Two local bases checking one remote address: two routes, each found for its base, and one left
    when the other pair goes (RFC 8445 6.1.2.4 prunes by route, not by address)."""
    other = cand("10.0.0.9", 1009)
    checklist = CheckList(controlling=True)
    remote = cand("10.0.0.2", 2000)
    first, second = sorted(checklist.pair_up([(LOCAL, LOCAL), (other, other)], [remote]), key=lambda p: p.base.port)
    assert checklist.find(LOCAL, ("10.0.0.2", 2000)) is first and checklist.find(other, ("10.0.0.2", 2000)) is second
    assert checklist.sizes()["routes"] == 2 and first in checklist and second in checklist
    assert checklist.pair_up([(other, other)], [remote]) == []  # the route is taken: redundant (6.1.2.4)
    checklist.remove(first)
    assert checklist.find(LOCAL, ("10.0.0.2", 2000)) is None and first not in checklist
    assert checklist.find(other, ("10.0.0.2", 2000)) is second and checklist.sizes()["routes"] == 1
    checklist.remove(second)
    assert checklist.sizes()["routes"] == 0 and checklist.find(other, ("10.0.0.2", 2000)) is None
