"""Gatherers' STUN transactions on the session's sockets (server-reflexive discovery).

A receive task owns each socket, so it hands a response to the gatherer that waits for it: matched by
transaction id and accepted only from the server the request went to (RFC 8489 6.3.1, 6.2.1). Answers
from elsewhere are noted, so the gatherer's timeout error can name them. Both tables hold one entry
per waiting transaction at most.
"""

from __future__ import annotations

import trio

from ..net.base import Address
from ..stun.message import Message

__all__ = ["StunRequests"]


class StunRequests:
    """The waiting transactions of one session's gatherers."""

    __slots__ = ("_strays", "waiting")

    def __init__(self) -> None:
        #: None while empty: most sessions have no gatherer transaction after gathering (one per agent counts),
        #: so the demultiplexer tests it before it asks `deliver` about a response
        self.waiting: dict[bytes, tuple[Address, trio.MemorySendChannel[Message]]] | None = None
        self._strays: dict[bytes, Address] | None = None

    def open(self, transaction_id: bytes, server: Address) -> trio.MemoryReceiveChannel[Message]:
        """Wait for the answer to `transaction_id` from `server`; `close` it when done."""
        send, receive = trio.open_memory_channel[Message](1)
        if self.waiting is None:
            self.waiting = {}
        self.waiting[transaction_id] = (server, send)
        return receive

    def close(self, transaction_id: bytes) -> None:
        """The transaction is over (answered, timed out or cancelled)."""
        if self.waiting is not None:
            self.waiting.pop(transaction_id, None)
            if not self.waiting:
                self.waiting = None
        if self._strays is not None:
            self._strays.pop(transaction_id, None)
            if not self._strays:
                self._strays = None

    def deliver(self, message: Message, source: Address) -> bool:
        """A STUN response arrived from `source`: True when it belongs to a waiting transaction (handed
        over if it came from that transaction's server, else noted as a stray)."""
        if self.waiting is None:
            return False
        waiter = self.waiting.get(message.transaction_id)
        if waiter is None:
            return False
        if waiter[0] == source:
            try:
                waiter[1].send_nowait(message)
            except (trio.WouldBlock, trio.BrokenResourceError):
                pass  # a duplicate answer: the first one is already waiting
        else:
            if self._strays is None:
                self._strays = {}
            self._strays[message.transaction_id] = source
        return True

    def stray(self, transaction_id: bytes) -> Address | None:
        """Where an answer that was not from the server came from, if one did."""
        return None if self._strays is None else self._strays.get(transaction_id)

    def __len__(self) -> int:
        return len(self.waiting or ()) + len(self._strays or ())
