"""The NAT traversal matrix: run one cell on the vnet, predict it from RFC 4787 reasoning, render the docs.

A cell is agent A behind NAT type X and agent B behind NAT type Y (or "none": directly on the internet),
both using the embedded STUN server on the virtual internet, and in the second run the embedded TURN
server too. `run_cell` connects them and records what was selected; `theory` says what must happen
(`theory(..., turn=True)` with the TURN server); `render_markdown` / `render_svg` turn the outcomes
of both runs into docs/nat-matrix.md and docs/nat-matrix.svg (deterministic: same outcomes, same bytes).

Outcome kinds, from the most direct to the least: host, srflx, prflx (direct paths, named after the
least direct candidate type in the selected pair), relay (through TURN), failed.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

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

#: Candidate types from the most to the least direct; an outcome is named after its least direct type.
KIND_ORDER = ("host", "srflx", "prflx", "relay")
KINDS = (*KIND_ORDER, "failed")

#: Failing cells end at failed_timeout (simulated time); connecting ones take a few RTTs at most.
MATRIX_CONFIG = IceConfig(failed_timeout=10.0)

TURN_USER, TURN_PASSWORD, TURN_REALM = "matrix", "matrix-secret", "vnet"

DOCS = Path(__file__).resolve().parent.parent / "docs"


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
    """ "eim-adf" -> ("eim", "adf"); "none" -> ("none", "none")."""
    if nat == "none":
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
    * both non-EIM: see `_initiator_gets_through`.
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
    both agents have it as a `turn:` server besides the STUN server."""
    scenario = vnet(nat_a, nat_b, rtt=rtt, seed=seed)
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
        open_agent(controlling=False, network=scenario.network_b, ice_servers=servers, config=config,
                   name="B") as b,
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
    return run


# ---- rendering ----

COLOURS = {
    "host": "#1a7f37",
    "srflx": "#4ac26b",
    "prflx": "#a7e3a4",
    "relay": "#f0b429",
    "failed": "#d1242f",
}
TEXT_COLOURS = {"host": "#ffffff", "srflx": "#0b2e13", "prflx": "#0b2e13", "relay": "#3d2a00", "failed": "#ffffff"}
MEANING = {
    "host": "direct, host candidates (no NAT in the way)",
    "srflx": "direct, server-reflexive candidates (the STUN-learned addresses)",
    "prflx": "direct, a peer-reflexive address learned from the checks themselves",
    "relay": "relayed through TURN: no direct path exists",
    "failed": "no path: without TURN these need a relay",
}
DIRECT = KIND_ORDER[:3]


def _grid(outcomes: Mapping[tuple[str, str], Outcome]) -> list[list[Outcome | None]]:
    return [[outcomes.get((a, b)) for b in NAT_TYPES] for a in NAT_TYPES]


def summary(outcomes: Iterable[Outcome]) -> dict[str, int]:
    """Cells per kind, in KINDS order."""
    counts = dict.fromkeys(KINDS, 0)
    for outcome in outcomes:
        counts[outcome.kind] += 1
    return counts


def _cell_text(outcome: Outcome | None) -> str:
    if outcome is None:
        return "?"
    if not outcome.connected:
        return "**failed**"
    if outcome.kind == "relay":
        return f"**{outcome.label}** (no direct path)"
    return outcome.label


def _table(outcomes: Mapping[tuple[str, str], Outcome]) -> list[str]:
    lines = [
        "| A \\ B | " + " | ".join(f"`{b}`" for b in NAT_TYPES) + " |",
        "| --- | " + " | ".join("---" for _ in NAT_TYPES) + " |",
    ]
    for a, row in zip(NAT_TYPES, _grid(outcomes), strict=True):
        lines.append(f"| `{a}` | " + " | ".join(_cell_text(outcome) for outcome in row) + " |")
    return lines


def render_markdown(
    outcomes: Mapping[tuple[str, str], Outcome], relayed: Mapping[tuple[str, str], Outcome] | None = None
) -> str:
    """docs/nat-matrix.md: the table of every cell (rows: A's NAT, columns: B's NAT) of the STUN-only run
    (`outcomes`) and, when given, of the run with the TURN server too (`relayed`), first."""
    counts = summary(outcomes.values())
    lines = [
        "# NAT traversal matrix",
        "",
        "<!-- Generated by tests/test_nat_matrix.py (tests/nat_matrix_tools.py); do not edit by hand. -->",
        "",
        "Agent A (rows) behind one NAT type, agent B (columns) behind another, on the virtual network.",
        "Each cell is A's selected pair as `local/remote` candidate types. NAT types are `mapping-filtering`",
        "(RFC 4787): `eim`/`adm`/`apdm` = endpoint-independent / address-dependent / address-and-port-dependent",
        "mapping, `eif`/`adf`/`apdf` the same for filtering; `none` puts the host directly on the internet.",
        "See [nat.md](nat.md) for what this means.",
        "",
    ]
    if relayed is not None:
        both = summary(relayed.values())
        direct = sum(both[k] for k in DIRECT)
        lines += [
            "![NAT traversal matrix with STUN and TURN: green cells direct, amber cells relayed](nat-matrix.svg)",
            "",
            "## With STUN and TURN",
            "",
            "Both agents use the embedded STUN server and the embedded TURN server on the virtual internet.",
            f"{direct} cells connect directly, with the same pair as without TURN; the {both['relay']} in **bold**",
            "have no direct path (the STUN-only run below fails there) and connect through the relay.",
            "",
            *_table(relayed),
            "",
            "## STUN only",
            "",
            "The same cells with the STUN server alone: the ground truth for which cells have a direct path.",
            "**failed** means none exists: that cell needs a relay.",
            "",
        ]
    else:
        lines += [
            "![NAT traversal matrix](nat-matrix.svg)",
            "",
            "Both agents use the embedded STUN server on the virtual internet, no TURN server.",
            "**failed** means no direct path exists: that cell needs a relay.",
            "",
        ]
    lines += _table(outcomes)
    lines += [""]
    if relayed is not None:
        lines += ["| outcome | STUN only | STUN and TURN | meaning |", "| --- | --- | --- | --- |"]
        lines += [f"| {kind} | {counts[kind]} | {both[kind]} | {MEANING[kind]} |" for kind in KINDS]
        lines += [
            "",
            f"{sum(counts.values())} cells. STUN only: {sum(counts[k] for k in DIRECT)} connect directly, "
            f"{counts['failed']} fail. With TURN: {sum(both[k] for k in (*DIRECT, 'relay'))} connect, "
            f"{direct} directly and {both['relay']} through the relay; {both['failed']} fail.",
            "",
        ]
    else:
        lines += ["| outcome | cells | meaning |", "| --- | --- | --- |"]
        lines += [f"| {kind} | {counts[kind]} | {MEANING[kind]} |" for kind in KINDS]
        lines += [
            "",
            f"{sum(counts.values())} cells: {sum(counts[k] for k in DIRECT)} connect directly, "
            f"{counts['relay']} through a relay, {counts['failed']} fail without one.",
            "",
        ]
    return "\n".join(lines)


def render_svg(outcomes: Mapping[tuple[str, str], Outcome], *, servers: str = "STUN and TURN") -> str:
    """docs/nat-matrix.svg: a coloured grid of the cells of one run (with `servers`), hand-written SVG."""
    cell, head, left = 74, 64, 96
    n = len(NAT_TYPES)
    legend_y = head + n * cell + 28
    width = left + n * cell + 16
    height = legend_y + 26 * len(KINDS) + 12
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        f"<title>NAT traversal matrix: agent A (rows) vs agent B (columns), {html.escape(servers)}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{left}" y="22" font-size="15" font-weight="bold">A (rows) \u00d7 B (columns), '
        f"{html.escape(servers)}: selected pair, A's view (local/remote)</text>",
    ]
    for j, b in enumerate(NAT_TYPES):
        x = left + j * cell + cell / 2
        out.append(f'<text x="{x:g}" y="{head - 10}" font-size="12" text-anchor="middle">{html.escape(b)}</text>')
    for i, (a, row) in enumerate(zip(NAT_TYPES, _grid(outcomes), strict=True)):
        y = head + i * cell
        out.append(
            f'<text x="{left - 8}" y="{y + cell / 2 + 4:g}" font-size="12" text-anchor="end">{html.escape(a)}</text>'
        )
        for j, outcome in enumerate(row):
            x = left + j * cell
            kind = "failed" if outcome is None else outcome.kind
            fill = "#eeeeee" if outcome is None else COLOURS[kind]
            text_fill = TEXT_COLOURS[kind]
            out.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" '
                       'stroke="#ffffff" stroke-width="2"/>')
            if outcome is None:
                lines = ["?"]
            elif not outcome.connected:
                lines = ["failed"]
            elif outcome.kind == "relay":
                lines = [f"{outcome.a_local}/", f"{outcome.a_remote}", "(relayed)"]
            else:
                lines = [f"{outcome.a_local}/", f"{outcome.a_remote}"]
            for k, text in enumerate(lines):
                ty = y + cell / 2 + 4 + (k - (len(lines) - 1) / 2) * 15
                out.append(f'<text x="{x + cell / 2:g}" y="{ty:g}" font-size="12" text-anchor="middle" '
                           f'fill="{text_fill}">{html.escape(text)}</text>')
    counts = summary(o for o in outcomes.values())
    for k, kind in enumerate(KINDS):
        y = legend_y + 26 * k
        out.append(f'<rect x="{left}" y="{y}" width="18" height="18" fill="{COLOURS[kind]}"/>')
        out.append(f'<text x="{left + 26}" y="{y + 14}" font-size="13">{kind} ({counts[kind]}): '
                   f"{html.escape(MEANING[kind])}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_docs(
    outcomes: Mapping[tuple[str, str], Outcome],
    relayed: Mapping[tuple[str, str], Outcome] | None = None,
    docs: Path = DOCS,
) -> None:
    """Write docs/nat-matrix.md (both runs) and docs/nat-matrix.svg (the run with TURN when given),
    only if their content changed."""
    picture = render_svg(outcomes, servers="STUN only") if relayed is None else render_svg(relayed)
    for name, text in (("nat-matrix.md", render_markdown(outcomes, relayed)), ("nat-matrix.svg", picture)):
        path = docs / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
