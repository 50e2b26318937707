"""Remote `.local` candidates of one generation, resolved by mDNS (draft-ietf-mmusic-mdns-ice-candidates 3.2).

Nothing waits for a resolution (3.2.2: it blocks no check), but the generation does not declare its
check list failed while one is pending. A resolved address is checked like a signalled one: a hostile
answer may name any address (RFC 6762 has no check). At most `MAX_PENDING` are pending at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from ..config import IceConfig
from ..ice.candidate import Candidate, unusable_reason
from ..ice.generation import IceGeneration
from ..logs import get_logger
from ..mdns.resolver import MAX_PENDING, MdnsResolveError, MdnsResolver
from ..net.base import Network, UdpSocket
from ._notify import Notifier
from ._tasks import TaskStarter

__all__ = ["MdnsCounters", "RemoteNames"]

log = get_logger("iceagent.agent")

#: `RemoteNames._early` of every session until one gets a candidate before it started (always empty: it is
#: only iterated and cleared; `resolve` gives the session a list of its own before appending)
_NOTHING_EARLY: list[Candidate] = []


class NameOwner(Protocol):
    """Who hears how each resolution ended (the agent)."""

    def mdns_settled(self, candidate: Candidate, address: str | None, error: str | None) -> None: ...

    def remote_ignored(self, candidate: Candidate, reason: str, source: str) -> None: ...


class Bases(Protocol):
    """The generation's host sockets: the resolver joins the multicast group on their interfaces."""

    @property
    def bases(self) -> Sequence[UdpSocket]: ...

    @property
    def bases_changed(self) -> Notifier: ...

    @property
    def host_done(self) -> bool: ...



class RemoteNames:
    """The resolutions of one generation; their tasks are the generation's (agent/_tasks.py)."""

    __slots__ = ("_bases", "_config", "_early", "_gen", "_name", "_network", "_owner", "_resolver", "_settled",
                 "pending")

    def __init__(
        self,
        *,
        name: str,
        network: Network,
        config: IceConfig,
        gen: IceGeneration,
        owner: NameOwner,
        bases: Bases,
        settled: Callable[[], None],
    ) -> None:
        self._name = name
        self._network = network
        self._config = config
        self._gen = gen
        self._owner = owner
        self._bases = bases
        self._settled = settled  # called after each resolution ended (the session looks again)
        self._resolver: MdnsResolver | None = None
        self._early: list[Candidate] = _NOTHING_EARLY  # signalled before the session started (rare: a list then)
        self.pending = 0

    @property
    def resolver(self) -> MdnsResolver | None:
        """The session's resolver, made by the first resolution."""
        return self._resolver

    def resolve(self, candidate: Candidate, nursery: TaskStarter | None) -> None:
        """Start resolving `candidate` (in `nursery`; None: the session has not started, `start` runs it)."""
        if self.pending >= MAX_PENDING:
            self._owner.mdns_settled(candidate, None, f"too many mDNS candidates pending (at most {MAX_PENDING})")
            return
        self.pending += 1
        self._gen.add_pending_remote()
        if nursery is None:
            if self._early is _NOTHING_EARLY:
                self._early = []
            self._early.append(candidate)
        else:
            nursery.start_soon(self._resolve, candidate, nursery, name=f"mdns-resolve-{self._name}")

    def start(self, nursery: TaskStarter) -> None:
        """The session task started: resolve what was signalled before it did."""
        for candidate in self._early:
            nursery.start_soon(self._resolve, candidate, nursery, name=f"mdns-resolve-{self._name}")
        self._early.clear()

    async def _resolve(self, candidate: Candidate, nursery: TaskStarter) -> None:
        resolved: Candidate | None = None
        owner = self._owner
        try:
            if self._resolver is None:
                self._resolver = MdnsResolver(self._network)
                nursery.start_soon(self._run_resolver, self._resolver, name=f"mdns-resolver-{self._name}")
            address = await self._resolver.resolve(candidate.address, self._config.mdns_timeout)
        except MdnsResolveError as exc:
            owner.mdns_settled(candidate, None, str(exc))
        except Exception as exc:  # a resolver bug must not take the session down: count it, go on
            log.exception("%s: resolving %s crashed", self._name, candidate.address)
            owner.mdns_settled(candidate, None, f"crashed: {type(exc).__name__}: {exc}")
        else:
            resolved = attrs.evolve(candidate, address=address)
            owner.mdns_settled(candidate, address, None)
            reason = unusable_reason(resolved)
            if reason is not None:
                owner.remote_ignored(resolved, reason, "mDNS-resolved")
                resolved = None
        finally:
            self.pending -= 1
        if not self._gen.settle_pending_remote(resolved) and resolved is not None:
            owner.remote_ignored(resolved, "over-limit", "mDNS-resolved")
        self._settled()

    async def _run_resolver(self, resolver: MdnsResolver) -> None:
        """The session's resolver, joined on the interfaces of the host candidates once they are known."""
        bases = self._bases
        while not bases.host_done:
            await bases.bases_changed.wait()
        try:
            await resolver.run([sock.local_address[0] for sock in bases.bases])
        except Exception as exc:  # a failing resolver must not take the session down
            log.exception("%s: the mDNS resolver crashed", self._name)
            resolver.fail(f"the mDNS resolver crashed: {type(exc).__name__}: {exc}")


class MdnsCounters:
    """How the agent's remote `.local` candidates resolved, across generations (agent.stats()["mdns"])."""

    __slots__ = ("errors", "resolved", "unresolved")

    def __init__(self) -> None:
        self.resolved = 0
        self.unresolved = 0
        self.errors: deque[str] | None = None  # the last 32, made on the first

    def settled(self, agent: str, candidate: Candidate, address: str | None, error: str | None) -> None:
        """Count and log one resolution."""
        if address is not None:
            self.resolved += 1
            log.info("%s: mDNS name %s resolved", agent, candidate.address)
            return
        self.unresolved += 1
        if self.errors is None:
            self.errors = deque(maxlen=32)
        self.errors.append(f"{candidate.address}: {error}")
        log.warning("%s: mDNS remote candidate not resolved: %s (%s)", agent, candidate.to_sdp(), error)

    def stats(self, *, pending: int) -> dict[str, Any]:
        return {"resolved": self.resolved, "unresolved": self.unresolved, "pending": pending,
                "errors": list(self.errors or ())}
