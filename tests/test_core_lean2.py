"""What a pair of agents connecting costs the sans-IO core in Python calls (issue 14 item 5 / issue 15 item 3:
1000 agent pairs in one process). Counted with sys.setprofile, never timed; no sockets, no clock.

The packets and events a connect produces are the same as before; what changed is how they are made:
`Transmit` and the per-check events are built without a Python-level constructor, the Ta pacing of a
generation without a process-wide pacer runs inline, and a check is built without keyword matching."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any
from unittest.mock import ANY

import pytest
from test_session import A_PARAMS, A_TB, B_PARAMS, B_TB, cand, tids

from iceagent.config import IceConfig
from iceagent.ice.checks import check_request
from iceagent.ice.events import (
    ConsentRefreshed,
    NominationFailed,
    PairNominated,
    PairRemoved,
    PairStateChanged,
    PairValid,
    Transmit,
    record,
)
from iceagent.ice.generation import IceGeneration
from iceagent.ice.pacing import GlobalPacer, Pacer
from iceagent.ice.pair import CandidatePair, PairState
from iceagent.stun.message import Message

CONFIG = IceConfig(global_pacing=False)
#: Python-level calls per agent for one pair to connect (both sides: pairing, 3 checks and 3 answers, 8
#: events), as `_connect` drives it: 152, then 134-135, then 112.5 (session 10: a check or answer verified in one
#: call, seal and transaction start inline, no closure cells); the bound leaves room for drift.
CALLS_PER_AGENT = 120


def _pair(i: int, pacer: Pacer | None = None) -> tuple[IceGeneration, IceGeneration, Any, Any]:
    a = IceGeneration(
        local=A_PARAMS, controlling=True, tie_breaker=A_TB, config=CONFIG, random_bytes=tids(0xA0), pacer=pacer
    )
    b = IceGeneration(
        local=B_PARAMS, controlling=False, tie_breaker=B_TB, config=CONFIG, random_bytes=tids(0xB0), pacer=pacer
    )
    ca, cb = cand("10.0.0.1", 1000 + i), cand("10.0.0.2", 1000 + i)
    a.add_local_candidate(ca, ca)
    b.add_local_candidate(cb, cb)
    a.gathering_done()
    b.gathering_done()
    return a, b, ca, cb


def _connect(a: IceGeneration, b: IceGeneration, ca: Any, cb: Any, now: float = 1.0) -> list[object]:
    """Drive both generations as the agent does (bench/core_connect.py) until a nominated pair; returns every
    event and every datagram's bytes, in order."""
    a.set_remote_parameters(B_PARAMS)
    b.set_remote_parameters(A_PARAMS)
    a.add_remote_candidate(cb)
    a.add_remote_candidate(None)
    b.add_remote_candidate(ca)
    b.add_remote_candidate(None)
    seen: list[object] = []
    for _ in range(200):
        moved = False
        for g, other, obase in ((a, b, cb), (b, a, ca)):
            if g.get_timer() <= now:
                g.handle_timer(now)
            for t in g.datagrams_to_send(now):
                moved = True
                seen.append(t.data)
                other.receive(Message.decode(t.data), t.data, (t.base.address, t.base.port), obase, now)
            seen.extend(g.take_events())
        if not moved:
            if a.nominated is not None and not a._out and not b._out:
                return seen
            now = max(now, min(a.get_timer(), b.get_timer()))
    raise AssertionError("no nomination")


_HOT = (Transmit, PairStateChanged, PairValid, PairNominated, ConsentRefreshed)


@contextmanager
def _calls() -> Iterator[Counter[str]]:
    """Python-level calls made meanwhile, by function name; a constructor of a hot event class in Python (an
    `__init__` of one of its instances, a `__new__` given the class) counts under "hot constructor" too."""
    counted: Counter[str] = Counter()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            code = frame.f_code
            counted[code.co_name] += 1
            if code.co_name in ("__init__", "__new__") and code.co_argcount:
                first = frame.f_locals.get(code.co_varnames[0])
                if first in _HOT or type(first) in _HOT:
                    counted["hot constructor"] += 1

    sys.setprofile(profile)
    try:
        yield counted
    finally:
        sys.setprofile(None)


def test_a_connect_makes_fewer_python_calls() -> None:
    """Ten pairs connect (regular nomination, RFC 8445 8.1.1) within the per-agent call budget, and every pair
    ends nominated on both sides."""
    pairs = [_pair(i) for i in range(10)]
    for a, b, ca, cb in pairs[:2]:  # warm the compiled STUN layouts, as a busy process has them
        _connect(a, b, ca, cb)
    with _calls() as counted:
        for a, b, ca, cb in pairs[2:]:
            _connect(a, b, ca, cb)
    for a, b, _, _ in pairs:
        assert a.nominated is not None and b.nominated is not None
    per_agent = (sum(counted.values()) - counted["hot constructor"]) / (2 * len(pairs[2:]))
    assert per_agent <= CALLS_PER_AGENT, counted.most_common(20)


def test_packets_and_events_are_made_without_a_python_constructor() -> None:
    """The datagrams and the per-check events of a connect come from `tuple.__new__` (C), not from an
    `__init__`/`__new__` in Python; without a process-wide pacer the Ta pacing asks no method either."""
    a, b, ca, cb = _pair(0)
    with _calls() as counted:
        seen = _connect(a, b, ca, cb)
    kinds = Counter(type(x).__name__ for x in seen)
    assert kinds == {"bytes": 6, "PairStateChanged": 4, "PairValid": 2, "PairNominated": 2}
    assert counted["hot constructor"] == 0
    assert counted["may_send"] == counted["sent"] == 0


def test_a_pacer_still_spaces_the_checks() -> None:
    """With a process-wide pacer the scheduler is asked as before (RFC 8445 14.2): the connect completes, and
    goes through may_send/sent."""
    pacer = GlobalPacer(0.001)
    a, b, ca, cb = _pair(0, pacer)
    with _calls() as counted:
        _connect(a, b, ca, cb)
    assert a.nominated is not None and b.nominated is not None
    assert counted["may_send"] >= 3 and counted["sent"] >= 3


def test_checks_leave_ta_apart_without_a_pacer() -> None:
    """The inline Ta pacing: two ordinary checks of one generation go out Ta (50 ms) apart, not sooner."""
    a = IceGeneration(local=A_PARAMS, controlling=True, tie_breaker=A_TB, config=CONFIG, random_bytes=tids(0xA0))
    base = cand("10.0.0.1", 1000)
    a.add_local_candidate(base, base)
    a.set_remote_parameters(B_PARAMS)
    a.add_remote_candidate(cand("10.0.0.2", 2000))
    a.add_remote_candidate(cand("10.0.0.3", 2000, foundation="other"))
    assert len(a.datagrams_to_send(1.0)) == 1
    assert a.datagrams_to_send(1.049) == []
    assert a.get_timer() == pytest.approx(1.05)
    assert len(a.datagrams_to_send(1.05)) == 1


def test_hot_events_compare_as_before() -> None:
    """The named-tuple events equal only their own class with equal fields (as the attrs classes did), hash
    alike when equal, cannot be changed, and `record` makes the same object as the constructor."""
    pair = CandidatePair(local=cand("10.0.0.1", 1), remote=cand("10.0.0.2", 2))
    assert record(PairValid, (pair,)) == PairValid(pair)
    assert hash(record(PairValid, (pair,))) == hash(PairValid(pair))
    valid: object = PairValid(pair)
    assert valid != PairRemoved(pair) and valid != NominationFailed(pair)
    assert PairValid(pair) != (pair,) and (pair,) != PairValid(pair)
    assert not PairValid(pair) == (pair,) and not (pair,) == PairValid(pair)
    assert PairValid(pair) == ANY and [PairValid(pair)] == [ANY] and not PairValid(pair) != ANY
    assert PairNominated(pair) == PairNominated(pair, None) != PairNominated(pair, pair)
    assert PairStateChanged(pair, PairState.WAITING, PairState.IN_PROGRESS) != PairStateChanged(
        pair, PairState.WAITING, PairState.SUCCEEDED
    )
    assert ConsentRefreshed(pair, 1.0) == ConsentRefreshed(pair, 1.0) != ConsentRefreshed(pair, 2.0)
    t = Transmit(b"x", pair.base, ("10.0.0.2", 2))
    assert t.pair is None and t == record(Transmit, (b"x", pair.base, ("10.0.0.2", 2), None))
    assert repr(t).startswith("Transmit(data=b'x', base=")
    with pytest.raises(AttributeError):
        t.data = b"y"  # type: ignore[misc]


def test_check_request_takes_positional_arguments() -> None:
    """check_request gives the same bytes called positionally (as the session does, once per check) as with
    keywords."""
    kwargs: dict[str, Any] = dict(
        transaction_id=b"t" * 12, local=A_PARAMS, remote=B_PARAMS, priority=5, controlling=True, tie_breaker=A_TB
    )
    assert check_request(b"t" * 12, A_PARAMS, B_PARAMS, 5, True, A_TB, True, 3, b"bPassword0123456789abcd") == (
        check_request(**kwargs, use_candidate=True, nomination=3)
    )
