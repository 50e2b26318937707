"""Continual gathering (DESIGN.md "Continual gathering"): a new local address, found by the Network's
interface watcher after the generation's gathering completed, gets host and server-reflexive candidates
in the current generation. They join its check list at once (RFC 8445 6.1.2) and reach the application
through `agent.new_candidates()`, to trickle to the peer (RFC 8838 9; the peer must not have been sent
end-of-candidates, RFC 8838 14).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import trio

from ..gatherers.base import GatherOptions
from ..gatherers.host import host_addresses
from ..logs import get_logger
from ..net.base import UdpSocket
from ..states import GatheringState
from ._context import AgentGatherContext
from ._notify import Notifier
from ._runner import SessionRunner

__all__ = ["LATE_KINDS", "gather_late", "may_gather"]

log = get_logger("iceagent.agent")

#: The gatherers run again on a new address: those that build on a host socket over UDP.
LATE_KINDS = ("host", "srflx")


def may_gather(options: GatherOptions, network: Any, address: str) -> bool:
    """Whether the agent's options (host_addresses, the filters) let it gather on `address`."""
    try:
        return address in host_addresses(network, options.host_addresses, interface_filter=options.interface_filter,
                                         ip_filter=options.ip_filter)
    except ValueError:
        return False


class LateContext(AgentGatherContext):
    """A gatherer's context restricted to one new address: its own bases only, and no say in the
    generation's gathering state (that completed already)."""

    __slots__ = ("_bases", "_runner")

    def __init__(self, runner: SessionRunner, kind: str, options: GatherOptions, shared: LateBases) -> None:
        super().__init__(runner, kind)
        self.options = options
        self._runner = runner
        self._bases = shared

    async def bases(self) -> AsyncIterator[UdpSocket]:
        shared = self._bases
        i = 0
        while True:
            while i < len(shared.sockets):
                yield shared.sockets[i]
                i += 1
            if shared.done or self._runner.closed:
                return
            await shared.changed.wait()

    def add_base(self, sock: UdpSocket) -> None:
        if self._runner.closed:
            sock.close()
            return
        self._runner.add_base(sock)
        self._bases.sockets.append(sock)
        self._bases.changed.notify()

    def done(self) -> None:
        if not self.is_done:
            self.is_done = True
            if self.kind == "host":
                self._bases.finish()


@attrs.define
class LateBases:
    """The host sockets opened on the new address, shared by its late gatherers."""

    sockets: list[UdpSocket] = attrs.field(factory=list)
    changed: Notifier = attrs.field(factory=Notifier)
    done: bool = False

    def finish(self) -> None:
        self.done = True
        self.changed.notify()


async def gather_late(runner: SessionRunner, gatherers: Sequence[Any], address: str) -> None:
    """Run the host and srflx gatherers on `address` for `runner`'s generation (a task of the agent's
    nursery); ends quietly when the generation closes under it."""
    if runner.closed or runner.gathering.state is not GatheringState.COMPLETE:
        return
    options = attrs.evolve(runner.options, host_addresses=(address,))
    shared = LateBases()

    async def run(gatherer: Any) -> None:
        ctx = LateContext(runner, gatherer.kind, options, shared)
        try:
            await gatherer.run(ctx)
        except Exception as exc:
            if not runner.closed:
                log.warning("%s: gathering on the new address %s: %s gatherer: %s", runner.name, address,
                            gatherer.kind, exc)
        finally:
            ctx.done()

    async with trio.open_nursery() as nursery:
        for gatherer in gatherers:
            if gatherer.kind in LATE_KINDS:
                nursery.start_soon(run, gatherer)
