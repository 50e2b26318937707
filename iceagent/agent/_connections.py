"""The ICE-TCP endpoints of one generation (RFC 6544 7): transports with one connection per remote address.

The session's checks decide about connections: a connection that carried a valid check is confirmed
(7.2), the connection of a failed pair is closed unless the stream still sends on it, and when
nomination concludes every connection but the nominated pair's is closed (7.1, RFC 8445 8.1.2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..gatherers.base import CandidateTransport, ConnectionTransport
from ..net.base import Address

__all__ = ["Connections"]


class Connections:
    """The generation's connection transports, by id of the transport."""

    __slots__ = ("by_id",)

    def __init__(self) -> None:
        #: the connection transports by id, made by the first (ICE-TCP only): None tells a hot path there are none
        self.by_id: dict[int, ConnectionTransport] | None = None

    def add(self, transport: ConnectionTransport, on_closed: Callable[[CandidateTransport, Address], None]) -> None:
        """Follow `transport`: `on_closed(transport, remote)` when one of its connections ends by itself
        (RFC 6544 7.1)."""
        if self.by_id is None:
            self.by_id = {}
        self.by_id[id(transport)] = transport
        transport.watch(lambda remote: on_closed(transport, remote))

    def __iter__(self) -> Iterator[ConnectionTransport]:
        return iter(list(self.by_id.values()) if self.by_id else ())

    def get(self, transport: CandidateTransport | None) -> ConnectionTransport | None:
        return None if self.by_id is None else self.by_id.get(id(transport))

    def items(self) -> Iterator[tuple[int, ConnectionTransport]]:
        return iter(list(self.by_id.items()) if self.by_id else ())

    def close(self, transport: CandidateTransport | None, remote: Address) -> None:
        """Close the connection to `remote` on `transport`, if that is a connection transport."""
        connection = self.get(transport)
        if connection is not None:
            connection.close_connection(remote)
