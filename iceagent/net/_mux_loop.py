"""The mux's routing loop (iceagent/net/mux.py `Mux._route`): each datagram a socket gave, into one agent's inbox.

It takes the decisions of the sans-IO routing table (`_mux_routes.MuxRoutes.route`: checks by ufrag, responses by
transaction id, everything else by a confirmed source address, DESIGN.md "open_mux") without a Python call per
datagram where it can, since the loop runs for every datagram of every agent on the mux (tests/test_mux_route_diff.py
holds its decisions equal to the table's and its deliveries to `InboxTransport._deliver` / `_deliver_check`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from trio.lowlevel import reschedule

from ._mux_ports import Row
from ._mux_routes import BINDING_REQUEST, CHECK, CLASS_MASK, OTHER, RESPONSE, SENT_CLASSES, USERNAME, Own, local_ufrag
from .base import Address

if TYPE_CHECKING:
    from .mux import Mux, MuxEndpoint

#: A STUN header's message type, length and magic cookie (RFC 8489 5).
HEADER = struct.Struct("!HHI")
MAGIC_COOKIE = 0x2112A442


def route(mux: Mux, batch: Iterable[Row], now: float) -> None:
    """Route each datagram of `batch` into one inbox, or count why not; never calls agent code. The socket's
    (data, remote) tuple is what the inbox keeps.

    The decisions are `MuxRoutes.route`'s (tests/test_mux_route_diff.py holds them equal), taken here without a
    Python call per datagram (they were a third of the calls the mux added per connected pair): the STUN header
    read once (`looks_like_stun` and `kind_of`), a check's ufrag read in place when USERNAME is its first
    attribute (as ICE agents send it; else `local_ufrag` walks them), the ufrag and address tables looked up
    here, and a datagram for an empty inbox (the usual case) queued here (`InboxTransport._deliver`). A
    response goes through `MuxRoutes.response_owner`, a full inbox through `_deliver` / `_deliver_check`."""
    routes, limits, local_index = mux._routes, mux.limits, mux._local_index
    by_ufrag, by_address, dropped = routes.by_ufrag, routes.by_address, routes.dropped
    header = HEADER.unpack_from
    routed = taken = 0
    last: Address | None = None
    index: int | None = None
    owner: MuxEndpoint | Literal[Own.MUX] | None
    for item, local in batch:
        taken += 1
        if local is not last:  # (the rows of one port's batch share its address)
            last, index = local, local_index.get(local)
        if index is None:
            dropped["unknown_local"] += 1
            continue
        data, remote = item
        size = len(data)
        kind = OTHER
        # (`looks_like_stun` and `kind_of`, inline: RFC 8489 5's header, the top two bits zero)
        if size >= 20 and data[0] < 0x40:
            mtype, length, cookie = header(data)
            if cookie == MAGIC_COOKIE and length == size - 20 and not length & 3:
                kind = (CHECK if mtype == BINDING_REQUEST else OTHER if mtype & CLASS_MASK in SENT_CLASSES
                        else RESPONSE)
        if kind == CHECK:
            # (`local_ufrag`, inline for USERNAME first: RFC 8445 7.3's local ufrag, up to the colon)
            if size >= 24 and data[20] == 0 and data[21] == USERNAME:
                end = 24 + (data[22] << 8 | data[23])
                if end <= size:
                    colon = data.find(b":", 24, end)
                    ufrag: bytes | None = data[24 : end if colon < 0 else colon]
                else:
                    ufrag = None
            else:
                ufrag = local_ufrag(data)
            owner = None if ufrag is None else by_ufrag.get(ufrag)
            if owner is None:
                dropped["no_username" if ufrag is None else "unknown_ufrag"] += 1
                continue
        elif kind == OTHER:
            owner = by_address.get((local, remote))
            if owner is None:
                dropped["unbound_address"] += 1
                continue
        else:
            owner = routes.response_owner(data[8:20], now)
            if owner is None:
                continue
            if owner is Own.MUX:
                if not mux._stun.deliver(data, remote, local):
                    dropped["stun_stray"] += 1
                continue
        transport = owner.transports[index]
        if transport._items is None and not transport._closed:  # (`_deliver` into an empty inbox, inline)
            transport._items = [item]
            transport._bytes = size
            task = transport._waiter
            if task is not None:
                transport._waiter = None
                reschedule(task)
            if transport._listener is not None:
                transport._listener.inbox_ready()
            routed += 1
            continue
        if kind == CHECK:  # routed by its ufrag: a retransmission still waiting is not queued twice
            reason = transport._deliver_check(item, limits)
        else:
            reason = "" if transport._deliver(data, remote, limits, item) else "inbox_full"
        if reason:
            dropped[reason] += 1
        else:
            routed += 1
    routes.routed += routed
    mux._taken += taken
