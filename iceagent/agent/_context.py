"""GatherContext as the agent hands it to gatherer plugins: bases, emit, errors, STUN requests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import pluggy
import trio

from ..errors import StunTimeout
from ..ice.candidate import Candidate
from ..logs import get_logger
from ..net.base import Address, Network, UdpSocket
from ..stun.message import Message
from ..stun.transaction import Transaction
from ._notify import Notifier
from ._pacer import global_pacer, pace_new_transaction, wait_for_slot
from ._stun_requests import StunRequests

if TYPE_CHECKING:
    from ..gatherers.base import CandidateTransport, GatherOptions

log = get_logger("iceagent.gather")


class GatherHost(Protocol):
    """What a gatherer's context needs from the session it gathers for (the SessionRunner)."""

    name: str
    options: GatherOptions
    network: Network
    plugin_manager: pluggy.PluginManager
    @property
    def bases(self) -> Sequence[UdpSocket]: ...

    @property
    def bases_changed(self) -> Notifier: ...

    @property
    def host_done(self) -> bool: ...

    stun_requests: StunRequests

    def add_base(self, sock: UdpSocket) -> None: ...

    def emit(self, candidate: Candidate, transport: CandidateTransport, *, kind: str) -> None: ...

    def gatherer_error(self, kind: str, message: str) -> None: ...

    def gatherer_done(self, ctx: AgentGatherContext) -> None: ...

    def foundation(self, type: str, base_address: str, transport: str, server: str | None) -> str: ...


class AgentGatherContext:
    """One gatherer's view of its session: a GatherContext (see iceagent.gatherers.base)."""

    __slots__ = ("_host", "is_done", "kind", "options", "pace")

    def __init__(self, host: GatherHost, kind: str) -> None:
        self._host = host
        self.kind = kind
        self.options: GatherOptions = host.options
        self.is_done = False
        #: `await pace(latest)` before a new transaction a gatherer starts itself (TURN requests through
        #: open_allocation(pace=...)): a slot of the process-wide pacer, or None with global_pacing off
        #: (RFC 8445 14.2); `stun_request` takes its slot itself.
        self.pace: Callable[[float], Awaitable[None]] | None = (
            pace_new_transaction if host.options.config.global_pacing else None
        )

    @property
    def network(self) -> Network:
        return self._host.network

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The agent's own (TURN transports, ...)."""
        return self._host.plugin_manager

    async def bases(self) -> AsyncIterator[UdpSocket]:
        """The host sockets as they are opened; ends when the host gatherer is done."""
        host = self._host
        i = 0
        while True:
            while i < len(host.bases):
                yield host.bases[i]
                i += 1
            if host.host_done:
                return
            await host.bases_changed.wait()

    def add_base(self, sock: UdpSocket) -> None:
        self._host.add_base(sock)

    def emit(self, candidate: Candidate, transport: CandidateTransport) -> None:
        self._host.emit(candidate, transport, kind=self.kind)

    def error(self, message: str) -> None:
        log.warning("%s: %s gatherer: %s", self._host.name, self.kind, message)
        self._host.gatherer_error(self.kind, message)

    def done(self) -> None:
        if not self.is_done:
            self.is_done = True
            self._host.gatherer_done(self)

    def foundation(self, type: str, base_address: str, transport: str, server: str | None = None) -> str:
        return self._host.foundation(type, base_address, transport, server)

    async def stun_request(
        self, sock: UdpSocket, server: Address, message: Message, *, rto: float | None = None
    ) -> Message:
        """Send `message` from `sock` to `server` and await the answer, retransmitting on the schedule of
        RFC 8489 6.2.1 (stun.transaction.Transaction) from `rto` (None: config.rto); a new transaction takes
        a slot of the process-wide pacer first when global_pacing is on (RFC 8445 14.2; retransmissions do not)."""
        cfg = self.options.config
        requests = self._host.stun_requests
        data = message.encode(fingerprint=True)
        tid = message.transaction_id
        answers = requests.open(tid, server)
        try:
            if cfg.global_pacing:
                await wait_for_slot(global_pacer())
            rto = cfg.rto if rto is None else rto
            transaction = Transaction(data, tid, trio.current_time(), rto=rto, rc=cfg.rc, rm=cfg.rm)
            await sock.send(data, server)
            while (deadline := transaction.get_timer()) is not None:
                with trio.move_on_at(deadline):
                    return await answers.receive()
                again = transaction.handle_timer(trio.current_time())
                if again is not None:
                    await sock.send(again, server)
            stray = requests.stray(tid)
            also = "" if stray is None else f" (answers from {stray[0]}:{stray[1]}, not the server, were ignored)"
            total = transaction.timeout_at - transaction.started
            raise StunTimeout(
                f"no STUN response from {server[0]}:{server[1]} after {cfg.rc} attempts over {total:g} s{also}"
            )
        finally:
            requests.close(tid)
