"""IceStream's data path shortcuts (issue 15): the send calls the OS socket's sendto inline, the reader moves
the parked receive task's deadline rarely, and neither changes what is delivered or counted."""

from __future__ import annotations

import socket
import sys
from typing import Any

import trio
import trio.testing
from test_stream_tap import b_address, connected

from iceagent.agent._route import RouteState
from iceagent.agent._tap import TAP_PARK, Tap
from iceagent.agent.stream import IceStream, Inbox
from iceagent.net.os import OSUdpSocket


async def test_send_on_an_os_socket_calls_sendto_inline_and_counts_every_byte() -> None:
    """`IceStream.send` on a plain OS UDP socket calls the stdlib `sendto` itself, not `try_send` (a Python
    call per datagram); every datagram arrives in order and both pairs count exactly the bytes sent."""
    try_send = OSUdpSocket.try_send.__code__
    try_sends = 0

    def profile(frame: Any, event: str, arg: object) -> None:
        nonlocal try_sends
        if event == "call" and frame.f_code is try_send:
            try_sends += 1

    with trio.fail_after(10):
        async with connected() as (a, b, sa, sb):
            pa, pb = a.selected_pair, b.selected_pair
            assert pa is not None and pb is not None
            sent0, received0 = pa.bytes_sent, pb.bytes_received
            sent = [b"%d:" % i + b"x" * (i % 7) for i in range(3 * IceStream.SCHEDULE_EVERY)]
            for data in sent:
                sys.setprofile(profile)
                try:
                    await sa.send(data)
                finally:
                    sys.setprofile(None)
                assert await sb.receive() == data
            assert try_sends == 0  # was 45: every send but each 16th
            assert pa.bytes_sent - sent0 == sum(map(len, sent))
            assert pb.bytes_received - received0 == sum(map(len, sent))


class _SyncSendtoTransport:
    """A transport with `sync_sendto` (as OSUdpSocket): the buffer is full once, one datagram is lost."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.wire: list[bytes] = []

    def sync_sendto(self, data: bytes, remote: object) -> None:
        if data == b"full":
            self.calls.append("sendto: full")
            raise BlockingIOError
        if data == b"lost":
            self.calls.append("sendto: lost")
            raise ConnectionRefusedError  # an ICMP error reported on this send: UDP drops it
        self.calls.append("sendto")
        self.wire.append(data)

    async def send(self, data: bytes, remote: object) -> None:
        self.calls.append("send")
        self.wire.append(data)
        await trio.lowlevel.checkpoint()


class _Pair:
    """The counter the stream's send path adds to (CandidatePair._bytes_sent)."""

    def __init__(self) -> None:
        self._bytes_sent = 0

    def count_sent(self, size: int) -> None:
        self._bytes_sent += size


async def test_the_inline_sendto_waits_on_a_full_buffer_and_counts_a_lost_datagram() -> None:
    """BlockingIOError from the inline sendto: the datagram goes through the transport's awaiting `send`;
    another OSError: it is lost as UDP allows (and counted, as `try_send` had it); every SCHEDULE_EVERY-th
    send is still a full checkpoint through `send`."""
    routes = RouteState("a")
    transport, pair = _SyncSendtoTransport(), _Pair()
    routes.route = (transport, ("127.0.0.1", 9), pair, None, None)  # type: ignore[assignment]
    stream = IceStream(routes, Inbox(4))
    datas = [b"a", b"full", b"lost", b"b"] + [b"c"] * (IceStream.SCHEDULE_EVERY - 4)
    for data in datas:
        await stream.send(data)
    assert transport.calls == [
        "sendto", "sendto: full", "send", "sendto: lost", *["sendto"] * (IceStream.SCHEDULE_EVERY - 4), "send"
    ]
    assert transport.wire == [data for data in datas if data != b"lost"]
    assert pair._bytes_sent == sum(map(len, datas))


class _Park:
    """Stands for the receive task's CancelScope: counts how often its deadline is moved."""

    def __init__(self) -> None:
        self.moves = 0
        self._deadline = float("inf")

    @property
    def deadline(self) -> float:
        return self._deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self.moves += 1
        self._deadline = value


async def test_a_busy_reader_moves_the_parked_receive_tasks_deadline_once_per_half_park(
    mock_clock: trio.testing.MockClock,
) -> None:
    """A Trio deadline costs a dozen Python calls to move: a reader that waits on the socket again and again
    moves the parked task's deadline once, then again only once the deadline is less than TAP_PARK / 2 away
    (it moved it twice per wait before); the deadline stays TAP_PARK after the last move."""
    tap = Tap(lambda limit: [], trio.lowlevel.checkpoint, lambda: None, lambda items, t: False)
    park: Any = _Park()
    tap.park = park
    for _ in range(100):
        tap.reader_waits()
        tap.reader_left()
    assert park.moves == 1
    assert park.deadline == trio.current_time() + TAP_PARK
    mock_clock.jump(TAP_PARK / 4)
    tap.reader_waits()
    tap.reader_left()
    assert park.moves == 1
    mock_clock.jump(TAP_PARK / 4)
    for _ in range(10):
        tap.reader_waits()
        tap.reader_left()
    assert park.moves == 2
    assert park.deadline == trio.current_time() + TAP_PARK


async def test_data_from_a_stranger_between_the_peers_datagrams_is_dropped_and_not_counted() -> None:
    """RFC 8445 12.2 with counters: in the same drain, a datagram from an address that is no remote candidate
    between the peer's is dropped; the pair counts exactly the bytes of what was delivered."""
    with trio.fail_after(10):
        async with connected() as (_, b, sa, sb):
            pair = b.selected_pair
            assert pair is not None
            before = pair.bytes_received
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
                stranger.bind(("127.0.0.1", 0))
                expected = []
                for i in range(3 * IceStream.SCHEDULE_EVERY):
                    if i % 5 == 2:
                        stranger.sendto(b"\xabnot from a remote candidate", b_address(b))
                    expected.append(b"\xab%d" % i)
                    await sa.send(expected[-1])
                got = [await sb.receive() for _ in expected]
            assert got == expected
            assert pair.bytes_received - before == sum(map(len, expected))
