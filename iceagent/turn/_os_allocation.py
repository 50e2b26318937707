"""An allocation over an operating system UDP socket with the synchronous calls of a host pair's socket.

IceStream sends on and reads a relayed pair as it does a host pair (net/os.py `sync_sendto`, `sync_recvfrom`):
one system call on the TURN socket's non-blocking twin each, the ChannelData framing inline (RFC 8656 12.4,
12.6). `open_allocation` (turn/allocation.py) makes one for an `OSUdpTurnConnection`.
"""

from __future__ import annotations

import errno

from ..net.base import Address
from ._allocation_driver import Pace
from .allocation import _HEADER, _WaitableAllocation
from .client import SEND_DATA_MAX, TurnClient
from .framing import CHANNEL_DATA_MAX
from .transports import OSUdpTurnConnection

__all__ = ["OSUdpAllocation"]

#: What `sync_recvfrom` returns for a datagram it read that carried no peer data (agent/_tap.py: no source).
_NO_PEER_DATA: tuple[bytes, Address | None] = (b"", None)


class OSUdpAllocation(_WaitableAllocation):
    """An allocation over an operating system UDP socket (`OSUdpTurnConnection`) that also has the synchronous
    calls IceStream makes on a host pair's socket (net/os.py `sync_sendto`, `sync_recvfrom`): one system call
    on the socket's non-blocking twin each, the ChannelData framing inline (RFC 8656 12.4, 12.6), so that a
    relayed pair costs the stream no more Python calls per datagram than a host pair."""

    def __init__(
        self, conn: OSUdpTurnConnection, client: TurnClient, *, uri: str, protocol: str, pace: Pace | None = None
    ) -> None:
        super().__init__(conn, client, uri=uri, protocol=protocol, pace=pace)
        self._os_conn = conn
        self._sendto = conn.twin.sendto
        self._recvfrom = conn.twin.recvfrom
        self._server_address = conn.server

    def sync_sendto(self, data: bytes, remote: Address) -> None:
        """Relay one datagram now: ChannelData on a bound channel, else what `TurnClient.send` makes of it (a Send
        indication, or nothing while the permission is pending, RFC 8656 11.1). Raises BlockingIOError when the
        socket buffer is full (nothing was sent: the caller waits with `send`), another OSError when it is lost:
        EMSGSIZE, as a UDP socket's, for more data than the message holds (RFC 8656 11.1, 12.4; counted in
        `dropped`)."""
        channel = self._channel_of.get(remote)
        if channel is not None:
            n = len(data)
            if n > CHANNEL_DATA_MAX:
                raise self._too_large(n)
            self._sendto(_HEADER.pack(channel, n) + data, self._server_address)
            return
        if len(data) > SEND_DATA_MAX[6 if ":" in remote[0] else 4]:
            raise self._too_large(len(data))
        frame = self._unbound_frame(data, remote)
        if frame is not None:
            self._sendto(frame, self._server_address)

    def _too_large(self, n: int) -> OSError:
        """The error for `n` bytes of data that no ChannelData message or Send indication holds (counted)."""
        self._client.dropped += 1
        return OSError(errno.EMSGSIZE, f"{n} bytes of data do not fit a TURN message to {self.uri} (RFC 8656 12.4)")

    def sync_recvfrom(self, size: int = 65536) -> tuple[bytes, Address | None]:
        """The next peer datagram and its peer, for the stream reader's direct read (agent/_tap.py): what the
        background task read first, else one datagram off the socket, decoded as `receive_now` does (the server's
        own messages go to the TURN client). A datagram that carries no peer data (anyone's but the server's,
        counted in `stray`; the server's own message; ChannelData on an unknown channel, RFC 8656 12.6) gives
        `(b"", None)`: the reader counts it as read, so that its bound on datagrams read per task step holds
        (docs/security.md). BlockingIOError when none is queued; another OSError once closed."""
        pending = self._pending
        if pending:
            return pending.popleft()
        frame, addr = self._recvfrom(65536)
        server = self._server_address
        if addr[1] == server[1] and addr[0] == server[0]:
            item = self._peer_datagram(frame)
            if item is not None:
                return item
        else:
            self._os_conn.stray += 1
        return _NO_PEER_DATA

    def _drain(self, out: list[tuple[bytes, Address]], limit: int) -> None:
        """Append the peer datagrams queued to `out`, reading at most `limit - len(out)` datagrams in all, those
        that carry no peer data included (`sync_recvfrom`): bounded work per call, whoever sends to the socket."""
        read = self.sync_recvfrom
        for _ in range(limit - len(out)):
            try:
                data, peer = read()
            except BlockingIOError:
                break
            except ConnectionError:
                continue  # an ICMP error reported on this read: not an error for UDP
            except OSError:
                break  # closed: the next receive() says why
            if peer is not None:
                out.append((data, peer))
