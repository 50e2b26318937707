"""Connectivity under heavy loss on the vnet (issue 16 item 4): the kernel-NAT lab of tests/test_loss_netns.py
under MockClock.

Both agents sit behind port-restricted cones (eim-apdf) whose LAN links each lose 40 % of the datagrams, in
each direction (the vnet's per-link loss knob), so, as with the lab's lossy routers, a datagram between the
two private hosts survives 36 % of the time and a STUN request to the server and its answer 36 %. Default
IceConfig and one STUN server; the application resends its greeting every 0.3 s until the peer echoes it.
At most `TOLERATED` of the 100 seeds may miss the 30 s (simulated) limit: see `TOLERATED` for why a few can.
"""

from __future__ import annotations

import pytest
import trio
from agent_helpers import connect_both
from iceagent_vnet import vnet
from loss_peer import chat
from nat_matrix_tools import exchange, open_pair

from iceagent import Agent, IceConfig, IceFailed, IceState, open_agent
from iceagent.ice.pair import PairState
from iceagent.net.base import Address, Network, NetworkWrapper, UdpSocket
from iceagent.stun.attributes import Attr
from iceagent.stun.message import Message, MessageClass, StunDecodeError, looks_like_stun

LIMIT = 30.0
PATIENT = IceConfig(failed_timeout=60.0)
RESEND = 0.3
SEEDS = range(1, 101)
STUN_SERVERS = 1
#: Seeds allowed to miss the limit. The seed fixes the vnet's loss draws, not the order of the datagrams they
#: fall on (Trio's scheduler, hash order and transaction ids vary between processes), so a run is a random
#: draw: the controlling agent sends about 60 checks in 30 s, and each round trip crosses two lossy LANs
#: twice (0.6^4 = 13 % survive), so all of them are lost about once in 3000 runs (0.87^60). Measured: 3
#: misses in about 12 000 runs of seeds 1-100 under varied hash and scheduler seeds (one CI run missed
#: seed 31 so). Allowing 2 of 100, chance fails about one CI run in 20 000; the code before the repeated
#: checks missed 43 of 100.
TOLERATED = 2


async def echo_app(agent: Agent, name: str, echoed: dict[str, float], both: trio.Event) -> None:
    """The lab's application (tests/loss_peer.py `chat`): once connected, resend until echoed, echo the peer.
    A run whose agent fails is over for that side (its `echoed` entry stays missing)."""
    try:
        stream = await agent.connect()
    except IceFailed:
        return

    def done() -> None:
        echoed[name] = trio.current_time()
        if len(echoed) == 2:
            both.set()

    await chat(stream, name, RESEND, done)


async def run_seed(seed: int, loss: float, config: IceConfig | None = None) -> dict[str, float]:
    """One run: when each side saw its greeting echoed (simulated seconds from the offer); missing: it did not
    within LIMIT."""
    scenario = vnet("eim-apdf", "eim-apdf", rtt=0.05, seed=seed)
    for lan in (scenario.lan_a, scenario.lan_b):
        assert lan is not None
        lan.link.loss = loss
    echoed: dict[str, float] = {}
    both = trio.Event()
    async with open_pair(scenario, config=config, stun_servers=STUN_SERVERS) as (a, b):
        start = trio.current_time()
        with trio.move_on_after(LIMIT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(exchange, a, b)
                nursery.start_soon(echo_app, a, "A", echoed, both)
                nursery.start_soon(echo_app, b, "B", echoed, both)
                await both.wait()
                nursery.cancel_scope.cancel()
    return {name: at - start for name, at in echoed.items()}


#: Measured on seeds 1-500 of this scenario (run in one process, in order): 498 connect and echo within 30 s at
#: 40 % loss per LAN, and 499 at 30 % (seed 156 both times never gets B's srflx: all 15 transmissions of its
#: three Binding transactions are lost, 0.64^15; seed 186 at 40 % fails in the check phase with both srflx).
#: Before the parallel Binding transactions (iceagent/gatherers/srflx.py) and the repeated checks
#: (iceagent/ice/_requests.py): 57 and 89 of 100; 33 of the 43 failures at 40 % had no srflx on one side, the
#: other 10 lost every check or every answer on the srflx pair.
#: With 5 Binding transactions and up to 10 check transactions on a pair the peer's checks reached (REPEATS_HEARD):
#: seeds 1-1500 at 40 % all pass (the code before them: 1495; seeds 156, 503 and 1264 lost B's or A's srflx).


@pytest.mark.slow
@pytest.mark.parametrize("loss", [0.4, 0.3])
async def test_connects_and_echoes_under_heavy_loss_per_lan(autojump_clock: object, loss: float) -> None:
    """All but at most `TOLERATED` seeds connect and echo within 30 s (simulated), with 40 % and 30 % loss per
    LAN."""
    failed = []
    for seed in SEEDS:
        echoed = await run_seed(seed, loss)
        if len(echoed) < 2:
            failed.append((seed, echoed))
    assert len(failed) <= TOLERATED, (
        f"{len(failed)} of {len(SEEDS)} seeds did not connect and echo within {LIMIT:g} s: {failed}"
    )


class _FilteredSocket:
    """A UdpSocket whose datagrams go out only when its network's `keep(data, remote)` says so."""

    def __init__(self, sock: UdpSocket, network: SendFilter) -> None:
        self._sock = sock
        self._network = network

    @property
    def local_address(self) -> Address:
        return self._sock.local_address

    async def send(self, data: bytes, remote: Address) -> None:
        if self._network.keep(bytes(data), remote):
            await self._sock.send(data, remote)

    async def receive(self) -> tuple[bytes, Address]:
        return await self._sock.receive()

    def close(self) -> None:
        self._sock.close()


class SendFilter(NetworkWrapper):
    """A network whose UDP sockets send only what `keep` lets through (the others are lost)."""

    def keep(self, data: bytes, remote: Address) -> bool:
        raise NotImplementedError

    async def bind_udp(self, address: str, port: int = 0, *, reuse: bool = False) -> UdpSocket:
        return _FilteredSocket(await self.inner.bind_udp(address, port, reuse=reuse), self)


def stun_request(data: bytes) -> Message | None:
    """`data` as a STUN request, or None."""
    if not looks_like_stun(data):
        return None
    try:
        message = Message.decode(data)
    except StunDecodeError:
        return None
    return message if message.message_class is MessageClass.REQUEST else None


class LoseFirstNomination(SendFilter):
    """A's network: every transmission of its first nominating check (a Binding request with USE-CANDIDATE,
    RFC 8445 8.1.1) is lost, so the nomination is lost, the path is not (`lost["count"]`: its transmissions)."""

    def __init__(self, network: Network) -> None:
        super().__init__(network)
        self.lost: dict[str, bytes] = {}

    def keep(self, data: bytes, remote: Address) -> bool:
        message = stun_request(data)
        if message is None or Attr.USE_CANDIDATE not in message:
            return True
        if self.lost.setdefault("tid", message.transaction_id) != message.transaction_id:
            return True
        self.lost["count"] = self.lost.get("count", b"") + b"x"
        return False


async def test_a_lost_nomination_is_repeated_until_the_lite_peer_connects(autojump_clock: object) -> None:
    """Every transmission of the full agent's first USE-CANDIDATE check is lost (7 of them over 39.5 s,
    RFC 8489 6.2.1); the pair's own check succeeded, so the path works. A lite peer sends no checks of its
    own (RFC 8445 2.5) that could revive the pair: the full agent repeats the nomination with a new
    transaction on the same pair (8.1.1), and the lite agent connects at that check (7.3.2)."""
    scenario = vnet("none", "none", rtt=0.05, seed=7)
    network = LoseFirstNomination(scenario.network_a)
    async with (
        open_agent(controlling=True, network=network, name="full") as full,
        # patient enough for the second nomination (a lite agent fails after failed_timeout without one)
        open_agent(controlling=False, lite=True, network=scenario.network_b, name="lite", config=PATIENT) as lite,
    ):
        with trio.fail_after(120):
            s_full, s_lite = await connect_both(full, lite)
            await full.state.wait_value(IceState.COMPLETED)
        assert network.lost["count"] == b"x" * 7  # the whole first nominating transaction was lost
        assert trio.current_time() > 39.5
        pair = full.selected_pair
        assert pair is not None and pair.nominated and pair.state is PairState.SUCCEEDED
        await s_full.send(b"to lite")
        assert await s_lite.receive() == b"to lite"
