"""The mux's routing table (sans-IO): which agent owns a datagram that arrived on a shared port.

Pure: it takes `now` where time matters and never reads a clock or a socket. Routing follows
DESIGN.md ("Concurrency: the nursery tree", open_mux):

- a STUN Binding request (a connectivity check) by the local ufrag, the part of USERNAME before the
  colon (RFC 8445 7.2.2, 7.3); an agent registers one ufrag per ICE generation;
- a STUN success or error response by transaction id (RFC 8489 6.3: the response echoes the request's
  id); the owner recorded its id when it sent the request; an entry expires after `transaction_ttl`
  (about RFC 8489 6.2.1's whole transaction, 39.5 s with the default RTO) or when it is answered. The
  mux's own transactions (its shared STUN bindings) are routed to `Own.MUX` until the mux removes them;
- anything else (application data, indications, other requests) by (local address, source address),
  bound to an owner only by `confirm`, which the owner calls after it verified the integrity of a check
  from, or a response to, that address; the latest confirm wins. No packet binds anything by itself.

Every table is bounded (docs/security.md "Mux"); when one is full the oldest entry goes (or, for
ufrags and owners, registering raises `MuxFull`). The owner type is opaque to the table.
"""

from __future__ import annotations

import collections
import enum
import math
from collections.abc import Hashable, Mapping
from types import MappingProxyType
from typing import Generic, Literal, TypeVar

import attrs

from ..errors import IceError
from ..stun.message import looks_like_stun

Address = tuple[str, int]
Owner = TypeVar("Owner", bound=Hashable)

USERNAME = 0x0006
_STOP_ATTRS = frozenset((0x0008, 0x001C, 0x8028))  # MESSAGE-INTEGRITY(-SHA256), FINGERPRINT: nothing after counts
BINDING_REQUEST = 0x0001
CLASS_MASK = 0x0110  # RFC 8489 5: C1 C0 bits of the message type
REQUEST, _INDICATION = 0x0000, 0x0010
#: The classes of a message a peer sends unasked (request, indication): not routed as responses.
SENT_CLASSES = (REQUEST, _INDICATION)


class Own(enum.Enum):
    """What `MuxRoutes.route` returns for a response to one of the mux's own requests."""

    MUX = "mux"


class MuxError(IceError):
    """Misuse of the mux by local code (a ufrag registered twice, a table full of registrations)."""


class MuxFull(MuxError):
    """A registration table of the mux is full (`MuxLimits` says how big)."""


@attrs.frozen
class MuxLimits:
    """The bounds of the mux's tables (docs/security.md "Mux" gives the reasons)."""

    max_agents: int = 65536
    """Endpoints registered at once; one more raises `MuxFull`."""
    max_ufrags_per_agent: int = 8
    """ICE generations alive at once per endpoint (a restart keeps the old one until the new nominates)."""
    max_transactions: int = 65536
    """Outstanding STUN requests of all endpoints; the oldest is forgotten when full."""
    max_transactions_per_agent: int = 1024
    """Outstanding STUN requests of one endpoint (checks paced by Ta over a 40 s transaction); oldest goes."""
    transaction_ttl: float = 40.0
    """Seconds a request's id stays routable: RFC 8489 6.2.1's transaction (39.5 s at RTO 500 ms) plus slack."""
    max_bindings: int = 262144
    """Confirmed (local, remote) addresses of all endpoints; the least recently confirmed goes when full."""
    max_bindings_per_agent: int = 64
    """Confirmed addresses of one endpoint; its least recently confirmed goes (a peer cannot grow it)."""
    inbox_datagrams: int = 256
    """Datagrams waiting in one transport's inbox; more are dropped and counted ("inbox_full")."""
    inbox_bytes: int = 1 << 20
    """Bytes waiting in one transport's inbox (1 MiB); more are dropped and counted ("inbox_full")."""
    tcp_max_connections: int = 4096
    """ICE-TCP connections open at once on the whole mux (each is a descriptor); past it one is refused."""
    tcp_max_unclaimed: int = 256
    """ICE-TCP connections whose first check has not arrived yet; the oldest is closed for a new one."""
    tcp_max_per_agent: int = 64
    """ICE-TCP connections of one agent per address (IceConfig.tcp_max_inbound); the oldest unconfirmed goes."""
    tcp_check_timeout: float = 10.0
    """Seconds a connection may stay without a check its agent confirmed (RFC 6544 7.2, tcp_check_timeout)."""
    tcp_max_frame: int = 65535
    """The largest RFC 4571 frame taken on a claimed connection (RFC 4571 2)."""
    max_stun_bindings: int = 256
    """The mux's shared STUN bindings, one per (mux address, STUN server) in use; one more raises `MuxFull`."""
    stun_refresh: float = 15.0
    """Seconds between the Binding requests that keep a shared STUN binding's NAT mapping alive while agents
    use it (RFC 8489 3; RFC 8445 11's keepalive interval Tr, 15 s)."""

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(MuxLimits):
            value = getattr(self, field.name)
            if not value > 0:
                raise ValueError(f"MuxLimits.{field.name} must be positive, got {value!r}")


def local_ufrag(data: bytes) -> bytes | None:
    """The local ufrag of a STUN message (USERNAME up to the colon, RFC 8445 7.2.2), or None without one.

    Walks the attributes before MESSAGE-INTEGRITY / FINGERPRINT (those after are ignored, RFC 8489 14.5);
    the work is bounded by the datagram's length. The caller checked `looks_like_stun`.
    """
    pos, end = 20, len(data)
    while pos + 4 <= end:
        t = data[pos] << 8 | data[pos + 1]
        n = data[pos + 2] << 8 | data[pos + 3]
        if t in _STOP_ATTRS or pos + 4 + n > end:
            return None
        if t == USERNAME:
            start, stop = pos + 4, pos + 4 + n
            colon = data.find(b":", start, stop)
            return bytes(data[start : stop if colon < 0 else colon])
        pos += 4 + ((n + 3) & ~3)
    return None


#: What `kind_of` tells: a check (a STUN Binding request), a STUN success or error response, anything else.
CHECK, RESPONSE, OTHER = 0, 1, 2


def kind_of(data: bytes) -> int:
    """How the mux routes `data`: CHECK by ufrag, RESPONSE by transaction id, OTHER by its source address."""
    if looks_like_stun(data):
        mtype = data[0] << 8 | data[1]
        if mtype == BINDING_REQUEST:
            return CHECK
        if mtype & CLASS_MASK not in SENT_CLASSES:
            return RESPONSE
    return OTHER


def request_transaction_id(data: bytes) -> bytes | None:
    """The transaction id of an outgoing STUN request (any method), or None for anything else."""
    if looks_like_stun(data) and (data[0] << 8 | data[1]) & CLASS_MASK == REQUEST:
        return bytes(data[8:20])
    return None


class MuxRoutes(Generic[Owner]):
    """The routing table of one mux: owners, their ufrags, outstanding transactions and bound addresses."""

    def __init__(self, limits: MuxLimits | None = None) -> None:
        self.limits = limits or MuxLimits()
        self._ufrags: dict[bytes, Owner] = {}
        self._transactions: collections.OrderedDict[bytes, tuple[Owner, float]] = collections.OrderedDict()
        self._bindings: collections.OrderedDict[tuple[Address, Address], Owner] = collections.OrderedDict()
        self._owners: dict[Owner, _OwnerState] = {}
        self._own: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        #: the ufrag and address tables, to read only: the mux's routing loop (`Mux._route`) looks a check's ufrag
        #: and a datagram's (local, source) up in them itself, as `route` does
        self.by_ufrag: Mapping[bytes, Owner] = self._ufrags
        self.by_address: Mapping[tuple[Address, Address], Owner] = self._bindings
        #: no transaction expires before this (the oldest's deadline when last looked at; inf: none)
        self._next_expiry = math.inf
        self.routed = 0
        self.dropped: collections.Counter[str] = collections.Counter()

    # ---- registrations (called by local code) ----

    def add_owner(self, owner: Owner) -> None:
        """Register an endpoint; `MuxFull` past `max_agents`, `MuxError` if already registered."""
        if owner in self._owners:
            raise MuxError(f"{owner!r} is already registered with this mux")
        if len(self._owners) >= self.limits.max_agents:
            raise MuxFull(f"the mux already serves {self.limits.max_agents} agents (MuxLimits.max_agents)")
        self._owners[owner] = _OwnerState()

    def remove_owner(self, owner: Owner) -> None:
        """Forget an endpoint with every ufrag, transaction and binding it had, at once."""
        state = self._owners.pop(owner, None)
        if state is None:
            return
        for ufrag in state.ufrags:
            self._ufrags.pop(ufrag, None)
        for tid in state.transactions:
            self._transactions.pop(tid, None)
        for key in state.bindings:
            self._bindings.pop(key, None)

    def add_ufrag(self, owner: Owner, ufrag: str) -> None:
        """Route checks whose USERNAME starts with `ufrag:` to `owner` (one per ICE generation)."""
        state = self._state(owner)
        key = ufrag.encode()
        if not key or b":" in key:
            raise ValueError(f"a ufrag is 1 or more ice-chars without ':' (RFC 8839 5.4), got {ufrag!r}")
        current = self._ufrags.get(key)
        if current is not None and current != owner:
            raise MuxError(f"ufrag {ufrag!r} is already registered by another agent on this mux")
        if current is None and len(state.ufrags) >= self.limits.max_ufrags_per_agent:
            raise MuxFull(f"an agent may register at most {self.limits.max_ufrags_per_agent} ufrags "
                          "(MuxLimits.max_ufrags_per_agent); remove the ufrags of closed generations")
        self._ufrags[key] = owner
        if current is None:
            state.ufrags += (key,)

    def remove_ufrag(self, owner: Owner, ufrag: str) -> None:
        """Stop routing checks for `ufrag` (its generation closed); unknown ufrags are ignored."""
        key = ufrag.encode()
        if self._ufrags.get(key) == owner:
            del self._ufrags[key]
            state = self._owners[owner]
            state.ufrags = tuple(k for k in state.ufrags if k != key)

    def add_transaction(self, owner: Owner, tid: bytes, now: float) -> None:
        """Route the response to request `tid` to `owner` until `now + transaction_ttl` (a retransmission
        refreshes it). Past the bounds the oldest outstanding id is forgotten (its response is dropped)."""
        state = self._owners.get(owner) or self._state(owner)
        limits = self.limits
        transactions = self._transactions
        if now >= self._next_expiry:  # the oldest may have expired
            self.expire(now)
        old = transactions.pop(tid, None)
        if old is not None:
            self._owners[old[0]].forget_transaction(tid)
        mine = state.tids
        if mine is None:
            mine = state.tids = {}
        mine[tid] = None  # the newest last
        deadline = now + limits.transaction_ttl
        self._transactions[tid] = (owner, deadline)
        if deadline < self._next_expiry:  # (the table was empty)
            self._next_expiry = deadline
        if len(mine) > limits.max_transactions_per_agent:
            oldest = next(iter(mine))
            del mine[oldest]
            self._transactions.pop(oldest, None)
            self.dropped["transaction_evicted"] += 1
        if len(self._transactions) > limits.max_transactions:
            oldest, (who, _) = self._transactions.popitem(last=False)
            self._owners[who].forget_transaction(oldest)
            self.dropped["transaction_evicted"] += 1

    def add_own_transaction(self, tid: bytes) -> None:
        """Route responses to the mux's own request `tid` to `Own.MUX` until `remove_own_transaction`: every
        response with that id (the mux checks where it came from). At most `max_stun_bindings` (one per
        shared binding in flight); past it the oldest is forgotten."""
        self._own[tid] = None
        if len(self._own) > self.limits.max_stun_bindings:
            self._own.popitem(last=False)
            self.dropped["transaction_evicted"] += 1

    def remove_own_transaction(self, tid: bytes) -> None:
        """The mux's transaction `tid` is over (answered, timed out or stopped)."""
        self._own.pop(tid, None)

    def confirm(self, owner: Owner, local: Address, remote: Address) -> None:
        """Bind datagrams from `remote` to `local` to `owner`: call only after verifying the integrity of a
        check from, or a response to, `remote` (DESIGN.md). The latest confirm wins; the least recently
        confirmed binding goes past the bounds. `MuxError` if `owner` is not registered."""
        if owner not in self._owners:
            self._state(owner)  # (raises)
        self.bind(owner, local, remote)

    def bind(self, owner: Owner, local: Address, remote: Address) -> None:
        """`confirm` for a transport of `owner`, which may have left meanwhile (its endpoint closed): then
        nothing is bound. A mux transport's view calls it directly (one call per confirm, not three)."""
        state = self._owners.get(owner)
        if state is None:
            return
        key = (local, remote)
        mine = state.bindings
        if mine and mine[-1] == key and self._bindings.get(key) == owner:  # again (a consent check, a response)
            self._bindings.move_to_end(key)
            return
        previous = self._bindings.pop(key, None)
        if previous is not None and previous != owner:
            self._owners[previous].forget_binding(key)
        self._bindings[key] = owner
        if key in mine:
            mine = tuple(k for k in mine if k != key)
        mine += (key,)  # the most recently confirmed last
        if len(mine) > self.limits.max_bindings_per_agent:
            del self._bindings[mine[0]]
            mine = mine[1:]
        state.bindings = mine
        if len(self._bindings) > self.limits.max_bindings:
            oldest_key, who = self._bindings.popitem(last=False)
            self._owners[who].forget_binding(oldest_key)

    def expire(self, now: float) -> None:
        """Forget transactions whose time passed (the table is in expiry order: the oldest first)."""
        transactions = self._transactions
        self._next_expiry = math.inf
        while transactions:
            tid, (who, deadline) = next(iter(transactions.items()))
            if deadline > now:
                self._next_expiry = deadline
                break
            del transactions[tid]
            self._owners[who].forget_transaction(tid)

    # ---- routing (hostile input) ----

    def route(self, data: bytes, local: Address, remote: Address, now: float) -> Owner | Literal[Own.MUX] | None:
        """The owner of a datagram that arrived at `local` from `remote`, `Own.MUX` for a response to one of
        the mux's own requests, or None (dropped and counted by reason in `dropped`). Bounded work: a header
        check, at most one walk of the attributes. The caller counts `routed` once the datagram is in an
        inbox."""
        return self.route_kind(kind_of(data), data, local, remote, now)

    def route_kind(
        self, kind: int, data: bytes, local: Address, remote: Address, now: float
    ) -> Owner | Literal[Own.MUX] | None:
        """`route` for a datagram whose `kind_of` the caller knows (the mux, which also needs it)."""
        if kind == CHECK:
            ufrag = local_ufrag(data)
            owner = None if ufrag is None else self._ufrags.get(ufrag)
            if owner is None:
                self.dropped["no_username" if ufrag is None else "unknown_ufrag"] += 1
            return owner
        if kind == RESPONSE:
            return self.response_owner(bytes(data[8:20]), now)
        owner = self._bindings.get((local, remote))
        if owner is None:
            self.dropped["unbound_address"] += 1
        return owner

    def response_owner(self, tid: bytes, now: float) -> Owner | Literal[Own.MUX] | None:
        """The owner of a STUN response with transaction id `tid` (RFC 8489 6.3), forgetting the transaction
        (answered), or `Own.MUX`, or None (counted "unknown_transaction")."""
        if tid in self._own:
            return Own.MUX
        entry = self._transactions.pop(tid, None)  # answered: forgotten (RFC 8489 6.3)
        if entry is not None:
            self._owners[entry[0]].forget_transaction(tid)
            if entry[1] > now:
                return entry[0]
        self.dropped["unknown_transaction"] += 1
        return None

    def check_owner(self, data: bytes) -> tuple[Owner | None, str]:
        """The owner of a check (a STUN Binding request) by its local ufrag, or None and why not
        ("not_a_check", "no_username", "unknown_ufrag"). Counts nothing."""
        if not looks_like_stun(data) or (data[0] << 8 | data[1]) != BINDING_REQUEST:
            return None, "not_a_check"
        ufrag = local_ufrag(data)
        if ufrag is None:
            return None, "no_username"
        owner = self._ufrags.get(ufrag)
        return owner, "" if owner is not None else "unknown_ufrag"

    def drop(self, reason: str) -> None:
        """Count a datagram the Trio side dropped after routing (e.g. "inbox_full")."""
        self.dropped[reason] += 1

    # ---- introspection ----

    def owner_counts(self, owner: Owner) -> dict[str, int]:
        """How many ufrags, transactions and bindings `owner` holds (for tests and stats)."""
        state = self._owners.get(owner)
        if state is None:
            return {"ufrags": 0, "transactions": 0, "bindings": 0}
        return {"ufrags": len(state.ufrags), "transactions": len(state.transactions),
                "bindings": len(state.bindings)}

    def sizes(self) -> dict[str, int]:
        """The size of every table."""
        return {"agents": len(self._owners), "ufrags": len(self._ufrags),
                "transactions": len(self._transactions), "bindings": len(self._bindings)}

    def own_transactions(self) -> int:
        """How many of the mux's own transactions are routable (at most `max_stun_bindings`)."""
        return len(self._own)

    def bound_owner(self, local: Address, remote: Address) -> Owner | None:
        """Who `remote` is bound to on `local`, if anyone."""
        return self._bindings.get((local, remote))

    def _state(self, owner: Owner) -> _OwnerState:
        try:
            return self._owners[owner]
        except KeyError:
            raise MuxError(f"{owner!r} is not registered with this mux (closed?)") from None


_NONE: Mapping[bytes, None] = MappingProxyType({})


class _OwnerState:
    """What one owner holds, so removing it is proportional to its own entries, the oldest first. Its ufrags
    and bindings (a few, bounded by MuxLimits) are tuples the collector need not track; its outstanding
    transactions a dict made by the first and dropped once empty (an idle agent keeps none)."""

    __slots__ = ("bindings", "tids", "ufrags")

    def __init__(self) -> None:
        self.ufrags: tuple[bytes, ...] = ()  # at most MuxLimits.max_ufrags_per_agent
        self.tids: dict[bytes, None] | None = None  # the outstanding transactions (None: none)
        self.bindings: tuple[tuple[Address, Address], ...] = ()  # at most MuxLimits.max_bindings_per_agent

    @property
    def transactions(self) -> Mapping[bytes, None]:
        """The outstanding transactions, oldest first (read-only)."""
        return _NONE if self.tids is None else self.tids

    def forget_transaction(self, tid: bytes) -> None:
        mine = self.tids
        if mine is not None:
            mine.pop(tid, None)
            if not mine:
                self.tids = None

    def forget_binding(self, key: tuple[Address, Address]) -> None:
        if key in self.bindings:
            self.bindings = tuple(k for k in self.bindings if k != key)
