"""Whole agents over real UDP sockets on loopback: the public API contract end to end."""

from __future__ import annotations

import os
import socket

import pluggy
import pytest
import trio
import trio.testing
from agent_helpers import connect_both, signal
from ipv6 import needs_ipv6

from iceagent import (
    Candidate,
    GatheringState,
    IceConfig,
    IceFailed,
    IceParameters,
    IceState,
    open_agent,
)
from iceagent.hookspecs import hookimpl
from iceagent.ice._requests import REPEATS_PER_PAIR
from iceagent.plugins import create_plugin_manager

LO = ["127.0.0.1"]
FAST = IceConfig(global_pacing=False)



async def test_connect_and_exchange_datagrams() -> None:
    with trio.fail_after(10):
        async with open_agent(controlling=True, host_addresses=LO, config=FAST) as a, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as b:
            sa, sb = await connect_both(a, b)
            assert await a.connect() is sa
            await sa.send(b"ping")
            assert await sb.receive() == b"ping"
            await sb.send(b"pong")
            assert await sa.receive() == b"pong"
            assert a.selected_pair is not None and b.selected_pair is not None
            assert a.selected_pair.local.address == "127.0.0.1"
            assert a.selected_pair.remote.port == b.selected_pair.local.port
            assert a.state.value in (IceState.CONNECTED, IceState.COMPLETED)
            # nomination concludes on both sides
            await a.state.wait_value(IceState.COMPLETED)
            await b.state.wait_value(IceState.COMPLETED)
            assert a.selected_pair.nominated and b.selected_pair.nominated


async def test_gather_yields_host_candidates_and_completes() -> None:
    with trio.fail_after(5):
        async with open_agent(host_addresses=LO, config=FAST) as a:
            cands = [c async for c in a.gather()]
            assert len(cands) == 1
            (c,) = cands
            assert (c.type, c.transport, c.address, c.component) == ("host", "udp", "127.0.0.1", 1)
            assert c.priority == (126 << 24) + (65535 << 8) + 255
            assert a.gathering_state.value is GatheringState.COMPLETE
            assert Candidate.from_sdp(c.to_sdp()) == c
            params = a.local_parameters
            assert len(params.ufrag) >= 4 and len(params.pwd) >= 22
            # gather() replays what was found so far
            assert [x async for x in a.gather()] == cands


@needs_ipv6
async def test_dual_stack_ipv4_and_ipv6() -> None:
    with trio.fail_after(10):
        addrs = ["127.0.0.1", "::1"]
        async with open_agent(host_addresses=addrs, config=FAST) as a, open_agent(
            controlling=False, host_addresses=addrs, config=FAST
        ) as b:
            cands = [c async for c in a.gather()]
            assert {c.address for c in cands} == {"127.0.0.1", "::1"}
            # RFC 8421: IPv6 preferred first, distinct local preferences
            assert len({c.priority for c in cands}) == 2
            sa, sb = await connect_both(a, b)
            await sa.send(b"x")
            assert await sb.receive() == b"x"
            pairs = a.stats()["pairs"]
            # pairs only between same-family candidates
            assert len(pairs) == 2


async def test_trickle_remote_candidates_after_connect_called() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST) as a, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as b:
            streams = {}

            async def conn(k: str, ag: object) -> None:
                streams[k] = await ag.connect()  # type: ignore[attr-defined]

            async with trio.open_nursery() as n:
                n.start_soon(conn, "a", a)
                n.start_soon(conn, "b", b)
                await trio.testing.wait_all_tasks_blocked()
                assert not streams  # nothing to connect to yet: waiting, not failing
                await signal(a, b, end=False)
                await signal(b, a, end=False)
            await streams["a"].send(b"late")
            assert await streams["b"].receive() == b"late"


async def test_end_of_candidates_without_pairs_fails() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST) as a, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as b:
            a.set_remote_parameters(b.local_parameters)
            [c async for c in a.gather()]
            a.add_remote_candidate(None)  # the peer has no candidate at all
            with pytest.raises(IceFailed):
                await a.connect()
            assert a.state.value is IceState.FAILED


async def test_unreachable_remote_candidate_fails_after_timeouts() -> None:
    cfg = IceConfig(global_pacing=False, rto=0.05, rc=3, rm=2)
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=cfg) as a:
            a.set_remote_parameters(IceParameters("abcd", "a" * 22))
            [c async for c in a.gather()]
            # a port nobody listens on
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            a.add_remote_candidate(Candidate("1", 1, "udp", 2130706431, "127.0.0.1", port, "host"))
            a.add_remote_candidate(None)
            with pytest.raises(IceFailed):
                await a.connect()
            (pair,) = a.stats()["pairs"]
            assert pair["state"] == "failed"
            # rc each, of at most REPEATS_PER_PAIR transactions (tests/test_check_repeats.py)
            assert 3 < pair["requests_sent"] <= 3 * REPEATS_PER_PAIR


async def test_close_ends_the_stream() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST) as a, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as b:
            async with open_agent(host_addresses=LO, config=FAST) as c:
                pass
            assert c.state.value is IceState.CLOSED
            sa, sb = await connect_both(a, b)
        with pytest.raises(trio.EndOfChannel):
            await sb.receive()
        with pytest.raises(trio.ClosedResourceError):
            await sa.send(b"after close")


async def test_stats_shape() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST) as a, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as b:
            sa, sb = await connect_both(a, b)
            await sa.send(b"12345")
            assert await sb.receive() == b"12345"
            st = a.stats()
            assert st["state"] in ("connected", "completed")
            assert st["generation"] == 0
            assert st["selected_pair"]["local"].startswith("candidate:")
            (pair,) = st["pairs"]
            assert pair["bytes_sent"] == 5
            assert pair["requests_sent"] >= 1 and pair["responses_received"] >= 1
            assert pair["rtt"] is not None and pair["rtt"] >= 0
            assert st["gatherers"]["host"] == {"state": "done", "candidates": 1, "errors": []}
            assert b.stats()["pairs"][0]["bytes_received"] == 5


async def test_receive_buffer_is_bounded_and_counts_drops() -> None:
    cfg = IceConfig(global_pacing=False, receive_buffer=8)
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=cfg) as a, open_agent(
            controlling=False, host_addresses=LO, config=cfg
        ) as b:
            sa, sb = await connect_both(a, b)
            for i in range(50):
                await sa.send(b"%d" % i)
            # wait until b has seen all 50 (counted on the pair), without reading the stream
            while b.stats()["pairs"][0]["bytes_received"] < sum(len(b"%d" % i) for i in range(50)):
                await trio.testing.wait_all_tasks_blocked(cushion=0.001)
            assert b.stats()["dropped_datagrams"] == 42
            got = [await sb.receive() for _ in range(8)]
            assert got == [b"%d" % i for i in range(8)]  # the oldest kept, newer ones dropped


async def test_restart_keeps_data_flowing_and_reconnects() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST) as a, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as b:
            sa, sb = await connect_both(a, b)
            await a.state.wait_value(IceState.COMPLETED)
            old_pair = a.selected_pair
            old_ufrag = a.local_parameters.ufrag
            await a.restart()
            assert a.generation.value == 1
            assert a.local_parameters.ufrag != old_ufrag
            # the old pair still carries data during the restart (RFC 8445 12.1)
            await sa.send(b"during")
            assert await sb.receive() == b"during"
            # signal the new generation: b sees a new ufrag, so b restarts too
            await signal(a, b)
            assert b.generation.value == 1
            await signal(b, a)
            while a.selected_pair is old_pair or not a.selected_pair.nominated:
                await trio.testing.wait_all_tasks_blocked(cushion=0.001)
            await sa.send(b"after")
            assert await sb.receive() == b"after"
            assert a.selected_pair is not old_pair
            assert a.stats()["generation"] == 1


async def test_garbage_does_not_hurt_the_agent() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST) as a, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as b:
            (ca,) = [c async for c in a.gather()]
            junk = [
                os.urandom(100),
                b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12),  # truncated-looking STUN
                b"\x00\x01\x00\x08\x21\x12\xa4\x42" + os.urandom(12) + b"\x80\x22\x00\x04abcd",
                b"",
            ]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for j in junk * 50:
                    s.sendto(j, (ca.address, ca.port))
            sa, sb = await connect_both(a, b)
            await sa.send(b"still fine")
            assert await sb.receive() == b"still fine"
            # junk from an unknown address is never delivered as data
            assert a.stats()["dropped_datagrams"] == 0


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    @hookimpl
    def iceagent_state_changed(self, agent: object, old: IceState, new: IceState) -> None:
        self.events.append(("state", new))

    @hookimpl
    def iceagent_candidate_gathered(self, agent: object, candidate: Candidate) -> None:
        self.events.append(("candidate", candidate.type))

    @hookimpl
    def iceagent_selected_pair_changed(self, agent: object, pair: object) -> None:
        self.events.append(("selected", pair is not None))

    @hookimpl
    def iceagent_pair_state_changed(self, agent: object, pair: object, old: object, new: object) -> None:
        self.events.append(("pair", new))


async def test_observer_hooks_fire() -> None:
    pm: pluggy.PluginManager = create_plugin_manager(load_entrypoints=False)
    rec = _Recorder()
    pm.register(rec)
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST, plugin_manager=pm) as a, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as b:
            await connect_both(a, b)
            await a.state.wait_value(IceState.COMPLETED)
    kinds = [e[0] for e in rec.events]
    assert ("candidate", "host") in rec.events
    assert ("state", IceState.CHECKING) in rec.events
    assert ("state", IceState.CONNECTED) in rec.events
    assert ("state", IceState.COMPLETED) in rec.events
    assert ("state", IceState.CLOSED) in rec.events
    assert ("selected", True) in rec.events
    assert "pair" in kinds


async def test_bad_options_are_clear() -> None:
    with pytest.raises(ValueError, match="ice_transport_policy"):
        async with open_agent(host_addresses=LO, ice_transport_policy="bogus"):
            pass
