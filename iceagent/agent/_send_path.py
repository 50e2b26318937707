"""SendPath: how a SessionRunner sends its generation's packets, and the ICE-TCP connections it gives up.

Checks and answers go out at once where the transport can take them without waiting (an OS UDP socket
with room, TCP and TURN for answers), else from the session task's outbox, in order. The session task's
own OS UDP socket is written by its stdlib `sendto` directly. A Binding success response tells a transport
that has `confirm` (ICE-TCP, a mux) that the remote knows the credentials (RFC 6544 7.2, DESIGN.md
"open_mux"); once nomination concluded, every other TCP connection is closed (RFC 6544 7.1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..gatherers.base import CandidateTransport
from ..ice.candidate import Candidate
from ..ice.events import Transmit
from ..ice.pair import CandidatePair
from ..net.base import Address
from ._connections import Connections
from ._session_task import SessionTask

#: The first two bytes of a Binding success response (RFC 8489 5): a check was accepted.
_BINDING_SUCCESS = b"\x01\x01"


class SendPath(SessionTask):
    """The sending half of a SessionRunner (which sets the attributes declared here)."""

    __slots__ = ("_confirming", "_own_base", "_own_sendto")

    _connections: Connections

    def __init__(self) -> None:
        super().__init__()
        #: the stdlib `sendto` of the OS UDP socket the session task serves, and the base candidate registered for
        #: it: `_transmit` sends that base's packets on it directly
        self._own_sendto: Callable[[bytes, Address], object] | None = None
        self._own_base: Candidate | None = None
        self._confirming = False  # some transport of this generation has `confirm` (ICE-TCP, a mux): see `_confirm`

    def send_soon(self, transport: CandidateTransport, data: bytes, remote: Address) -> None:
        """Send at once where the transport can without waiting (a UDP socket with room in its buffer),
        else from the session task, in order."""
        caps = self._caps.get(id(transport))
        try_send = None if caps is None else caps.try_send
        if try_send is not None and not self._outbox and try_send(data, remote):
            return
        self._outbox.append((transport, data, remote))
        self._alert()

    def _transmit(self, t: Transmit) -> None:
        """Send one of the generation's packets: a check as `send_soon` does, an answer at once where the
        transport can. From the base of the session task's own OS UDP socket, by the socket's `sendto` itself
        (no lookup, a Python call less per packet; an OS socket has nothing to confirm and no connections).
        The ICE-TCP bookkeeping only where there are connections."""
        if t.base is self._own_base and self._served is not None and self._check_hook is None:
            sendto: Any = self._own_sendto
            if t.pair is None:  # an answer: dropped if the buffer is full, as UDP may (the check is retransmitted)
                try:
                    sendto(t.data, t.remote)
                except OSError:
                    pass
                return
            if not self._outbox:  # (else after what waits there, in order)
                try:
                    sendto(t.data, t.remote)
                    return
                except BlockingIOError:
                    pass  # its buffer is full: the session task sends it when it can
                except OSError:
                    return  # lost, as UDP allows (the check is retransmitted)
            self._outbox.append((self._served, t.data, t.remote))
            self._alert()
            return
        transport = self.transport_of.get(t.base)
        if transport is None:
            return
        if t.pair is not None:
            if self._check_hook is not None:
                self._check_hook("send", t.data, t.base, t.remote, t.pair)
            self.send_soon(transport, t.data, t.remote)
            return
        # an answer to a check: at once, synchronously where the transport can (UDP, TCP, TURN; dropped if
        # it cannot take it now, as UDP may: the request is retransmitted), else from the session task
        if self._check_hook is not None:
            self._check_hook("send", t.data, t.base, t.remote, self.ice.find_pair(t.base, t.remote))
        if self._confirming and t.data[:2] == _BINDING_SUCCESS:
            # a check from t.remote passed MESSAGE-INTEGRITY: an ICE-TCP connection is no longer timed out
            # (RFC 6544 7.2), a mux binds t.remote to this agent (DESIGN.md "open_mux")
            self._confirm(transport, t.remote)
        caps = self._caps.get(id(transport))
        send_nowait = None if caps is None else caps.send_nowait
        if send_nowait is not None:
            send_nowait(t.data, t.remote)
        else:
            self._outbox.append((transport, t.data, t.remote))
            self._alert()
        if self._connections.by_id is None:
            return  # no ICE-TCP connection (the usual case)
        connection = self._connections.get(transport)
        nominated = self.gen.nominated
        if connection is not None and nominated is not None and nominated.route != (t.base, t.remote):
            connection.close_connection(t.remote)  # a pair checked after nomination concluded has lost

    @staticmethod
    def _confirm(transport: CandidateTransport | None, remote: Address) -> None:
        """Tell a transport that has `confirm` (ICE-TCP, mux) that `remote` proved to know the credentials
        (called only when one of the generation's transports has it: `_confirming`)."""
        confirm = getattr(transport, "confirm", None)
        if confirm is not None:
            confirm(remote)

    def _prune_connections(self, nominated: CandidatePair) -> None:
        """Nomination concluded: close every TCP connection but the nominated pair's; their pairs lost
        (RFC 6544 7.1, RFC 8445 8.1.2). The routes closed here are failed in the session (their events
        are applied by the caller's loop)."""
        keep = self.transport_of.get(nominated.base)
        for key, transport in self._connections.items():
            base = self._base_of.get(key)
            for remote in transport.connections:
                if transport is keep and remote == nominated.remote_address:
                    continue
                transport.close_connection(remote)
                if base is not None:
                    self.gen.route_failed(base, remote)
