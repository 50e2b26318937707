"""TURN over an operating system UDP socket (iceagent/turn/transports.py `OSUdpTurnConnection`): what its
synchronous read does with datagrams that are not from the TURN server, on real loopback sockets."""

from __future__ import annotations

import socket

import trio

from iceagent.net.os import OSNetwork
from iceagent.turn.transports import _STRAY_READS, OSUdpTurnConnection, open_udp


async def test_a_flood_from_elsewhere_ends_a_read_after_a_bounded_number_of_datagrams() -> None:
    """Anyone may send to the socket a relay candidate names: 3 x _STRAY_READS datagrams from a stranger
    before the server's message cost each `receive_nowait` at most _STRAY_READS reads (it says WouldBlock
    and the caller waits), and the server's message still comes through, once the strays are read."""
    with (
        trio.fail_after(10),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger,
    ):
        server.bind(("127.0.0.1", 0))
        conn = await open_udp(
            OSNetwork(), server.getsockname(), server_name="127.0.0.1", ssl_context=None, local_address="127.0.0.1"
        )
        assert isinstance(conn, OSUdpTurnConnection)
        try:
            local = conn._sock.local_address
            for _ in range(3 * _STRAY_READS):
                stranger.sendto(b"junk", local)
            server.sendto(b"from the server", local)
            calls = 0
            while True:
                await conn.wait_readable()
                calls += 1
                try:
                    data = conn.receive_nowait()
                except trio.WouldBlock:
                    continue
                break
            assert data == b"from the server"
            assert conn.stray == 3 * _STRAY_READS
            assert calls == 4  # three calls ended by the bound, the fourth read the server's message
        finally:
            await conn.aclose()
