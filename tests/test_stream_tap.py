"""The stream's reader drains the selected pair's socket itself (agent/_tap.py), on real loopback sockets.

While the application reads, the reader waits on the socket and the socket's receive task sleeps; STUN
and what follows it go to the receive task in order; the receive task takes the socket back when the
reader stops, so checks are answered whether or not the application reads. The first UDP socket's
"receive task" is the session task itself (agent/_session_task.py).
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

from iceagent import Agent, IceConfig, IceState, IceStream, open_agent
from iceagent.agent._tap import Tap
from iceagent.agent.stream import Inbox
from iceagent.ice.generation import IceGeneration
from iceagent.net.os import OSNetwork
from iceagent.stun import Attr, Message, MessageClass, Method

LO = ["127.0.0.1"]
FAST = IceConfig(global_pacing=False)
#: No consent check within a test's few seconds: the only STUN is what the test sends.
QUIET = IceConfig(global_pacing=False, consent_interval=600.0)


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
            steps = TaskSteps(f"session-{b.name}")  # it serves its first socket
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


def spy_receiving_tasks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the name of the task in which each datagram reaches the ICE core (IceGeneration.receive)."""
    tasks: list[str] = []
    receive = IceGeneration.receive

    def spy(self: IceGeneration, *args: Any) -> None:
        tasks.append(trio.lowlevel.current_task().name)
        receive(self, *args)

    monkeypatch.setattr(IceGeneration, "receive", spy)
    return tasks


async def test_a_check_in_the_middle_of_a_drain_goes_to_the_receive_task_before_the_data_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RFC 8445 12.2 in order: data from a new source, right after the check that makes it a peer-reflexive
    candidate, is delivered; the check is processed in the receive task, not in the application's."""
    with trio.fail_after(10):
        async with connected() as (a, b, sa, sb):
            tasks = spy_receiving_tasks(monkeypatch)
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
            assert f"session-{b.name}-0" in tasks  # the session task serves the socket (agent/_session_task.py)
            assert all(name.startswith("session-") for name in tasks)  # never the application's task


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

    def process(items: list[tuple[bytes, tuple[str, int]]], tap: Tap | None) -> bool:
        inbox.put_many([data for data, _ in items])
        return True

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
    tap = Tap(sock.receive_now, sock.wait_readable, sock.interrupt, lambda items, tap: False)
    sock.close()
    got: list[object] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, inbox, tap, got, 1)
            await trio.testing.wait_all_tasks_blocked()
            assert tap.closed
            inbox.put_many([b"from elsewhere"])
    assert got == [b"from elsewhere"]


async def keep_reading(sb: IceStream, got: list[bytes], resume: trio.Event | None = None) -> None:
    """The application: read forever into `got`; with `resume`, busy elsewhere (not in `receive()`) after
    a b"pause" until it is set."""
    while True:
        got.append(await sb.receive())
        if resume is not None and got[-1] == b"pause":
            await resume.wait()


def stream_tap(sb: IceStream) -> Tap | None:
    """The Tap of the socket `sb` sends on, if its receive task made one."""
    route = sb._routes.route
    assert route is not None
    tap = getattr(route[0], "tap", None)
    assert tap is None or isinstance(tap, Tap)
    return tap


async def reader_takes_the_socket(sa: IceStream, sb: IceStream, got: list[bytes]) -> Tap:
    """Send datagrams to b's reader (`keep_reading` into `got`) until it waits on b's socket itself."""
    for i in range(20):
        tap = stream_tap(sb)
        if tap is not None and tap.reader:
            return tap
        await sa.send(b"to the reader %d" % i)
        await trio.testing.wait_all_tasks_blocked()
        assert got[-1] == b"to the reader %d" % i
    raise AssertionError("the reader never waited on the socket")


async def answer_to_a_check(a: Agent, b: Agent, tid: bytes) -> Message:
    """Send b a check from a new local socket and return b's answer (the check's source is new to b: it
    becomes a peer-reflexive candidate, RFC 8445 7.3.1.3)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.1", 0))
        other.setblocking(False)
        other.sendto(check_request(b, a, tid), b_address(b))
        await trio.lowlevel.wait_readable(other)
        answer = Message.decode(other.recv(2048))
    assert answer.transaction_id == tid
    return answer


async def test_an_idle_agent_whose_application_waits_in_receive_wakes_no_task() -> None:
    """While the reader waits on the socket (it wakes for any datagram itself), the receive task parks
    without a deadline: over an idle interval it makes no task step (it woke every TAP_PARK, ~60 steps in
    0.3 s, before), and the agents leave no descriptor behind."""
    before = open_fds()
    with trio.fail_after(10):
        async with connected(QUIET) as (a, b, sa, sb):
            await a.state.wait_value(IceState.COMPLETED)  # the nomination's check and answer are done
            await b.state.wait_value(IceState.COMPLETED)
            got: list[bytes] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_reading, sb, got)
                tap = await reader_takes_the_socket(sa, sb, got)
                steps = TaskSteps(f"session-{b.name}")  # it serves its first socket
                trio.lowlevel.add_instrument(steps)
                try:
                    await trio.sleep(0.3)  # the interval whose steps are counted, not a synchronization
                finally:
                    trio.lowlevel.remove_instrument(steps)
                assert tap.reader
                assert steps.steps <= 2
                await sa.send(b"after the idle interval")
                await trio.testing.wait_all_tasks_blocked()
                assert got[-1] == b"after the idle interval"
                nursery.cancel_scope.cancel()
    assert open_fds() == before


async def test_checks_are_answered_while_the_reader_waits_on_the_socket() -> None:
    """The reader wakes for a check, leaves it to the parked receive task (kicked) which answers; data
    still reaches the application in order afterwards."""
    with trio.fail_after(10):
        async with connected(QUIET) as (a, b, sa, sb):
            got: list[bytes] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_reading, sb, got)
                await reader_takes_the_socket(sa, sb, got)
                for i in range(3):
                    answer = await answer_to_a_check(a, b, b"w%011d" % i)
                    assert answer.message_class is MessageClass.SUCCESS
                    await sa.send(b"between %d" % i)
                    await trio.testing.wait_all_tasks_blocked()
                    assert got[-1] == b"between %d" % i
                nursery.cancel_scope.cancel()


async def test_checks_are_answered_when_the_application_stops_reading() -> None:
    """Consent (RFC 7675) never depends on the application reading: when the reader that waited on the
    socket is cancelled, the receive task takes the socket back TAP_PARK later and answers."""
    before = open_fds()
    with trio.fail_after(10):
        async with connected(QUIET) as (a, b, sa, sb):
            got: list[bytes] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_reading, sb, got)
                tap = await reader_takes_the_socket(sa, sb, got)
                nursery.cancel_scope.cancel()
            assert not tap.reader
            answer = await answer_to_a_check(a, b, b"s" * 12)
            assert answer.message_class is MessageClass.SUCCESS
    assert open_fds() == before


async def test_checks_are_answered_while_the_application_is_busy_between_receives() -> None:
    """An application busy elsewhere after a receive (not in `receive()`): the receive task takes the
    socket back TAP_PARK after the reader left it and answers; the application then gets the data sent
    meanwhile, in order, and its reader takes the socket again."""
    with trio.fail_after(10):
        async with connected(QUIET) as (a, b, sa, sb):
            got: list[bytes] = []
            resume = trio.Event()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_reading, sb, got, resume)
                tap = await reader_takes_the_socket(sa, sb, got)
                await sa.send(b"pause")
                await trio.testing.wait_all_tasks_blocked()
                assert got[-1] == b"pause"
                assert not tap.reader
                answer = await answer_to_a_check(a, b, b"b" * 12)
                assert answer.message_class is MessageClass.SUCCESS
                await sa.send(b"during the pause")
                resume.set()
                await sa.send(b"after the pause")
                await trio.testing.wait_all_tasks_blocked()
                assert got[-3:] == [b"pause", b"during the pause", b"after the pause"]
                assert await reader_takes_the_socket(sa, sb, got) is tap
                nursery.cancel_scope.cancel()


async def test_a_reader_that_asked_for_the_socket_does_not_leave_it_unattended() -> None:
    """A reader that found the receive task waiting on the socket asks for it (`want`) and waits for a
    delivery. The receive task hands the socket over only after a batch that delivers (and so wakes the
    reader), and takes it back TAP_PARK later if the reader, busy, does not wait on it: checks are answered
    either way, and data after a check alone reaches the reader at once."""
    with trio.fail_after(10):
        async with connected(QUIET) as (a, b, sa, sb):
            got: list[bytes] = []
            resume = trio.Event()
            tap = stream_tap(sb)
            assert tap is not None

            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_reading, sb, got, resume)
                await trio.testing.wait_all_tasks_blocked()
                assert tap.want
                await sa.send(b"pause")  # handed over, and the reader woken by it goes busy
                await trio.testing.wait_all_tasks_blocked()
                assert got == [b"pause"]
                assert not tap.reader
                answer = await answer_to_a_check(a, b, b"p" * 12)
                assert answer.message_class is MessageClass.SUCCESS
                resume.set()
                await trio.testing.wait_all_tasks_blocked()
                assert tap.want  # the receive task had taken the socket back: the reader asked again
                for i in range(2):  # batches of a check alone wake no reader: no hand-over
                    answer = await answer_to_a_check(a, b, b"h%011d" % i)
                    assert answer.message_class is MessageClass.SUCCESS
                assert tap.want
                await sa.send(b"data")
                await trio.testing.wait_all_tasks_blocked()
                assert got == [b"pause", b"data"]
                nursery.cancel_scope.cancel()
