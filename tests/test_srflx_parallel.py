"""The srflx gatherer under loss (issue 16 item 4): a Binding request unanswered after its first RTO gets
company, up to PARALLEL_BINDINGS transactions to one server (RFC 8489 6.2), on the vnet under MockClock."""

from __future__ import annotations

import trio
from iceagent_vnet import vnet
from nat_matrix_tools import open_stun_server, servers_for
from test_loss_vnet import SendFilter, stun_request

from iceagent import IceConfig, open_agent
from iceagent.gatherers.srflx import PARALLEL_BINDINGS
from iceagent.net.base import Address, Network


class ServerTap(SendFilter):
    """Logs each Binding request to `server` (time, transaction id) and loses every transmission of the
    transactions numbered in `lose` (0: the first)."""

    def __init__(self, network: Network, server: Address, lose: set[int]) -> None:
        super().__init__(network)
        self.server = server
        self.lose = lose
        self.sent: list[tuple[float, bytes]] = []

    def keep(self, data: bytes, remote: Address) -> bool:
        message = stun_request(data) if remote == self.server else None
        if message is None:
            return True
        self.sent.append((trio.current_time(), message.transaction_id))
        return self.transactions().index(message.transaction_id) not in self.lose

    def transactions(self) -> list[bytes]:
        return list(dict.fromkeys(tid for _, tid in self.sent))


async def gather(lose: set[int]) -> tuple[ServerTap, list[str], float]:
    """Agent A behind a port-restricted cone gathers with one STUN server whose requests of the transactions
    in `lose` are all lost; returns the tap, the candidate types and when gathering ended."""
    scenario = vnet("eim-apdf", "none", rtt=0.05, seed=1)
    tap = ServerTap(scenario.network_a, scenario.stun_addresses[0], lose)
    async with (
        open_stun_server(scenario.server_network, [f"{ip}:{port}" for ip, port in scenario.stun_addresses[:1]]),
        open_agent(network=tap, ice_servers=servers_for(scenario), config=IceConfig(gather_timeout=10.0)) as agent,
    ):
        start = trio.current_time()
        types = [c.type async for c in agent.gather()]
        took = trio.current_time() - start
        await trio.sleep(60)  # whatever is still in flight would retransmit meanwhile
    return tap, types, took


async def test_a_lost_binding_transaction_is_overtaken_by_a_second_one(autojump_clock: object) -> None:
    """Every transmission of the first Binding request is lost: a second transaction starts one RTO (0.5 s)
    later and its answer makes the srflx candidate; the first is then cancelled (no more transmissions) and no
    third one starts."""
    tap, types, took = await gather({0})
    assert types == ["host", "srflx"]
    assert took < 1.0  # one RTO and one round trip, not gather_timeout
    first, second = tap.transactions()
    # the first at 0 s and its retransmission at 0.5 s, the second at 0.5 s, answered: nothing after
    assert [(round(t, 2), tid) for t, tid in tap.sent] == [(0.0, first), (0.5, first), (0.5, second)]


async def test_at_most_parallel_bindings_transactions_to_a_silent_server(autojump_clock: object) -> None:
    """A server that never answers gets PARALLEL_BINDINGS transactions, started one RTO apart, each on RFC 8489
    6.2.1's schedule (Rc = 7 transmissions), and no more: gathering ends at gather_timeout without srflx."""
    tap, types, took = await gather(set(range(10)))
    assert types == ["host"]
    assert took == 10.0
    transactions = tap.transactions()
    assert len(transactions) == PARALLEL_BINDINGS == 5
    assert [t for t, tid in tap.sent if tid in transactions and t == min(u for u, x in tap.sent if x == tid)] == [
        0.0, 0.5, 1.0, 1.5, 2.0]  # fmt: skip
    assert len(tap.sent) == 5 * 7
