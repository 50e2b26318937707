"""TURN requests take slots of the process-wide pacer (RFC 8445 14.2): new transactions wait for one, their
retransmissions never do (RFC 8489 6.2.1), and a refresh leaves before what it refreshes expires (RFC 8656 8)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import trio
import trio.testing
from iceagent_vnet import vnet
from pacing_helpers import Reservations

from iceagent import IceConfig, IceServer, open_agent
from iceagent.agent._pacer import GLOBAL_INTERVAL, GlobalPacer, wait_for_slot
from iceagent.net.base import Address, Network, NetworkWrapper, UdpSocket
from iceagent.stun import Attr, Message, MessageClass, Method
from iceagent.turn import AllocationState, TurnClient, TurnTimeout
from iceagent.turn._client_requests import MAX_PACED_WAIT
from iceagent.turn.allocation import open_allocation
from iceagent.turn.server import open_turn_server

USER, PASSWORD, REALM = "alice", "secret", "vnet"
RELAYED = ("198.51.100.7", 49152)


# ---- the sans-IO client: held new requests, free retransmissions ----


def _decode(data: list[bytes]) -> list[Message]:
    return [Message.decode(d) for d in data]


def _challenge(req: Message) -> bytes:
    return req.error_response(401, attributes=[(Attr.REALM, REALM), (Attr.NONCE, "n0")]).encode()


def _allocated(now: float, lifetime: int = 600) -> TurnClient:
    """A paced client taken through 401 and a successful Allocate at `now`."""
    client = TurnClient(USER, PASSWORD, paced=True)
    client.allocate(now)
    assert client.start_paced(now)
    [first] = _decode(client.datagrams_to_send())
    client.receive(_challenge(first), now)
    assert client.start_paced(now)
    [second] = _decode(client.datagrams_to_send())
    attrs = [(Attr.XOR_RELAYED_ADDRESS, RELAYED), (Attr.LIFETIME, lifetime)]
    client.receive(second.success_response(attrs).encode(integrity_key=client.credential.key), now)
    assert client.state is AllocationState.ALLOCATED
    while client.next_event() is not None:
        pass
    return client


def test_paced_allocate_and_its_authenticated_retry_wait_for_start_paced() -> None:
    """Both Allocates are new transactions (RFC 8445 5.1.1.2: a retry after an authentication failure is one):
    nothing goes out until the driver has a slot, and the retransmission schedule counts from then."""
    client = TurnClient(USER, PASSWORD, paced=True)
    client.allocate(0.0)
    assert client.datagrams_to_send() == [] and client.has_outgoing
    assert client.pace_deadline() == math.inf  # Allocate waits as long as the pacer says
    assert client.get_timer() is None  # no retransmission timer for what has not left
    assert client.start_paced(0.02)
    [first] = _decode(client.datagrams_to_send())
    assert first.method == Method.ALLOCATE and Attr.USERNAME not in first
    assert client.get_timer() == pytest.approx(0.02 + client.rto)
    client.receive(_challenge(first), 0.1)
    assert client.datagrams_to_send() == [] and client.pace_deadline() == math.inf
    assert client.start_paced(0.105)
    [second] = _decode(client.datagrams_to_send())
    assert second.method == Method.ALLOCATE and second.get(Attr.USERNAME) == USER
    assert client.requests_sent == {"Allocate": 2}
    assert not client.start_paced(0.2)  # nothing more is held


def test_retransmissions_go_out_while_a_new_request_is_held() -> None:
    client = _allocated(0.0)
    client.create_permission("203.0.113.5", 1.0)
    assert client.start_paced(1.0)
    [perm] = _decode(client.datagrams_to_send())
    client.create_permission("203.0.113.6", 1.0)  # held: no slot yet
    client.handle_timer(1.0 + client.rto)
    [again] = _decode(client.datagrams_to_send())
    assert again.transaction_id == perm.transaction_id  # the retransmission, at once
    assert client.pace_deadline() == math.inf  # the second CreatePermission still waits for its slot
    assert client.requests_sent["CreatePermission"] == 1


def test_a_held_refresh_leaves_before_the_allocation_expires() -> None:
    client = _allocated(0.0, lifetime=600)
    client.handle_timer(540.0)
    assert client.datagrams_to_send() == []
    assert client.pace_deadline() == pytest.approx(540.0 + MAX_PACED_WAIT)
    assert client.get_timer() == 600.0  # no second Refresh while one is held; expiry still timed
    short = _allocated(0.0, lifetime=1)
    short.handle_timer(0.5)
    deadline = short.pace_deadline()
    assert deadline is not None and deadline <= 0.75 < short.expires_at  # half the time left, at most
    short.deallocate(0.6)
    assert short.pace_deadline() == pytest.approx(0.6 + MAX_PACED_WAIT)  # the release is bounded too
    assert short.start_paced(0.6)
    [release] = _decode(short.datagrams_to_send())
    assert release.method == Method.REFRESH and release.get(Attr.LIFETIME) == 0


def test_slots_go_first_in_first_out_and_a_bound_lets_only_the_overdue_out() -> None:
    """A slot sends the oldest held request, so an unbounded CreatePermission is not passed by every refresh
    held after it (it would starve behind a pacer backlog); a bound reached sends only what is overdue."""
    client = _allocated(0.0, lifetime=600)
    client.create_permission("203.0.113.5", 530.0)  # held, no bound
    client.handle_timer(540.0)  # the Refresh, held with a bound
    assert client.held_count == 2
    assert client.pace_deadline() == pytest.approx(540.0 + MAX_PACED_WAIT)
    assert not client.start_overdue(540.2)  # nothing overdue yet: nothing leaves without a slot
    assert client.start_paced(540.2)  # a slot: the oldest, the CreatePermission
    [first] = _decode(client.datagrams_to_send())
    assert first.method == Method.CREATE_PERMISSION
    assert client.start_overdue(540.0 + MAX_PACED_WAIT)  # the Refresh's bound: it leaves without a slot
    [second] = _decode(client.datagrams_to_send())
    assert second.method == Method.REFRESH and client.held_count == 0


def test_a_held_request_is_signed_with_the_nonce_it_leaves_with() -> None:
    """A request held while a 438 taught a new nonce leaves with that nonce (it is built when it leaves)."""
    client = _allocated(0.0)
    client.create_permission("203.0.113.5", 1.0)
    assert client.start_paced(1.0)
    [perm] = _decode(client.datagrams_to_send())
    client.create_permission("203.0.113.6", 1.0)  # held
    stale = perm.error_response(438, attributes=[(Attr.REALM, REALM), (Attr.NONCE, "n1")]).encode()
    client.receive(stale, 1.01)
    client.start_paced(1.02)
    client.start_paced(1.02)
    nonces = {m.get(Attr.NONCE) for m in _decode(client.datagrams_to_send())}
    assert nonces == {"n1"}


def test_cancelled_while_held() -> None:
    client = TurnClient(USER, PASSWORD, paced=True)
    client.allocate(0.0)
    client.deallocate(0.0)  # gave up before the slot came
    assert client.pace_deadline() is None and not client.start_paced(0.01)
    assert client.datagrams_to_send() == []


# ---- on the virtual network: agents, the embedded TURN server, the process-wide pacer ----


class _RecordingSocket:
    """The TURN server's listener, recording (time, method, transaction id) of every request it receives."""

    def __init__(self, sock: UdpSocket, log: list[tuple[float, int, bytes]]) -> None:
        self._sock = sock
        self._log = log

    @property
    def local_address(self) -> Address:
        return self._sock.local_address

    async def send(self, data: bytes, remote: Address) -> None:
        await self._sock.send(data, remote)

    async def receive(self) -> tuple[bytes, Address]:
        data, remote = await self._sock.receive()
        if data and data[0] < 0x40:
            msg = Message.decode(bytes(data))
            if msg.message_class is MessageClass.REQUEST:
                self._log.append((trio.current_time(), msg.method, msg.transaction_id))
        return data, remote

    def close(self) -> None:
        self._sock.close()


class _RecordingNetwork(NetworkWrapper):
    def __init__(self, inner: Network) -> None:
        super().__init__(inner)
        self.requests: list[tuple[float, int, bytes]] = []

    async def bind_udp(self, address: str, port: int = 0, *, reuse: bool = False) -> UdpSocket:
        return _RecordingSocket(await self.inner.bind_udp(address, port, reuse=reuse), self.requests)


def _new_transactions(requests: list[tuple[float, int, bytes]]) -> list[tuple[float, int]]:
    """(arrival, method) of each transaction's first request: retransmissions left out."""
    seen: set[bytes] = set()
    out = []
    for at, method, tid in requests:
        if tid not in seen:
            seen.add(tid)
            out.append((at, method))
    return out


async def _gather_relays(
    monkeypatch: pytest.MonkeyPatch, agents: int, *, global_pacing: bool
) -> tuple[list[tuple[float, int]], int, int]:
    """`agents` agents on one host, relay-only, each gathering from the embedded TURN server on the vnet:
    the new transactions the server saw, the relay candidates gathered and the pacer reservations made."""
    scenario = vnet("none", "none", rtt=0.02, seed=7)
    turn = scenario.turn_address
    servers = [IceServer(urls=[f"turn:{turn[0]}:{turn[1]}?transport=udp"], username=USER, credential=PASSWORD)]
    network = _RecordingNetwork(scenario.server_network)
    config = IceConfig(global_pacing=global_pacing)
    reservations = Reservations(monkeypatch)
    relays = 0
    async with open_turn_server(network, [f"{turn[0]}:{turn[1]}"], users={USER: PASSWORD}, realm=REALM):

        async def one(i: int) -> None:
            nonlocal relays
            async with open_agent(network=scenario.network_a, ice_servers=servers, config=config,
                                  ice_transport_policy="relay", name=f"A{i}") as agent:
                gathered = [c async for c in agent.gather()]
                relays += sum(c.type == "relay" for c in gathered)

        async with trio.open_nursery() as nursery:
            for i in range(agents):
                nursery.start_soon(one, i)
    return _new_transactions(network.requests), relays, reservations.count


async def test_relay_gatherers_start_their_allocates_5_ms_apart(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four agents in one process gather relay candidates at once: every new TURN transaction (Allocate, its
    authenticated retry, the releasing Refresh) reaches the server at least 5 ms after the previous one
    (RFC 8445 14.2), and each agent still gets its relay candidate."""
    with trio.fail_after(60):
        seen, relays, reservations = await _gather_relays(monkeypatch, 4, global_pacing=True)
    assert relays == 4
    methods = [m for _, m in seen]
    assert methods[:8] == [Method.ALLOCATE] * 8  # unauthenticated + authenticated, per agent
    assert methods[8:] == [Method.REFRESH] * 4  # each agent releases its allocation as it closes
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(seen)]
    assert min(gaps) >= GLOBAL_INTERVAL - 1e-9, gaps
    assert reservations == len(seen)  # one slot per new transaction


async def test_without_global_pacing_turn_requests_take_no_slot(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(60):
        seen, relays, reservations = await _gather_relays(monkeypatch, 4, global_pacing=False)
    assert relays == 4 and reservations == 0
    assert seen[0][0] == seen[3][0]  # the four first Allocates arrive together: nothing waited


async def test_retransmissions_do_not_wait_for_the_pacer(autojump_clock: trio.testing.MockClock) -> None:
    """The pacer is booked for 2 s ahead; an Allocate to a silent server takes one slot (after the booked
    ones) and its retransmissions then leave on the RFC 8489 6.2.1 schedule, not one slot each."""
    scenario = vnet("none", "none", rtt=0.0, seed=7)
    server = await scenario.server_network.bind_udp(scenario.turn_address[0], scenario.turn_address[1])
    pacer = GlobalPacer()
    slots: list[float] = []

    async def pace(latest: float) -> None:
        await wait_for_slot(pacer, latest)
        slots.append(trio.current_time())

    arrivals: list[float] = []

    async def listen() -> None:
        while True:
            await server.receive()
            arrivals.append(trio.current_time())

    config = IceConfig(rto=0.1, rc=4, rm=2)
    booked = 400  # 2 s of slots taken before the Allocate asks
    uri = f"turn:{scenario.turn_address[0]}:{scenario.turn_address[1]}?transport=udp"
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(listen)
                for _ in range(booked):
                    nursery.start_soon(wait_for_slot, pacer)
                await trio.lowlevel.checkpoint()  # the booked tasks take their slots first
                start = trio.current_time()
                with pytest.raises(TurnTimeout):
                    async with open_allocation(uri, USER, PASSWORD, network=scenario.network_a, config=config,
                                               pace=pace):
                        pass
                nursery.cancel_scope.cancel()
    finally:
        server.close()
    assert len(slots) == 1  # one new transaction, one slot
    first = slots[0]
    assert first - start >= booked * GLOBAL_INTERVAL - 1e-9  # it waited behind the booked slots
    rto = config.rto
    assert arrivals == pytest.approx([first, first + rto, first + 3 * rto, first + 7 * rto])


async def test_a_refresh_does_not_wait_past_its_bound(autojump_clock: trio.testing.MockClock) -> None:
    """A pacer that gives no slot after the two Allocates (it returns only at `latest`): the allocation still
    refreshes in time and stays alive for several lifetimes (RFC 8656 8)."""
    scenario = vnet("none", "none", rtt=0.02, seed=7)
    turn = scenario.turn_address
    asked: list[tuple[float, float]] = []

    async def stingy(latest: float) -> None:
        asked.append((trio.current_time(), latest))
        if len(asked) > 2:  # the Allocates go; nothing else gets a slot
            await trio.sleep_until(latest)

    uri = f"turn:{turn[0]}:{turn[1]}?transport=udp"
    with trio.fail_after(4000):
        async with (
            open_turn_server(scenario.server_network, [f"{turn[0]}:{turn[1]}"], users={USER: PASSWORD}, realm=REALM),
            open_allocation(uri, USER, PASSWORD, network=scenario.network_a, pace=stingy, lifetime=600) as allocation,
        ):
            await trio.sleep(2000)
            assert allocation.error is None
            assert allocation.requests_sent["Refresh"] >= 3
    refreshes = asked[2:]
    assert refreshes and all(0 < latest - now <= MAX_PACED_WAIT + 1e-9 for now, latest in refreshes)


async def test_a_refresh_held_behind_an_unbounded_wait_still_leaves_by_its_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The pacing task already waits (unbounded) for a first CreatePermission's slot when the Refresh is held:
    the Refresh must not wait behind it past its own bound (RFC 8656 8), or the allocation expires."""
    scenario = vnet("none", "none", rtt=0.02, seed=7)
    turn = scenario.turn_address
    asked: list[tuple[float, float]] = []

    async def backlog(latest: float) -> None:
        # a deep pacer backlog: an unbounded request waits 120 s for its slot; a bounded one gets it by `latest`
        asked.append((trio.current_time(), latest))
        if len(asked) <= 2:  # the two Allocates
            return
        await trio.sleep(120) if latest == math.inf else await trio.sleep_until(latest)

    uri = f"turn:{turn[0]}:{turn[1]}?transport=udp"
    with trio.fail_after(4000):
        async with (
            open_turn_server(scenario.server_network, [f"{turn[0]}:{turn[1]}"], users={USER: PASSWORD}, realm=REALM),
            open_allocation(uri, USER, PASSWORD, network=scenario.network_a, pace=backlog, lifetime=600) as allocation,
        ):
            await trio.sleep(530)  # the Refresh is due at 540 (60 s early); the allocation expires at 600
            async with trio.open_nursery() as nursery:
                nursery.start_soon(allocation.create_permission, "203.0.113.9")  # held with no bound
                await trio.sleep(100)
                nursery.cancel_scope.cancel()
            assert allocation.error is None
            assert allocation.requests_sent["Refresh"] >= 1
    bounded = [(now, latest) for now, latest in asked[2:] if latest != math.inf]
    assert bounded and all(latest - now <= MAX_PACED_WAIT + 1e-9 for now, latest in bounded)


async def test_an_unbounded_request_keeps_its_place_while_refreshes_come_and_go(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A pacer with about 20 s of other agents' transactions queued, a first CreatePermission waiting for its
    slot, and a refresh held every 12 s: each refresh leaves by its bound (RFC 8656 8) and the
    CreatePermission leaves when its own slot comes, with one wait for it (it is not sent to the back)."""
    from iceagent.turn._allocation_driver import _AllocationDriver

    pacer = GlobalPacer()
    waits: list[float] = []
    sent: list[tuple[str, float]] = []

    async def pace(latest: float) -> None:
        waits.append(latest)
        await wait_for_slot(pacer, latest)

    class Held:  # the driver's view of TurnClient's held requests (FIFO slots, bounds by start_overdue)
        channel_of: dict[Address, int] = {}
        peer_of_channel: dict[int, Address] = {}
        expects_response = False

        def __init__(self) -> None:
            self.held: list[tuple[str, float]] = []

        def datagrams_to_send(self) -> list[bytes]:
            return []

        def pace_deadline(self) -> float | None:
            return min(latest for _, latest in self.held) if self.held else None

        def start_paced(self, now: float) -> bool:
            if not self.held:
                return False
            sent.append((self.held.pop(0)[0], now))
            return True

        def start_overdue(self, now: float) -> bool:
            due = [h for h in self.held if h[1] <= now]
            for h in due:
                self.held.remove(h)
                sent.append((h[0], now))
            return bool(due)

        def next_event(self) -> None:
            return None

        def get_timer(self) -> None:
            return None

    class Conn:
        reliable = False

        async def send(self, frame: bytes) -> None:
            await trio.lowlevel.checkpoint()

    client = Held()
    driver: Any = _AllocationDriver(Conn(), client, uri="turn:x", protocol="udp", pace=pace)  # type: ignore[arg-type]

    async def other_agent() -> None:
        while True:
            await wait_for_slot(pacer)

    async with trio.open_nursery() as nursery:
        for _ in range(4000):  # 4000 x 5 ms: a 20 s backlog
            nursery.start_soon(other_agent)
        await trio.sleep(0.001)
        nursery.start_soon(driver._serve)
        client.held.append(("permission", math.inf))
        driver._kick()
        refreshes = 0
        while not any(name == "permission" for name, _ in sent) and refreshes < 20:
            await trio.sleep(12)
            refreshes += 1
            client.held.append((f"refresh {refreshes}", trio.current_time() + MAX_PACED_WAIT))
            driver._kick()
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    permission = [at for name, at in sent if name == "permission"]
    assert permission and 20 <= permission[0] < 25  # its own slot, behind the 20 s backlog: not before, not never
    assert waits.count(math.inf) == 1  # one wait, never restarted at the back of the pacer
    for name, at in sent:
        if name.startswith("refresh"):
            held_at = 12 * int(name.split()[1]) + 0.001
            assert at - held_at <= MAX_PACED_WAIT + 0.01  # each left by its bound


async def test_sending_while_a_permission_is_held_wakes_the_driver_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A datagram to a peer whose CreatePermission waits for a pacer slot: the first send holds the request
    and wakes the allocation's loop; later sends to that peer add nothing held and wake nothing."""
    scenario = vnet("none", "none", rtt=0.02, seed=7)
    turn = scenario.turn_address
    calls = 0

    async def never(latest: float) -> None:
        nonlocal calls
        calls += 1
        if calls > 2:  # the Allocates go; the CreatePermission waits
            await trio.sleep_forever()

    uri = f"turn:{turn[0]}:{turn[1]}?transport=udp"
    with trio.fail_after(60):
        async with (
            open_turn_server(scenario.server_network, [f"{turn[0]}:{turn[1]}"], users={USER: PASSWORD}, realm=REALM),
            open_allocation(uri, USER, PASSWORD, network=scenario.network_a, pace=never) as allocation,
        ):
            kicks = 0
            kick = allocation._kick

            def counting_kick() -> None:
                nonlocal kicks
                kicks += 1
                kick()

            allocation._kick = counting_kick  # type: ignore[method-assign]
            for _ in range(10):
                await allocation.send(b"data", ("203.0.113.9", 4000))
            assert allocation._client.held_count == 1
            assert kicks == 1


async def test_relay_gathering_over_os_sockets_takes_one_slot_per_new_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On loopback with the embedded TURN server (the OS socket path of the allocation): the relay candidate
    is gathered, and the two Allocates and the releasing Refresh took a pacer slot each."""
    from iceagent.net.os import OSNetwork

    reservations = Reservations(monkeypatch)
    network = OSNetwork()
    with trio.fail_after(20):
        async with open_turn_server(network, ["127.0.0.1:0"], users={USER: PASSWORD}) as server:
            port = server.address[1]
            servers = [IceServer(urls=[f"turn:127.0.0.1:{port}?transport=udp"], username=USER, credential=PASSWORD)]
            async with open_agent(host_addresses=["127.0.0.1"], ice_servers=servers, ice_transport_policy="relay",
                                  network=network) as agent:
                gathered = [c async for c in agent.gather()]
                assert [c.type for c in gathered] == ["relay"]
                assert reservations.count == 2  # Allocate, Allocate with credentials
    assert reservations.count == 3  # and the release
