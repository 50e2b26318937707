"""Time-dependent agent behaviour under MockClock on the vnet (issues 3 and 4): pacing, consent, timers.

Every agent's UDP traffic goes through a tap (TapNetwork), so the tests read exact Trio timestamps of
what went on the wire: the first check at once, new checks every Ta, a=ice-pacing, the process-wide
5 ms pacer, consent checks at 0.8-1.2 x consent_interval, and the DISCONNECTED / FAILED timers.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import attrs
import pytest
import trio
from iceagent_vnet import Host, Internet, Link, vnet
from nat_matrix_tools import connect_pair, open_pair, roundtrip

from iceagent import (
    Agent,
    Candidate,
    GatheringState,
    IceConfig,
    IceFailed,
    IceParameters,
    IceServer,
    IceState,
    open_agent,
)
from iceagent.hookspecs import hookimpl
from iceagent.net.base import Network, NetworkWrapper, UdpSocket
from iceagent.plugins import create_plugin_manager
from iceagent.stun import Attr, Message, MessageClass, Method, StunDecodeError

# ---- a packet tap for timing tests ----


@attrs.frozen
class Sent:
    """One datagram an agent sent or received, at Trio time `at`."""

    at: float
    direction: str  # "out" or "in"
    local: tuple[str, int]
    remote: tuple[str, int]
    data: bytes

    def stun(self) -> Message | None:
        try:
            return Message.decode(self.data)
        except StunDecodeError:
            return None


class TapSocket:
    """A UdpSocket that records what goes through it (only the UdpSocket protocol: no fast paths)."""

    def __init__(self, sock: UdpSocket, log: list[Sent]) -> None:
        self._sock = sock
        self._log = log

    @property
    def local_address(self) -> tuple[str, int]:
        return self._sock.local_address

    async def send(self, data: bytes, remote: tuple[str, int]) -> None:
        self._log.append(Sent(trio.current_time(), "out", self.local_address, remote, bytes(data)))
        await self._sock.send(data, remote)

    async def receive(self) -> tuple[bytes, tuple[str, int]]:
        data, remote = await self._sock.receive()
        self._log.append(Sent(trio.current_time(), "in", self.local_address, remote, bytes(data)))
        return data, remote

    def close(self) -> None:
        self._sock.close()


class TapNetwork(NetworkWrapper):
    """A Network that hands out TapSockets: `log` is every datagram the agent's UDP sockets moved."""

    def __init__(self, network: Network) -> None:
        super().__init__(network)
        self.log: list[Sent] = []

    async def bind_udp(self, address: str, port: int = 0, *, reuse: bool = False) -> UdpSocket:
        return TapSocket(await self.inner.bind_udp(address, port, reuse=reuse), self.log)

    async def join_multicast(self, sock: UdpSocket, group: str, interface_address: str) -> None:
        inner = sock._sock if isinstance(sock, TapSocket) else sock
        await self.inner.join_multicast(inner, group, interface_address)

    def requests(self, *, checks: bool = True) -> list[tuple[Sent, Message]]:
        """The first transmission of every Binding request sent: ICE checks/consent (with USERNAME) if
        `checks`, else the others (STUN server queries). Retransmissions (same transaction) left out."""
        seen: set[bytes] = set()
        out = []
        for sent in self.log:
            if sent.direction != "out":
                continue
            msg = sent.stun()
            if msg is None or msg.message_class is not MessageClass.REQUEST or msg.transaction_id in seen:
                continue
            seen.add(msg.transaction_id)
            if (Attr.USERNAME in msg) == checks:
                out.append((sent, msg))
        return out


NO_GLOBAL = IceConfig(global_pacing=False)  # isolates Ta from the process-wide pacer
EPS = 1e-9


def unreachable(n: int, *, port: int = 9) -> list[Candidate]:
    """n host candidates nobody answers for (no such host on the vnet), above any real host priority."""
    return [
        Candidate(foundation=f"x{i}", component=1, transport="udp", priority=2130706431 + 100 + i,
                  address=f"198.51.100.{200 + i}", port=port, type="host")
        for i in range(n)
    ]


async def gathered(agent: Agent) -> list[Candidate]:
    await agent.gathering_state.wait_value(GatheringState.COMPLETE)
    return [c async for c in agent.gather()]


def give(src_params: IceParameters, candidates: Sequence[Candidate], dst: Agent) -> None:
    """Signal parameters, candidates and end-of-candidates to dst, all at this instant (no await)."""
    dst.set_remote_parameters(src_params)
    for cand in candidates:
        dst.add_remote_candidate(Candidate.from_sdp(cand.to_sdp()))
    dst.add_remote_candidate(None)


def gaps(times: Sequence[float]) -> list[float]:
    return [round(b - a, 9) for a, b in itertools.pairwise(times)]


async def checking_pair(
    config_a: IceConfig = NO_GLOBAL, config_b: IceConfig = NO_GLOBAL, *, extra_a: int = 0, extra_b: int = 0
) -> tuple[float, TapNetwork, TapNetwork]:
    """Two agents on the internet (no NAT, 10 ms each way), host candidates only. Once both have
    gathered (and idled a second), both get the other's parameters and candidates (plus `extra_a` /
    `extra_b` unreachable ones) at the same instant t0; runs until both are COMPLETED, then 1 s more.
    Returns t0 and the taps of A and B."""
    scenario = vnet("none", "none", rtt=0.02, seed=1)
    tap_a, tap_b = TapNetwork(scenario.network_a), TapNetwork(scenario.network_b)
    async with (
        open_agent(network=tap_a, config=config_a, name="A") as a,
        open_agent(controlling=False, network=tap_b, config=config_b, name="B") as b,
    ):
        ca, cb = await gathered(a), await gathered(b)
        await trio.sleep(1)
        assert tap_a.requests() == [] and tap_b.requests() == []  # nothing before the peer is known
        t0 = trio.current_time()
        give(b.local_parameters, cb + unreachable(extra_a), a)
        give(a.local_parameters, ca + unreachable(extra_b), b)
        await a.state.wait_value(IceState.COMPLETED)
        await b.state.wait_value(IceState.COMPLETED)
        await trio.sleep(1)
    return t0, tap_a, tap_b


# ---- pacing (RFC 8445 14.2) ----


async def test_first_check_at_once_then_one_new_check_every_ta(autojump_clock: object) -> None:
    """Six pairs on A (five unreachable, checked first by priority): A's first check leaves at t0
    itself, and every new check (ordinary or triggered) exactly Ta after the previous one."""
    t0, tap_a, tap_b = await checking_pair(extra_a=5)
    times = [sent.at - t0 for sent, _ in tap_a.requests()]
    assert times[0] == 0.0
    assert gaps(times[:6]) == [0.05] * 5
    assert all(g >= 0.05 - EPS for g in gaps(times))
    assert tap_b.requests()[0][0].at == t0  # B's only pair: its check goes out at once too


async def test_larger_remote_pacing_slows_both_sides(autojump_clock: object) -> None:
    """B runs with Ta = 200 ms and says so (a=ice-pacing:200); A's own Ta is 50 ms: both use 200 ms."""
    slow = IceConfig(global_pacing=False, ta=0.2)
    t0, tap_a, tap_b = await checking_pair(NO_GLOBAL, slow, extra_a=3, extra_b=3)
    for tap in (tap_a, tap_b):
        times = [sent.at - t0 for sent, _ in tap.requests()]
        assert times[0] == 0.0
        assert gaps(times[:4]) == [0.2] * 3


async def test_a_lower_ta_needs_the_peer_to_signal_it(autojump_clock: object) -> None:
    """A runs with Ta = 10 ms and says so; B signals no a=ice-pacing, which RFC 8839 4.4 counts as 50 ms:
    both pace at 50 ms (DESIGN.md "Timing and states"). With both at 10 ms, both use 10 ms."""
    fast = IceConfig(global_pacing=False, ta=0.01)
    t0, tap_a, tap_b = await checking_pair(fast, NO_GLOBAL, extra_a=3, extra_b=3)
    for tap in (tap_a, tap_b):
        times = [sent.at - t0 for sent, _ in tap.requests()]
        assert gaps(times[:4]) == [0.05] * 3
    t0, tap_a, tap_b = await checking_pair(fast, fast, extra_a=3, extra_b=3)
    for tap in (tap_a, tap_b):
        times = [sent.at - t0 for sent, _ in tap.requests()]
        assert gaps(times[:4]) == [0.01] * 3


async def test_non_default_ta_is_signalled_as_pacing(autojump_clock: object) -> None:
    scenario = vnet("none", "none")
    async with (
        open_agent(network=scenario.network_a, config=IceConfig(ta=0.02)) as a,
        open_agent(network=scenario.network_b) as b,
    ):
        assert a.local_parameters.pacing == 20
        assert b.local_parameters.pacing is None  # the default 50 ms goes unsaid
        await a.restart()
        assert a.local_parameters.pacing == 20


@pytest.mark.parametrize("global_pacing", [True, False])
async def test_global_pacing_caps_all_agents_together(global_pacing: bool, autojump_clock: object) -> None:
    """Four pairs of agents in one process start checking at the same instant. With the process-wide
    pacer (on by default) their new transactions, all agents together, leave at most one per 5 ms
    (RFC 8445 14.2); without it they leave side by side."""
    internet = Internet(link=Link(latency=0.01, seed=1))
    taps = [TapNetwork(Host(f"h{i}", internet).network) for i in range(8)]
    config = IceConfig(global_pacing=global_pacing)
    async with trio.open_nursery() as nursery:
        agents: list[Agent] = []

        async def run(i: int, *, task_status: trio.TaskStatus[None]) -> None:
            async with open_agent(controlling=i % 2 == 0, network=taps[i], config=config, name=f"g{i}") as agent:
                agents.append(agent)
                task_status.started()
                await trio.sleep_forever()

        for i in range(8):
            await nursery.start(run, i)
        candidates = [await gathered(agent) for agent in agents]
        t0 = trio.current_time()
        for i in range(0, 8, 2):
            x, y = agents[i], agents[i + 1]
            give(y.local_parameters, candidates[i + 1] + unreachable(2), x)
            give(x.local_parameters, candidates[i] + unreachable(2), y)
        for agent in agents:
            await agent.connect()
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    times = sorted(sent.at - t0 for tap in taps for sent, _ in tap.requests())
    assert len(times) >= 8 * 3
    if global_pacing:
        assert times[:8] == pytest.approx([0.005 * k for k in range(8)])  # eight agents, one slot each
        assert min(gaps(times)) >= 0.005 - EPS
    else:
        assert times[:8] == [0.0] * 8  # everyone's first check at once


# ---- consent freshness (RFC 7675) and the DISCONNECTED / FAILED timers ----


class StateLog:
    """An observer plugin: every agent state change, recorded synchronously with its Trio time."""

    def __init__(self) -> None:
        self.changes: list[tuple[float, str, IceState]] = []
        self.plugin_manager = create_plugin_manager()
        self.plugin_manager.register(self)

    @hookimpl
    def iceagent_state_changed(self, agent: Agent, old: IceState, new: IceState) -> None:
        self.changes.append((trio.current_time(), agent.name, new))

    def of(self, name: str, since: float) -> list[IceState]:
        return [state for at, who, state in self.changes if who == name and at >= since]


async def test_consent_checks_every_0_8_to_1_2_consent_interval(autojump_clock: object) -> None:
    scenario = vnet("none", "none", rtt=0.02, seed=2)
    tap_a = TapNetwork(scenario.network_a)
    async with open_pair(scenario, config=IceConfig(), network_a=tap_a) as (a, b):
        await connect_pair(a, b)
        await a.state.wait_value(IceState.COMPLETED)
        done = trio.current_time()
        await trio.sleep(200)
        pair = a.selected_pair
        assert pair is not None and pair.consent_requests_sent >= 30
    consent = [sent.at for sent, _ in tap_a.requests() if sent.at > done]
    assert len(consent) == pair.consent_requests_sent
    intervals = gaps(consent)
    assert all(4.0 - EPS <= g <= 6.0 + EPS for g in intervals), intervals
    assert max(intervals) - min(intervals) > 0.2  # randomized, not a fixed period


async def test_keepalive_indications_when_nothing_else_is_sent(autojump_clock: object) -> None:
    """Consent checks made rare: a Binding indication goes out on the selected pair every
    keepalive_interval of sending nothing (RFC 8445 11), and nothing else does."""
    scenario = vnet("none", "none", rtt=0.02, seed=9)
    tap_a = TapNetwork(scenario.network_a)
    rare = IceConfig(consent_interval=1000.0, consent_timeout=5000.0, keepalive_interval=15.0)
    async with open_pair(scenario, config=rare, network_a=tap_a) as (a, b):
        await connect_pair(a, b)
        await a.state.wait_value(IceState.COMPLETED)
        await trio.sleep(5)
        quiet = trio.current_time()
        await trio.sleep(100)
    sent = [s for s in tap_a.log if s.direction == "out" and s.at > quiet]
    kinds = {(m.method, m.message_class) for s in sent if (m := s.stun()) is not None}
    assert kinds == {(Method.BINDING, MessageClass.INDICATION)} and len(sent) == len([s for s in sent if s.stun()])
    assert len(sent) >= 6 and all(g == pytest.approx(15.0) for g in gaps([s.at for s in sent]))


async def test_consent_lost_after_consent_timeout_fails_and_send_raises(autojump_clock: object) -> None:
    """The path dies (100% loss): DISCONNECTED after disconnected_timeout of silence, FAILED once no
    consent check has been answered for consent_timeout (RFC 7675 5.1); sending then raises."""
    scenario = vnet("none", "none", rtt=0.02, seed=3)
    tap_a = TapNetwork(scenario.network_a)
    config = IceConfig()  # RFC defaults: consent every ~5 s, lost after 30 s; DISCONNECTED after 5 s
    states = StateLog()
    async with open_pair(scenario, config=config, network_a=tap_a, plugin_manager=states.plugin_manager) as (a, b):
        sa, _sb = await connect_pair(a, b)
        await a.state.wait_value(IceState.COMPLETED)
        await trio.sleep(12.34)
        cut = trio.current_time()
        scenario.link.loss = 1.0
        pair = a.selected_pair
        assert pair is not None and pair.last_consent is not None
        last_ok = pair.last_consent  # the last consent response before the cut
        await a.state.wait_value(IceState.FAILED)
        failed_at = trio.current_time()
        # an answer already on its way at the cut still arrives: the last one counts
        assert pair.last_consent is not None and pair.last_consent >= last_ok
        last_ok = pair.last_consent
        assert 30.0 < failed_at - last_ok <= 31.0  # consent_timeout (the supervisor looks when it runs out)
        assert states.of("A", cut) == [IceState.DISCONNECTED, IceState.FAILED]
        with pytest.raises(IceFailed, match="consent"):
            await sa.send(b"no consent, no data")
        with pytest.raises(IceFailed):
            await a.connect()
        assert a.selected_pair is None
    data_out = [s for s in tap_a.log if s.direction == "out" and s.stun() is None]
    assert all(s.at < failed_at for s in data_out)  # no application data after consent was lost


async def test_disconnected_after_silence_then_back_when_traffic_resumes(autojump_clock: object) -> None:
    scenario = vnet("none", "none", rtt=0.02, seed=4)
    tap_a = TapNetwork(scenario.network_a)
    states = StateLog()
    async with open_pair(scenario, network_a=tap_a, plugin_manager=states.plugin_manager) as (a, b):
        sa, sb = await connect_pair(a, b)
        await a.state.wait_value(IceState.COMPLETED)
        await trio.sleep(7.7)
        cut = trio.current_time()
        scenario.link.loss = 1.0
        await a.state.wait_value(IceState.DISCONNECTED)
        disconnected_at = trio.current_time()
        last_rx = max(s.at for s in tap_a.log if s.direction == "in")
        # disconnected_timeout (5 s) of silence after the last packet (the supervisor notes each STUN
        # input's time and looks again when the silence runs out)
        assert 5.0 < disconnected_at - last_rx <= 7.0 + EPS
        await trio.sleep(3)
        scenario.link.loss = 0.0
        restored = trio.current_time()
        await a.state.wait_value(IceState.COMPLETED)
        # the next consent check (at most 1.2 x 5 s away) or the peer's brings the answer
        assert trio.current_time() - restored <= 6.0 + 1.0
        assert states.of("A", cut) == [IceState.DISCONNECTED, IceState.COMPLETED]
        await roundtrip(sa, sb, b"back")


async def test_failed_timeout_in_checking_without_a_valid_pair(autojump_clock: object) -> None:
    """No end-of-candidates (so the check list never fails by itself) and nothing answers: FAILED
    failed_timeout after checking began."""
    scenario = vnet("none", "none", seed=5)
    config = IceConfig(failed_timeout=7.0)
    async with open_agent(network=scenario.network_a, config=config) as a:
        await gathered(a)
        started = trio.current_time()
        a.set_remote_parameters(IceParameters(ufrag="peer", pwd="p" * 22))
        for cand in unreachable(2):
            a.add_remote_candidate(cand)
        assert a.state.value is IceState.CHECKING
        with pytest.raises(IceFailed, match="failed_timeout"):
            await a.connect()
        assert trio.current_time() - started == pytest.approx(7.0)  # the supervisor's deadline, not a tick
        assert a.state.value is IceState.FAILED


# ---- STUN servers that misbehave must not stall gathering ----


async def bad_stun_server(network: Network, behaviour: str, *, task_status: trio.TaskStatus[None]) -> None:
    """A STUN server at 198.51.100.1:3478 that answers every Binding request wrongly."""
    sock = await network.bind_udp("198.51.100.1", 3478)
    other = await network.bind_udp("198.51.100.2", 3478)
    task_status.started()
    try:
        while True:
            data, source = await sock.receive()
            request = Message.decode(data)
            if behaviour == "silent":
                continue
            if behaviour == "garbage":
                await sock.send(b"\x00\x01\x00\x08garbage!" + request.transaction_id, source)
                await sock.send(data[:27], source)  # a truncated copy: looks like STUN, is not
            elif behaviour == "wrong-address":  # a correct answer, from the server's other address
                answer = request.success_response([(Attr.XOR_MAPPED_ADDRESS, source)])
                await other.send(answer.encode(fingerprint=True), source)
            elif behaviour == "error":
                await sock.send(request.error_response(500, "Server Error").encode(fingerprint=True), source)
            elif behaviour == "no-address":
                await sock.send(request.success_response([]).encode(fingerprint=True), source)
    finally:
        sock.close()
        other.close()


STUN = [IceServer(urls=["stun:198.51.100.1:3478"])]
NO_ANSWER = "no STUN response from 198.51.100.1:3478 after 7 attempts over 39.5 s"


@pytest.mark.parametrize("behaviour", ["silent", "garbage", "wrong-address"])
async def test_unanswered_stun_ends_with_the_rfc_8489_schedule(behaviour: str, autojump_clock: object) -> None:
    """No usable answer: the srflx gatherer gives up after Rc = 7 transmissions and Rm x RTO of waiting,
    39.5 s (RFC 8489 6.2.1), and says why; the host candidate is there all along."""
    scenario = vnet("eim-eif", "none", seed=6)
    config = IceConfig(gather_timeout=60.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(bad_stun_server, scenario.server_network, behaviour)
        opened = trio.current_time()
        async with open_agent(network=scenario.network_a, ice_servers=STUN, config=config) as a:
            candidates = await gathered(a)
            assert trio.current_time() - opened == pytest.approx(39.5)
            assert [c.type for c in candidates] == ["host"]
            errors = a.stats()["gatherers"]["srflx"]["errors"]
            assert len(errors) == 1 and errors[0].startswith(NO_ANSWER)
            if behaviour == "wrong-address":
                assert "answers from 198.51.100.2:3478, not the server, were ignored" in errors[0]
        nursery.cancel_scope.cancel()


async def test_gather_timeout_caps_a_silent_stun_server(autojump_clock: object) -> None:
    """With the default gather_timeout (10 s), gathering is COMPLETE at 10 s whatever the server does;
    the srflx transaction still ends on the RFC 8489 schedule, and both reasons are in stats()."""
    scenario = vnet("eim-eif", "none", seed=7)
    async with trio.open_nursery() as nursery:
        await nursery.start(bad_stun_server, scenario.server_network, "silent")
        opened = trio.current_time()
        async with open_agent(network=scenario.network_a, ice_servers=STUN) as a:
            await gathered(a)
            assert trio.current_time() - opened == pytest.approx(10.0)
            srflx = a.stats()["gatherers"]["srflx"]
            assert srflx["state"] == "gathering" and srflx["errors"] == ["still gathering after gather_timeout=10 s"]
            await trio.sleep(30)
            srflx = a.stats()["gatherers"]["srflx"]
            assert srflx["state"] == "done" and srflx["errors"][-1] == NO_ANSWER
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [("error", "answered with an error: (500, 'Server Error')"), ("no-address", "sent no mapped address")],
)
async def test_stun_answers_without_an_address_end_gathering_at_once(
    behaviour: str, reason: str, autojump_clock: object
) -> None:
    scenario = vnet("eim-eif", "none", rtt=0.02, seed=8)
    async with trio.open_nursery() as nursery:
        await nursery.start(bad_stun_server, scenario.server_network, behaviour)
        opened = trio.current_time()
        async with open_agent(network=scenario.network_a, ice_servers=STUN) as a:
            await gathered(a)
            assert trio.current_time() - opened == pytest.approx(0.02)  # one round trip
            errors = a.stats()["gatherers"]["srflx"]["errors"]
            assert errors == [f"STUN server 198.51.100.1:3478 {reason}"]
        nursery.cancel_scope.cancel()
