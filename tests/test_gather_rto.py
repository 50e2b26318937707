"""RFC 8445 14.3: during gathering "RTO = MAX (500ms, Ta * (Num-Of-Cands))", Num-Of-Cands being the number of
server-reflexive and relay candidates gathered. With many servers every first request goes out (one per Ta)
before any is sent again. Counted on the vnet under MockClock: the transmissions of requests to silent servers."""

from __future__ import annotations

from itertools import pairwise
from types import SimpleNamespace

import pytest
import trio
from iceagent_vnet import vnet
from test_loss_vnet import SendFilter, stun_request

from iceagent import IceConfig, IceServer, open_agent
from iceagent.gatherers._rto import gathering_rto, num_of_cands
from iceagent.gatherers.base import GatherOptions
from iceagent.net.base import Address, Network
from iceagent.stun import long_term_key
from iceagent.stun.attributes import Attr
from iceagent.stun.message import Message, Method
from iceagent.turn import AllocationState, TurnClient

#: A host of the vnet's server network where nothing listens: every request to it goes unanswered.
SILENT = "198.51.100.1"
STUN_SERVERS = 12


class Requests(SendFilter):
    """Logs each STUN/TURN request A sends to SILENT: (time, destination, method, transaction id); loses none."""

    def __init__(self, network: Network) -> None:
        super().__init__(network)
        self.sent: list[tuple[float, Address, Method, bytes]] = []

    def keep(self, data: bytes, remote: Address) -> bool:
        message = stun_request(data) if remote[0] == SILENT else None
        if message is not None:
            self.sent.append((trio.current_time(), remote, message.method, message.transaction_id))
        return True

    def gaps(self, method: Method, remote: Address) -> list[float]:
        """The times between the transmissions of the first transaction of `method` to `remote`."""
        mine = [(t, tid) for t, to, m, tid in self.sent if m is method and to == remote]
        first = mine[0][1]
        times = [t for t, tid in mine if tid == first]
        return [round(b - a, 6) for a, b in pairwise(times)]


def _stun(count: int) -> list[IceServer]:
    return [IceServer(urls=[f"stun:{SILENT}:{4000 + i}"]) for i in range(count)]


async def _gather(servers: list[IceServer]) -> Requests:
    """Agent A (behind a NAT on the vnet, one host address) gathers with `servers`, all silent (no process-wide
    pacer: each new transaction starts when its gatherer says, to the millisecond)."""
    scenario = vnet("eim-apdf", "none", rtt=0.05, seed=1)
    tap = Requests(scenario.network_a)
    config = IceConfig(gather_timeout=10.0, global_pacing=False)
    async with open_agent(network=tap, ice_servers=servers, config=config) as agent:
        types = [c.type async for c in agent.gather()]
    assert types == ["host"]
    return tap


def test_num_of_cands_counts_srflx_per_base_and_server_and_one_relay_per_turn_url() -> None:
    """A srflx candidate per base and `stun:` server of its IP version (a name counts for every base), one
    relayed per `turn:`/`turns:` URL; with no `stun:` server the `turn:` servers over UDP are asked for the
    srflx candidates (not under the relay-only policy)."""
    turn = IceServer(urls=["turn:192.0.2.9:3478", "turns:192.0.2.9:5349?transport=tcp"], username="u", credential="p")
    stun = IceServer(urls=["stun:192.0.2.1", "stun:[2001:db8::1]", "stun:stun.example.org"])
    bases = ["10.0.0.1", "10.0.0.2", "2001:db8::5"]
    assert num_of_cands(GatherOptions(ice_servers=[stun]), bases) == 2 + 1 + 3
    assert num_of_cands(GatherOptions(ice_servers=[stun, turn]), bases) == 6 + 2
    assert num_of_cands(GatherOptions(ice_servers=[turn]), bases) == 2 + 2  # the UDP turn: server, per IPv4 base
    assert num_of_cands(GatherOptions(ice_servers=[turn], ice_transport_policy="relay"), bases) == 2
    assert num_of_cands(GatherOptions(), bases) == 0


@pytest.mark.parametrize(("servers", "rto"), [(0, 0.5), (2, 0.5), (10, 0.5), (11, 0.55), (12, 0.6)])
def test_the_gathering_rto_is_ta_times_num_of_cands_above_the_500_ms_floor(servers: int, rto: float) -> None:
    """On one base, `servers` `stun:` servers: max(IceConfig.rto, Ta x Num-Of-Cands) with the defaults (500 ms,
    50 ms): a few servers keep the 500 ms floor."""
    options = GatherOptions(ice_servers=_stun(servers), host_addresses=["10.0.0.1"])
    ctx = SimpleNamespace(options=options, network=None)
    assert gathering_rto(ctx) == pytest.approx(rto)  # type: ignore[arg-type]


async def test_binding_requests_retransmit_after_ta_times_num_of_cands(autojump_clock: object) -> None:
    """12 `stun:` servers and one base: Num-Of-Cands is 12, so each Binding request's RTO is 50 ms x 12 =
    600 ms (not 500 ms): transmissions 0.6, 1.2, 2.4 s apart, and the srflx gatherer's second transaction to
    a server that has not answered starts one such RTO after the first."""
    tap = await _gather(_stun(STUN_SERVERS))
    server = (SILENT, 4000)
    assert tap.gaps(Method.BINDING, server)[:3] == [0.6, 1.2, 2.4]
    starts: dict[bytes, float] = {}
    for t, to, _, tid in tap.sent:
        if to == server:
            starts.setdefault(tid, t)
    first, second = list(starts.values())[:2]
    assert second - first == pytest.approx(0.6)


async def test_the_allocate_request_retransmits_after_ta_times_num_of_cands(autojump_clock: object) -> None:
    """12 `stun:` servers and a `turn:` server over UDP, one base: Num-Of-Cands is 13, so the Allocate
    request's RTO is 650 ms during gathering (RFC 8445 14.3)."""
    turn = IceServer(urls=[f"turn:{SILENT}:3478"], username="alice", credential="secret")
    tap = await _gather([*_stun(STUN_SERVERS), turn])
    assert tap.gaps(Method.ALLOCATE, (SILENT, 3478))[:3] == [0.65, 1.3, 2.6]
    assert tap.gaps(Method.BINDING, (SILENT, 4000))[:3] == [0.65, 1.3, 2.6]


def _first_retransmission(client: TurnClient, now: float) -> float:
    """How long after `now` the request just queued is sent again (nothing answers)."""
    client.datagrams_to_send()
    at = client.get_timer()
    assert at is not None
    return round(at - now, 6)


def test_the_allocate_rto_is_for_allocate_only() -> None:
    """TurnClient(allocate_rto=0.65): the Allocate and its retry with credentials (gathering, RFC 8445 14.3)
    start from 650 ms; a Refresh once allocated starts from `rto` (500 ms, RFC 8489 6.2.1)."""
    client = TurnClient("alice", "secret", server_name="turn:test", rto=0.5, allocate_rto=0.65)
    client.allocate(0.0)
    request = Message.decode(client.datagrams_to_send()[0])
    assert client.get_timer() == pytest.approx(0.65)
    realm = [(Attr.REALM, "example.org"), (Attr.NONCE, "abcdef0123")]
    client.receive(request.error_response(401, attributes=realm).encode(), 0.1)
    retry = Message.decode(client.datagrams_to_send()[0])  # the retry with credentials: a new Allocate
    assert client.get_timer() == pytest.approx(0.1 + 0.65)
    granted = [(Attr.XOR_RELAYED_ADDRESS, ("198.51.100.7", 49152)), (Attr.XOR_MAPPED_ADDRESS, ("192.0.2.10", 40000)),
               (Attr.LIFETIME, 600)]  # fmt: skip
    key = long_term_key("alice", "example.org", "secret")
    client.receive(retry.success_response(granted).encode(integrity_key=key, fingerprint=True), 0.2)
    assert client.state is AllocationState.ALLOCATED
    client.refresh(1.0)
    client.datagrams_to_send()
    assert client.get_timer() == pytest.approx(1.0 + 0.5)
