"""What an idle agent keeps (issue 15, bench/scale.py): tables that are empty between uses take no room.

Counted in bytes (sys.getsizeof, tracemalloc), never timed."""

from __future__ import annotations

import sys
import tracemalloc
from typing import Any

from iceagent.agent._stun_requests import StunRequests
from iceagent.config import IceConfig
from iceagent.ice._requests import Request, Requests
from iceagent.ice.candidate import Candidate
from iceagent.ice.pair import CandidatePair


def _host(address: str, port: int) -> Candidate:
    return Candidate(foundation="1", component=1, transport="udp", priority=2130706431, address=address, port=port,
                     type="host")


def test_requests_table_shrinks_back_once_the_last_request_is_answered() -> None:
    """A session's requests table grows during checks; once the last is answered it is as small as a new one
    (an emptied dict keeps its grown table, 224 bytes, in every idle agent otherwise)."""
    pair = CandidatePair(local=_host("10.0.0.1", 1), remote=_host("10.0.0.2", 2))
    requests = Requests()
    config = IceConfig()
    tids = [bytes([i]) * 12 for i in range(6)]
    for i, tid in enumerate(tids):
        requests.start(b"x", tid, float(i), config,
                       Request(pair=pair, key=b"k", priority=1, controlling=True, use_candidate=False, consent=False))
    assert len(requests) == 6
    for tid in tids:
        assert requests.pop(tid) is not None
    assert len(requests) == 0 and requests.get(tids[0]) is None
    assert sys.getsizeof(requests._by_id) == sys.getsizeof({})


def test_stun_requests_allocate_their_tables_only_while_a_transaction_waits() -> None:
    """StunRequests (one per session) holds no dict while no gatherer transaction waits: it still delivers,
    notes strays and forgets them on close."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        many = [StunRequests() for _ in range(1000)]
        per_object = (tracemalloc.get_traced_memory()[0] - before) / len(many)
    finally:
        tracemalloc.stop()
    assert per_object < 100  # was about 190 bytes: the object and two empty dicts

    requests = many[0]
    tid = b"t" * 12
    from iceagent.stun.message import Message, MessageClass, Method

    answers = requests.open(tid, ("192.0.2.1", 3478))
    response = Message(Method.BINDING, MessageClass.SUCCESS, tid)
    assert requests.deliver(response, ("192.0.2.9", 3478))  # ours, from elsewhere: a stray
    assert requests.stray(tid) == ("192.0.2.9", 3478)
    assert requests.deliver(response, ("192.0.2.1", 3478))
    assert answers.receive_nowait() is response
    assert len(requests) == 2
    requests.close(tid)
    assert len(requests) == 0 and requests.stray(tid) is None
    assert not requests.deliver(response, ("192.0.2.1", 3478))


def test_candidate_set_and_connections_make_their_rare_tables_on_first_use() -> None:
    """CandidateSet's prflx-per-source counts and mDNS-resolved set, and Connections' table (ICE-TCP only),
    take no room until used; then they work as before."""
    from iceagent.agent._connections import Connections
    from iceagent.ice.candidate_set import CandidateSet, RemoteAdded

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sets = [CandidateSet() for _ in range(200)]
        conns = [Connections() for _ in range(200)]
        per_pair = (tracemalloc.get_traced_memory()[0] - before) / 200
    finally:
        tracemalloc.stop()
    assert per_pair < 330  # was about 460 bytes: three empty dicts more
    assert list(conns[0]) == [] and list(conns[0].items()) == [] and conns[0].get(None) is None

    cands = sets[0]
    base = _host("10.0.0.1", 1)
    cands.add_local(base, base)
    resolved = _host("10.0.0.7", 7)
    assert not cands.from_mdns(resolved)
    assert cands.add_remote(resolved, mdns=True) == (RemoteAdded.NEW, None)
    assert cands.from_mdns(resolved)
    assert cands.sizes()["from_mdns"] == 1
    relay = Candidate(foundation="r", component=1, transport="udp", priority=5, address="10.0.0.9", port=9,
                      type="relay")
    assert cands.remotes_for(relay) == []  # never pair a resolved name with a relay (draft 3.3.2)
    assert cands.sizes()["prflx_sources"] == 0
    assert cands.learn_remote(base, ("10.0.0.8", 8), 100) is not None
    assert cands.sizes()["prflx_sources"] == 1


def test_unusable_address_parses_each_address_once(monkeypatch: object) -> None:
    """Every remote candidate, check source and learned prflx candidate is judged by `unusable_address`; the
    IP parse behind it (the costliest step of handling a check) runs once per distinct address, in a bounded
    cache, and the verdicts stay the same."""
    import pytest

    from iceagent.ice import candidate as candidate_module

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    parsed: list[str] = []
    real = candidate_module.parse_ip

    def counting(host: str):  # type: ignore[no-untyped-def]
        parsed.append(host)
        return real(host)

    monkeypatch.setattr(candidate_module, "parse_ip", counting)
    candidate_module._unusable_ip.cache_clear()
    for _ in range(50):
        assert candidate_module.unusable_address("192.0.2.1", 5000) is None
        assert candidate_module.unusable_address("192.0.2.1", 0) == "port-0"
        assert candidate_module.unusable_address("224.0.0.251", 5353) == "multicast"
        assert candidate_module.unusable_address("::ffff:0.0.0.0", 1) == "unspecified"
        assert candidate_module.unusable_address("peer.local", 1) is None
    assert sorted(parsed) == sorted(["192.0.2.1", "224.0.0.251", "::ffff:0.0.0.0", "peer.local"])
    for i in range(1000):
        candidate_module.unusable_address(f"10.0.{i // 256}.{i % 256}", 1)
    assert candidate_module._unusable_ip.cache_info().currsize <= 256
    candidate_module._unusable_ip.cache_clear()


async def test_an_idle_receive_task_holds_no_batch() -> None:
    """The task serving a socket (the session task, for the first one) waiting for the next batch does not
    keep the last one (its datagrams, addresses and list) alive: every idle agent would carry it."""
    import trio
    import trio.testing
    from agent_helpers import connect_both

    from iceagent import open_agent

    config = IceConfig(global_pacing=False)
    with trio.fail_after(10):
        async with (
            open_agent(host_addresses=["127.0.0.1"], config=config, name="hold-a") as a,
            open_agent(controlling=False, host_addresses=["127.0.0.1"], config=config, name="hold-b") as b,
        ):
            sa, sb = await connect_both(a, b)
            await sa.send(b"one datagram")
            assert await sb.receive() == b"one datagram"
            await trio.testing.wait_all_tasks_blocked()
            receivers = []
            stack = [trio.lowlevel.current_root_task()]
            while stack:
                task = stack.pop()
                if task.name.startswith("session-hold-"):
                    receivers.append(task)
                for nursery in task.child_nurseries:
                    stack.extend(nursery.child_tasks)
            assert receivers
            for task in receivers:
                coro: Any = task.coro
                frames = []
                while coro is not None and getattr(coro, "cr_frame", None) is not None:
                    frames.append(coro.cr_frame)
                    coro = coro.cr_await
                assert any(frame.f_code.co_name == "_drive" for frame in frames)
                assert all("items" not in frame.f_locals for frame in frames)
