"""The mux routing loop fuzz target: `Mux._route` (iceagent/net/_mux_loop.py) against the sans-IO table.

The loop reads a STUN header and a check's USERNAME in place instead of calling `MuxRoutes.route`, so each
hostile datagram the input spells (raw bytes, or a STUN message of any type, length field, transaction id and
first attribute, USERNAME's length running past the end included) goes through both, on agents registered
alike: the loop must never raise, must put the datagram into the inbox of the agent the table names (or into
none), and must count the same drops (docs/security.md "Mux").
"""

from __future__ import annotations

import struct

from iceagent.net._mux_routes import MuxLimits, MuxRoutes
from iceagent.net.mux import Mux

from .support import Budget, Reader, expect, timed

__all__ = ["mux_loop"]

LIMITS = MuxLimits(transaction_ttl=40.0)
MAX_STEPS = 64
_LOCAL, _UNKNOWN = ("192.0.2.10", 3478), ("192.0.2.99", 3478)
_SOURCES = (("198.51.100.7", 40000), ("198.51.100.8", 40001), ("2001:db8::7", 40000))
_AGENTS = {"a": "ufA", "b": "ufB"}
_TID = bytes(range(12))
_TYPES = (0x0001, 0x0101, 0x0111, 0x0011, 0x0003, 0x0016, 0x0103, 0x4001)
_USERNAMES = (b"ufA:p", b"ufB", b"ufC:x", b":p", b"ufA", b"", b"ufB:peer:x")


class _Port:
    """What `Mux._add_port` and the endpoints' transports read of a port (no socket)."""

    def __init__(self, local: tuple[str, int]) -> None:
        self.locals = [local]
        self.bind_address = local[0]
        self.capacity = 10_000
        self.direct = None


def _datagram(r: Reader) -> bytes:
    """Raw bytes, or a STUN-shaped message whose header and first attribute the input chooses."""
    if r.flag():
        return r.take(r.u8())
    mtype = r.pick(_TYPES)
    tid = _TID if r.flag() else r.take(12).ljust(12, b"\0")
    body = b""
    if r.flag():  # USERNAME first (as ICE agents send it), its length field honest or not
        name = r.pick(_USERNAMES)
        length = len(name) if r.flag() else r.u16()
        body = struct.pack("!HH", 0x0006, length) + name + bytes(-len(name) % 4)
    body += r.take(r.u8() & 0x3C)
    length = len(body) if r.flag() else r.u16()
    cookie = 0x2112A442 if r.flag() else r.u32()
    return struct.pack("!HHI", mtype, length, cookie) + tid + body


def mux_loop(data: bytes, budget: Budget | None = None) -> None:
    """`Mux._route` never raises, routes each datagram where `MuxRoutes.route` does and counts the same drops."""
    r = Reader(data)
    mux = Mux(LIMITS)
    mux._add_port(_Port(_LOCAL))  # type: ignore[arg-type]
    table: MuxRoutes[str] = MuxRoutes(LIMITS)
    endpoints = {}
    for name, ufrag in _AGENTS.items():
        endpoints[name] = endpoint = mux.register(name)
        endpoint.add_ufrag(ufrag)
        table.add_owner(name)
        table.add_ufrag(name, ufrag)
    endpoints["a"].transports[0].confirm(_SOURCES[0])
    table.confirm("a", _LOCAL, _SOURCES[0])
    mux._routes.add_transaction(endpoints["b"], _TID, 0.0)
    table.add_transaction("b", _TID, 0.0)
    now, unknown_local = 0.0, 0
    for _ in range(MAX_STEPS):
        if not r.remaining:
            break
        now += r.u8() / 8
        local = _UNKNOWN if r.u8() < 16 else _LOCAL
        remote = r.pick(_SOURCES)
        datagram = _datagram(r)
        if local == _UNKNOWN:
            owner = None
            unknown_local += 1
        else:
            owner = table.route(datagram, local, remote, now)
        with timed(budget, f"routing {len(datagram)} bytes"):
            mux._route([((datagram, remote), local)], now)
        for name, endpoint in endpoints.items():
            got = [item for item, _ in endpoint.transports[0].receive_now(100)]
            expect(got == ([datagram] if owner == name else []), f"{name} got {got!r}, the table says {owner!r}")
        dropped = dict(table.dropped)
        if unknown_local:
            dropped["unknown_local"] = unknown_local
        expect(mux.stats()["dropped"] == dropped, f"drops {mux.stats()['dropped']} but the table's {dropped}")
