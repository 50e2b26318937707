"""The stream's reader drains the selected pair's socket itself (agent/_tap.py), on real loopback sockets.

While the application reads, the reader waits on the socket and the socket's receive task sleeps; STUN
and what follows it go to the receive task in order; the receive task takes the socket back when the
reader stops, so checks are answered whether or not the application reads.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from agent_helpers import connect_both

from iceagent import Agent, IceConfig, IceStream, open_agent
from iceagent.agent._tap import Tap
from iceagent.agent.stream import Inbox
from iceagent.ice.generation import IceGeneration
from iceagent.net.os import OSNetwork
from iceagent.stun import Attr, Message, MessageClass, Method

LO = ["127.0.0.1"]
FAST = IceConfig(global_pacing=False)


@asynccontextmanager
async def connected(config: IceConfig = FAST) -> AsyncIterator[tuple[Agent, Agent, IceStream, IceStream]]:
    async with open_agent(host_addresses=LO, config=config) as a, open_agent(
        controlling=False, host_addresses=LO, config=config
    ) as b:
        sa, sb = await connect_both(a, b)
        # one datagram through: b's reader asks for the socket, its receive task hands it over
        await sa.send(b"first")
        assert await sb.receive() == b"first"
        yield a, b, sa, sb


class TaskSteps(trio.abc.Instrument):
    """Counts the steps of tasks whose name starts with `prefix`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.startswith(self.prefix):
            self.steps += 1


def check_request(b: Agent, a: Agent, tid: bytes) -> bytes:
    """A Binding request (RFC 8445 7.2.2) with b's short-term credentials, as a peer's check."""
    return Message(
        Method.BINDING,
        MessageClass.REQUEST,
        transaction_id=tid,
        attributes=[
            (Attr.USERNAME, f"{b.local_parameters.ufrag}:{a.local_parameters.ufrag}"),
            (Attr.PRIORITY, 1853817087),
            (Attr.ICE_CONTROLLING, 1),
        ],
    ).encode(integrity_key=b.local_parameters.pwd.encode(), fingerprint=True)


def b_address(b: Agent) -> tuple[str, int]:
    pair = b.selected_pair
    assert pair is not None
    return pair.local.address, pair.local.port


async def test_a_reading_application_drains_the_socket_without_waking_the_receive_task() -> None:
    """Bursts of 16 datagrams are read in order; the receiver's receive task stays asleep meanwhile (before
    the Tap it ran once per burst: a task step between the socket and the reader)."""
    rounds = 200
    with trio.fail_after(30):
        async with connected() as (_, b, sa, sb):
            steps = TaskSteps(f"receive-{b.name}")
            trio.lowlevel.add_instrument(steps)
            try:
                for r in range(rounds):
                    sent = [f"{r}:{i}".encode() for i in range(16)]
                    for data in sent:
                        await sa.send(data)
                    assert [await sb.receive() for _ in sent] == sent
            finally:
                trio.lowlevel.remove_instrument(steps)
            # it wakes every TAP_PARK (5 ms) to look, and takes the socket back when the reader is busy
            assert steps.steps < rounds // 2
            assert b.stats()["dropped_datagrams"] == 0


async def test_a_check_in_the_middle_of_a_drain_goes_to_the_receive_task_before_the_data_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RFC 8445 12.2 in order: data from a new source, right after the check that makes it a peer-reflexive
    candidate, is delivered; the check is processed in the receive task, not in the application's."""
    tasks: list[str] = []
    receive = IceGeneration.receive

    def spy(self: IceGeneration, *args: Any) -> None:
        tasks.append(trio.lowlevel.current_task().name)
        receive(self, *args)

    with trio.fail_after(10):
        async with connected() as (a, b, sa, sb):
            monkeypatch.setattr(IceGeneration, "receive", spy)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.bind(("127.0.0.1", 0))
                other.setblocking(False)
                target = b_address(b)
                # all four are queued on b's socket before b reads: one drain meets them together
                await sa.send(b"d1")
                other.sendto(check_request(b, a, b"t" * 12), target)
                other.sendto(b"d2 from the new peer-reflexive source", target)
                await sa.send(b"d3")
                got = [await sb.receive() for _ in range(3)]
                assert got == [b"d1", b"d2 from the new peer-reflexive source", b"d3"]
                await trio.lowlevel.wait_readable(other)
                answer = Message.decode(other.recv(2048))
            assert answer.message_class is MessageClass.SUCCESS
            assert answer.transaction_id == b"t" * 12
            assert f"receive-{b.name}" in tasks
            assert all(name.startswith("receive-") for name in tasks)  # never the application's task


async def test_the_receive_task_answers_checks_when_the_application_stops_reading() -> None:
    """Consent (RFC 7675) and checks never depend on the application reading: once the reader is away, the
    receive task takes its socket back (after at most TAP_PARK) and answers."""
    with trio.fail_after(10):
        async with connected() as (a, b, _sa, _sb):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.bind(("127.0.0.1", 0))
                other.setblocking(False)
                other.sendto(check_request(b, a, b"u" * 12), b_address(b))
                await trio.lowlevel.wait_readable(other)
                answer = Message.decode(other.recv(2048))
            assert answer.message_class is MessageClass.SUCCESS


async def test_a_full_queue_drops_the_newest_whoever_drains() -> None:
    """Backpressure stays bounded by IceConfig.receive_buffer: the oldest datagrams are kept, in order, the
    rest dropped and counted."""
    with trio.fail_after(10):
        async with connected(IceConfig(global_pacing=False, receive_buffer=8)) as (_, b, sa, sb):
            sent = [b"%d" % i for i in range(40)]
            for data in sent:
                await sa.send(data)
            await trio.testing.wait_all_tasks_blocked()  # the receive task, if it has the socket, drains it all
            got = [await sb.receive() for _ in range(8)]
            assert got == sent[:8]
            assert b.stats()["dropped_datagrams"] == 32
            await sa.send(b"after")
            assert await sb.receive() == b"after"


async def read(inbox: Inbox, tap: Tap, got: list[object], count: int) -> None:
    """Take `count` datagrams into `got` (or until the reading end closes: its error's type), waiting as
    IceStream.receive does."""
    while len(got) < count:
        try:
            got.append(inbox.get_nowait())
        except trio.WouldBlock:
            await inbox.wait(tap)
        except trio.ClosedResourceError as exc:
            got.append(type(exc))
            return


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_reader_waiting_on_a_socket_wakes_for_a_delivery_from_elsewhere_and_for_close() -> None:
    """Inbox.wait with a Tap: the reader waits on the socket itself, and anything queued by another task
    (another transport's receive task) or a close ends that wait at once; no descriptor is left behind."""
    sock = await OSNetwork().bind_udp("127.0.0.1")
    before = open_fds()
    inbox = Inbox(16)

    def process(items: list[tuple[bytes, tuple[str, int]]], tap: Tap | None) -> None:
        inbox.put_many([data for data, _ in items])

    tap = Tap(sock.receive_now, sock.wait_readable, sock.interrupt, process)
    got: list[object] = []

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, inbox, tap, got, 99)
            await trio.testing.wait_all_tasks_blocked()
            assert tap.reader  # waiting on the socket, not on the inbox
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                peer.sendto(b"through the socket", sock.local_address)
                await trio.testing.wait_all_tasks_blocked()
            assert got == [b"through the socket"]
            assert tap.reader
            inbox.put_many([b"from elsewhere"])
            await trio.testing.wait_all_tasks_blocked()
            assert got == [b"through the socket", b"from elsewhere"]
            assert tap.reader
            inbox.close_reader()
        assert got == [b"through the socket", b"from elsewhere", trio.ClosedResourceError]
        assert open_fds() == before  # the duplicate descriptor the wait used is closed
    finally:
        sock.close()


async def test_os_udp_socket_receive_now_wait_readable_and_interrupt() -> None:
    sock = await OSNetwork().bind_udp("127.0.0.1")
    with trio.fail_after(5), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        before = open_fds()
        assert sock.receive_now() == []
        woken: list[str] = []

        async def waiter() -> None:
            await sock.wait_readable()
            woken.append("woken")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert woken == []
            sock.interrupt()  # returns normally, nothing queued
        assert woken == ["woken"]
        assert open_fds() == before
        for i in range(5):
            peer.sendto(b"%d" % i, sock.local_address)
        await sock.wait_readable()  # something is queued: at once
        assert sock.receive_now(limit=3) == [(b"%d" % i, peer.getsockname()) for i in range(3)]
        assert sock.receive_now() == [(b"%d" % i, peer.getsockname()) for i in (3, 4)]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            sock.close()  # closing wakes the waiter too
        assert woken == ["woken", "woken"]
        assert open_fds() == before - 1  # the socket, and no duplicate left


@pytest.mark.parametrize("reads", [1, 3])
async def test_agent_close_ends_a_reader_waiting_on_the_socket(reads: int) -> None:
    """A reader that holds the socket when the agent closes gets trio.EndOfChannel."""
    outcome: list[type[BaseException]] = []

    async def reader(sb: IceStream) -> None:
        try:
            await sb.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError) as exc:
            outcome.append(type(exc))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            async with connected() as (_, _b, sa, sb):
                for _ in range(reads - 1):
                    await sa.send(b"x")
                    assert await sb.receive() == b"x"
                nursery.start_soon(reader, sb)
                await trio.testing.wait_all_tasks_blocked()
    assert outcome == [trio.EndOfChannel]


async def test_the_reader_delivers_only_data_from_known_remote_candidates_in_order() -> None:
    """RFC 8445 12.2 on the reader's drain, for batches from one source and from several: datagrams from an
    address that is no remote candidate are dropped, the peer's arrive in order and complete."""
    with trio.fail_after(10):
        async with connected() as (_, b, sa, sb):
            target = b_address(b)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
                stranger.bind(("127.0.0.1", 0))
                for _ in range(5):  # a batch from the stranger alone
                    stranger.sendto(b"not for you", target)
                await sa.send(b"p0")
                assert await sb.receive() == b"p0"
                expected = []
                for r in range(4):  # one batch from both, interleaved
                    for i in range(3):
                        stranger.sendto(b"\x00" * i + b"not for you", target)
                        expected.append(b"%d.%d" % (r, i))
                        await sa.send(expected[-1])
                assert [await sb.receive() for _ in expected] == expected
                await sa.send(b"last")
                assert await sb.receive() == b"last"
            assert b.stats()["dropped_datagrams"] == 0


async def test_a_reader_whose_socket_closed_under_it_waits_for_deliveries() -> None:
    """A socket closed before its receive task noticed: the reader neither raises nor spins, and data from
    elsewhere still reaches it."""
    sock = await OSNetwork().bind_udp("127.0.0.1")
    inbox = Inbox(16)
    tap = Tap(sock.receive_now, sock.wait_readable, sock.interrupt, lambda items, tap: None)
    sock.close()
    got: list[object] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, inbox, tap, got, 1)
            await trio.testing.wait_all_tasks_blocked()
            assert tap.closed
            inbox.put_many([b"from elsewhere"])
    assert got == [b"from elsewhere"]
