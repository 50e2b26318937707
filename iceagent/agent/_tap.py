"""Who waits on a UDP socket: its receive task, or the stream's reader (issue 15, "the reader drains").

A receive task that drains the socket and wakes the reader costs a second task step per batch: a
quarter of the throughput of stdlib sockets in Trio. So while the application reads, the reader waits
on the socket of the selected pair itself and drains it synchronously, and the socket's receive task
parks. The turns are kept so that:

- only one task at a time waits on the socket (Trio allows one waiter per direction; a TURN allocation's
  background task waits for responses on a duplicate of its descriptor, turn/transports.py);
- every STUN message, and everything after it in the same drain, goes to the receive task in order
  (`stash`), so the session's work (answers, triggered checks, events, observer hooks) runs in the
  session's tasks, never in the application's, and data from a peer-reflexive source that its own check
  made known is filtered after that check (RFC 8445 12.2);
- a receive task parked for a reader takes the socket back at most `TAP_PARK` seconds after the reader
  stopped waiting on it, unless the reader waits on it again by then (the application stopped reading, or is
  busy): STUN waits at most that long, consent (RFC 7675) never depends on the application reading.
  While the reader waits on the socket it wakes for every datagram itself, so the receive task parks
  without a deadline: an idle agent whose application waits in `receive()` wakes no task at all. A
  reader whose wait ends sets the parked task's deadline TAP_PARK ahead (`reader_left`) instead of
  waking it, but only when no deadline is set or the one set is less than TAP_PARK / 2 away: moving a
  Trio deadline costs a dozen Python calls, too many for every wait of a busy reader. So the receive
  task takes the socket back between TAP_PARK / 2 and TAP_PARK after the reader's last wait ended (a park
  that expires while the reader waits on the socket again parks again without a deadline), and the
  turns cost no task step per batch.

The reader's direct read (issue 15, "do what the fair limit does"): between turns, a reader that finds the
stream's queue empty takes one datagram at a time off the socket (`recvfrom`) and returns it at once when
it comes from `source`, a known source of application data on this socket (RFC 8445 12.2) that the
demultiplexer learned, and is not STUN (RFC 7983: a first byte of 0x40 or above, else `looks_like_stun`);
anything else goes through the demultiplexer (`process`). A relayed pair's `recvfrom` (a TURN allocation's
`sync_recvfrom`, turn/allocation.py) returns an address of None for a datagram it read that carried no peer
data (a stray, the server's own message): nothing for the demultiplexer, but one datagram read, which the
reader counts against DRAIN_LIMIT as any other it does not return (docs/security.md). `source` is None, and
so the direct read off, whenever the reader must not read the socket or may not trust it: while the receive
task polls, while a stash waits, once the Tap is closed, and whenever the session forgets its data sources
(a pair became valid or was removed, a candidate was learned: ReceivePath.forget_data_sources). Checking it
costs one comparison per datagram.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..ice.pair import CandidatePair
from ..net.base import Address
from ._notify import Wakeup

__all__ = ["TAP_PARK", "Tap"]

#: How long a parked receive task leaves its socket to a reader that stopped waiting on it (seconds).
TAP_PARK = 0.005

#: At most this many datagrams per synchronous drain (a receive task's batch is as large).
DRAIN_LIMIT = 64


def _no_recvfrom(size: int) -> tuple[bytes, Address | None]:
    """A socket without a direct read: never called (`Tap.learn` sets no source for it)."""
    raise BlockingIOError


def _no_process(batch: list[tuple[bytes, Address]], tap: Tap | None) -> bool:
    """A closed Tap's demultiplexer: never called (a reader does not drain a closed Tap's socket)."""
    return False


class Tap:
    """The turns of one socket between its receive task and the stream's reader (see the module)."""

    __slots__ = (
        "_clock",
        "_closed",
        "_polling",
        "_refresh_at",
        "interrupt",
        "kick",
        "pair",
        "park",
        "process",
        "reader",
        "receive_now",
        "recvfrom",
        "source",
        "stash",
        "wait_readable",
        "want",
    )

    def __init__(
        self,
        receive_now: Callable[[int], list[tuple[bytes, Address]]],
        wait_readable: Callable[[], Awaitable[None]],
        interrupt: Callable[[], None],
        process: Callable[[list[tuple[bytes, Address]], Tap | None], bool],
        recvfrom: Callable[[int], tuple[bytes, Address | None]] | None = None,
    ) -> None:
        #: the socket's own `recvfrom` when its addresses need no normalizing (IPv4), for the direct read; one
        #: datagram per call, whose address is None when it carried nothing to deliver (see the module)
        self.recvfrom = _no_recvfrom if recvfrom is None else recvfrom
        #: the socket's `receive_now(limit)`, `wait_readable()` and `interrupt()` (which ends that wait)
        self.receive_now = receive_now
        self.wait_readable = wait_readable
        self.interrupt = interrupt
        #: the session's demultiplexer for a batch of this socket (SessionRunner._on_datagrams): True when it
        #: delivered application data (which wakes the reader)
        self.process = process
        #: a known source of application data on this socket, as `recvfrom` gives it; None while the reader may
        #: not read directly (see the module)
        self.source: Address | None = None
        #: the source's pair, whose received bytes the direct read counts (RFC 7675 and `stats()` count them)
        #: (Any: read only while `source` is set, and then a CandidatePair; the stream adds to `_bytes_received`)
        self.pair: Any = None
        self._polling = False
        self._closed = False
        self.reader = False  # a reader waits on the socket
        #: a reader found the receive task polling (or a stash pending) and waits for a delivery: the receive
        #: task hands the socket over after a batch that delivers (and so wakes that reader)
        self.want = False
        #: what a reader's drain left to the receive task: the first STUN message and all after it
        self.stash: list[tuple[bytes, Address]] = []
        self.kick = Wakeup()  # the parked receive task: a stash is waiting
        #: the receive task's park while it parks: no deadline while the reader waits on the socket
        self.park: trio.CancelScope | None = None
        self._refresh_at = -math.inf  # `reader_left` moves the park's deadline from then on (see the module)
        self._clock = trio.lowlevel.current_clock()  # one call per `reader_left`, not trio.current_time's three

    @property
    def polling(self) -> bool:
        """The receive task waits on the socket (or is about to): the reader does not read it meanwhile."""
        return self._polling

    @polling.setter
    def polling(self, value: bool) -> None:
        self._polling = value
        if value:
            self.source = None

    @property
    def closed(self) -> bool:
        """The receive task ended: readers wait for deliveries again."""
        return self._closed

    @closed.setter
    def closed(self, value: bool) -> None:
        self._closed = value
        if value:
            # a stream's queue may keep this Tap until its reader runs again: it keeps no session alive
            self.source, self.pair, self.process = None, None, _no_process
            self.recvfrom = _no_recvfrom

    def learn(self, source: Address, pair: CandidatePair) -> None:
        """The reader's drain delivered application data from `source` on `pair` (a known remote candidate,
        RFC 8445 12.2): the direct read may return that source's datagrams at once (see the module)."""
        if self.recvfrom is not _no_recvfrom and not (self._polling or self._closed or self.stash):
            self.source, self.pair = source, pair

    def reader_may_poll(self) -> bool:
        """Whether a reader that found nothing queued may drain and wait on the socket itself; if the
        receive task polls or has a stash to process, it is asked to hand the socket over after its next
        batch that wakes the reader."""
        if self._closed or self.reader:
            return False
        if self._polling or self.stash:
            self.want = True
            return False
        return True

    def drain(self) -> bool:
        """The reader's synchronous drain (it found nothing queued): application data up to the first STUN
        message is processed now (it reaches the stream's queue); that message and all after it are left
        to the receive task (`leave`). True when anything was taken off the socket."""
        try:
            items = self.receive_now(DRAIN_LIMIT)
        except OSError:
            return False
        if not items:
            return False
        self.process(items, self)
        return True

    def leave(self, items: list[tuple[bytes, Address]]) -> None:
        """What the receive task is to process, in order, before anything else (it is woken for it)."""
        self.source = None  # the reader reads nothing more until the receive task has processed these
        self.stash.extend(items)
        self.kick.set()

    def reader_waits(self) -> None:
        """The reader starts waiting on the socket: it will wake for any datagram and leave STUN to the
        receive task (`leave`); a parked receive task whose park expires meanwhile parks again without a
        deadline (`task_turn`)."""
        self.reader = True

    def reader_left(self) -> None:
        """The reader's wait on the socket ended (data, a delivery from elsewhere, a close, a cancel): a parked
        receive task takes the socket back TAP_PARK from now (TAP_PARK / 2 at least, see the module) unless
        the reader waits on it again by then."""
        self.reader = False
        park = self.park
        if park is not None:
            now = self._clock.current_time()
            if now >= self._refresh_at:
                park.deadline = now + TAP_PARK
                self._refresh_at = now + TAP_PARK / 2

    async def task_turn(self, delivered: bool) -> None:
        """The receive task's turn while it does not poll: process the stash, then park while a reader has the
        socket, or asked for it and was woken by a delivery (`delivered`, or the stash's), until kicked, or
        until TAP_PARK after the reader is not waiting on the socket (no deadline while it is: an idle agent
        makes no wake-up)."""
        if self.stash:
            stash, self.stash = self.stash, []
            delivered = self.process(stash, None) or delivered
        if self.reader or (self.want and delivered):
            self.want = False
            deadline = math.inf if self.reader else trio.current_time() + TAP_PARK
            # a finite deadline is moved by `reader_left` from half-way on, an infinite one at once
            self._refresh_at = deadline - TAP_PARK / 2 if deadline != math.inf else -math.inf
            with trio.CancelScope(deadline=deadline) as park:
                self.park = park
                try:
                    await self.kick.wait()
                finally:
                    self.park = None
