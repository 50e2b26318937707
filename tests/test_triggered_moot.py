"""A triggered check made moot (RFC 8445 7.3.1.4): when the cancelled check of a pair is answered after all, the
pair is Succeeded and its queued triggered check is taken off the queue at once, so no timer is set for it."""

from __future__ import annotations

from test_session import cand

from iceagent.config import IceConfig
from iceagent.ice.candidate import IceParameters
from iceagent.ice.generation import IceGeneration
from iceagent.ice.pair import PairState
from iceagent.stun.message import Message

CONFIG = IceConfig(global_pacing=False)


def _pair() -> tuple[tuple[IceGeneration, object], tuple[IceGeneration, object]]:
    pa = IceParameters(ufrag="aaaa", pwd="aPassword0123456789abcd")
    pb = IceParameters(ufrag="bbbb", pwd="bPassword0123456789abcd")
    a = IceGeneration(local=pa, controlling=True, tie_breaker=1, config=CONFIG)
    b = IceGeneration(local=pb, controlling=False, tie_breaker=2, config=CONFIG)
    ca, cb = cand("127.0.0.1", 10000), cand("127.0.0.1", 20000)
    for gen, local in ((a, ca), (b, cb)):
        gen.add_local_candidate(local, local)
        gen.gathering_done()
    a.set_remote_parameters(pb)
    b.set_remote_parameters(pa)
    a.add_remote_candidate(cb)
    a.add_remote_candidate(None)
    b.add_remote_candidate(ca)
    b.add_remote_candidate(None)
    return (a, ca), (b, cb)


def _deliver(to: IceGeneration, base: object, transmit: object, now: float) -> None:
    data = transmit.data  # type: ignore[attr-defined]
    to.receive(Message.decode(data), data, transmit.base.addr, base, now)  # type: ignore[attr-defined, arg-type]


def test_a_cancelled_check_answered_after_all_leaves_no_triggered_check_queued() -> None:
    (a, ca), (b, cb) = _pair()
    now = 1.0
    (b_check,) = b.datagrams_to_send(now)  # b's ordinary check is in flight
    (a_check,) = a.datagrams_to_send(now)
    _deliver(b, cb, a_check, now)  # b cancels its check, queues a triggered one (7.3.1.4), answers a
    (b_answer,) = b.datagrams_to_send(now)
    (b_pair,) = b.session.pairs
    assert b_pair in b.session._checklist.triggered
    _deliver(a, ca, b_check, now)  # a answers b's cancelled check
    a_out = a.datagrams_to_send(now)
    a_answer = next(t for t in a_out if t.data[:2] == b"\x01\x01")
    _deliver(b, cb, a_answer, now + 0.001)  # ... and the answer makes b's pair Succeeded
    _deliver(a, ca, b_answer, now + 0.001)
    assert b_pair.state is PairState.SUCCEEDED
    assert b_pair not in b.session._checklist.triggered
    timer = b.get_timer()
    assert timer is None or timer > now + 1, timer  # no wake-up at Ta for a check that would not be sent
    assert b.datagrams_to_send(now + 0.06) == []
