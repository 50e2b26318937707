"""The mux's shared STUN bindings: server-reflexive discovery once per (mux address, STUN server) for every
agent on the mux (issue 14; DESIGN.md "open_mux").

A srflx candidate is the mapping a NAT gave the base towards a STUN server (RFC 8445 5.1.1.2). Every agent
on a mux has the same base, the mux's socket, so one Binding transaction per server answers all of them:

- the first agent that asks starts the binding: a Binding request with the retransmissions of RFC 8489
  6.2.1 (RTO, Rc, Rm of that agent's `IceConfig`), sent by a task of the mux's nursery; agents asking while
  it is in flight wait for the same transaction, and its answer, error response or timeout is reported to
  every one of them;
- the mapped address is then cached: an agent asking later gets it at once, with no request;
- while agents that were given the address are open, the mux sends a new Binding request every
  `MuxLimits.stun_refresh` seconds (15 s, RFC 8445 11's keepalive interval): a request rather than a
  Binding indication (both keep the NAT mapping alive, RFC 8489 3) because its answer also tells when the
  mapping changed (a NAT that restarted), and the cache follows; a refresh that fails empties the cache
  and the next agent that asks starts a transaction at once;
- the binding stops (its task ends, its transaction is dropped) when no agent that was given its address
  or is waiting for it is left, and with the mux.

Responses come back through the mux's routing table by transaction id (`MuxRoutes.add_own_transaction`,
at most one in flight per binding) and are accepted only from the server the request went to, at the
mux address it left from (RFC 8489 6.3.1). The bindings are at most `MuxLimits.max_stun_bindings`. The
mux's transactions take no slot of the process-wide pacer (RFC 8445 14.2 paces each agent's new
transactions; one shared transaction per server replaces the N the agents would have sent).
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import trio

from ..errors import StunTimeout
from ..stun.client import StunErrorResponse, binding_result, match_binding_response
from ..stun.message import Message, MessageClass, Method
from ..stun.transaction import Transaction
from ._mux_routes import MuxFull, MuxLimits, MuxRoutes
from .base import Address

__all__ = ["MuxStun"]

Send = Callable[[bytes, Address, Address], Awaitable[None]]  # data, remote, local


class _Attempt:
    """One transaction's outcome, shared by every agent waiting for it."""

    __slots__ = ("done", "error", "mapped", "waiting")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.mapped: Address | None = None
        self.error: Exception | None = None
        self.waiting: collections.Counter[Hashable] = collections.Counter()  # owner -> waiting tasks

    def finish(self, mapped: Address | None, error: Exception | None) -> None:
        if not self.done.is_set():
            self.mapped, self.error = mapped, error
            self.done.set()


class _Binding:
    """One (mux address, STUN server): the cached mapping, its users, the transaction in flight."""

    __slots__ = ("answer", "attempt", "local", "mapped", "rc", "refresh_rto", "rm", "rto", "scope", "server", "tid",
                 "users", "wanted")

    def __init__(self, local: Address, server: Address, rto: float, rc: int, rm: int,
                 refresh_rto: float | None = None) -> None:
        self.local, self.server = local, server
        self.rto, self.rc, self.rm = rto, rc, rm
        #: the RTO of a refresh of a cached mapping: a keepalive, not gathering (RFC 8445 14.3 is for gathering)
        self.refresh_rto = rto if refresh_rto is None else refresh_rto
        self.mapped: Address | None = None
        self.users: set[Hashable] = set()  # owners given the mapped address: they keep it refreshed
        self.attempt: _Attempt | None = None
        self.wanted = trio.Event()  # an agent asked while nothing was cached nor in flight
        self.scope = trio.CancelScope()
        self.tid: bytes | None = None
        self.answer: trio.MemorySendChannel[Message] | None = None


def _fresh(exc: Exception) -> Exception:
    """A new exception like `exc` for one waiter (one instance raised in many tasks mixes their tracebacks)."""
    if isinstance(exc, StunErrorResponse):
        return StunErrorResponse(str(exc), exc.code, exc.reason, exc.unknown_attributes)
    return type(exc)(str(exc))


class MuxStun:
    """The shared STUN bindings of one mux. `mapped()` is what agents call; the mux's receive task hands
    responses to `deliver()`; `remove_owner()` when an agent leaves; `close()` with the mux."""

    def __init__(self, routes: MuxRoutes[Any], limits: MuxLimits, send: Send) -> None:
        self._routes = routes
        self._limits = limits
        self._send = send
        self._bindings: dict[tuple[Address, Address], _Binding] = {}
        self._by_tid: dict[bytes, _Binding] = {}
        self.nursery: trio.Nursery | None = None
        self.closed = False
        self.transactions = 0
        """Binding transactions started (refreshes included); retransmissions are not counted."""
        self.cached = 0
        """Answers given from the cache, without a transaction."""

    def __len__(self) -> int:
        return len(self._bindings)

    def mappings(self) -> dict[tuple[Address, Address], Address]:
        """(mux address, STUN server) -> the cached mapped address, for the bindings that have one."""
        return {key: b.mapped for key, b in self._bindings.items() if b.mapped is not None}

    async def mapped(self, owner: Hashable, local: Address, server: Address, *,
                     rto: float = 0.5, rc: int = 7, rm: int = 16, refresh_rto: float | None = None) -> Address:
        """The address `server` sees for mux address `local` (XOR-MAPPED-ADDRESS, RFC 8489 14.2), from the
        cache or from the one transaction in flight; StunTimeout / StunErrorResponse when it failed,
        `MuxFull` past `max_stun_bindings`, `trio.ClosedResourceError` once the mux closed. `rto` starts a
        transaction that gathers (no mapping cached), `refresh_rto` (default `rto`) a refresh."""
        if self.closed or self.nursery is None:
            raise trio.ClosedResourceError("the mux is closed")
        binding = self._bindings.get((local, server))
        if binding is None:
            if len(self._bindings) >= self._limits.max_stun_bindings:
                raise MuxFull(f"the mux already keeps {self._limits.max_stun_bindings} STUN bindings "
                              "(MuxLimits.max_stun_bindings): one per mux address and STUN server")
            binding = self._bindings[(local, server)] = _Binding(local, server, rto, rc, rm, refresh_rto)
            self.nursery.start_soon(self._run, binding, name=f"iceagent.mux stun {server[0]}:{server[1]}")
        if binding.mapped is not None:
            binding.users.add(owner)
            self.cached += 1
            await trio.lowlevel.checkpoint()
            return binding.mapped
        attempt = binding.attempt
        if attempt is None:
            attempt = binding.attempt = _Attempt()
            binding.wanted.set()
        attempt.waiting[owner] += 1
        try:
            await attempt.done.wait()
        finally:
            attempt.waiting[owner] -= 1
            if attempt.waiting[owner] <= 0:
                del attempt.waiting[owner]
            self._stop_if_unused(binding)
        if attempt.error is not None:
            raise _fresh(attempt.error)
        assert attempt.mapped is not None
        return attempt.mapped

    def deliver(self, data: bytes, remote: Address, local: Address) -> bool:
        """A response the routing table gave the mux: True when it answers a binding's transaction from that
        binding's server at its mux address (RFC 8489 6.3.1); anything else is ignored."""
        binding = self._by_tid.get(bytes(data[8:20]))
        if binding is None or binding.answer is None or remote != binding.server or local != binding.local:
            return False
        message = match_binding_response(data, bytes(data[8:20]))
        if message is None:
            return False
        try:
            binding.answer.send_nowait(message)
        except (trio.WouldBlock, trio.BrokenResourceError):
            pass  # a duplicate: the first answer is already waiting
        return True

    def remove_owner(self, owner: Hashable) -> None:
        """An agent left the mux: it no longer keeps any binding alive."""
        for binding in list(self._bindings.values()):
            binding.users.discard(owner)
            if binding.attempt is not None:
                binding.attempt.waiting.pop(owner, None)
            self._stop_if_unused(binding)

    def close(self) -> None:
        """The mux closes: every binding stops and every waiter gets `trio.ClosedResourceError`."""
        self.closed = True
        for binding in list(self._bindings.values()):
            self._stop(binding)

    def _stop_if_unused(self, binding: _Binding) -> None:
        if not binding.users and (binding.attempt is None or not binding.attempt.waiting):
            self._stop(binding)

    def _stop(self, binding: _Binding) -> None:
        binding.scope.cancel()
        if self._bindings.get((binding.local, binding.server)) is binding:
            del self._bindings[(binding.local, binding.server)]
        if binding.attempt is not None:
            binding.attempt.finish(None, trio.ClosedResourceError("the mux stopped this STUN binding (closed)"))

    async def _run(self, binding: _Binding) -> None:
        """The binding's task: a transaction when first asked, then one every `stun_refresh` seconds while
        agents use the mapping, or at once when one asks after a failure."""
        with binding.scope:
            while True:
                attempt = binding.attempt
                if attempt is None:
                    attempt = binding.attempt = _Attempt()
                try:
                    mapped = await self._transact(binding)
                except (StunTimeout, StunErrorResponse) as exc:
                    binding.mapped = None
                    attempt.finish(None, exc)
                else:
                    binding.mapped = mapped
                    binding.users.update(attempt.waiting)  # they get the address: they keep it alive
                    attempt.finish(mapped, None)
                binding.attempt = None
                if not binding.users:
                    break
                binding.wanted = trio.Event()
                with trio.move_on_after(self._limits.stun_refresh):
                    await binding.wanted.wait()
        self._stop(binding)

    async def _transact(self, binding: _Binding) -> Address:
        """One Binding transaction from the binding's mux address, retransmitted per RFC 8489 6.2.1."""
        request = Message(Method.BINDING, MessageClass.REQUEST)
        data = request.encode(fingerprint=True)
        tid = request.transaction_id
        send, answers = trio.open_memory_channel[Message](1)
        binding.tid, binding.answer = tid, send
        self._by_tid[tid] = binding
        self._routes.add_own_transaction(tid)
        self.transactions += 1
        server, local = binding.server, binding.local
        try:
            now = trio.current_time()
            rto = binding.rto if binding.mapped is None else binding.refresh_rto  # gathering, or a refresh
            transaction = Transaction(data, tid, now, rto=rto, rc=binding.rc, rm=binding.rm)
            await self._send_lossy(data, server, local)
            while (deadline := transaction.get_timer()) is not None:
                with trio.move_on_at(deadline):
                    message = await answers.receive()
                    result = binding_result(message, server, server, local, trio.current_time() - now,
                                     transaction.transmissions, "udp")
                    return result.mapped
                again = transaction.handle_timer(trio.current_time())
                if again is not None:
                    await self._send_lossy(again, server, local)
            total = transaction.timeout_at - transaction.started
            raise StunTimeout(f"no STUN response from {server[0]}:{server[1]} to the mux's Binding request from "
                              f"{local[0]}:{local[1]} after {binding.rc} attempts over {total:g} s")
        finally:
            self._routes.remove_own_transaction(tid)
            self._by_tid.pop(tid, None)
            binding.tid = binding.answer = None
            send.close()

    async def _send_lossy(self, data: bytes, server: Address, local: Address) -> None:
        try:
            await self._send(data, server, local)
        except (OSError, trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # lost, as UDP may (or the mux is closing): the retransmission schedule covers it
