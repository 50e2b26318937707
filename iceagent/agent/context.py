"""GatherContext as the agent hands it to gatherer plugins: bases, emit, errors, STUN requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import trio

from ..errors import StunTimeout
from ..ice.candidate import Candidate
from ..logs import get_logger
from ..net.base import Address, Network, UdpSocket
from ..stun.message import Message
from .pacer import global_pacer

if TYPE_CHECKING:
    from ..gatherers.base import CandidateTransport, GatherOptions
    from .runner import SessionRunner

log = get_logger("iceagent.gather")


class AgentGatherContext:
    """One gatherer's view of its session: a GatherContext (see iceagent.gatherers.base)."""

    __slots__ = (
        "_runner",
        "is_done",
        "kind",
        "network",
        "options",
        "plugin_manager",
    )

    def __init__(self, runner: SessionRunner, kind: str) -> None:
        self._runner = runner
        self.kind = kind
        self.options: GatherOptions = runner.options
        self.network: Network = runner.network
        self.plugin_manager = runner.agent.plugin_manager  # the agent's own (TURN transports, ...)
        self.is_done = False

    async def bases(self) -> AsyncIterator[UdpSocket]:
        """The host sockets as they are opened; ends when the host gatherer is done."""
        runner = self._runner
        i = 0
        while True:
            while i < len(runner.bases):
                yield runner.bases[i]
                i += 1
            if runner.host_done:
                return
            await runner.bases_changed.wait()

    def add_base(self, sock: UdpSocket) -> None:
        self._runner.add_base(sock)

    def emit(self, candidate: Candidate, transport: CandidateTransport) -> None:
        self._runner.emit(candidate, transport, kind=self.kind)

    def error(self, message: str) -> None:
        log.warning("%s: %s gatherer: %s", self._runner.agent.name, self.kind, message)
        self._runner.gatherer_error(self.kind, message)

    def done(self) -> None:
        if not self.is_done:
            self.is_done = True
            self._runner.gatherer_done(self)

    def foundation(self, type: str, base_address: str, transport: str, server: str | None = None) -> str:
        return self._runner.agent.foundation(type, base_address, transport, server)

    async def stun_request(self, sock: UdpSocket, server: Address, message: Message) -> Message:
        """Send `message` from `sock` to `server`, retransmitting per RFC 8489 6.2.1, and await the answer."""
        runner = self._runner
        cfg = self.options.config
        data = message.encode(fingerprint=True)
        send_ch, recv_ch = trio.open_memory_channel[Message](1)
        runner.stun_waiters[message.transaction_id] = (server, send_ch)
        try:
            rto = cfg.rto
            for attempt in range(cfg.rc):
                if cfg.global_pacing and attempt == 0:  # RFC 8445 14.2 paces new transactions only
                    await global_pacer().slot()
                await sock.send(data, server)
                wait = rto * cfg.rm if attempt == cfg.rc - 1 else rto * (2**attempt)
                with trio.move_on_after(wait):
                    return await recv_ch.receive()
            total = rto * (2 ** (cfg.rc - 1) - 1) + rto * cfg.rm
            stray = runner.stun_strays.get(message.transaction_id)
            also = "" if stray is None else f" (answers from {stray[0]}:{stray[1]}, not the server, were ignored)"
            raise StunTimeout(
                f"no STUN response from {server[0]}:{server[1]} after {cfg.rc} attempts over {total:g} s{also}"
            )
        finally:
            runner.stun_waiters.pop(message.transaction_id, None)
            runner.stun_strays.pop(message.transaction_id, None)
