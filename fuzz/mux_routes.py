"""The mux routing fuzz target: `MuxRoutes` (iceagent/net/_mux_routes.py) driven by a program the input spells.

Each step picks an operation and its arguments from the fuzz bytes: hostile datagrams from many sources
(arbitrary bytes; STUN Binding requests with any USERNAME; responses with known, own or unknown transaction
ids; indications), and what local agents do (register and leave, add and remove ufrags, record transactions,
confirm addresses, the mux's own transactions) as time passes. Routing must never raise and never add to a
table; registrations raise only their documented errors (ValueError, MuxError, MuxFull); every table stays
within its `MuxLimits` bound and agrees with the per-owner bookkeeping (docs/security.md "Mux").
"""

from __future__ import annotations

from typing import Any

from iceagent.net._mux_routes import MuxError, MuxLimits, MuxRoutes, Own
from iceagent.stun import Attr, Message, MessageClass, Method

from .support import Budget, Reader, expect, timed

__all__ = ["LIMITS", "mux_routes"]

#: Small bounds, so that an input reaches every one of them in a few steps.
LIMITS = MuxLimits(max_agents=4, max_ufrags_per_agent=2, max_transactions=6, max_transactions_per_agent=4,
                   transaction_ttl=40.0, max_bindings=6, max_bindings_per_agent=3, max_stun_bindings=2)
MAX_STEPS = 64
_OWNERS = ("a", "b", "c", "d", "e")  # one more than max_agents
_UFRAGS = ("ufA", "ufB", "ufC", "x", "")
_LOCALS = (("192.0.2.10", 3478), ("192.0.2.11", 3478), ("2001:db8::10", 3478))
_SOURCES = (("198.51.100.7", 40000), ("198.51.100.7", 40001), ("198.51.100.8", 40000), ("203.0.113.5", 3478),
            ("2001:db8::7", 40000), ("0.0.0.0", 0))
_TIDS = tuple(bytes([i]) * 12 for i in range(8))
_REASONS = frozenset({"not_a_check", "no_username", "unknown_ufrag", "unknown_transaction", "unbound_address",
                      "transaction_evicted"})
_CLASSES = tuple(MessageClass)


class _Program:
    def __init__(self, reader: Reader, budget: Budget | None) -> None:
        self.r = reader
        self.budget = budget
        self.routes: MuxRoutes[str] = MuxRoutes(LIMITS)
        self.now = 1000.0

    # ---- choices ----

    def owner(self) -> str:
        return self.r.pick(_OWNERS)

    def tid(self) -> bytes:
        return self.r.pick_or(_TIDS, lambda: self.r.take(12).ljust(12, b"\x00"))

    def source(self) -> tuple[str, int]:
        r = self.r
        return r.pick_or(_SOURCES, lambda: (".".join(str(x) for x in r.take(4).ljust(4, b"\x00")), r.u16()))

    def username(self) -> str:
        r = self.r
        return r.pick_or(tuple(f"{u}:peer" for u in _UFRAGS), lambda: r.text(48))

    def message(self) -> bytes:
        """A STUN message of any method and class, with any USERNAME and a few other attributes."""
        r = self.r
        method = r.pick_or((Method.BINDING,), lambda: r.u16() & 0x0FFF)
        attributes: list[tuple[Attr | int, Any]] = []
        if r.flag():
            attributes.append((Attr.USERNAME, self.username()))
        for _ in range(r.u8() % 3):
            attributes.append((0x8000 | r.u16() if r.flag() else r.u16() & 0x7FFF, r.blob(8)))
        if r.flag():
            attributes.append((Attr.USERNAME, self.username()))  # a second one, after the others
        try:
            data = Message(method, r.pick(_CLASSES), self.tid(), attributes).encode(  # type: ignore[arg-type]
                integrity_key=b"key" if r.flag() else None, fingerprint=r.flag())
        except (ValueError, TypeError):  # a value the encoder refuses for a known attribute type
            return r.blob(64)
        if r.u8() > 224:  # truncated or corrupted
            cut = bytearray(data[: len(data) - r.u8() % 8])
            if cut:
                cut[r.u16() % len(cut)] ^= r.u8() | 1
            return bytes(cut)
        return data

    # ---- the steps ----

    def step(self) -> None:
        r, routes = self.r, self.routes
        op = r.u8() % 12
        if op <= 3:  # a datagram from outside: the hostile input
            data = self.message() if op <= 1 else r.blob(255) if op == 2 else self.response()
            self.route(data, r.pick(_LOCALS), self.source())
        elif op == 4:
            self.local(routes.add_owner, self.owner())
        elif op == 5:
            routes.remove_owner(self.owner())
        elif op == 6:
            owner, ufrag = self.owner(), r.pick_or(_UFRAGS, lambda: r.text(16))
            if r.flag():
                self.local(routes.add_ufrag, owner, ufrag)
            else:
                routes.remove_ufrag(owner, ufrag)
        elif op == 7:
            self.local(routes.add_transaction, self.owner(), self.tid(), self.now)
        elif op == 8:
            self.local(routes.confirm, self.owner(), r.pick(_LOCALS), self.source())
        elif op == 9:
            if r.flag():
                routes.add_own_transaction(self.tid())
            else:
                routes.remove_own_transaction(self.tid())
        elif op == 10:
            self.now += r.pick_or((0.5, 39.0, 40.0, 41.0), lambda: r.u16() / 16)
            routes.expire(self.now)
        else:
            for _ in range(1 + r.u8() % 8):  # a burst from many sources
                self.route(r.blob(64) if r.flag() else self.message(), r.pick(_LOCALS), self.source())
        self.check_bounds()

    def response(self) -> bytes:
        """A success or error response with a known, own or unknown transaction id."""
        r = self.r
        cls = MessageClass.ERROR if r.flag() else MessageClass.SUCCESS
        attributes: list[tuple[Attr | int, Any]] = [(Attr.XOR_MAPPED_ADDRESS, self.source())]
        return Message(Method.BINDING, cls, self.tid(), attributes).encode(fingerprint=r.flag())

    def local(self, call: Any, *args: Any) -> None:
        """A call of local code: only the documented errors may come out."""
        try:
            call(*args)
        except (ValueError, MuxError):
            pass

    def route(self, data: bytes, local: tuple[str, int], remote: tuple[str, int]) -> None:
        routes = self.routes
        before = routes.sizes()
        with timed(self.budget, f"route of {len(data)} bytes"):
            owner = routes.route(data, local, remote, self.now)
        after = routes.sizes()
        expect(all(after[k] <= before[k] for k in before), f"routing a datagram grew a table: {before} -> {after}")
        expect(owner is None or owner is Own.MUX or owner in routes._owners, f"routed to {owner!r}, not registered")
        expect(set(routes.dropped) <= _REASONS, f"unknown drop reasons {set(routes.dropped) - _REASONS}")

    def check_bounds(self) -> None:
        """Every table within LIMITS, and the global tables and the per-owner bookkeeping agree."""
        routes, limits = self.routes, LIMITS
        sizes = routes.sizes()
        expect(sizes["agents"] <= limits.max_agents, f"{sizes['agents']} agents")
        expect(sizes["transactions"] <= limits.max_transactions, f"{sizes['transactions']} transactions")
        expect(sizes["bindings"] <= limits.max_bindings, f"{sizes['bindings']} bindings")
        expect(routes.own_transactions() <= limits.max_stun_bindings, f"{routes.own_transactions()} own transactions")
        for owner, state in routes._owners.items():
            expect(len(state.ufrags) <= limits.max_ufrags_per_agent, f"{owner} holds {len(state.ufrags)} ufrags")
            expect(len(state.transactions) <= limits.max_transactions_per_agent, f"{owner}'s transactions")
            expect(len(state.bindings) <= limits.max_bindings_per_agent, f"{owner}'s bindings")
            expect(all(routes._ufrags.get(u) == owner for u in state.ufrags), f"{owner}'s ufrags disagree")
            expect(all(routes._transactions.get(t, ("",))[0] == owner for t in state.transactions),
                   f"{owner}'s transactions disagree")
            expect(all(routes._bindings.get(k) == owner for k in state.bindings), f"{owner}'s bindings disagree")
        counts = {k: sum(len(getattr(s, k)) for s in routes._owners.values())
                  for k in ("ufrags", "transactions", "bindings")}
        expect(all(counts[k] == sizes[k] for k in counts), f"per-owner counts {counts} but tables {sizes}")


def mux_routes(data: bytes, budget: Budget | None = None) -> None:
    """`MuxRoutes.route` never raises nor grows a table, whatever arrives from whom; registrations raise
    only ValueError / MuxError; every table stays within `MuxLimits` (DESIGN.md "open_mux")."""
    program = _Program(Reader(data), budget)
    for _ in range(MAX_STEPS):
        if not program.r.remaining:
            break
        program.step()
