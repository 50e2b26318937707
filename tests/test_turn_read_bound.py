"""The stream reader's bound on datagrams read per task step holds on a relayed pair (docs/security.md, the
reader's rows; agent/_tap.py, turn/allocation.py `sync_recvfrom` and `_drain`), through coturn over UDP.

Anyone may send to the TURN client's socket (the relay candidate's related address), and a peer datagram that
is not from the known source needs only a permission for its IP, which relay-to-relay is the TURN server's own
IP: any other client of the same server passes it. Before, each `sync_recvfrom` call (one miss for the stream)
and each `receive_nowait` of the drain could first drop up to 63 strays, so the reader read up to 64 x 64
datagrams between two checkpoints, not 64 (a reviewer's reproduction).
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import pytest
import trio
from coturn import PASSWORD, USER, Coturn, coturn_server  # noqa: F401
from test_turn_tap import relayed_streams

from iceagent.agent._tap import DRAIN_LIMIT
from iceagent.turn.allocation import open_allocation

pytestmark = [pytest.mark.coturn, pytest.mark.interop]

#: Rounds of STRAYS datagrams from a stranger then one the server relays: 244 datagrams, which fit a socket
#: buffer of net.core.rmem_max's default (208 KiB, doubled by the kernel)
ROUNDS, STRAYS = 4, 60


def _queued(port: int) -> int:
    """Bytes queued on the UDP socket bound to 127.0.0.1:`port` (its rx_queue in /proc/net/udp), 0 if none."""
    local = f"{struct.unpack('=I', socket.inet_aton('127.0.0.1'))[0]:08X}:{port:04X}"  # as the kernel prints it
    with open("/proc/net/udp") as table:
        for line in table:
            fields = line.split()
            if fields[1] == local:
                return int(fields[4].split(":")[1], 16)
    return 0


def relayed_after(port: int, send: Any) -> None:
    """`send()` a datagram the TURN server relays to the client socket bound to `port`, and wait (blocking:
    no task of this process takes it off the socket) until it is queued there, behind what was sent before."""
    before = _queued(port)
    send()
    deadline = time.monotonic() + 5
    while _queued(port) <= before:
        assert time.monotonic() < deadline, "the TURN server did not relay the datagram"
        time.sleep(0.0005)  # polling another process's progress: a condition, not a guess


def flood(port: int, relayed: Any) -> socket.socket:
    """ROUNDS x (STRAYS datagrams from a stranger to the client socket at `port`, then one the server relays
    there, `relayed()`); the stranger's socket, to be closed."""
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(ROUNDS):
        for _ in range(STRAYS):
            stranger.sendto(b"x", ("127.0.0.1", port))
        relayed_after(port, relayed)
    return stranger


class _StepReads(trio.abc.Instrument):
    """The most datagrams `count[0]` grew by within one task step of `task`."""

    def __init__(self, task: trio.lowlevel.Task, count: list[int]) -> None:
        self.task, self.count, self.start, self.most = task, count, 0, 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.start = self.count[0]

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.most = max(self.most, self.count[0] - self.start)


async def test_relayed_reader_yields_every_drain_limit_datagrams(coturn_server: Coturn) -> None:  # noqa: F811
    """A flood of strays, each run of them followed by a relayed datagram from a peer that is not the known
    source: the stream's reader reads exactly DRAIN_LIMIT datagrams in its first task step, then yields (every
    datagram `sync_recvfrom` reads counts once). Before: all 244 in one step."""
    with trio.fail_after(30):
        async with relayed_streams(coturn_server, warm_up=3) as (_, sb):
            tap = sb._receive.tap
            assert tap is not None and tap.source is not None  # the direct read is on
            allocation: Any = tap.recvfrom.__self__
            allocation._os_conn.twin.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            count = [0]
            real = allocation._recvfrom

            def counting(size: int) -> Any:
                count[0] += 1
                return real(size)

            allocation._recvfrom = counting
            port = allocation.local_address[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other_peer:
                # coturn relays it (the permission is for 127.0.0.1), from a peer that is not the known source
                stranger = flood(port, lambda: other_peer.sendto(b"not the peer", allocation.relayed_address))
                stranger.close()
            steps = _StepReads(trio.lowlevel.current_task(), count)
            trio.lowlevel.add_instrument(steps)
            try:
                with trio.move_on_after(0.5):
                    await sb.receive()
            finally:
                trio.lowlevel.remove_instrument(steps)
                allocation._recvfrom = real
            assert steps.most == DRAIN_LIMIT, (steps.most, count[0])


async def test_receive_now_reads_at_most_its_limit_per_call(coturn_server: Coturn) -> None:  # noqa: F811
    """The drain (`receive_now`, which the reader's `Tap.drain` calls) reads at most `limit` datagrams per call,
    strays included, and still returns every peer datagram, in order, over the calls. Before: one call read
    all 244 (every `receive_nowait` it made could drop up to 63 strays before the frame it returned)."""
    uri = coturn_server.uri("udp")
    with trio.fail_after(20):
        async with open_allocation(uri, USER, PASSWORD, local_address="127.0.0.1") as b:
            sb: Any = b
            await b.create_permission("127.0.0.1")
            sb._os_conn.twin.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                peer.bind(("127.0.0.1", 0))
                # Data indications (no channel), the permission is for 127.0.0.1
                stranger = flood(b.local_address[1], lambda: peer.sendto(b"data", b.relayed_address))
                stranger.close()
                items: list[tuple[bytes, Any]] = []
                reads = []
                for _ in range(2 * ROUNDS):
                    before = sb._os_conn.stray
                    got = sb.receive_now(DRAIN_LIMIT)
                    reads.append(sb._os_conn.stray - before + len(got))
                    items += got
                    if len(items) == ROUNDS:
                        break
                assert items == [(b"data", peer.getsockname())] * ROUNDS
            assert reads[0] == DRAIN_LIMIT and max(reads) == DRAIN_LIMIT, reads
            assert sum(reads) == ROUNDS * (STRAYS + 1), reads
