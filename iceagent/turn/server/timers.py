"""The time-keyed tables of the embedded TURN server, sans-IO and bounded: expiry timers (RFC 8656 6, 9, 12)
and the response cache for retransmissions (RFC 8489 6.3.1).

Each timed item (an allocation, a permission, a channel, a channel cooldown) has one key. `wake_by(key,
when)` asks to be woken no later than `when`; a refresh that moves an expiry later adds nothing (the item is
looked at when its old time comes, and scheduled again then), so a flood of Refresh, CreatePermission or
ChannelBind requests cannot grow the heap. Entries left behind by cancelled or moved-earlier items are
compacted away once they make up half the heap: the heap never holds more than 2 x the keys + 64 entries,
and `due(now)` takes off only entries whose time has come.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["ResponseCache", "Timers"]

K = TypeVar("K", bound=Hashable)

_SLACK = 64  # stale entries always tolerated before compacting


class Timers(Generic[K]):
    """A heap of (time, key) with at most one live entry per key (see the module docstring)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._when: dict[K, float] = {}  # key -> the time of its live entry
        self._seq = itertools.count()
        self.visits = 0  # entries taken off the heap by `due`, since the start

    def __len__(self) -> int:
        """Entries in the heap, live and stale."""
        return len(self._heap)

    @property
    def keys(self) -> int:
        """Keys with a live entry."""
        return len(self._when)

    def next(self) -> float | None:
        """The earliest time an entry is due, or None."""
        return self._heap[0][0] if self._heap else None

    def wake_by(self, key: K, when: float) -> None:
        """Be woken for `key` no later than `when` (an earlier or equal live entry already does)."""
        current = self._when.get(key)
        if current is not None and current <= when:
            return
        self._when[key] = when
        heapq.heappush(self._heap, (when, next(self._seq), key))
        self._compact()

    def cancel(self, key: K) -> None:
        """Forget `key`; its entry becomes stale."""
        if self._when.pop(key, None) is not None:
            self._compact()

    def due(self, now: float) -> list[K]:
        """Take off the keys whose time has come (each once); the caller checks and reschedules them."""
        heap = self._heap
        keys: list[K] = []
        while heap and heap[0][0] <= now:
            when, _, key = heapq.heappop(heap)
            self.visits += 1
            if self._when.get(key) == when:
                del self._when[key]
                keys.append(key)
        return keys

    def _compact(self) -> None:
        if len(self._heap) > 2 * len(self._when) + _SLACK:
            self._heap = [(when, next(self._seq), key) for key, when in self._when.items()]
            heapq.heapify(self._heap)


class ResponseCache(Generic[K]):
    """Success responses kept to answer retransmissions (RFC 8489 6.3.1), bounded per client and in total.

    Entries expire `ttl` after they are made, so insertion order is expiry order. A client has at most
    `per_client` entries (RFC 8489 6.2 lets a client have ten transactions outstanding to a server), so a
    flood of fresh transaction ids from one client evicts only that client's older answers; `total`
    bounds the whole table."""

    def __init__(self, ttl: float, per_client: int = 16, total: int = 10_000) -> None:
        self.ttl = ttl
        self.per_client = per_client
        self.total = total
        self._entries: dict[tuple[K, bytes], tuple[float, bytes]] = {}
        self._by_client: dict[K, list[bytes]] = {}  # transaction ids per client, oldest first

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, client: K, transaction_id: bytes, now: float) -> bytes | None:
        """The response to a retransmitted request, if still kept."""
        entry = self._entries.get((client, transaction_id))
        return entry[1] if entry is not None and entry[0] > now else None

    def put(self, client: K, transaction_id: bytes, data: bytes, now: float) -> None:
        """Keep `data` as the answer to `transaction_id` from `client` for `ttl` seconds."""
        if self.ttl <= 0:
            return
        self.prune(now)
        key = (client, transaction_id)
        if key in self._entries:
            return
        ids = self._by_client.get(client, [])
        if len(ids) >= self.per_client:
            self._entries.pop((client, ids.pop(0)), None)
        if len(self._entries) >= self.total:
            self._drop_oldest()
        self._by_client.setdefault(client, []).append(transaction_id)
        self._entries[key] = (now + self.ttl, data)

    def prune(self, now: float) -> None:
        """Forget the responses whose time is over."""
        entries = self._entries
        while entries:
            key = next(iter(entries))
            if entries[key][0] > now:
                break
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        client, transaction_id = next(iter(self._entries))
        del self._entries[(client, transaction_id)]
        ids = self._by_client[client]
        ids.remove(transaction_id)
        if not ids:
            del self._by_client[client]
