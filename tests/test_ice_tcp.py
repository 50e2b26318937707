"""ICE-TCP (RFC 6544) and its RFC 4571 framing: the framer, the endpoints' limits, whole agents over TCP on
the vnet (MockClock) and on loopback (real sockets)."""

from __future__ import annotations

import errno
import math
from typing import Any

import pytest
import trio
import trio.testing
from agent_helpers import connect_both
from attrs import evolve as attrs_evolve
from hypothesis import given
from hypothesis import strategies as st
from iceagent_vnet import vnet

from iceagent import Candidate, IceConfig, IceParameters, IceState, open_agent
from iceagent.gatherers.tcp import ACTIVE_PORT, TcpGatherer
from iceagent.gatherers.tcp_transport import TcpActiveEndpoint, TcpPassiveEndpoint
from iceagent.ice.pair import PairState
from iceagent.ice.priority import candidate_priority
from iceagent.ice.session import IceSession, NominationFailed
from iceagent.ice.tcp_framing import MAX_FRAME, Deframer, FramingError, encode_frame
from iceagent.net.base import Address, Network, NetworkWrapper, UdpSocket
from iceagent.net.os import OSNetwork
from iceagent.plugins import BUILTIN_PLUGINS
from iceagent.stun.message import Message, MessageClass, Method

LO = ["127.0.0.1"]
FAST = IceConfig(global_pacing=False)


class UdpBlocked(NetworkWrapper):
    """A Network whose UDP is blocked (bind fails): only the TCP candidates exist, as on a UDP-hostile network."""

    async def bind_udp(self, address: str, port: int = 0, *, reuse: bool = False) -> UdpSocket:
        raise OSError(errno.EACCES, "UDP is blocked on this network")


def endpoints(agent: Any) -> list[Any]:
    """The ICE-TCP endpoints of an agent's current session."""
    return list(agent._current._connections)


def stun_request() -> bytes:
    return Message(Method.BINDING, MessageClass.REQUEST, transaction_id=b"t" * 12).encode(fingerprint=True)


# ==== RFC 4571 framing ====


def test_encode_frame_literal() -> None:
    assert encode_frame(b"abc") == bytes.fromhex("0003616263")
    assert encode_frame(b"") == bytes.fromhex("0000")
    assert encode_frame(b"x" * MAX_FRAME)[:2] == bytes.fromhex("ffff")
    with pytest.raises(FramingError, match="65535"):
        encode_frame(b"x" * (MAX_FRAME + 1))
    with pytest.raises(FramingError, match="over the 100-byte"):
        encode_frame(b"x" * 101, max_frame=100)


def test_partial_frame_waits_for_the_rest() -> None:
    d = Deframer()
    assert d.feed_frames(bytes.fromhex("00")) == []
    assert d.feed_frames(bytes.fromhex("05 6865")) == []
    assert d.buffered == 4
    assert d.feed_frames(b"ll") == []
    assert d.feed_frames(b"o") == [b"hello"]
    assert d.buffered == 0 and d.frames == 1


def test_frames_split_across_reads_byte_by_byte() -> None:
    wire = encode_frame(b"one") + encode_frame(b"") + encode_frame(b"three")
    d = Deframer()
    out = []
    for i in range(len(wire)):
        out += d.feed_frames(wire[i : i + 1])
    assert out == [b"one", b"", b"three"]


def test_several_frames_in_one_read_and_a_partial_tail() -> None:
    d = Deframer()
    wire = encode_frame(b"a") + encode_frame(b"bb") + encode_frame(b"ccc") + bytes.fromhex("0004") + b"d"
    assert d.feed_frames(wire) == [b"a", b"bb", b"ccc"]
    assert d.buffered == 3
    assert d.feed_frames(b"ddd") == [b"dddd"]


def test_a_length_over_the_limit_is_fatal() -> None:
    d = Deframer(max_frame=1000)
    assert d.feed_frames(encode_frame(b"x" * 1000)) == [b"x" * 1000]
    d.feed(bytes.fromhex("03e9"))  # 1001
    with pytest.raises(FramingError, match="1001"):
        d.next_frame()
    with pytest.raises(ValueError):
        Deframer(max_frame=MAX_FRAME + 1)


def test_garbage_is_read_as_lengths_and_the_stream_stopping_mid_frame_is_an_error() -> None:
    d = Deframer()
    # garbage has no frame boundaries to find: "GET /" is a 18245-byte frame that never completes
    assert d.feed_frames(b"GET / HTTP/1.1\r\n") == []
    with pytest.raises(FramingError, match="ended 16 bytes into"):
        d.end()
    ok = Deframer()
    ok.feed_frames(encode_frame(b"done"))
    ok.end()


@given(st.lists(st.binary(max_size=300), max_size=20), st.lists(st.integers(1, 50), min_size=1, max_size=50))
def test_any_split_gives_the_same_frames(packets: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(encode_frame(p) for p in packets)
    d = Deframer()
    out: list[bytes] = []
    pos, i = 0, 0
    while pos < len(wire):
        n = cuts[i % len(cuts)]
        out += d.feed_frames(wire[pos : pos + n])
        pos += n
        i += 1
    assert out == packets and d.buffered == 0


# ==== candidates and priorities (RFC 6544 4) ====


def test_tcp_gatherer_is_a_builtin_plugin() -> None:
    assert "iceagent.gatherers.tcp" in BUILTIN_PLUGINS


async def test_gathers_passive_and_active_candidates_on_loopback() -> None:
    with trio.fail_after(5):
        async with open_agent(host_addresses=LO, tcp=True, config=FAST) as a:
            cands = [c async for c in a.gather()]
    by_kind = {(c.transport, c.tcptype): c for c in cands}
    assert set(by_kind) == {("udp", None), ("tcp", "passive"), ("tcp", "active")}
    udp, passive, active = by_kind["udp", None], by_kind["tcp", "passive"], by_kind["tcp", "active"]
    assert active.port == ACTIVE_PORT == 9 and passive.port not in (0, 9)
    # local preference 2^13 * direction-pref + other-pref: active 6, passive 4 (RFC 6544 4.2)
    assert active.priority == candidate_priority("host", 1, local_pref=6 * 8192 + 8191)
    assert passive.priority == candidate_priority("host", 1, local_pref=4 * 8192 + 8191)
    assert udp.priority > active.priority > passive.priority  # UDP first, TCP the fallback
    # foundations tell transports apart (RFC 8445 5.1.1.3); SDP round trip keeps tcptype (RFC 6544 4.5)
    assert active.foundation == passive.foundation != udp.foundation
    assert active.to_sdp().endswith("typ host tcptype active")
    assert Candidate.from_sdp(passive.to_sdp()) == passive


async def test_other_pref_tells_addresses_apart(autojump_clock: object) -> None:
    scenario = vnet("none", "none")
    host = scenario.host_a
    host.attach(scenario.internet, "203.0.113.77")
    addresses = list(host.addresses)
    assert len(addresses) == 2
    async with open_agent(host_addresses=addresses, tcp=True, network=scenario.network_a) as a:
        cands = [c async for c in a.gather() if c.transport == "tcp"]
    actives = sorted(c.priority for c in cands if c.tcptype == "active")
    assert len(actives) == 2 and actives[0] != actives[1]
    assert {p >> 8 & 0xFFFF for p in actives} == {6 * 8192 + 8191, 6 * 8192 + 8190}


async def test_no_tcp_candidates_with_mdns_or_relay_only() -> None:
    with trio.fail_after(5):
        async with open_agent(host_addresses=LO, tcp=True, mdns=True, config=FAST) as a:
            cands = [c async for c in a.gather()]
            assert not [c for c in cands if c.transport == "tcp"]
            assert "reveal the host address" in a.stats()["gatherers"]["tcp"]["errors"][0]
    assert TcpGatherer.kind == "tcp"


# ==== the sans-IO session: a connection that breaks (RFC 6544 7.1) ====


def _tcp(address: str, port: int, tcptype: str, priority: int = 1000) -> Candidate:
    return Candidate(foundation="f", component=1, transport="tcp", priority=priority, address=address,
                     port=port, type="host", tcptype=tcptype)


def test_route_failed_fails_the_check_at_once_and_nomination_moves_on() -> None:
    local = _tcp("10.0.0.1", 9, "active")
    s = IceSession(local=IceParameters("aaaa", "a" * 22), controlling=True, tie_breaker=1, config=IceConfig())
    s.add_local_candidate(local, local)
    s.set_remote_parameters(IceParameters("bbbb", "b" * 22))
    s.add_remote_candidate(_tcp("10.0.0.2", 5000, "passive"))
    s.add_remote_candidate(None)
    s.local_gathering_done()
    t = s.next_check(0.0)
    assert t is not None and s.get_timer() == 39.5
    (pair,) = s.route_failed(local, ("10.0.0.2", 5000))
    assert pair.state is PairState.FAILED and s.get_timer() is None and s.failed
    # a queued USE-CANDIDATE check on a route that breaks reports a failed nomination
    s2 = IceSession(local=IceParameters("aaaa", "a" * 22), controlling=True, tie_breaker=1, config=IceConfig())
    s2.add_local_candidate(local, local)
    s2.set_remote_parameters(IceParameters("bbbb", "b" * 22))
    s2.add_remote_candidate(_tcp("10.0.0.2", 5000, "passive"))
    (p2,) = s2.pairs
    p2._valid = True
    s2._checklist.valid.append(p2)
    assert s2.nominate(p2)
    s2.route_failed(local, ("10.0.0.2", 5000))
    events = []
    while (e := s2.next_event()) is not None:
        events.append(e)
    assert any(isinstance(e, NominationFailed) for e in events)
    assert s2.next_check(1.0) is None


# ==== the endpoints' limits, on the vnet under MockClock ====


async def _passive(scenario: Any, config: IceConfig, nursery: trio.Nursery) -> TcpPassiveEndpoint:
    listener = await scenario.network_b.listen_tcp(scenario.host_b.address, 0)
    endpoint = TcpPassiveEndpoint(listener, config)
    await nursery.start(endpoint.run)
    return endpoint


async def _read_eof(stream: trio.abc.Stream) -> float:
    """Read until the peer closes; returns when (Trio time)."""
    try:
        while await stream.receive_some():
            pass
    except trio.BrokenResourceError:
        pass
    return trio.current_time()


async def test_connection_without_a_check_is_closed_after_the_timeout(autojump_clock: object) -> None:
    scenario = vnet("none", "none")
    config = IceConfig(tcp_check_timeout=10.0)
    async with trio.open_nursery() as nursery:
        passive = await _passive(scenario, config, nursery)
        closed: list[Address] = []
        passive.watch(closed.append)
        start = trio.current_time()
        silent, _ = await scenario.network_a.connect_tcp(passive.local_address)
        half, _ = await scenario.network_a.connect_tcp(passive.local_address)
        await half.send_all(bytes.fromhex("0100") + b"x" * 10)  # stops mid-frame
        assert await _read_eof(silent) - start == pytest.approx(10.0, abs=0.1)
        assert await _read_eof(half) - start == pytest.approx(10.0, abs=0.1)
        await trio.sleep(0.1)
        assert passive.counters["timed_out"] == 2 and passive.connections == []
        assert len(closed) == 2
        nursery.cancel_scope.cancel()


async def test_garbage_and_oversize_frames_close_the_connection(autojump_clock: object) -> None:
    scenario = vnet("none", "none")
    config = IceConfig(tcp_max_frame=1500)
    async with trio.open_nursery() as nursery:
        passive = await _passive(scenario, config, nursery)
        start = trio.current_time()
        garbage, _ = await scenario.network_a.connect_tcp(passive.local_address)
        await garbage.send_all(encode_frame(b"not a STUN check"))
        big, _ = await scenario.network_a.connect_tcp(passive.local_address)
        await big.send_all(bytes.fromhex("ffff"))
        assert await _read_eof(garbage) - start < 1.0
        assert await _read_eof(big) - start < 1.0
        await trio.sleep(0.1)
        assert passive.counters["garbage"] == 1 and passive.counters["oversize"] == 1
        nursery.cancel_scope.cancel()


async def test_a_check_reaches_receive_and_confirm_lifts_the_timeout(autojump_clock: object) -> None:
    scenario = vnet("none", "none")
    async with trio.open_nursery() as nursery:
        passive = await _passive(scenario, IceConfig(tcp_check_timeout=5.0), nursery)
        stream, local = await scenario.network_a.connect_tcp(passive.local_address)
        check = stun_request()
        await stream.send_all(encode_frame(check)[:7])
        await trio.sleep(1)
        await stream.send_all(encode_frame(check)[7:] + encode_frame(check))  # the rest, and another in one write
        assert await passive.receive() == (check, local)
        assert await passive.receive() == (check, local)
        passive.confirm(local)
        await passive.send(b"answer", local)
        d = Deframer()
        assert d.feed_frames(await stream.receive_some()) == [b"answer"]
        await trio.sleep(60)
        assert passive.connections == [local]  # confirmed: no timeout
        await stream.send_all(encode_frame(b"data after the check"))
        assert await passive.receive() == (b"data after the check", local)
        with pytest.raises(FramingError):
            await passive.send(b"x" * 65536, local)
        nursery.cancel_scope.cancel()


async def test_inbound_connections_are_capped(autojump_clock: object) -> None:
    scenario = vnet("none", "none")
    config = IceConfig(tcp_max_inbound=3)
    async with trio.open_nursery() as nursery:
        passive = await _passive(scenario, config, nursery)
        streams = []
        for _ in range(3):
            stream, local = await scenario.network_a.connect_tcp(passive.local_address)
            streams.append((stream, local))
        await trio.sleep(0.1)
        passive.confirm(streams[0][1])  # one sent a valid check
        for _ in range(4):  # four more: each evicts the oldest unchecked one
            stream, local = await scenario.network_a.connect_tcp(passive.local_address)
            streams.append((stream, local))
            await trio.sleep(0.1)
        assert len(passive.connections) == 3
        assert passive.counters["evicted"] == 4 and passive.counters["refused"] == 0
        assert streams[0][1] in passive.connections  # the checked one stays
        for _, local in streams[-2:]:
            passive.confirm(local)
        extra, _ = await scenario.network_a.connect_tcp(passive.local_address)  # all checked: refused
        await _read_eof(extra)
        await trio.sleep(0.1)
        assert passive.counters["refused"] == 1 and len(passive.connections) == 3
        nursery.cancel_scope.cancel()


async def test_active_endpoint_reports_a_refused_connection(autojump_clock: object) -> None:
    scenario = vnet("none", "none")
    async with trio.open_nursery() as nursery:
        active = TcpActiveEndpoint(scenario.network_a, scenario.host_a.address, IceConfig())
        await nursery.start(active.run)
        closed: list[Address] = []
        active.watch(closed.append)
        remote = (scenario.host_b.address, 4444)  # nobody listens
        await active.send(stun_request(), remote)
        await trio.sleep(1)
        assert closed == [remote] and active.connections == []
        nursery.cancel_scope.cancel()


# ==== whole agents on the vnet (MockClock) ====


async def _pair(scenario: Any, *, udp: bool = False, config: IceConfig = FAST, **kw: Any) -> Any:
    na: Network = scenario.network_a if udp else UdpBlocked(scenario.network_a)
    nb: Network = scenario.network_b if udp else UdpBlocked(scenario.network_b)
    return (
        open_agent(controlling=True, tcp=True, network=na, config=config, name="A", **kw),
        open_agent(controlling=False, tcp=True, network=nb, config=config, name="B", **kw),
    )


async def test_tcp_only_on_the_vnet_connects_and_carries_data(autojump_clock: object) -> None:
    scenario = vnet("none", "none", rtt=0.04)
    ctx_a, ctx_b = await _pair(scenario)
    with trio.fail_after(120):
        async with ctx_a as a, ctx_b as b:
            sa, sb = await connect_both(a, b)
            for i in range(20):
                await sa.send(b"a%d" % i)
                await sb.send(b"b%d" % i)
            assert [await sb.receive() for _ in range(20)] == [b"a%d" % i for i in range(20)]
            assert [await sa.receive() for _ in range(20)] == [b"b%d" % i for i in range(20)]
            await a.state.wait_value(IceState.COMPLETED)
            await b.state.wait_value(IceState.COMPLETED)
            pa, pb = a.selected_pair, b.selected_pair
            assert pa is not None and pb is not None
            assert pa.local.transport == pb.local.transport == "tcp"
            assert {pa.local.tcptype, pb.local.tcptype} == {"active", "passive"}
            # the passive side learned the active side's connection as a peer-reflexive candidate
            passive_side = pa if pa.local.tcptype == "passive" else pb
            assert passive_side.remote.type == "prflx" and passive_side.remote.tcptype == "active"
            # only the nominated pair's connection is left open, one on each side
            await trio.sleep(1)
            assert sum(len(e.connections) for e in endpoints(a)) == 1
            assert sum(len(e.connections) for e in endpoints(b)) == 1
            # keepalives and consent keep it up for a while
            await trio.sleep(60)
            assert a.state.value is IceState.COMPLETED and b.state.value is IceState.COMPLETED
            assert pa.consent_requests_sent >= 10
    # nothing leaks: no listener, no connection on either host
    for host in (scenario.host_a, scenario.host_b):
        assert host.tcp.listeners == {} and host.tcp.connections == {}


async def test_tcp_through_a_nat_to_a_public_peer(autojump_clock: object) -> None:
    """A behind a NAT can only be active; B on the internet is passive and learns A's NAT mapping."""
    scenario = vnet("eim-apdf", "none", rtt=0.04)
    ctx_a, ctx_b = await _pair(scenario)
    with trio.fail_after(60):
        async with ctx_a as a, ctx_b as b:
            sa, sb = await connect_both(a, b)
            await sa.send(b"out through the NAT")
            assert await sb.receive() == b"out through the NAT"
            await sb.send(b"and back")
            assert await sa.receive() == b"and back"
            pa, pb = a.selected_pair, b.selected_pair
            assert pa is not None and pb is not None
            assert pa.local.tcptype == "active" and pb.local.tcptype == "passive"
            assert scenario.nat_a is not None and pb.remote.address == scenario.nat_a.public_address


async def test_udp_wins_when_both_work_on_the_vnet(autojump_clock: object) -> None:
    scenario = vnet("none", "none", rtt=0.04)
    ctx_a, ctx_b = await _pair(scenario, udp=True)
    with trio.fail_after(30):
        async with ctx_a as a, ctx_b as b:
            sa, sb = await connect_both(a, b)
            await a.state.wait_value(IceState.COMPLETED)
            await b.state.wait_value(IceState.COMPLETED)
            assert a.selected_pair is not None and b.selected_pair is not None
            assert a.selected_pair.local.transport == b.selected_pair.local.transport == "udp"
            await sa.send(b"over udp")
            assert await sb.receive() == b"over udp"
            await trio.sleep(1)
            assert all(e.connections == [] for e in endpoints(a) + endpoints(b))  # TCP losers closed


async def test_broken_connection_of_the_selected_pair_fails_fast(autojump_clock: object) -> None:
    scenario = vnet("none", "none", rtt=0.04)
    ctx_a, ctx_b = await _pair(scenario)
    with trio.fail_after(60):
        async with ctx_a as a, ctx_b as b:
            await connect_both(a, b)
            await a.state.wait_value(IceState.COMPLETED)
            await b.state.wait_value(IceState.COMPLETED)
            pb = b.selected_pair
            assert pb is not None
            (endpoint,) = [e for e in endpoints(b) if e.connections]
            start = trio.current_time()
            endpoint.close_connection(pb.remote_address)  # B drops it: A sees the connection end
            await a.state.wait_value(IceState.FAILED)
            assert trio.current_time() - start < 1.0  # not the 30 s consent timeout
            assert a.selected_pair is None


async def test_tcp_only_fails_fast_when_nobody_listens(autojump_clock: object) -> None:
    scenario = vnet("none", "none")
    ctx_a, _ = await _pair(scenario)
    with trio.fail_after(60):
        async with ctx_a as a:
            [c async for c in a.gather()]
            a.set_remote_parameters(IceParameters("remo", "r" * 22))
            a.add_remote_candidate(_tcp(scenario.host_b.address, 5555, "passive", 1 << 30))
            a.add_remote_candidate(None)
            start = trio.current_time()
            await a.state.wait_value(IceState.FAILED)
            assert trio.current_time() - start < 1.0  # refused at once, not the 39.5 s check timeout


async def test_restart_over_tcp(autojump_clock: object) -> None:
    scenario = vnet("none", "none", rtt=0.04)
    ctx_a, ctx_b = await _pair(scenario)
    with trio.fail_after(60):
        async with ctx_a as a, ctx_b as b:
            sa, sb = await connect_both(a, b)
            await a.restart()
            await connect_both(a, b)
            await a.state.wait_value(IceState.COMPLETED)
            assert a.generation.value == 1 and b.generation.value == 1
            await sa.send(b"after restart")
            assert await sb.receive() == b"after restart"
            await trio.sleep(IceConfig().restart_linger + 1)  # the old generation lingers, then closes
            assert len(a._runners) == 1  # the old generation closed its listeners and connections
            hosts_open = sum(len(v) for v in scenario.host_a.tcp.listeners.values())
            assert hosts_open == 1  # one passive candidate, the new generation's


# ==== whole agents over real TCP on loopback ====


async def test_loopback_tcp_only_both_ways_and_large_datagrams() -> None:
    with trio.fail_after(20):
        net = UdpBlocked(OSNetwork())
        async with open_agent(controlling=True, host_addresses=LO, tcp=True, network=net, config=FAST) as a, \
                open_agent(controlling=False, host_addresses=LO, tcp=True, network=net, config=FAST) as b:
            sa, sb = await connect_both(a, b)
            big = bytes(range(256)) * 255  # 65280 bytes: one RFC 4571 frame
            await sa.send(big)
            await sb.send(b"pong")
            assert await sb.receive() == big
            assert await sa.receive() == b"pong"
            for i in range(100):  # queued without waiting (at most SEND_QUEUE = 128 frames; more are dropped)
                sa.send_nowait(b"%d" % i)
            assert [await sb.receive() for _ in range(100)] == [b"%d" % i for i in range(100)]  # TCP: in order
            with pytest.raises(FramingError):
                await sa.send(b"x" * 65536)
            await a.state.wait_value(IceState.COMPLETED)
            await b.state.wait_value(IceState.COMPLETED)
            pa = a.selected_pair
            assert pa is not None and pa.local.transport == "tcp" and pa.nominated
            stats = a.stats()
            assert " tcp " in stats["selected_pair"]["local"]
            assert stats["gatherers"]["tcp"]["candidates"] == 2
            assert stats["gatherers"]["host"]["errors"]  # UDP was blocked


async def test_loopback_udp_wins_and_tcp_connections_close() -> None:
    with trio.fail_after(20):
        async with open_agent(controlling=True, host_addresses=LO, tcp=True, config=FAST) as a, \
                open_agent(controlling=False, host_addresses=LO, tcp=True, config=FAST) as b:
            sa, sb = await connect_both(a, b)
            await a.state.wait_value(IceState.COMPLETED)
            await b.state.wait_value(IceState.COMPLETED)
            assert a.selected_pair is not None and a.selected_pair.local.transport == "udp"
            assert b.selected_pair is not None and b.selected_pair.local.transport == "udp"
            await sb.send(b"udp")
            assert await sa.receive() == b"udp"
            await trio.sleep(0.5)  # the losers' connections close as nomination concludes on each side
            assert not any(e.connections for e in endpoints(a) + endpoints(b))


async def test_loopback_tcp_against_udp_only_peer_uses_udp() -> None:
    """A peer without tcp=True: the TCP candidates pair with nothing, UDP connects as before."""
    with trio.fail_after(20):
        async with open_agent(controlling=True, host_addresses=LO, tcp=True, config=FAST) as a, \
                open_agent(controlling=False, host_addresses=LO, config=FAST) as b:
            sa, sb = await connect_both(a, b)
            await sa.send(b"x")
            assert await sb.receive() == b"x"
            assert a.selected_pair is not None and a.selected_pair.local.transport == "udp"
            assert math.isfinite(a.stats()["pairs"][0]["requests_sent"])


def test_a_passive_candidate_waits_for_the_active_peer_instead_of_failing() -> None:
    """No pair can be formed (our passive vs their active), yet the peer will connect: not hopeless."""
    local = _tcp("10.0.0.1", 5000, "passive")
    s = IceSession(local=IceParameters("aaaa", "a" * 22), controlling=True, tie_breaker=1, config=IceConfig())
    s.add_local_candidate(local, local)
    s.set_remote_parameters(IceParameters("bbbb", "b" * 22))
    s.add_remote_candidate(_tcp("10.0.0.2", 9, "active"))
    s.add_remote_candidate(None)
    s.local_gathering_done()
    assert s.pairs == [] and not s.failed
    # whereas two passive candidates can never meet: failed at once
    s2 = IceSession(local=IceParameters("aaaa", "a" * 22), controlling=True, tie_breaker=1, config=IceConfig())
    s2.add_local_candidate(local, local)
    s2.set_remote_parameters(IceParameters("bbbb", "b" * 22))
    s2.add_remote_candidate(_tcp("10.0.0.2", 5001, "passive"))
    s2.add_remote_candidate(None)
    s2.local_gathering_done()
    assert s2.failed


# ==== the command line: --tcp end to end ====


async def test_cli_offer_answer_over_tcp_only() -> None:
    """`iceagent offer --tcp` / `answer --tcp`, with the UDP candidates taken out of both blobs on the way:
    the chat runs over an ICE-TCP pair."""
    from test_cli_peer import LO as CLI_LO
    from test_cli_peer import iceagent

    from iceagent.cli.signal_blob import SignalBlob

    def tcp_only(line: bytes) -> bytes:
        blob = SignalBlob.decode(line.decode().strip())
        kept = tuple(c for c in blob.candidates if c.transport == "tcp")
        assert {c.tcptype for c in kept} == {"active", "passive"}
        return attrs_evolve(blob, candidates=kept).encode().encode()

    with trio.fail_after(40):
        async with iceagent("offer", *CLI_LO, "--tcp") as offer:
            blob = tcp_only(await offer.line())
            async with iceagent("answer", *CLI_LO, "--tcp", blob.decode()) as answer:
                await offer.send(tcp_only(await answer.line()) + b"\nover tcp\n")
                assert await answer.line() == b"over tcp"
                await answer.send(b"and back\n")
                assert await offer.line() == b"and back"
                await offer.close_stdin()
                offer_status, offer_err = await offer.finish()
                answer_status, answer_err = await answer.finish()
    assert offer_status == 0 and answer_status == 0, offer_err + answer_err
    assert "connected in " in offer_err and " tcp " in offer_err, offer_err
