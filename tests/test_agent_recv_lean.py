"""The receive path's work per datagram and per wake-up (issue 14 item 5, issue 15 item 3), counted, never timed.

With thousands of agents in one process every call per datagram and per wake-up counts (bench/scale.py): the
demultiplexer decides "STUN or data" without a call for most datagrams, asks the gatherers' transactions only
while one waits, and a wake-up of an idle session task reads no clock. The behaviours these shortcuts
must keep are asserted alongside: what is STUN (RFC 8489 5, RFC 7983), answers in the step that read the
check, data only from known remote candidates (RFC 8445 12.2).
"""

from __future__ import annotations

import gc
import math
import socket
import types

import pytest
import trio
import trio.testing
from test_agent_scale import completed  # two agents on loopback, COMPLETED, every task blocked

from iceagent import IceConfig, IceState, open_agent
from iceagent.agent import _receive
from iceagent.agent._notify import Notifier
from iceagent.agent._session_task import SessionTask
from iceagent.agent._stun_requests import StunRequests
from iceagent.net.os import OSUdpSocket
from iceagent.stun.attributes import COOKIE_BYTES

LO = ["127.0.0.1"]
CONFIG = IceConfig(global_pacing=False)


async def test_a_check_is_answered_without_a_looks_like_stun_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """A consent check (RFC 7675) read by the session task is answered in that step, its STUN-ness decided by
    the first byte and the magic cookie in place and the rest of the header by Message.decode: no
    `looks_like_stun` call per message (that test is only for a datagram the stream's reader read itself)."""
    calls: list[bytes] = []
    looks = _receive.looks_like_stun

    def counted(data: bytes) -> bool:
        calls.append(data)
        return looks(data)

    with trio.fail_after(10):
        async with completed() as (a, b):
            sender, pair, answered = a._current, a.selected_pair, b.selected_pair
            assert sender is not None and pair is not None and answered is not None
            received, responses = answered.requests_received, pair.responses_received
            monkeypatch.setattr(_receive, "looks_like_stun", counted)
            sender.send_consent(pair, trio.current_time())
            await trio.testing.wait_all_tasks_blocked()
            assert answered.requests_received == received + 1  # b read and answered the check
            assert pair.responses_received == responses + 1  # and a read the answer
    assert calls == []


async def test_a_response_asks_the_gatherers_transactions_only_while_one_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A STUN response goes to the generation without asking StunRequests.deliver while no gatherer
    transaction waits (after gathering, most agents have none); with one waiting, its answer from the server
    still goes to the gatherer (RFC 8489 6.3.1) and the generation never sees it."""
    asked: list[bytes] = []
    deliver = StunRequests.deliver

    def counted(self: StunRequests, message: object, source: tuple[str, int]) -> bool:
        asked.append(message.transaction_id)  # type: ignore[attr-defined]
        return deliver(self, message, source)  # type: ignore[arg-type]

    with trio.fail_after(10):
        async with completed() as (a, _b):
            sender, pair = a._current, a.selected_pair
            assert sender is not None and pair is not None
            monkeypatch.setattr(StunRequests, "deliver", counted)
            responses = pair.responses_received
            sender.send_consent(pair, trio.current_time())
            await trio.testing.wait_all_tasks_blocked()
            assert pair.responses_received == responses + 1 and asked == []

            # a gatherer's transaction to a "server" (a plain socket): its answer is the gatherer's
            from iceagent.stun.message import Message, MessageClass, Method

            server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            server.bind(("127.0.0.1", 0))
            try:
                request = Message(Method.BINDING, MessageClass.REQUEST)
                answers = sender.stun_requests.open(request.transaction_id, server.getsockname())
                response = Message(Method.BINDING, MessageClass.SUCCESS, transaction_id=request.transaction_id)
                server.sendto(response.encode(fingerprint=True), (pair.local.address, pair.local.port))
                with trio.fail_after(5):
                    got = await answers.receive()
                assert got.transaction_id == request.transaction_id and asked == [request.transaction_id]
                assert pair.responses_received == responses + 1  # not the generation's
                sender.stun_requests.close(request.transaction_id)
                answers.close()
            finally:
                server.close()


async def test_a_datagram_with_the_cookie_that_is_not_stun_is_application_data() -> None:
    """Demultiplexing (DESIGN.md, RFC 7983): a datagram from the peer whose first byte is below 0x40 and that
    carries the magic cookie, but whose length field does not match, is not STUN: the stream gets it as
    application data, in order with the data around it, and the agent stays COMPLETED; the same bytes, or
    any, from an address that is no remote candidate are dropped (RFC 8445 12.2)."""
    with trio.fail_after(10):
        async with completed() as (a, b):
            stream = await b.connect()
            pair = a.selected_pair
            assert pair is not None
            fake = b"\x00\x01\x00\x08" + COOKIE_BYTES + bytes(12)  # length 8, but no attributes follow
            sender = a._current
            assert sender is not None
            transport = sender.transport_of[pair.base]
            stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                transport.send_nowait(b"before", pair.remote_address)  # type: ignore[attr-defined]
                stranger.sendto(b"stranger", pair.remote_address)  # no remote candidate of b's: dropped (12.2)
                stranger.sendto(fake, pair.remote_address)
                for data in (fake, b"after"):
                    transport.send_nowait(data, pair.remote_address)  # type: ignore[attr-defined]
                got = [await stream.receive() for _ in range(3)]
            finally:
                stranger.close()
            assert got == [b"before", fake, b"after"]
            assert b.state.value is IceState.COMPLETED


def test_the_self_wake_filter_takes_only_the_wake_up_datagrams() -> None:
    """The empty datagrams the session task sent its own socket leave the batch, in place; data (an empty
    datagram from elsewhere included) stays, in order; the wake-up counts as arrived."""
    task = SessionTask()
    local = ("127.0.0.1", 4000)
    task._served = types.SimpleNamespace(local_address=local)  # type: ignore[assignment]
    task._woke_self = True
    peer = ("127.0.0.1", 5000)
    items = [(b"a", peer), (b"", local), (b"", peer), (b"b", local), (b"", local)]
    assert task._without_self_wake(items) == [(b"a", peer), (b"", peer), (b"b", local)]
    assert not task._woke_self
    task._woke_self = True
    kept = [(b"x", peer)]
    assert task._without_self_wake(kept) == kept and task._woke_self  # not arrived yet: still on its way


async def test_a_wake_up_of_a_session_task_waiting_without_a_timer_reads_no_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before signalling, the session task waits on its socket with no deadline: the hand-over's wake-up
    compares no deadline with the clock (one Trio clock read per agent less), and still wakes it by the
    datagram, which is already on the socket (no fallback deadline)."""
    async with open_agent(controlling=True, host_addresses=LO, config=CONFIG) as agent:
        async for _ in agent.gather():
            pass
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()
        runner = agent._current
        assert runner is not None and runner._polling and runner._sleep is not None
        assert runner._sleep.deadline == math.inf
        reads: list[float] = []
        now = trio.current_time

        def counted() -> float:
            reads.append(0.0)
            return now()

        monkeypatch.setattr(trio, "current_time", counted)
        runner.wake()
        monkeypatch.undo()
        assert reads == [] and runner._woke_self and runner._sleep.deadline == math.inf
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()
        assert runner._polling and not runner._woke_self


def test_os_udp_socket_fileno_is_the_stdlib_sockets_own() -> None:
    """Trio calls `fileno()` of what it waits on at every wait: OSUdpSocket's is the stdlib socket's own
    method (no Python frame), -1 once closed."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.setblocking(False)
    raw.bind(("127.0.0.1", 0))
    sock = OSUdpSocket(raw)
    try:
        own = isinstance(sock.fileno, types.BuiltinMethodType)
        assert sock.fileno() == raw.fileno() >= 0
    finally:
        sock.close()
    assert sock.fileno() == -1 and own


async def test_a_notifier_waiter_holds_no_closure() -> None:
    """A task waiting on a Notifier holds no closure (no cells) for its abort function, so a thousand waiting
    connect() calls leave fewer objects for the cyclic collector; a cancelled waiter still leaves the
    waiters, and `notify()` wakes every other one."""
    notifier = Notifier()
    woken: list[int] = []
    left: list[bool] = []

    async def waiter(i: int) -> None:
        await notifier.wait()
        woken.append(i)

    async def cancellable(task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await notifier.wait()
        left.append(True)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            gc.collect()
            gc.disable()
            try:
                for i in range(50):
                    nursery.start_soon(waiter, i)
                await trio.testing.wait_all_tasks_blocked()
                cells = sum(1 for o in gc.get_objects(0) if type(o) is types.CellType)
            finally:
                gc.enable()
            scope = await nursery.start(cancellable)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert left == [True]
            notifier.notify()
    assert sorted(woken) == list(range(50))
    assert cells < 50, cells  # a closure per waiter made two
