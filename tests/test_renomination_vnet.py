"""Renomination on the vnet (draft-thatcher-ice-renomination): two agents on the internet signal only their
relayed candidates first, connect through TURN, then trickle their host candidates. With renomination
on both sides the pair moves to the direct one without a restart and no datagram is lost across the
switch; without it the relayed pair stays (RFC 8445 8.1.1: a nomination is final)."""

from __future__ import annotations

import pluggy
import trio
import trio.testing
from iceagent_vnet import vnet
from iceagent_vnet.packet import Packet
from iceagent_vnet.scenario import Scenario
from iceagent_vnet.segment import Attachment

from iceagent import Agent, Candidate, IceConfig, IceServer, IceState, IceStream, open_agent
from iceagent.ice.nomination import MAX_ALTERNATES
from iceagent.ice.pair import CandidatePair
from iceagent.plugins import create_plugin_manager
from iceagent.turn.server import open_turn_server

hookimpl = pluggy.HookimplMarker("iceagent")
USER, PASSWORD = "vnet-user", "vnet-password"


class Renominations:
    """Records iceagent_renomination calls (and the selected pairs, iceagent_selected_pair_changed)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, CandidatePair, CandidatePair]] = []
        self.selected: list[tuple[str, CandidatePair | None]] = []
        self.changed = trio.Event()

    @hookimpl
    def iceagent_selected_pair_changed(self, agent: Agent, pair: CandidatePair | None) -> None:
        self.selected.append((agent.name, pair))

    @hookimpl
    def iceagent_renomination(self, agent: Agent, old: CandidatePair, new: CandidatePair) -> None:
        self.calls.append((agent.name, old, new))
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, count: int) -> None:
        while len(self.calls) < count:
            await self.changed.wait()


def kinds(pair: CandidatePair | None) -> str:
    assert pair is not None
    return f"{pair.local.type}/{pair.remote.type}"


async def trickle(src: Agent, dst: Agent, candidates: list[Candidate], *, relay: bool) -> None:
    for candidate in candidates:
        if (candidate.type == "relay") is relay:
            dst.add_remote_candidate(Candidate.from_sdp(candidate.to_sdp()))


def cut(scenario: Scenario, *, everything_of_b: bool = False) -> None:
    """Drop every datagram between A's and B's own addresses on the internet (the relayed path, through the
    TURN server's addresses, still works); with `everything_of_b`, every datagram from or to B (B is gone)."""
    internet = scenario.internet
    transmit = internet.transmit
    a, b = scenario.host_a.address, scenario.host_b.address

    def filtered(packet: Packet, sender: Attachment) -> None:
        ends = {packet.src[0], packet.dst[0]}
        if ends != {a, b} and not (everything_of_b and b in ends):
            transmit(packet, sender)

    internet.transmit = filtered  # type: ignore[method-assign]


async def relay_first(
    *, renomination_a: bool, renomination_b: bool, cut_direct: bool = False, peer_gone: bool = False
) -> tuple[list[str], list[str], int, Renominations]:
    """Connect A (controlling) and B over relayed candidates only, then trickle the host candidates while A
    sends a numbered datagram every 20 ms (B echoes each one back). Returns A's and B's selected pairs
    (kinds) before and after, the datagrams B got, and the renomination hook calls. With `cut_direct`, the
    direct path is then cut: once both sides moved on (consent lost, RFC 7675), the selected pairs after
    that are appended, and 20 more datagrams must arrive. With `peer_gone`, B drops off the network
    and A must go FAILED."""
    scenario = vnet("none", "none", rtt=0.04, seed=5)
    turn = scenario.turn_address
    servers = [IceServer(urls=[f"turn:{turn[0]}:{turn[1]}?transport=udp"], username=USER, credential=PASSWORD)]
    recorder = Renominations()
    pm = create_plugin_manager(load_entrypoints=False)
    pm.register(recorder)
    with trio.fail_after(120):
        async with (
            open_turn_server(scenario.server_network, [f"{turn[0]}:{turn[1]}"], users={USER: PASSWORD}, realm="vnet"),
            open_agent(controlling=True, network=scenario.network_a, ice_servers=servers, name="A",
                       config=IceConfig(renomination=renomination_a), plugin_manager=pm) as a,
            open_agent(controlling=False, network=scenario.network_b, ice_servers=servers, name="B",
                       config=IceConfig(renomination=renomination_b), plugin_manager=pm) as b,
        ):
            gathered = {a.name: [c async for c in a.gather()], b.name: [c async for c in b.gather()]}
            assert {c.type for c in gathered["A"]} >= {"host", "relay"}
            b.set_remote_parameters(a.local_parameters)
            a.set_remote_parameters(b.local_parameters)
            await trickle(a, b, gathered["A"], relay=True)
            await trickle(b, a, gathered["B"], relay=True)
            streams: dict[str, IceStream] = {}

            async def connect(agent: Agent) -> None:
                streams[agent.name] = await agent.connect()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(connect, a)
                nursery.start_soon(connect, b)
            await a.state.wait_value(IceState.COMPLETED)
            await b.state.wait_value(IceState.COMPLETED)
            before = [kinds(a.selected_pair), kinds(b.selected_pair)]
            received: list[int] = []  # at B, from A
            echoed: list[int] = []  # at A, from B: B sends each number back
            count = 200
            all_received = trio.Event()

            async def receive_and_echo() -> None:
                while len(received) < count:
                    received.append(int(await streams["B"].receive()))
                    await streams["B"].send(b"%d" % received[-1])

            async def receive_echoes() -> None:
                while len(echoed) < count:
                    echoed.append(int(await streams["A"].receive()))
                all_received.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive_and_echo)
                nursery.start_soon(receive_echoes)
                for i in range(count):
                    if i == 20:  # the direct candidates arrive while data flows
                        await trickle(a, b, gathered["A"], relay=False)
                        await trickle(b, a, gathered["B"], relay=False)
                        a.add_remote_candidate(None)
                        b.add_remote_candidate(None)
                    await streams["A"].send(b"%d" % i)
                    await trio.sleep(0.02)
                with trio.fail_after(5):  # what is still in flight
                    await all_received.wait()
            after = [kinds(a.selected_pair), kinds(b.selected_pair)]
            if peer_gone:
                del recorder.selected[:]
                cut(scenario, everything_of_b=True)
                await a.state.wait_value(IceState.FAILED)
                return before + after, [str(n) for n in received], count, recorder
            if cut_direct:
                cut(scenario)
                await recorder.wait_for(len(recorder.calls) + 2)  # A renominates, B follows
                after += [kinds(a.selected_pair), kinds(b.selected_pair)]
                for i in range(20):
                    await streams["A"].send(b"again %d" % i)
                    with trio.fail_after(1):
                        assert await streams["B"].receive() == b"again %d" % i
            assert a.generation.value == 0 and b.generation.value == 0  # no restart
            assert a.state.value is IceState.COMPLETED and b.state.value is IceState.COMPLETED
            assert sorted(echoed) == sorted(received)  # and every answer came back: none lost either way
            return before + after, [str(n) for n in received], count, recorder


async def test_the_pair_moves_from_relay_to_direct_without_a_restart(autojump_clock: trio.testing.MockClock) -> None:
    selected, received, count, recorder = await relay_first(renomination_a=True, renomination_b=True)
    before, after = selected[:2], selected[2:]
    assert all("relay" in k for k in before), selected
    assert after == ["host/host", "host/host"], selected
    # every datagram arrives: none lost in the switch (the direct path is shorter, so the first datagrams
    # sent on it may overtake the last ones still on the relayed path: UDP order is not kept)
    assert sorted(received, key=int) == [str(i) for i in range(count)]
    assert {name for name, _, _ in recorder.calls} == {"A", "B"}
    for _, old, new in recorder.calls:
        assert "relay" in kinds(old) and kinds(new) == "host/host"


async def test_without_renomination_on_both_sides_the_relayed_pair_stays(
    autojump_clock: trio.testing.MockClock,
) -> None:
    for renomination_a, renomination_b in ((True, False), (False, True)):
        selected, received, count, recorder = await relay_first(
            renomination_a=renomination_a, renomination_b=renomination_b
        )
        assert all("relay" in k for k in selected), selected  # before and after the trickle
        assert received == [str(i) for i in range(count)]  # one path: in order
        assert recorder.calls == []


async def test_a_lost_direct_path_moves_back_to_the_relayed_pair_without_a_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The route under the selected pair dies (consent lost, RFC 7675 5.1): with renomination the agents
    move to another valid pair instead of FAILED (DESIGN.md "Continual gathering")."""
    selected, _, _, recorder = await relay_first(renomination_a=True, renomination_b=True, cut_direct=True)
    assert selected[2:4] == ["host/host", "host/host"], selected
    assert all("relay" in k for k in selected[4:]), selected
    moved_back = [(name, kinds(old), kinds(new)) for name, old, new in recorder.calls[2:]]
    assert sorted(name for name, _, _ in moved_back) == ["A", "B"]
    assert all(old == "host/host" and "relay" in new for _, old, new in moved_back), moved_back


async def test_a_peer_that_is_gone_still_fails_without_trying_every_pair(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With renomination a lost selected pair moves the stream only to a pair that still has consent (the
    agents refresh it on up to MAX_ALTERNATES other pairs): when the peer is gone, A does not walk through
    its dead pairs, a consent timeout each, but goes FAILED (RFC 7675 5.1)."""
    _, _, _, recorder = await relay_first(renomination_a=True, renomination_b=True, peer_gone=True)
    moves = [pair for name, pair in recorder.selected if name == "A" and pair is not None]
    assert len(moves) <= MAX_ALTERNATES, moves
    assert ("A", None) in recorder.selected  # FAILED: no pair left
