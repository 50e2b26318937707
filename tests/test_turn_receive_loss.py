"""No datagram the TURN client's UDP connection has read is lost to a cancellation (turn/transports.py
`OSUdpTurnConnection`), on real loopback sockets.

The connection reads with a non-blocking system call on a second descriptor of its socket and yields to other
tasks once every `_YIELD_EVERY` reads. A cancellation that became due while the task was away (a kick of the
allocation's background task, the timer of its `move_on_at`, a caller's deadline) must end the call before it
reads, not after: a server response read and then dropped costs a retransmission (RFC 8489 6.2.1), a peer's
datagram is lost for good. A cancelled send sends nothing, and what the background task took from the TURN
client's queue and could not send goes back to it.

The moment a cancellation lands inside a task's yield is chosen by an Instrument (`_AfterStep`): it acts after
the step of the task that ends in that yield, so no test depends on the scheduler's order within a batch.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from iceagent.config import IceConfig
from iceagent.net.os import OSNetwork
from iceagent.stun import Attr, Message, MessageClass, Method, long_term_key
from iceagent.turn import TurnClient
from iceagent.turn._allocation_driver import _AllocationDriver
from iceagent.turn.allocation import Allocation, open_allocation
from iceagent.turn.transports import _YIELD_EVERY, OSUdpTurnConnection, open_udp

USER, PASSWORD, REALM, NONCE = "alice", "secret", "example.org", "n0nce"
KEY = long_term_key(USER, REALM, PASSWORD)
PEER_IP = "127.0.0.9"


class _AfterStep(trio.abc.Instrument):
    """Calls `action()` once, after the first step of `task()` that ends with `when()` true: a cancellation or
    a kick that lands while the task is suspended where that step left it."""

    def __init__(
        self, task: Callable[[], trio.lowlevel.Task | None], when: Callable[[], bool], action: Callable[[], None]
    ) -> None:
        self.task, self.when, self.action = task, when, action
        self.done = False

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if not self.done and task is self.task() and self.when():
            self.done = True
            self.action()


@asynccontextmanager
async def _connection() -> AsyncIterator[tuple[OSUdpTurnConnection, socket.socket, socket.socket]]:
    """An OSUdpTurnConnection to a plain socket standing for the server, and a stranger's socket."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger,
    ):
        server.bind(("127.0.0.1", 0))
        stranger.bind(("127.0.0.1", 0))
        conn = await open_udp(
            OSNetwork(), server.getsockname(), server_name="127.0.0.1", ssl_context=None, local_address="127.0.0.1"
        )
        assert isinstance(conn, OSUdpTurnConnection)
        try:
            yield conn, server, stranger
        finally:
            await conn.aclose()


async def _cancelled_in_its_yield(conn: OSUdpTurnConnection, call: Callable[[], Awaitable[object]]) -> None:
    """`await call()` in a task of its own, in a cancel scope cancelled while the task yields for the first time
    after `_YIELD_EVERY` operations on `conn` (its counter back to 0); asserts that the cancellation ended the
    call."""
    box: list[trio.lowlevel.Task] = []
    scope = trio.CancelScope()
    result: list[object] = []

    async def run() -> None:
        box.append(trio.lowlevel.current_task())
        with scope:
            result.append(await call())

    instrument = _AfterStep(lambda: box[0] if box else None, lambda: conn._ops == 0, scope.cancel)
    trio.lowlevel.add_instrument(instrument)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
    finally:
        trio.lowlevel.remove_instrument(instrument)
    assert instrument.done
    assert scope.cancelled_caught, f"the call returned {result!r} although cancelled while it yielded"


def _queued(conn: OSUdpTurnConnection) -> list[bytes]:
    """The server's messages still queued on the connection's socket, taken off it."""
    out = []
    while True:
        try:
            out.append(conn.receive_nowait())
        except trio.WouldBlock:
            return out


async def test_a_cancelled_receive_takes_nothing_off_the_socket() -> None:
    """A receive called when its task is already cancelled raises Cancelled and leaves the server's message on
    the socket for the next read (it used to read it first, then raise: the message was gone)."""
    with trio.fail_after(10):
        async with _connection() as (conn, server, _):
            server.sendto(b"response", conn.local_address)
            await conn.wait_readable()
            with trio.CancelScope() as scope:
                scope.cancel()
                await conn.receive()
            assert scope.cancelled_caught
            assert _queued(conn) == [b"response"]


async def test_a_cancel_during_the_periodic_yield_keeps_the_servers_message_after_a_stray() -> None:
    """The suspicion of the last review, confirmed: the read that makes the periodic yield takes a stranger's
    datagram, a cancellation lands during the yield, the next datagram is the server's. It stays queued (it used
    to be read, then dropped by the cancellation: a lost response, retransmitted after an RTO)."""
    with trio.fail_after(10):
        async with _connection() as (conn, server, stranger):
            local = conn.local_address
            for i in range(_YIELD_EVERY - 1):  # reads that did not block, counted towards the yield
                server.sendto(b"earlier %d" % i, local)
                await conn.wait_readable()
                assert await conn.receive() == b"earlier %d" % i
            stranger.sendto(b"stray", local)  # the read that yields
            server.sendto(b"response", local)
            await conn.wait_readable()
            await _cancelled_in_its_yield(conn, conn.receive)
            assert _queued(conn) == [b"response"]


async def test_a_cancelled_send_sends_nothing() -> None:
    """A send called when its task is already cancelled raises Cancelled and sends nothing (it used to send,
    then raise: the caller could not tell the datagram had gone)."""
    with trio.fail_after(10):
        async with _connection() as (conn, server, _):
            server.setblocking(False)
            with trio.CancelScope() as scope:
                scope.cancel()
                await conn.send(b"request")
            assert scope.cancelled_caught
            await conn.send(b"after")
            await trio.lowlevel.wait_readable(server)
            assert server.recv(100) == b"after"
            with pytest.raises(BlockingIOError):
                server.recv(100)


# ---- through an allocation: the background task's read, kicked (turn/_allocation_driver.py) ----


def _answer(request: Message) -> bytes | None:
    """The scripted server's answer to Allocate (401, then success) and Refresh; None for anything else."""
    if request.message_class is not MessageClass.REQUEST:
        return None
    if Attr.MESSAGE_INTEGRITY not in request:
        return request.error_response(401, attributes=[(Attr.REALM, REALM), (Attr.NONCE, NONCE)]).encode()
    if request.method == Method.ALLOCATE:
        ok = [(Attr.XOR_RELAYED_ADDRESS, ("127.0.0.1", 50000)), (Attr.XOR_MAPPED_ADDRESS, ("127.0.0.1", 40000)),
              (Attr.LIFETIME, 600)]  # fmt: skip
        return request.success_response(ok).encode(integrity_key=KEY, fingerprint=True)
    if request.method == Method.REFRESH:
        return request.success_response([(Attr.LIFETIME, 0)]).encode(integrity_key=KEY, fingerprint=True)
    return None


@asynccontextmanager
async def _scripted_allocation() -> AsyncIterator[
    tuple[Allocation, socket.socket, trio.MemoryReceiveChannel[tuple[Message, tuple[str, int]]]]
]:
    """An allocation on a scripted server (a task of its own on a loopback socket) that answers Allocate and
    Refresh itself and hands every other request to the test (with the client's address). The test sends on
    the socket with the stdlib's synchronous `sendto`: no yield between what it queues."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))
    raw.setblocking(False)
    server = trio.socket.from_stdlib_socket(raw)
    send_requests, requests = trio.open_memory_channel[tuple[Message, tuple[str, int]]](16)

    async def serve() -> None:
        while True:
            data, client = await server.recvfrom(65536)
            request = Message.decode(data)
            answer = _answer(request)
            if answer is not None:
                await server.sendto(answer, client)
            elif request.message_class is MessageClass.REQUEST:
                send_requests.send_nowait((request, client))

    with server:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            port = server.getsockname()[1]
            config = IceConfig(rto=30.0)  # no retransmission within a test: a lost response is not made up for
            async with open_allocation(
                f"turn:127.0.0.1:{port}", USER, PASSWORD, local_address="127.0.0.1", config=config
            ) as allocation:
                yield allocation, raw, requests
            nursery.cancel_scope.cancel()


async def test_a_kick_while_the_background_task_yields_does_not_lose_the_servers_response() -> None:
    """The background task waits for the CreatePermission response; a stranger's datagrams arrive, then the
    response. The kick of a new request (here: `_kick`, as `send` to a new peer does) lands while the task
    yields after its 16th read, a stranger's: the response is read after it and the permission installed, from
    the one response the server sent (it used to be read and dropped: the permission waited for a
    retransmission)."""
    with trio.fail_after(10):
        async with _scripted_allocation() as (allocation, server, requests):
            conn = allocation._conn
            assert isinstance(conn, OSUdpTurnConnection)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(allocation.create_permission, PEER_IP)
                request, client = await requests.receive()
                assert request.method == Method.CREATE_PERMISSION
                await trio.testing.wait_all_tasks_blocked()  # the background task waits on the socket
                assert allocation._driver_scope is not None  # the background task reads for the response
                (driver_task,) = [t for t in _all_tasks() if t.name.startswith("turn-")]
                instrument = _AfterStep(lambda: driver_task, lambda: conn._ops == 0, allocation._kick)
                trio.lowlevel.add_instrument(instrument)
                try:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
                        # one datagram wakes the task (read by Trio), _YIELD_EVERY more are read without blocking
                        for _ in range(1 + _YIELD_EVERY):
                            stranger.sendto(b"stray", client)
                        server.sendto(request.success_response().encode(integrity_key=KEY, fingerprint=True), client)
                        await trio.testing.wait_all_tasks_blocked()
                finally:
                    trio.lowlevel.remove_instrument(instrument)
                assert instrument.done
                assert allocation.permissions() == {PEER_IP: "active"}
                assert allocation.requests_sent["CreatePermission"] == 1
                assert requests.statistics().current_buffer_used == 0  # nothing retransmitted


def _all_tasks() -> list[trio.lowlevel.Task]:
    """Every task of this run, from the root down."""
    out: list[trio.lowlevel.Task] = []
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        if task is None:
            continue
        out.append(task)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return out


async def test_frames_a_cancellation_leaves_unsent_go_back_to_the_clients_queue() -> None:
    """The background task sends what it took from the TURN client's queue; a cancellation that lands while it
    yields after the first frame leaves the rest unsent, and they go back to the queue, in order, for the next
    loop (the old code sent the second, then raised, and the third was lost)."""
    with trio.fail_after(10):
        async with _connection() as (conn, server, _):
            server.setblocking(False)
            client = TurnClient(USER, PASSWORD, server_name="turn:test")
            driver = _AllocationDriver(conn, client, uri="turn:test", protocol="udp")
            for _ in range(_YIELD_EVERY - 1):  # sends that did not block, counted towards the yield
                await conn.send(b"earlier")
            await _cancelled_in_its_yield(conn, lambda: driver._send_frames([b"A", b"B", b"C"]))
            got = []
            while True:
                try:
                    got.append(server.recv(100))
                except BlockingIOError:
                    break
            assert got == [b"earlier"] * (_YIELD_EVERY - 1) + [b"A"]
            assert client.datagrams_to_send() == [b"B", b"C"]


async def _a_cancelled_send_has_no_effect(
    allocation: Allocation, requests: trio.MemoryReceiveChannel[tuple[Message, tuple[str, int]]]
) -> None:
    """`allocation.send` in a cancelled scope raises Cancelled and, once every task waits, no request reached
    the scripted server (no CreatePermission or ChannelBind was queued for it)."""
    with trio.CancelScope() as scope:
        scope.cancel()
        await allocation.send(b"data", (PEER_IP, 7000))
    assert scope.cancelled_caught
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(trio.WouldBlock):
        requests.receive_nowait()


async def test_a_send_to_a_peer_wakes_the_background_task_for_its_channel_bind_and_a_cancelled_one_has_no_effect(
) -> None:
    """`Allocation.send` to a peer whose permission is installed sends a Send indication and asks for the peer's
    channel (RFC 8656 11.1, 12.1). Cancelled, it has no effect at all: no indication, no ChannelBind queued
    (before, a cancelled send queued the ChannelBind and left the background task asleep until its next timer).
    Not cancelled, the ChannelBind it queued goes out at once."""
    with trio.fail_after(10):
        async with _scripted_allocation() as (allocation, server, requests):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(allocation.create_permission, PEER_IP)
                request, client = await requests.receive()
                server.sendto(request.success_response().encode(integrity_key=KEY, fingerprint=True), client)
            assert allocation.permissions() == {PEER_IP: "active"}
            await trio.testing.wait_all_tasks_blocked()
            await _a_cancelled_send_has_no_effect(allocation, requests)
            await allocation.send(b"data", (PEER_IP, 7000))
            await trio.testing.wait_all_tasks_blocked()
            request, _ = requests.receive_nowait()
            assert request.method == Method.CHANNEL_BIND


async def test_a_cancelled_send_to_a_peer_without_permission_holds_nothing() -> None:
    """Data for a peer with no permission yet is held by the TURN client until its CreatePermission succeeds
    (RFC 8656 9). A cancelled `Allocation.send` holds nothing and queues no CreatePermission, so no Send
    indication goes out later for a call that raised Cancelled; one not cancelled is taken (no Cancelled)."""
    with trio.fail_after(10):
        async with _scripted_allocation() as (allocation, _server, requests):
            await _a_cancelled_send_has_no_effect(allocation, requests)
            assert allocation.permissions() == {}
            await allocation.send(b"data", (PEER_IP, 7000))
            request, _ = await requests.receive()
            assert request.method == Method.CREATE_PERMISSION


async def test_a_stream_connection_writes_nothing_when_cancelled_and_breaks_when_a_write_is_cut() -> None:
    """TURN over TCP/TLS frames messages on a stream (RFC 8656 3.1). A cancelled send writes nothing and leaves
    the connection usable; a write cancelled once it started (here, blocked until the peer reads) may have left
    part of a frame on the stream, after which the server cannot find where frames start: every later send
    raises BrokenResourceError (so the frame put back in the client's queue is not written after a fragment)."""
    from iceagent.turn.transports import StreamTurnConnection

    with trio.fail_after(10):
        left, right = trio.testing.lockstep_stream_pair()
        conn = StreamTurnConnection(left, ("192.0.2.1", 3478), ("192.0.2.2", 5000), what="TCP")
        with trio.CancelScope() as scope:
            scope.cancel()
            await conn.send(b"never")
        assert scope.cancelled_caught
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.send, b"first")
            assert await right.receive_some(100) == b"first"
        async with trio.open_nursery() as nursery:  # nobody reads: the write blocks, and is cut
            nursery.start_soon(conn.send, b"second")
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        with pytest.raises(trio.BrokenResourceError):
            await conn.send(b"third")
        await left.aclose()
        await right.aclose()
