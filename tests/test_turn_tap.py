"""The stream's reader drains a relayed pair's TURN socket itself (agent/_tap.py), as it does a host socket.

Before, every batch of relayed data went through the agent's receive task for the allocation, which woke
the reader: a second task step (and a scheduling round) per batch, a third more round-trip time than the
bare TURN client through the same coturn. These count task steps, not time.
"""

from __future__ import annotations

import collections
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

import pytest
import trio
from agent_helpers import connect_both
from coturn import PASSWORD, USER, Coturn, coturn_server, relay_only_agents  # noqa: F401

from iceagent import IceServer, IceStream

pytestmark = [pytest.mark.coturn, pytest.mark.interop]

ROUNDS = 200


class TaskSteps(trio.abc.Instrument):
    """Task steps by the first part of the task's name ("receive" for the agents' receive tasks)."""

    def __init__(self) -> None:
        self.steps: collections.Counter[str] = collections.Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task.name.rsplit(".", 1)[-1].split("-", 1)[0]] += 1


@asynccontextmanager
async def relayed_streams(server: Coturn, warm_up: int = 1) -> AsyncIterator[tuple[IceStream, IceStream]]:
    """Two relay-only agents connected through `server` over UDP, `warm_up` datagrams each way already moved
    (the first delivery opens the Tap, and teaches it the source of the data); their streams."""
    servers = [IceServer(urls=[server.uri("udp")], username=USER, credential=PASSWORD)]
    async with relay_only_agents(servers) as (a, b):
        sa, sb = await connect_both(a, b)
        for agent in (a, b):
            pair = agent.selected_pair
            assert pair is not None and pair.local.type == "relay"
        for x, y in ((sa, sb), (sb, sa)):
            for _ in range(warm_up):
                await x.send(b"warm-up")
                assert await y.receive() == b"warm-up"
        yield sa, sb


async def ping_pong(sa: IceStream, sb: IceStream) -> None:
    """ROUNDS datagrams each way, one at a time, each checked."""
    for i in range(ROUNDS):
        await sa.send(i.to_bytes(4, "big"))
        assert await sb.receive() == i.to_bytes(4, "big")
        await sb.send(i.to_bytes(4, "big"))
        assert await sa.receive() == i.to_bytes(4, "big")


async def test_relayed_data_reaches_the_reader_without_the_receive_task(coturn_server: Coturn) -> None:  # noqa: F811
    """Relay-only agents through coturn over UDP, ping-pong of ROUNDS datagrams: the readers take every one
    off the TURN socket themselves, so the agents' receive tasks hardly run (the old path: one step per
    datagram, 2 x ROUNDS), and every datagram arrives, in order."""
    with trio.fail_after(30):
        async with relayed_streams(coturn_server) as (sa, sb):
            counter = TaskSteps()
            trio.lowlevel.add_instrument(counter)
            try:
                await ping_pong(sa, sb)
            finally:
                trio.lowlevel.remove_instrument(counter)
    assert counter.steps["receive"] < ROUNDS // 10, counter.steps


class _Calls:
    """Python calls by function name, for functions of iceagent/turn/allocation.py (a profile hook; a coroutine
    counts once per resumption), and the datagrams `sync_recvfrom` returned ("read")."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if frame.f_code.co_filename.endswith("allocation.py"):
            if event == "call":
                self.counts[frame.f_code.co_name] += 1
            elif event == "return" and arg is not None and frame.f_code.co_name == "sync_recvfrom":
                self.counts["read"] += 1


async def test_relayed_stream_sends_and_reads_with_the_sync_calls(coturn_server: Coturn) -> None:  # noqa: F811
    """Relay-only agents, ping-pong of ROUNDS datagrams each way: the streams send with the allocation's
    `sync_sendto` (its async `send` only on the scheduling round every SCHEDULE_EVERY sends) and read with its
    `sync_recvfrom`, not by draining a batch (`receive_now`) into the stream's queue, as they do a host
    socket (net/os.py); every datagram arrives, in order. Before, every relayed datagram took `Allocation.send`
    and a `receive_now`."""
    with trio.fail_after(30):
        async with relayed_streams(coturn_server, warm_up=3) as (sa, sb):
            calls = _Calls()
            sys.setprofile(calls)
            try:
                await ping_pong(sa, sb)
            finally:
                sys.setprofile(None)
    counts = calls.counts
    assert counts["sync_sendto"] >= 2 * ROUNDS * 0.9, counts
    assert counts["send"] <= 2 * ROUNDS // IceStream.SCHEDULE_EVERY + 4, counts
    assert counts["read"] >= 2 * ROUNDS * 0.9, counts
    assert counts["receive_now"] <= ROUNDS // 10, counts
