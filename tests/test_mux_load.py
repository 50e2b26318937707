"""open_mux under load: its sockets are drained between other tasks' steps (a Trio scheduling round with
thousands of agents lasts longer than a socket buffer holds), and a retransmitted check still waiting in an
agent's inbox is not queued twice."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from test_mux import LOOP, TIMEOUT, Peer, check, marker

import iceagent.net._mux_ports
import iceagent.net.mux
from iceagent.net._mux_inbox import CHECK_SCAN
from iceagent.net.mux import Mux, open_mux

SENDERS = 64  # more datagrams than the smallest receive buffer holds (a few on loopback)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = await Peer().bind()
    yield p
    p.close()


async def _burst_in_one_round(mux: Mux, target: tuple[str, int], ufrag: str) -> None:
    """SENDERS tasks, all runnable in the same scheduling round, each sending one check from its own socket:
    the mux's receive task runs at most once in that round."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(SENDERS)]
    try:
        for s in socks:
            s.bind((LOOP, 0))

        async def send(s: socket.socket, i: int) -> None:
            s.sendto(check(f"{ufrag}:p{i}", tid=i.to_bytes(12, "big")), target)

        await trio.testing.wait_all_tasks_blocked()  # the mux's receive task waits on its socket
        async with trio.open_nursery() as nursery:
            for i, s in enumerate(socks):
                nursery.start_soon(send, s, i)
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("address", [LOOP, "0.0.0.0"])
async def test_a_burst_longer_than_the_socket_buffer_is_drained_between_task_steps(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    monkeypatch.setattr(iceagent.net._mux_ports, "SOCKET_BUFFER", 1)  # the kernel's minimum: a few datagrams
    monkeypatch.setattr(iceagent.net.mux, "DRAIN_INTERVAL", 0.0, raising=False)  # after every step
    with trio.fail_after(TIMEOUT):
        async with open_mux([address], 0) as mux:
            target = next(a for a in mux.local_addresses if a[0] == LOOP)
            with mux.register("a") as a:
                a.add_ufrag("ufA")
                await _burst_in_one_round(mux, target, "ufA")
                got = await a.transport(target).receive_batch(2 * SENDERS)
                assert len(got) == SENDERS  # none lost in the kernel
                assert mux.stats()["routed"] == SENDERS and mux.stats()["dropped"] == {}


async def test_the_drainer_leaves_with_the_mux(monkeypatch: pytest.MonkeyPatch) -> None:
    drains: list[Mux] = []
    monkeypatch.setattr(iceagent.net.mux.Mux, "_drain", lambda self: drains.append(self))
    monkeypatch.setattr(iceagent.net.mux, "DRAIN_INTERVAL", 0.0)
    async with open_mux([LOOP], 0) as mux:
        await trio.lowlevel.checkpoint()
        assert drains
    drains.clear()
    await trio.lowlevel.checkpoint()
    await trio.lowlevel.checkpoint()
    assert drains == []  # no instrument left behind
    assert mux.closed


async def test_a_retransmitted_check_still_waiting_is_not_queued_twice(peer: Peer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0) as mux:
            port = mux.local_addresses[0]
            with mux.register("a") as a, mux.register("sync") as sync:
                a.add_ufrag("ufA")
                first, other = check("ufA:p", b"\x01" * 12), check("ufA:p", b"\x02" * 12)
                for data in (first, first, other, first):  # RFC 8489 6.2.1: a retransmission is the same message
                    await peer.send(data, port)
                await marker(mux, peer, sync)
                inbox = a.transports[0]
                assert inbox.pending() == 2
                assert mux.stats()["dropped"] == {"duplicate_check": 2}
                assert [d for d, _ in await inbox.receive_batch()] == [first, other]
                # once the agent has read it, a retransmission reaches it again (its answer may have been lost)
                await peer.send(first, port)
                assert await inbox.receive() == (first, peer.address)
                # the same bytes from another source are not a retransmission
                other_peer = await Peer().bind()
                try:
                    await peer.send(first, port)
                    await other_peer.send(first, port)
                    await marker(mux, peer, sync)
                    await marker(mux, other_peer, sync)
                    got = await inbox.receive_batch()
                    assert got == [(first, peer.address), (first, other_peer.address)]
                finally:
                    other_peer.close()
                # only checks: anything else from a bound address, repeated or not, is routed each time
                inbox.confirm(peer.address)
                datagrams = [b"", b"\x00", b"\x00\x01", b"\x00\x01", b"data", b"data"]
                for data in datagrams:
                    await peer.send(data, port)
                await marker(mux, peer, sync)
                assert [d for d, _ in await inbox.receive_batch()] == datagrams
                assert mux.stats()["dropped"] == {"duplicate_check": 2}


async def test_a_retransmission_is_found_in_a_long_inbox_too(peer: Peer) -> None:
    """Past CHECK_SCAN waiting datagrams the inbox keeps a set of what waits (a short one is looked through,
    with no set made per check): a retransmission of a waiting check is still dropped there, one already
    read is queued again, and application data repeated is routed each time."""
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0) as mux:
            port = mux.local_addresses[0]
            with mux.register("a") as a, mux.register("sync") as sync:
                a.add_ufrag("ufA")
                inbox = a.transports[0]
                inbox.confirm(peer.address)
                checks = [check("ufA:p", i.to_bytes(12, "big")) for i in range(CHECK_SCAN + 4)]
                for data in (checks[0], checks[1], checks[0]):
                    await peer.send(data, port)
                await marker(mux, peer, sync)
                assert inbox.pending() == 2 and inbox._checks is None  # a short inbox: looked through, no set
                assert [d for d, _ in inbox.receive_now(64)] == checks[:2]
                assert mux.stats()["dropped"] == {"duplicate_check": 1}
                sent = [b"data", b"data", *checks, checks[0], checks[-1], b"data"]
                for data in sent:
                    await peer.send(data, port)
                await marker(mux, peer, sync)
                assert mux.stats()["dropped"] == {"duplicate_check": 3}
                assert inbox._checks is not None  # (past CHECK_SCAN: the set)
                assert [d for d, _ in inbox.receive_now(3)] == [b"data", b"data", checks[0]]
                await peer.send(checks[0], port)  # read already: its answer may have been lost
                await peer.send(checks[1], port)  # still waiting
                await marker(mux, peer, sync)
                assert mux.stats()["dropped"] == {"duplicate_check": 4}
                assert [d for d, _ in inbox.receive_now(64)] == [*checks[1:], b"data", checks[0]]
                assert inbox._checks is None  # drained: nothing kept
