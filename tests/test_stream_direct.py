"""The stream reader's direct read (agent/_tap.py, issue 15 item 4): while the application reads, a known
source's datagrams come off the selected pair's socket one `recvfrom` at a time, as the fair limit of
bench/throughput.py reads them, and everything else still goes through the demultiplexer: data only from a
known remote candidate (RFC 8445 12.2), STUN to the agent's tasks (RFC 7983)."""

from __future__ import annotations

import gc
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from agent_helpers import connect_both, signal
from test_stream_tap import QUIET, b_address, check_request, spy_receiving_tasks

import iceagent.agent._tap as tap_module
from iceagent import Agent, IceConfig, IceStream, open_agent
from iceagent.agent._route import RouteState
from iceagent.agent._runner import SessionRunner
from iceagent.agent._tap import Tap
from iceagent.agent.stream import IceStream as Stream
from iceagent.agent.stream import Inbox
from iceagent.ice.session import IceSession
from iceagent.net.os import OSNetwork, OSUdpSocket

LO = ["127.0.0.1"]
BURST = IceStream.SCHEDULE_EVERY


class CountingSocket:
    """Stands in for an OSUdpSocket's stdlib socket: counts `recvfrom` calls and the EAGAINs among them."""

    def __init__(self, raw: socket.socket) -> None:
        self._inner = raw
        self.calls = 0
        self.eagain = 0

    def recvfrom(self, size: int) -> tuple[bytes, Any]:
        self.calls += 1
        try:
            return self._inner.recvfrom(size)
        except BlockingIOError:
            self.eagain += 1
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def bare_tap(recvfrom: Any) -> Tap:
    """A Tap with nothing behind it but `recvfrom` (None: a socket without a direct read)."""
    return Tap(lambda limit: [], trio.lowlevel.checkpoint, lambda: None, lambda items, t: False, recvfrom)


@asynccontextmanager
async def reading(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Agent, Agent, IceStream, IceStream, CountingSocket, list[int]]]:
    """Two connected agents (no consent check during the test); b's socket counts its reads, b's demultiplexer
    counts its batches (a list of batch sizes); one datagram through (b's reader takes the socket)."""
    monkeypatch.setattr(tap_module, "TAP_PARK", 60.0)  # the parked receive task stays parked
    async with open_agent(host_addresses=LO, config=QUIET) as a, open_agent(
        controlling=False, host_addresses=LO, config=QUIET
    ) as b:
        sa, sb = await connect_both(a, b)
        route = sb._routes.route  # type: ignore[attr-defined]
        assert route is not None
        transport = route[0]
        assert isinstance(transport, OSUdpSocket)
        counting = CountingSocket(transport._raw)
        transport._raw = counting  # type: ignore[assignment]  # before the Tap is made (first data)
        for i in range(3):  # the first is delivered by the session task, which then makes the Tap
            await sa.send(b"warm-up %d" % i)
            assert await sb.receive() == b"warm-up %d" % i
        tap = transport.tap
        assert isinstance(tap, Tap)
        assert tap.source == sa._routes.route[0].local_address  # type: ignore[attr-defined]  # direct from now on
        batches: list[int] = []
        process = tap.process

        def counted(items: list[Any], t: Tap | None) -> bool:
            batches.append(len(items))
            return process(items, t)

        tap.process = counted
        yield a, b, sa, sb, counting, batches


async def test_a_known_sources_bursts_are_read_a_datagram_at_a_time_without_an_eagain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bursts of SCHEDULE_EVERY datagrams: one recvfrom per datagram and no EAGAIN (the reader drained each
    burst and then asked the socket once more, EAGAIN, before the application had the first datagram: 17
    calls and 1 EAGAIN per burst before); none goes through the demultiplexer; order and byte counts hold."""
    with trio.fail_after(10):
        async with reading(monkeypatch) as (a, b, sa, sb, counting, batches):
            pa, pb = a.selected_pair, b.selected_pair
            assert pa is not None and pb is not None
            sent0, received0 = pa.bytes_sent, pb.bytes_received
            calls0, eagain0 = counting.calls, counting.eagain
            sent = [b"%d:%d" % (k, i) + b"x" * i for k in range(4) for i in range(BURST)]
            for k in range(4):
                for data in sent[k * BURST : (k + 1) * BURST]:
                    await sa.send(data)
                got = [await sb.receive() for _ in range(BURST)]
                assert got == sent[k * BURST : (k + 1) * BURST]
            assert (counting.calls - calls0, counting.eagain - eagain0) == (len(sent), 0)
            assert batches == []
            assert pa.bytes_sent - sent0 == pb.bytes_received - received0 == sum(map(len, sent))


async def test_an_empty_socket_is_asked_once_before_the_reader_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that finds the socket empty waits on it after that one EAGAIN (it asked again first, in a
    drain, before), and the datagram that wakes it is read directly."""
    with trio.fail_after(10):
        async with reading(monkeypatch) as (_a, _b, sa, sb, counting, batches):
            got: list[bytes] = []

            async def reader() -> None:
                got.append(await sb.receive())

            for i in range(3):
                calls0, eagain0 = counting.calls, counting.eagain
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(reader)
                    await trio.testing.wait_all_tasks_blocked()
                    assert (counting.calls - calls0, counting.eagain - eagain0) == (1, 1)
                    await sa.send(b"wake %d" % i)
                assert (counting.calls - calls0, counting.eagain - eagain0) == (2, 1)
            assert got == [b"wake 0", b"wake 1", b"wake 2"]
            assert batches == []


@pytest.mark.parametrize("nowait", [False, True], ids=["receive", "receive_nowait"])
async def test_data_from_an_unknown_source_is_not_delivered_by_the_direct_read(
    monkeypatch: pytest.MonkeyPatch, nowait: bool
) -> None:
    """Between two datagrams of the known source, one from another socket on 127.0.0.1 (not a remote
    candidate) with the same bytes is read, handed to the demultiplexer and dropped (RFC 8445 12.2).
    `receive_nowait` reads the socket as `receive` does (no checkpoint; with the direct read nothing waits
    in the queue, so it found only WouldBlock before), and an empty socket is WouldBlock."""
    with trio.fail_after(10):
        async with reading(monkeypatch) as (_a, b, sa, sb, _counting, batches):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
                stranger.bind(("127.0.0.1", 0))
                await sa.send(b"one")
                stranger.sendto(b"one", b_address(b))
                await sa.send(b"two")
                if nowait:
                    assert [sb.receive_nowait(), sb.receive_nowait()] == [b"one", b"two"]
                else:
                    assert [await sb.receive(), await sb.receive()] == [b"one", b"two"]
                assert batches == [1]  # the stranger's datagram, alone
                with pytest.raises(trio.WouldBlock):
                    sb.receive_nowait()


async def test_a_source_the_session_forgets_is_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the session's known data sources change (here: the peer's address stops being a remote
    candidate, as when its pair is removed), the runner forgets them, the Tap's too: the next datagram from
    that address is looked up again and dropped (RFC 8445 12.2); once known again, it is delivered."""
    with trio.fail_after(10):
        async with reading(monkeypatch) as (_a, b, sa, sb, _counting, batches):
            runner: Any = b._route_runner  # type: ignore[attr-defined]
            find_pair = IceSession.find_pair
            forgotten = [False]

            def patched(self: IceSession, base: Any, addr: Any) -> Any:
                return None if self is runner.ice and forgotten[0] else find_pair(self, base, addr)

            monkeypatch.setattr(IceSession, "find_pair", patched)
            forgotten[0] = True
            runner.forget_data_sources()  # what a PairRemoved / PairValid / learned candidate event does
            await sa.send(b"stray")
            await sa.send(b"stray too")
            got: list[bytes] = []

            async def reader() -> None:
                got.append(await sb.receive())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.testing.wait_all_tasks_blocked()
                assert got == []  # both dropped: the reader waits on the socket
                forgotten[0] = False
                runner.forget_data_sources()
                await sa.send(b"known again")
            assert got == [b"known again"]
            assert batches == [2, 1]  # the strays in one drain, dropped; the next looked up again: known
            assert b._route_runner is runner  # type: ignore[attr-defined]


async def test_stun_from_the_known_source_goes_to_the_session_task_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A check from the peer's own address between its data is not returned as data (RFC 7983): the
    reader hands it over, the session task processes it, and the data after it comes after it, in order."""
    with trio.fail_after(10):
        async with reading(monkeypatch) as (a, b, sa, sb, _counting, batches):
            tasks = spy_receiving_tasks(monkeypatch)
            transport: Any = sa._routes.route[0]  # type: ignore[attr-defined, index]
            await sa.send(b"before")
            transport._raw.sendto(check_request(b, a, b"direct-read1"), b_address(b))
            await sa.send(b"after")
            assert await sb.receive() == b"before"
            assert await sb.receive() == b"after"
            assert batches[0] == 1  # the check, handed over alone
            assert f"session-{b.name}-0" in tasks  # b's session task took the check
            assert all(name.startswith("session-") for name in tasks)  # never the application's task


async def test_the_reader_does_not_read_the_socket_while_the_receive_task_polls() -> None:
    """The Tap's source, which turns the direct read on, is dropped while the receive task polls, while a
    stash waits, once closed, and is learned only for a socket with a direct read (not IPv6's)."""
    tap = bare_tap(lambda n: (b"", ("", 0)))
    pair: Any = type("P", (), {"_bytes_received": 0})()
    for clear in ("polling", "stash", "learn_while_polling", "closed"):  # a closed Tap stays closed: last
        tap.source = None
        tap.learn(("127.0.0.1", 9), pair)
        assert tap.source == ("127.0.0.1", 9)
        if clear == "polling":
            tap.polling = True
            assert tap.source is None
            tap.polling = False
        elif clear == "stash":
            tap.leave([(b"\x00\x01", ("127.0.0.1", 9))])
            assert tap.source is None
            tap.learn(("127.0.0.1", 9), pair)
            assert tap.source is None  # not while the stash waits
            tap.stash.clear()
        elif clear == "closed":
            tap.closed = True
            assert tap.source is None
            tap.learn(("127.0.0.1", 9), pair)
            assert tap.source is None
        else:
            tap.polling = True
            tap.learn(("127.0.0.1", 9), pair)
            assert tap.source is None
            tap.polling = False
    v6 = bare_tap(None)
    v6.learn(("::1", 9), pair)
    assert v6.source is None


async def test_an_ipv6_socket_has_no_direct_read() -> None:
    """IPv6 source addresses are normalized by `receive_now` (scope, flow info): no raw `recvfrom` for them."""
    net = OSNetwork()
    try:
        sock = await net.bind_udp("::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    v4 = await net.bind_udp("127.0.0.1")
    try:
        assert isinstance(sock, OSUdpSocket) and isinstance(v4, OSUdpSocket)
        assert sock.sync_recvfrom is None
        assert v4.sync_recvfrom is not None
    finally:
        sock.close()
        v4.close()


async def test_nothing_is_read_off_the_socket_after_the_agent_closed_the_queue() -> None:
    """After the agent closes the stream's queue, the reader gets what was queued, then EndOfChannel, even
    with a known source's datagram waiting on the socket (the direct read is dropped with the queue)."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        b.setblocking(False)
        pair: Any = type("P", (), {"_bytes_received": 0})()
        tap = bare_tap(b.recvfrom)
        tap.learn(a.getsockname(), pair)
        inbox = Inbox(8)
        stream = Stream(RouteState("b"), inbox)
        inbox.tap = tap
        a.sendto(b"direct", b.getsockname())
        assert await stream.receive() == b"direct"  # the direct read
        inbox.put(b"queued")
        a.sendto(b"late", b.getsockname())
        inbox.close()
        assert await stream.receive() == b"queued"
        with pytest.raises(trio.EndOfChannel):
            await stream.receive()
        assert b.recvfrom(100)[0] == b"late"


class StepsOf(trio.abc.Instrument):
    """Counts the task steps of one task."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


async def test_a_flood_from_an_unknown_source_lets_other_tasks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """100 datagrams from a stranger before the known source's: the reader reads and drops them all, but
    yields to the scheduler after 64 (DRAIN_LIMIT) instead of reading them all in one task step."""
    with trio.fail_after(10):
        async with reading(monkeypatch) as (_a, b, sa, sb, counting, _batches):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
                stranger.bind(("127.0.0.1", 0))
                for i in range(100):
                    stranger.sendto(b"junk %d" % i, b_address(b))
                await sa.send(b"known")
                sb._receives_left = IceStream.SCHEDULE_EVERY  # type: ignore[attr-defined]  # no full round at once
                calls0 = counting.calls
                steps = StepsOf(trio.lowlevel.current_task())
                trio.lowlevel.add_instrument(steps)
                try:
                    assert await sb.receive() == b"known"
                finally:
                    trio.lowlevel.remove_instrument(steps)
            assert counting.calls - calls0 == 101
            assert steps.steps == 1  # one yield: after 64 (before: none, all 101 read in the one step)



async def test_a_closed_generation_is_not_kept_alive_by_a_reader_that_stopped_reading() -> None:
    """B's reader looked at its socket's Tap, then the application stops reading; a restart replaces the
    generation: once it has closed, nothing of it stays alive through the stream (the Tap the stream's queue
    still names dropped its demultiplexer, which held the session)."""
    config = IceConfig(global_pacing=False, restart_linger=0.05)
    with trio.fail_after(20):
        async with (
            open_agent(host_addresses=LO, config=config, name="A") as a,
            open_agent(controlling=False, host_addresses=LO, config=config, name="B") as b,
        ):
            to_b, at_b = await connect_both(a, b)
            for i in range(3):  # the reader waits on the socket (nothing queued), then reads what comes
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(at_b.receive)
                    await trio.testing.wait_all_tasks_blocked()
                    await to_b.send(b"%d" % i)
            assert at_b._receive.tap is not None and at_b._receive.tap.source is not None
            old_runner = b._runners[0]
            old_id = id(old_runner)
            del old_runner
            await b.restart()
            await signal(b, a)
            await signal(a, b)
            await b.generation.wait_value(1)
            # the old generation closes restart_linger after the new nomination (no event says so: poll)
            while any(id(r) == old_id for r in b._runners):  # noqa: ASYNC110
                await trio.sleep(0.01)
            await trio.testing.wait_all_tasks_blocked()  # its tasks have ended, not only been cancelled
            gc.collect()
            assert not [o for o in gc.get_objects() if id(o) == old_id and isinstance(o, SessionRunner)]
