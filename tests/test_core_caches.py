"""What the sans-IO core keeps instead of working it out on every pump (issue 15: calls per connect) always
equals the answer worked out from scratch: two IceGenerations checking each other over a lossy, reordering
path with literal times, every cached answer compared with a recount after every step. No sockets, no clock."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from test_session import A_PARAMS, A_TB, B_PARAMS, B_TB, cand, tids

from iceagent.config import IceConfig
from iceagent.ice.candidate import Candidate
from iceagent.ice.generation import IceGeneration
from iceagent.ice.pair import PairState
from iceagent.stun.message import Message
from iceagent.stun.transaction import TransactionState

Address = tuple[str, int]


def reference_timer(gen: IceGeneration) -> float:
    """`get_timer()` as the generation computed it before it kept anything: every part asked in full."""
    if gen._out:
        return -math.inf
    session = gen.session
    checklist = session._checklist
    transactions = [r.transaction for r in session._requests._by_id.values()]
    pending = [t._deadline() for t in transactions if t.state is TransactionState.PENDING]
    checks_over = session.completed and not session.renomination
    wants = (
        session.remote_parameters is not None
        and not session.local_parameters.lite
        and (
            bool(checklist.triggered) or (not checks_over and (checklist.has_sendable or session._requests.has_repeat))
        )
    )
    return min(
        gen._gather_deadline,
        gen.nomination.deadline(session),
        gen.scheduler.deadline(wants),
        gen._alternates_at,
        min(pending, default=math.inf),
    )


def check_caches(gen: IceGeneration) -> None:
    session = gen.session
    checklist = session._checklist
    pairs = checklist.pairs
    kept = (PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS, PairState.FAILED)
    assert checklist.counts() == tuple(sum(p.state is s for p in pairs) for s in kept)
    assert checklist.busy == sum(p.state in (PairState.WAITING, PairState.IN_PROGRESS) for p in pairs)
    for request in session._requests._by_id.values():
        t = request.transaction
        assert t.get_timer() == (t._deadline() if t.state is TransactionState.PENDING else None)
    timers = [t for r in session._requests._by_id.values() if (t := r.transaction.get_timer()) is not None]
    assert session.get_timer() == min(timers, default=None)
    nomination = gen.nomination
    if not (nomination.awake and session.controlling and (nomination.nominated is None or session.renomination)):
        assert nomination.deadline(session) == math.inf  # what the generation skips asking
    assert gen.get_timer() == reference_timer(gen)


def candidates(side: int, n: int) -> list[Candidate]:
    return [cand(f"10.0.{side}.{i + 1}", 1000 * side + i, foundation=f"f{side}{i}") for i in range(n)]


SCENARIOS = {
    "seed": st.integers(0, 2**32 - 1),
    "loss": st.sampled_from([0.0, 0.2, 0.5]),
    "n_a": st.integers(1, 3),
    "n_b": st.integers(1, 3),
    "both_controlling": st.booleans(),
    "renomination": st.booleans(),
    "lite_b": st.booleans(),
}


@settings(max_examples=60, deadline=None)
@given(**SCENARIOS)
def test_kept_answers_match_a_recount_through_a_lossy_connect(
    seed: int, loss: float, n_a: int, n_b: int, both_controlling: bool, renomination: bool, lite_b: bool
) -> None:
    connect(seed, loss, n_a, n_b, both_controlling, renomination, lite_b, check=check_caches)


@settings(max_examples=30, deadline=None)
@given(**SCENARIOS)
def test_take_events_gives_what_next_event_gives(
    seed: int, loss: float, n_a: int, n_b: int, both_controlling: bool, renomination: bool, lite_b: bool
) -> None:
    """`take_events()` drains the queue in one call: the same events, in the same order, as `next_event()`
    until None, whatever the connect went through."""
    scenario = (seed, loss, n_a, n_b, both_controlling, renomination, lite_b)
    one_by_one = connect(*scenario, take=False)
    at_once = connect(*scenario, take=True)
    assert at_once == one_by_one and one_by_one


def connect(
    seed: int,
    loss: float,
    n_a: int,
    n_b: int,
    both_controlling: bool,
    renomination: bool,
    lite_b: bool,
    *,
    check: Callable[[IceGeneration], None] = lambda gen: None,
    take: bool = False,
) -> list[str]:
    """Two generations checking each other over a path that drops `loss` of the datagrams and delays each
    by up to 0.2 s, until both nominated (or 60 s); `check` runs after every step. Returns every event
    drained (as its repr at the time), by `take_events()` or `next_event()`."""
    rng = random.Random(seed)
    config = IceConfig(renomination=renomination)
    b_params = B_PARAMS.__class__(ufrag=B_PARAMS.ufrag, pwd=B_PARAMS.pwd, lite=lite_b)
    a = IceGeneration(local=A_PARAMS, controlling=True, tie_breaker=A_TB, config=config, random_bytes=tids(0xA0))
    b = IceGeneration(
        local=b_params,
        controlling=both_controlling and not lite_b,
        tie_breaker=B_TB,
        config=config,
        random_bytes=tids(0xB0),
    )
    locals_ = {id(a): candidates(1, n_a), id(b): candidates(2, n_b)}
    owner: dict[Address, tuple[IceGeneration, Candidate]] = {}
    for gen in (a, b):
        gen.start_gathering(0.0)
        for c in locals_[id(gen)]:
            gen.add_local_candidate(c, c)
            owner[(c.address, c.port)] = (gen, c)
        gen.gathering_done()
        check(gen)
    a.set_remote_parameters(b.session.local_parameters)
    b.set_remote_parameters(a.session.local_parameters)
    for gen, other in ((a, b), (b, a)):
        for c in locals_[id(other)]:
            gen.add_remote_candidate(c)
            check(gen)
        gen.add_remote_candidate(None)
        check(gen)
    wire: list[tuple[float, int, bytes, Address, Address]] = []  # (arrival, order, data, from, to)
    order = itertools.count()
    drained: list[str] = []
    now = 0.0
    for _ in range(400):
        for gen in (a, b):
            gen.handle_timer(now)
            check(gen)
            for t in gen.datagrams_to_send(now):
                if rng.random() >= loss:
                    src = (t.base.address, t.base.port)
                    heapq.heappush(wire, (now + rng.uniform(0.001, 0.2), next(order), t.data, src, t.remote))
            check(gen)
            if take:
                drained += [f"{gen is a} {e!r}" for e in gen.take_events()]
            else:
                while (e := gen.next_event()) is not None:
                    drained.append(f"{gen is a} {e!r}")
        if a.nominated is not None and b.nominated is not None and not wire:
            break
        due = [t for t in (a.get_timer(), b.get_timer()) if t > now]
        if wire:
            due.append(wire[0][0])
        if not due or min(due) > 60.0:
            break
        now = min(due)
        while wire and wire[0][0] <= now:
            _, _, data, src, dst = heapq.heappop(wire)
            gen, base = owner[dst]
            gen.receive(Message.decode(data), data, src, base, now)
            check(gen)
    return drained
