"""The receive path of a SessionRunner: receive tasks and the demultiplexer (DESIGN.md).

The session task serves the first OS UDP socket itself (agent/_session_task.py); every other transport
has a receive task. Each drains a batch per wake-up and hands it to `_on_datagrams`: STUN to a
gatherer's transaction or to the generation, application data to the stream when it comes from a known
remote candidate (RFC 8445 12.2). On an OS UDP socket the stream's reader may drain the socket itself
while it reads (agent/_tap.py); the task serving the socket then takes turns with it.
"""

from __future__ import annotations

from functools import partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ..gatherers.base import CandidateTransport
from ..ice.pair import CandidatePair
from ..net.base import Address, TransportCapabilities
from ..stun.attributes import COOKIE_BYTES
from ..stun.message import Message, MessageClass, StunDecodeError, looks_like_stun
from ._tap import Tap

if TYPE_CHECKING:
    from ..ice.candidate import Candidate
    from ..ice.generation import IceGeneration
    from ..ice.session import IceSession
    from ._notify import Wakeup
    from ._stun_requests import StunRequests

#: Source addresses whose data pair lookup is cached (a hostile host sending from many addresses cannot
#: grow the cache further; beyond it a lookup is simply not cached).
MAX_DATA_SOURCES = 4096

#: The classes of a STUN response, which may be a gatherer's transaction's (StunRequests).
_RESPONSES = (MessageClass.SUCCESS, MessageClass.ERROR)

#: A received (data, source) item's parts, for C-level loops over a batch.
_DATA = itemgetter(0)
_SOURCE = itemgetter(1)


#: What a transport has when the stream's reader may drain it itself (an OS UDP socket: agent/_tap.py).
_TAP_METHODS = ("receive_now", "wait_readable", "interrupt", "tap")


def tappable(transport: CandidateTransport) -> bool:
    """Whether `transport` has a Tap's methods (and slot): `receive_now`, `wait_readable`, `interrupt`, `tap`."""
    return all(hasattr(transport, name) for name in _TAP_METHODS)


class DataSink(Protocol):
    """Where application data goes (the Agent, through its stream's queue), and who hears of STUN input."""

    def deliver_many(self, datas: list[bytes]) -> None: ...

    def heard(self) -> None:
        """STUN input arrived (the supervisor looks at the pair's counters at the next pump)."""

    def observed(self) -> bool:
        """Whether an observer hook is registered (hooks run in the agent's own tasks)."""


class ReceivePath:
    """The receive tasks and the demultiplexer of SessionRunner (which sets these attributes)."""

    __slots__ = ()

    _base_of: dict[int, Candidate]
    _caps: dict[int, TransportCapabilities]
    _check_hook: Any
    _data_pairs: dict[tuple[int, Address], CandidatePair | None]
    transport_of: dict[Candidate, CandidateTransport]
    gen: IceGeneration
    ice: IceSession
    owner: DataSink
    stun_requests: StunRequests

    def _poke(self, now: float) -> None:
        raise NotImplementedError

    async def _receive_loop(self, transport: CandidateTransport) -> None:
        """The receive task of one transport: drain a batch per wake-up (`receive_batch` where the transport
        has it, else one datagram) and feed it to the generation. On a socket the stream's reader can drain
        itself, it takes turns with the reader (agent/_tap.py), from the first application data on (an
        agent that moves no data keeps no Tap). An exception is this session's bug: it ends the agent's
        nursery, and so its `async with`, like any task's."""
        batch = self._caps[id(transport)].receive_batch
        receive = transport.receive
        can_tap = tappable(transport)
        tap: Tap | None = None
        delivered = False  # the last batch woke the reader (a delivery): it comes if it asked for the socket
        try:
            while True:
                if tap is not None:
                    if tap.stash or tap.reader or (tap.want and delivered):
                        await tap.task_turn(delivered)  # the reader left it work, or has (or takes) the socket
                        delivered = False
                        continue
                    tap.polling = True
                try:
                    items = await batch() if batch is not None else [await receive()]
                except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
                    return
                finally:
                    if tap is not None:
                        tap.polling = False
                delivered = self._on_datagrams(transport, items)
                if delivered and can_tap and tap is None:
                    tap = self._open_tap(transport)
                del items  # not kept alive while waiting for the next batch (an idle agent's memory)
        finally:
            if tap is not None:
                tap.closed = True
                transport.tap = None  # type: ignore[attr-defined]
                tap.interrupt()  # a reader waiting on the socket looks again

    def _open_tap(self, transport: CandidateTransport, kick: Wakeup | None = None) -> Tap:
        """A Tap on `transport`, which the stream's reader can drain itself (an OS UDP socket: `receive_now`,
        `wait_readable`, `interrupt` and a `tap` slot). `kick`: the Wakeup the task serving the socket waits
        on (the session task's own), instead of one of the Tap's."""
        t: Any = transport
        tap = Tap(
            t.receive_now,
            t.wait_readable,
            t.interrupt,
            partial(self._on_datagrams, transport),
            getattr(t, "sync_recvfrom", None),
        )
        if kick is not None:
            tap.kick = kick
        t.tap = tap
        return tap

    def _on_datagrams(
        self, transport: CandidateTransport, items: list[tuple[bytes, Address]], tap: Tap | None = None
    ) -> bool:
        """Demultiplex what arrived on one transport (DESIGN.md): STUN to a gatherer's transaction or to the
        generation, application data to the stream when it comes from a known remote candidate (12.2).

        Application data goes to the stream a batch at a time (one `deliver_many`, one wake-up of the
        reader), its bytes counted per run of datagrams from one pair; a STUN message first hands over the
        data that came before it, so the application sees everything in the order it arrived. With `tap`
        (the stream's reader drained the socket, in its own task) the first STUN message and everything
        after it are left to the receive task instead (Tap.leave). True when application data was delivered."""
        key = id(transport)
        data_pairs = self._data_pairs
        # the usual batch, application data from one source: its checks made in C loops, one lookup
        if items and min(map(_DATA, items)) >= b"\x40":  # no empty datagram, nothing like STUN
            sources = set(map(_SOURCE, items))
            if len(sources) == 1:
                addr = sources.pop()
                try:
                    pair = data_pairs[(key, addr)]
                except KeyError:
                    pair = self._lookup_data_pair(key, addr)
                if pair is None:
                    return False  # not from a known remote candidate (RFC 8445 12.2)
                if tap is not None:
                    tap.learn(addr, pair)  # the reader's direct read takes this source's data at once
                self._deliver_app(list(map(_DATA, items)), pair, 0)
                return True
        now = None
        app: list[bytes] = []
        counted: CandidatePair | None = None  # the pair of app[first:]
        first = 0
        delivered = False
        base = self._base_of.get(key)
        requests = self.stun_requests
        hook = self._check_hook
        for index, (data, addr) in enumerate(items):
            # STUN's first byte is below 0x40 and it carries the magic cookie (RFC 8489 5, RFC 7983): most data
            # is ruled out by these two tests, without a call; Message.decode checks the rest of the header
            if data and data[0] < 0x40 and data[4:8] == COOKIE_BYTES:
                if tap is not None:
                    if looks_like_stun(data):
                        tap.leave(items[index:])
                        break
                    msg = None
                else:
                    try:
                        msg = Message.decode(data)
                    except StunDecodeError:
                        msg = None
                if msg is not None:
                    if app:
                        self._deliver_app(app, counted, first)
                        app, counted, first, delivered = [], None, 0, True
                    if (
                        requests.waiting is not None
                        and msg.message_class in _RESPONSES
                        and requests.deliver(msg, addr)
                    ):
                        continue  # a gatherer's transaction
                    if base is not None:
                        if now is None:
                            now = trio.current_time()
                        self.gen.receive(msg, data, addr, base, now)
                        if data_pairs:  # its check may have made it a known source (7.3.1.3)
                            data_pairs.pop((key, addr), None)
                        reader: Tap | None = getattr(transport, "tap", None)
                        if reader is not None and reader.source == addr:
                            reader.source = None
                        if hook is not None:
                            hook("receive", msg, base, addr, self.ice.find_pair(base, addr))
                    continue
            try:
                pair = data_pairs[(key, addr)]
            except KeyError:
                pair = self._lookup_data_pair(key, addr)
            if pair is None:
                continue  # not from a known remote candidate (RFC 8445 12.2)
            if pair is not counted:
                if counted is not None:
                    counted.count_received(sum(map(len, app[first:])))
                counted, first = pair, len(app)
                if tap is not None:
                    tap.learn(addr, pair)
            app.append(data)
        if app:
            self._deliver_app(app, counted, first)
            delivered = True
        if now is not None:
            self._poke(now)
        return delivered

    def _deliver_app(self, app: list[bytes], counted: CandidatePair | None, first: int) -> None:
        """Count the last run of `app` (the datagrams from `counted`, from index `first` on) and queue the
        whole batch for the application."""
        if counted is not None:
            counted.count_received(sum(map(len, app[first:] if first else app)))
        self.owner.deliver_many(app)

    def forget_data_sources(self) -> None:
        """Which remote candidates are known sources of data may have changed (a pair became valid or was
        removed, a candidate was learned): drop the cached answers, the Taps' direct-read sources too."""
        self._data_pairs.clear()
        for transport in self.transport_of.values():
            tap = getattr(transport, "tap", None)
            if tap is not None:
                tap.source = None

    def _lookup_data_pair(self, key: int, addr: Address) -> CandidatePair | None:
        base = self._base_of.get(key)
        if base is None:
            return None
        pair = self.ice.find_pair(base, addr)
        if len(self._data_pairs) < MAX_DATA_SOURCES:
            self._data_pairs[(key, addr)] = pair
        return pair
