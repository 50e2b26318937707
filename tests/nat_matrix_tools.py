"""The NAT traversal matrix: run one cell on the vnet, predict it from RFC 4787 reasoning, render the docs.

A cell is agent A behind NAT type X and agent B behind NAT type Y (or "none": directly on the internet),
both using the embedded STUN server on the virtual internet, and in the second run the embedded TURN
server too. `run_cell` connects them and records what was selected; `theory` says what must happen
(`theory(..., turn=True)` with the TURN server); tests/nat_matrix_render.py turns the outcomes of both
runs into docs/nat-matrix.md and docs/nat-matrix.svg.

Outcome kinds, from the most direct to the least: host, srflx, prflx (direct paths, named after the
least direct candidate type in the selected pair), relay (through TURN), failed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import attrs
import pluggy
import trio
from iceagent_vnet import vnet
from iceagent_vnet.scenario import Scenario

from iceagent import (
    Agent,
    Candidate,
    GatheringState,
    IceConfig,
    IceFailed,
    IceServer,
    IceState,
    IceStream,
    open_agent,
)
from iceagent.ice.priority import TYPE_PREFERENCES
from iceagent.net.base import Network, NetworkWrapper, UdpSocket
from iceagent.stun.server import open_stun_server
from iceagent.turn.server import open_turn_server

MAPPINGS = ("eim", "adm", "apdm")
FILTERINGS = ("eif", "adf", "apdf")
NAT_TYPES: tuple[str, ...] = ("none", *(f"{m}-{f}" for m in MAPPINGS for f in FILTERINGS))
#: B as an ICE-lite server on a public address (RFC 8445 2.5): host candidates only, no checks of its own.
LITE = "lite"
#: The matrix's columns (B): every NAT type, then the lite server. Rows (A, the full client) are NAT_TYPES.
COLUMNS: tuple[str, ...] = (*NAT_TYPES, LITE)

#: Candidate types from the most to the least direct; an outcome is named after its least direct type.
KIND_ORDER = ("host", "srflx", "prflx", "relay")
KINDS = (*KIND_ORDER, "failed")

#: Failing cells end at failed_timeout (simulated time); connecting ones take a few RTTs at most.
#: nomination_delay 3 s (default 0.5): the matrix asserts the best pair that works, so the controlling side waits
#: for better pairs still being checked. With TURN requests paced (RFC 8445 14.2) a relayed pair's first check
#: can arrive before the peer's CreatePermission and need a retransmission (RTO 0.5 s): with the default delay
#: a lower relayed pair was nominated in about 1 run in 10 of apdm-adf_vs_apdm-eif (0 in 70 with 3 s)
MATRIX_CONFIG = IceConfig(failed_timeout=10.0, nomination_delay=3.0)

TURN_USER, TURN_PASSWORD, TURN_REALM = "matrix", "matrix-secret", "vnet"


def servers_for(scenario: Scenario, count: int = 1) -> list[IceServer]:
    """The scenario's first `count` STUN addresses (at most 2) as the agents' ICE servers."""
    return [IceServer(urls=[f"stun:{ip}:{port}"]) for ip, port in scenario.stun_addresses[:count]]


async def send_candidates(src: Agent, dst: Agent) -> None:
    """Trickle src's candidates of its current generation (through SDP), then end-of-candidates, to dst."""
    async for cand in src.gather():
        dst.add_remote_candidate(Candidate.from_sdp(cand.to_sdp()))
    dst.add_remote_candidate(None)


async def signal(src: Agent, dst: Agent) -> None:
    """Signal src's parameters, candidates and end-of-candidates to dst."""
    dst.set_remote_parameters(src.local_parameters)
    await send_candidates(src, dst)


def exchange_parameters(a: Agent, b: Agent) -> None:
    """Offer/answer of the ICE parameters, in order: if `a` has just restarted, its new ufrag restarts `b`
    (RFC 8445 9), and `a` then gets `b`'s new parameters, so both sides end in matching generations."""
    b.set_remote_parameters(a.local_parameters)
    a.set_remote_parameters(b.local_parameters)


async def exchange(a: Agent, b: Agent) -> None:
    """Offer/answer both ways: parameters first, then candidates trickled concurrently."""
    exchange_parameters(a, b)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_candidates, a, b)
        nursery.start_soon(send_candidates, b, a)


async def timed_connect_pair(a: Agent, b: Agent) -> tuple[IceStream, IceStream, float]:
    """Exchange candidates and wait until both agents have a valid pair (connect() returned) and the
    exchange is over; also returns how long (Trio time) it took until both had connected."""
    streams: dict[str, IceStream] = {}
    start = trio.current_time()
    done: list[float] = []

    async def conn(key: str, agent: Agent) -> None:
        streams[key] = await agent.connect()
        done.append(trio.current_time() - start)

    exchange_parameters(a, b)  # before connect(): a FAILED peer restarts on the new ufrag first
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_candidates, a, b)
        nursery.start_soon(send_candidates, b, a)
        nursery.start_soon(conn, "a", a)
        nursery.start_soon(conn, "b", b)
    return streams["a"], streams["b"], max(done)


async def connect_pair(a: Agent, b: Agent) -> tuple[IceStream, IceStream]:
    """Exchange candidates and wait until both agents have a valid pair (connect() returned)."""
    sa, sb, _ = await timed_connect_pair(a, b)
    return sa, sb


async def roundtrip(sa: IceStream, sb: IceStream, payload: bytes = b"ping", *, retry: float = 1.0) -> None:
    """Send payload a->b and back b->a, resending every `retry` seconds while the link loses it."""
    for src, dst in ((sa, sb), (sb, sa)):
        while True:
            await src.send(payload)
            with trio.move_on_after(retry):
                while (await dst.receive()) != payload:
                    pass
                break


@asynccontextmanager
async def open_pair(
    scenario: Scenario,
    *,
    config: IceConfig | None = None,
    config_b: IceConfig | None = None,
    auto_restart: bool = False,
    stun_servers: int = 1,
    network_a: Network | None = None,
    network_b: Network | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
) -> AsyncIterator[tuple[Agent, Agent]]:
    """The embedded STUN server on the scenario's server host (on `stun_servers` of its addresses, each
    an ICE server of both agents), A (controlling) and B on their hosts (or on the networks given, e.g.
    taps wrapping the scenario's)."""
    servers = servers_for(scenario, stun_servers)
    addresses = [f"{ip}:{port}" for ip, port in scenario.stun_addresses[:stun_servers]]
    async with (
        open_stun_server(scenario.server_network, addresses),
        open_agent(controlling=True, network=network_a or scenario.network_a, ice_servers=servers, config=config,
                   auto_restart=auto_restart, name="A", plugin_manager=plugin_manager) as a,
        open_agent(controlling=False, network=network_b or scenario.network_b, ice_servers=servers,
                   config=config_b or config, name="B", plugin_manager=plugin_manager) as b,
    ):
        yield a, b


@attrs.frozen
class Outcome:
    """What one cell did: the selected pair's candidate types as each side sees them, or failure."""

    nat_a: str
    nat_b: str
    a_local: str | None = None
    a_remote: str | None = None
    b_local: str | None = None
    b_remote: str | None = None

    @property
    def connected(self) -> bool:
        return None not in (self.a_local, self.a_remote, self.b_local, self.b_remote)

    @property
    def kind(self) -> str:
        """host / srflx / prflx / relay (the least direct type of A's selected pair) or failed."""
        if not self.connected:
            return "failed"
        return max((self.a_local, self.a_remote), key=lambda t: KIND_ORDER.index(t or "host")) or "failed"

    @property
    def label(self) -> str:
        """A's view of the selected pair, "local/remote", or "failed (needs relay)"."""
        if not self.connected:
            return "failed (needs relay)"
        return f"{self.a_local}/{self.a_remote}"


def split(nat: str) -> tuple[str, str]:
    """ "eim-adf" -> ("eim", "adf"); "none" and LITE (a lite server on a public address) -> ("none", "none")."""
    if nat in ("none", LITE):
        return "none", "none"
    mapping, _, filtering = nat.partition("-")
    return mapping, filtering


def _initiator_gets_through(x: str, y: str) -> bool:
    """Both sides map address-dependently or worse; X's check reaches Y's srflx mapping (Y filters
    endpoint-independently). Does a pair form? Y answers and re-checks from its mapping towards X
    (a new port); X's mapping towards Y has only sent to Y's srflx port, so X must filter by address
    at most. X then answers from its mapping towards Y's new port: the same one if X maps by address
    (a symmetric response, done), a new one if X maps by address and port; then only an
    address-dependent Y, whose next answer reuses its port, closes the loop (two APDM NATs chase each
    other's new ports forever)."""
    (mx, fx), (my, fy) = split(x), split(y)
    if fy != "eif" or fx == "apdf":
        return False
    return mx == "adm" or my == "adm"


def theory(nat_a: str, nat_b: str, *, turn: bool = False) -> Outcome:
    """The outcome RFC 4787 behaviour predicts for ICE with STUN only (no relay), or with a TURN server
    as well (`turn`): then the direct cells stay exactly as they are and the others are relayed.

    * a side without NAT is reachable by anyone: every check to its host candidate gets in;
    * endpoint-independent mapping: the address seen by the peer is the srflx candidate;
      otherwise the peer sees a new address, learned as peer-reflexive (RFC 8445 7.3.1.3) on
      its side and as a local prflx candidate from the check response (7.2.5.3.1) on ours;
    * both sides EIM: each side's checks open its own filter for the other's srflx address, connects;
    * one side EIM with endpoint-independent or address-dependent filtering: the other side's checks
      (from whatever mapping) get in once the EIM side has sent to that IP, and the answers come back
      from the srflx address the other side sent to, so it connects whatever the other NAT is;
    * EIM with address-and-port-dependent filtering against a non-EIM peer: the peer's packets come
      from a port the EIM side never sent to: filtered, fails;
    * both non-EIM: see `_initiator_gets_through`;
    * B a lite server (LITE) on a public address: as "none" (RFC 8445 2.5: it sends no check, but it
      needs none: A's checks reach its host address, and its answers return through the mapping A's
      check opened, which every filter passes); it learns A's address from A's checks, as srflx when A's
      NAT maps endpoint-independently (A signalled it), else as prflx (7.3.1.3), and nominates the pair
      A's USE-CANDIDATE names (7.3.2). No relay is needed, so with TURN nothing changes.
    """
    (ma, fa), (mb, fb) = split(nat_a), split(nat_b)

    def seen(mapping: str) -> str:
        return {"none": "host", "eim": "srflx"}.get(mapping, "prflx")

    if "none" in (ma, mb) or (ma == "eim" and mb == "eim"):
        ok = True
    elif ma == "eim" or mb == "eim":
        eim_filtering = fa if ma == "eim" else fb
        ok = eim_filtering in ("eif", "adf")
    else:
        ok = _initiator_gets_through(nat_a, nat_b) or _initiator_gets_through(nat_b, nat_a)
    if ok:
        return Outcome(nat_a, nat_b, a_local=seen(ma), a_remote=seen(mb), b_local=seen(mb), b_remote=seen(ma))
    if not turn:
        return Outcome(nat_a, nat_b)
    return _relayed(nat_a, nat_b)


def _relayed(nat_a: str, nat_b: str) -> Outcome:
    """The relayed pair of a cell without a direct path (both sides behind a NAT: "none" always connects).

    A pair with one relay candidate always works: the other side sends from its host socket to the
    relayed address, its NAT maps that (the srflx address for `eim`, a new port otherwise, which the
    relay's owner learns as prflx, RFC 8445 7.3.1.3, through the TURN permission for the NAT's IP, RFC
    8656 9), and the answer comes back from the relayed address it sent to, which any filter passes;
    the sender learns its mapping from the response (prflx unless it is its srflx address, 7.2.5.3.1).
    Of the two such pairs (A's relay with B's mapping, A's mapping with B's relay; relay/relay ranks
    below both) the controlling side A nominates the one with the higher pair priority (6.1.2.3): both
    have a relay candidate as the minimum, so the other candidate's type preference decides (prflx 110
    over srflx 100, so a dependent-mapping side keeps its own mapping and uses the other's relay), and
    on a tie the pair whose controlling-side candidate is the larger wins (the `G > D` term): A's
    mapping with B's relay.
    """
    (ma, _), (mb, _) = split(nat_a), split(nat_b)
    seen_a, seen_b = ("srflx" if m == "eim" else "prflx" for m in (ma, mb))
    if TYPE_PREFERENCES[seen_a] >= TYPE_PREFERENCES[seen_b]:
        return Outcome(nat_a, nat_b, a_local=seen_a, a_remote="relay", b_local="relay", b_remote=seen_a)
    return Outcome(nat_a, nat_b, a_local="relay", a_remote=seen_b, b_local=seen_b, b_remote="relay")


@attrs.define
class CellRun:
    """A finished cell with the details the assertions need beyond the outcome."""

    outcome: Outcome
    time_to_connect: float | None = None
    #: The address B's selected pair sends to (A as B sees it) and vice versa.
    a_as_seen_by_b: tuple[str, int] | None = None
    b_as_seen_by_a: tuple[str, int] | None = None
    #: The srflx candidates each side gathered (address, port).
    srflx_a: list[tuple[str, int]] = attrs.Factory(list)
    srflx_b: list[tuple[str, int]] = attrs.Factory(list)
    #: The public addresses of the NAT mappings A's / B's NAT holds at the end.
    mapped_a: set[tuple[str, int]] = attrs.Factory(set)
    mapped_b: set[tuple[str, int]] = attrs.Factory(set)
    #: The relay candidates each side gathered (address, port).
    relay_a: list[tuple[str, int]] = attrs.Factory(list)
    relay_b: list[tuple[str, int]] = attrs.Factory(list)
    #: Datagrams carrying the cell's data that went through the TURN server's sockets, per direction
    #: ("a->b", "b->a"): one in and one out per relayed datagram, none on a direct path.
    data_relayed: dict[str, int] = attrs.Factory(dict)
    #: Connectivity checks B sent (a lite B sends none, RFC 8445 2.5).
    checks_sent_b: int = 0


#: The application data of a cell, per direction: distinct from anything STUN or TURN carries.
PAYLOADS = {"a->b": b"matrix data from A to B", "b->a": b"matrix data from B to A"}


class _CountingSocket:
    """A UdpSocket of the TURN server that counts the datagrams (in and out) containing a cell's data."""

    def __init__(self, sock: UdpSocket, counts: dict[str, int]) -> None:
        self._sock = sock
        self._counts = counts

    @property
    def local_address(self) -> tuple[str, int]:
        return self._sock.local_address

    def _count(self, data: bytes) -> None:
        for direction, payload in PAYLOADS.items():
            if payload in data:
                self._counts[direction] = self._counts.get(direction, 0) + 1

    async def send(self, data: bytes, remote: tuple[str, int]) -> None:
        self._count(bytes(data))
        await self._sock.send(data, remote)

    async def receive(self) -> tuple[bytes, tuple[str, int]]:
        data, remote = await self._sock.receive()
        self._count(bytes(data))
        return data, remote

    def close(self) -> None:
        self._sock.close()


class CountingNetwork(NetworkWrapper):
    """The TURN server's Network, counting what passes its UDP sockets (listener and relays) in `counts`:
    ground truth for "the data went through the relay", whatever the agents report."""

    def __init__(self, network: Network) -> None:
        super().__init__(network)
        self.counts: dict[str, int] = {}

    async def bind_udp(self, address: str, port: int = 0, *, reuse: bool = False) -> UdpSocket:
        return _CountingSocket(await self.inner.bind_udp(address, port, reuse=reuse), self.counts)

    async def join_multicast(self, sock: UdpSocket, group: str, interface_address: str) -> None:
        inner = sock._sock if isinstance(sock, _CountingSocket) else sock
        await self.inner.join_multicast(inner, group, interface_address)


@asynccontextmanager
async def _maybe_turn(scenario: Scenario, turn: bool) -> AsyncIterator[CountingNetwork | None]:
    """The embedded TURN server at scenario.turn_address (if `turn`), on a CountingNetwork."""
    if not turn:
        yield None
        return
    ip, port = scenario.turn_address
    network = CountingNetwork(scenario.server_network)
    async with open_turn_server(network, [f"{ip}:{port}"], users={TURN_USER: TURN_PASSWORD}, realm=TURN_REALM):
        yield network


async def run_cell(nat_a: str, nat_b: str, *, seed: int = 1, rtt: float = 0.02,
                   config: IceConfig = MATRIX_CONFIG, turn: bool = False) -> CellRun:
    """Connect A (behind nat_a) and B (behind nat_b) through the vnet and report what happened.

    With `turn`, the embedded TURN server runs on the virtual internet too (scenario.turn_address) and
    both agents have it as a `turn:` server besides the STUN server. `nat_b=LITE` makes B an ICE-lite
    agent on a public address (no ICE servers: it offers host candidates only)."""
    lite = nat_b == LITE
    scenario = vnet(nat_a, "none" if lite else nat_b, rtt=rtt, seed=seed)
    servers = servers_for(scenario)
    if turn:
        turn_ip, turn_port = scenario.turn_address
        servers.append(IceServer(urls=[f"turn:{turn_ip}:{turn_port}?transport=udp"], username=TURN_USER,
                                 credential=TURN_PASSWORD))
    ip, port = scenario.stun_addresses[0]
    connected: dict[str, bool] = {}
    async with (
        open_stun_server(scenario.server_network, [f"{ip}:{port}"]),
        _maybe_turn(scenario, turn) as turn_network,
        open_agent(controlling=True, network=scenario.network_a, ice_servers=servers, config=config,
                   name="A") as a,
        open_agent(controlling=False, network=scenario.network_b, ice_servers=[] if lite else servers,
                   config=config, name="B", lite=lite) as b,
    ):
        start = trio.current_time()
        # Gather completely before signaling: with trickle, a check answered before the srflx STUN
        # answer arrives may teach an EIM side its mapped address as prflx first (a race at equal
        # simulated times); the matrix records the steady-state outcome.
        await a.gathering_state.wait_value(GatheringState.COMPLETE)
        await b.gathering_state.wait_value(GatheringState.COMPLETE)
        await signal(a, b)
        await signal(b, a)

        async def connect(label: str, agent: Agent) -> None:
            try:
                await agent.connect()
            except IceFailed:
                connected[label] = False
                return
            # wait for nomination to conclude so the recorded pair is the final one
            await agent.state.wait_value(lambda s: s in (IceState.COMPLETED, IceState.FAILED))
            connected[label] = agent.state.value is IceState.COMPLETED

        async with trio.open_nursery() as nursery:
            nursery.start_soon(connect, "a", a)
            nursery.start_soon(connect, "b", b)
        run = CellRun(Outcome(nat_a, nat_b))
        run.srflx_a = [(c.address, c.port) async for c in a.gather() if c.type == "srflx"]
        run.srflx_b = [(c.address, c.port) async for c in b.gather() if c.type == "srflx"]
        run.relay_a = [(c.address, c.port) async for c in a.gather() if c.type == "relay"]
        run.relay_b = [(c.address, c.port) async for c in b.gather() if c.type == "relay"]
        for router, into in ((scenario.nat_a, run.mapped_a), (scenario.nat_b, run.mapped_b)):
            if router is not None:
                into.update(m.external for m in router.mappings("udp"))
        pa, pb = a.selected_pair, b.selected_pair
        if connected.get("a") and connected.get("b") and pa is not None and pb is not None:
            stream_a, stream_b = await a.connect(), await b.connect()
            await stream_a.send(PAYLOADS["a->b"])
            await stream_b.send(PAYLOADS["b->a"])
            assert await stream_b.receive() == PAYLOADS["a->b"]
            assert await stream_a.receive() == PAYLOADS["b->a"]
            run.data_relayed = {d: 0 if turn_network is None else turn_network.counts.get(d, 0) for d in PAYLOADS}
            run.time_to_connect = trio.current_time() - start
            run.outcome = Outcome(nat_a, nat_b, pa.local.type, pa.remote.type, pb.local.type, pb.remote.type)
            run.a_as_seen_by_b = (pb.remote.address, pb.remote.port)
            run.b_as_seen_by_a = (pa.remote.address, pa.remote.port)
        run.checks_sent_b = sum(p["requests_sent"] for p in b.stats()["pairs"])
    return run


def summary(outcomes: Iterable[Outcome]) -> dict[str, int]:
    """Cells per kind, in KINDS order."""
    counts = dict.fromkeys(KINDS, 0)
    for outcome in outcomes:
        counts[outcome.kind] += 1
    return counts
