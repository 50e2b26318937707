"""The synchronous data path of an allocation over an OS UDP socket (turn/_os_allocation.py `OSUdpAllocation`):
`sync_sendto` and `sync_recvfrom`, which IceStream calls on a relayed pair as it calls a host socket's own
`sendto` / `recvfrom` (net/os.py), through coturn over UDP (RFC 8656 11, 12)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio
from coturn import PASSWORD, USER, Coturn, coturn_server  # noqa: F401
from test_turn_read_bound import relayed_after

from iceagent.turn.allocation import open_allocation

pytestmark = [pytest.mark.coturn, pytest.mark.interop]


async def _until(receive: Any) -> Any:
    """Call the synchronous `receive()` until it returns (it raises BlockingIOError while nothing is queued)."""
    while True:
        try:
            return receive()
        except BlockingIOError:
            await trio.sleep(0.01)


async def test_sync_calls_relay_both_ways_and_leave_strays(coturn_server: Coturn) -> None:  # noqa: F811
    """Before the channel is bound `sync_sendto` goes through the TURN client (the permission asked for, the
    datagram held, then a Send indication, RFC 8656 10, 11.1); after it, ChannelData (12.4). `sync_recvfrom`
    returns (data, peer) whatever carried it, raises BlockingIOError when nothing is queued, and reads one
    datagram per call: one from anyone but the server gives (b"", None) and is counted (`stray`), so that the
    reader counts it against its bound (docs/security.md). Before, a call dropped up to 64 of them first."""
    uri = coturn_server.uri("udp")
    with trio.fail_after(20):
        async with (
            open_allocation(uri, USER, PASSWORD, local_address="127.0.0.1") as a,
            open_allocation(uri, USER, PASSWORD, local_address="127.0.0.1") as b,
        ):
            ra, rb = a.relayed_address, b.relayed_address
            sa: Any = a
            sb: Any = b
            with pytest.raises(BlockingIOError):
                sb.sync_recvfrom(65536)
            await b.create_permission(ra[0])
            sa.sync_sendto(b"first", rb)  # no permission on a's side yet: held, sent once installed
            assert await _until(lambda: sb.sync_recvfrom(65536)) == (b"first", ra)
            await a.bind_channel(rb)
            assert a.channels() == {rb: a.channels()[rb]}
            sa.sync_sendto(b"second", rb)  # ChannelData now
            assert await _until(lambda: sb.sync_recvfrom(65536)) == (b"second", ra)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
                for _ in range(3):
                    stranger.sendto(b"junk", b.local_address)
                relayed_after(b.local_address[1], lambda: sa.sync_sendto(b"third", rb))  # behind the strays
                assert [sb.sync_recvfrom(65536) for _ in range(4)] == [(b"", None)] * 3 + [(b"third", ra)]
                assert sb._os_conn.stray == 3
                with pytest.raises(BlockingIOError):
                    sb.sync_recvfrom(65536)
