"""The sans-IO TURN client: one allocation on one TURN server (RFC 8656), fed bytes and times.

`TurnClient` never reads a clock or a socket. Its driver passes `now` to every call, sends whatever
`datagrams_to_send()` returns to the server, calls `handle_timer(now)` at `get_timer()`, hands every
message from the server to `receive(frame, now)` and reads `next_event()` for what happened:

- Allocate with REQUESTED-TRANSPORT UDP (and REQUESTED-ADDRESS-FAMILY for an IPv6 relay), answered
  by 401 with REALM and NONCE, retried with the long-term credential (RFC 8489 9.2: MD5 key, or the
  SHA-256 one when the server offers PASSWORD-ALGORITHMS); 438 stale nonce, retried with the new
  nonce; 300 ALTERNATE-SERVER reported as `Redirected`; other errors as `AllocateFailed` carrying a
  specific `TurnError` (RFC 8656 7.1-7.3).
- Refresh before the lifetime runs out, and Refresh with LIFETIME 0 on `deallocate` (RFC 8656 8).
- CreatePermission per peer IP, refreshed every `permission_refresh` seconds (RFC 8656 9, 10).
- ChannelBind once a peer is in use, refreshed every `channel_refresh` seconds (RFC 8656 12).
- `send(data, peer, now)`: a Send indication until the peer's channel is bound, ChannelData after
  (RFC 8656 11.1, 12.5); data for a peer whose permission is still being created is held and sent as
  soon as it is installed. `receive` returns the peer's data from Data indications and ChannelData.

With `paced=True` every new request (a new transaction, retries after 401/438 included; retransmissions
never) is held until the driver has a slot of its pacer for it (RFC 8445 14.2, see `start_paced`).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from ..net.base import Address
from ..stun.attributes import Attr
from ..stun.message import Message, MessageClass, Method, StunDecodeError
from ..stun.transaction import TransactionState
from ._client_requests import _Channel, _Exchanges, _Held, _Kind, _Permission, _PermState, _Request
from .auth import LongTermCredential
from .errors import TurnAllocationLost, TurnError, TurnUnsupported
from .events import AllocationState, Released, TurnEvent
from .framing import CHANNEL_DATA_MAX, CHANNEL_MAX, CHANNEL_MIN, ChannelDataError

__all__ = ["TurnClient"]


_TLV = struct.Struct("!HH")
_PAD = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")


def _family_of(host: str) -> int:
    return 6 if ":" in host else 4


#: The most bytes of data one Send indication carries, by the peer's family: a STUN message holds at most 65532
#: bytes of attributes (a 16-bit length, a multiple of 4: RFC 8489 5), less XOR-PEER-ADDRESS (12 bytes, 24 for
#: IPv6) and DATA's own 4-byte header (RFC 8656 11.1).
SEND_DATA_MAX = {4: 65532 - 12 - 4, 6: 65532 - 24 - 4}


class TurnClient(_Exchanges):
    """The client side of one TURN allocation (RFC 8656), sans-IO.

    `server_name` names the server in error messages (e.g. "turn:203.0.113.1:3478?transport=udp").
    `reliable` is True over TCP and TLS: requests are not retransmitted (RFC 8489 6.2.2) and
    ChannelData is padded to 4 bytes (RFC 8656 12.5). `family="ipv6"` asks for an IPv6 relayed
    address (REQUESTED-ADDRESS-FAMILY, RFC 8656 7.1). `lifetime` is asked in Allocate and Refresh
    (None: the server's default, 600 s). `auto_channel=True` binds a channel to each peer when data
    is first sent to it. `keepalive` (seconds, UDP only) sends a Binding indication to the server when
    no request went out for that long, to keep NAT mappings on the way alive. `allocate_rto` (None: `rto`) is
    the initial RTO of the Allocate transactions, which are part of gathering (RFC 8445 14.3: the agent passes
    max(rto, Ta x Num-Of-Cands)); the later requests start from `rto`. `paced=True` holds each new
    request until the driver calls `start_paced(now)` (the driver waits for a pacer slot first).
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        server_name: str = "the TURN server",
        reliable: bool = False,
        family: Literal["ipv4", "ipv6"] = "ipv4",
        lifetime: int | None = None,
        software: str | None = None,
        permission_refresh: float = 240.0,
        channel_refresh: float = 540.0,
        permission_lifetime: float = 300.0,
        rto: float = 0.5,
        rc: int = 7,
        rm: int = 16,
        reliable_timeout: float = 39.5,
        auto_channel: bool = True,
        max_queued: int = 64,
        keepalive: float | None = None,
        paced: bool = False,
        allocate_rto: float | None = None,
    ) -> None:
        if family not in ("ipv4", "ipv6"):
            raise ValueError(f"family must be 'ipv4' or 'ipv6', not {family!r}")
        self.username = username
        self.server_name = server_name
        self.reliable = reliable
        self.family: Literal["ipv4", "ipv6"] = family
        self.requested_lifetime = lifetime
        self.software = software
        self.permission_refresh = permission_refresh
        self.channel_refresh = channel_refresh
        self.permission_lifetime = permission_lifetime
        self.rto, self.rc, self.rm, self.reliable_timeout = rto, rc, rm, reliable_timeout
        self.allocate_rto = rto if allocate_rto is None else allocate_rto
        self.auto_channel = auto_channel
        self.max_queued = max_queued
        #: Over UDP, a Binding indication goes to the server when nothing else did for this long, so that a
        #: NAT on the way keeps the mapping the allocation is bound to (RFC 8656 3.1, RFC 8489 6.3.2).
        self.keepalive = keepalive if keepalive and not reliable else None
        self._keepalive_at: float | None = None
        #: New requests wait in `_held` for `start_paced` instead of going out at once (RFC 8445 14.2).
        self.paced = paced
        self._held: list[_Held] = []

        self.state = AllocationState.NEW
        self.relayed_address: Address | None = None
        self.mapped_address: Address | None = None
        self.lifetime = 0
        self.expires_at = 0.0
        self._refresh_at: float | None = None
        self.error: TurnError | None = None

        #: The long-term credential and what the server told about it (RFC 8489 9.2).
        self.credential = LongTermCredential(username, password, server_name=server_name)

        self._requests: dict[bytes, _Request] = {}
        self._outgoing: list[bytes] = []
        self._events: deque[TurnEvent] = deque()
        self._permissions: dict[str, _Permission] = {}
        self._channels: dict[Address, _Channel] = {}
        #: peer address -> channel number, for bound channels only (ChannelData may be sent on them).
        self.channel_of: dict[Address, int] = {}
        #: channel number -> peer address, for every channel asked for (ChannelData may arrive on them).
        self.peer_of_channel: dict[int, Address] = {}
        self._next_channel = CHANNEL_MIN
        #: Datagrams dropped: peer of the wrong family, permission failed, queue full, not allocated, too large for
        #: a ChannelData message or a Send indication.
        self.dropped = 0
        #: Requests sent by name ("Allocate", "Refresh", "CreatePermission", "ChannelBind"), retries
        #: included, retransmissions not.
        self.requests_sent: dict[str, int] = {}

    # ---- the allocation (RFC 8656 7, 8) ----

    def allocate(self, now: float) -> None:
        """Send the Allocate request (RFC 8656 7.1); the first one goes without credentials (RFC 8489 9.2.3)."""
        if self.state is not AllocationState.NEW:
            raise RuntimeError(f"allocate() in state {self.state.value}")
        self.state = AllocationState.ALLOCATING
        self._request(_Kind.ALLOCATE, self._allocate_attributes(), now)

    def _allocate_attributes(self) -> list[tuple[Attr | int, Any]]:
        attrs_: list[tuple[Attr | int, Any]] = [(Attr.REQUESTED_TRANSPORT, 17)]
        if self.family == "ipv6":
            attrs_.append((Attr.REQUESTED_ADDRESS_FAMILY, 0x02))
        if self.requested_lifetime is not None:
            attrs_.append((Attr.LIFETIME, self.requested_lifetime))
        if self.software:
            attrs_.append((Attr.SOFTWARE, self.software))
        return attrs_

    def refresh(self, now: float) -> None:
        """Refresh the allocation now (RFC 8656 8); the driver need not call it, timers do."""
        if self.state is AllocationState.ALLOCATED and not self._pending(_Kind.REFRESH):
            # Without LIFETIME the server applies its default again, as at Allocate (RFC 8656 8).
            lifetime = self.requested_lifetime
            attributes: list[tuple[Attr | int, Any]] = [] if lifetime is None else [(Attr.LIFETIME, lifetime)]
            self._request(_Kind.REFRESH, attributes, now, subject=lifetime)

    def deallocate(self, now: float) -> None:
        """Release the allocation: Refresh with LIFETIME 0 (RFC 8656 8); ends with a `Released` event."""
        if self.state is AllocationState.ALLOCATING:
            self._cancel_all(now)
            self.state = AllocationState.RELEASED
            self._events.append(Released())
            return
        if self.state is not AllocationState.ALLOCATED:
            return
        self._cancel_all(now)
        self.state = AllocationState.DEALLOCATING
        self._request(_Kind.REFRESH, [(Attr.LIFETIME, 0)], now, subject=0)

    def connection_lost(self, error: TurnError, now: float) -> None:
        """The connection to the server broke (TCP/TLS): the allocation is as good as gone (RFC 8656 3.1)."""
        if self.state in (AllocationState.ALLOCATED, AllocationState.ALLOCATING, AllocationState.DEALLOCATING):
            self._cancel_all(now)
            self.state = AllocationState.LOST
            self.error = error
            self.channel_of.clear()

    @property
    def is_allocated(self) -> bool:
        """The allocation exists and relays data (RFC 8656 7.3)."""
        return self.state is AllocationState.ALLOCATED

    @property
    def has_outgoing(self) -> bool:
        """Messages wait in `datagrams_to_send()`, or (paced) new requests wait for `start_paced`."""
        return bool(self._outgoing or self._held)

    @property
    def held_count(self) -> int:
        """How many new requests (paced) wait for `start_paced`."""
        return len(self._held)

    def new_outgoing(self, held_before: int) -> bool:
        """Messages wait in `datagrams_to_send()`, or a request was held since `held_count` was `held_before`:
        what the driver must be told of (a request already held when a datagram is sent needs no new wake-up)."""
        return bool(self._outgoing) or len(self._held) > held_before

    # ---- pacing new transactions (RFC 8445 14.2) ----

    def pace_deadline(self) -> float | None:
        """With `paced=True`: when the most urgent held request must leave, pacer slot or not (`math.inf`: it
        waits for its slot however long; a refresh or the release waits at most MAX_PACED_WAIT); None when no
        request is held. The driver waits for a slot (then `start_paced`) and, by this time, calls `start_overdue`."""
        held = self._held
        return min(h.latest for h in held) if held else None

    def start_paced(self, now: float) -> bool:
        """A pacer slot came: send the oldest held request now (into `datagrams_to_send()`), first in, first out,
        so a request that waits for its slot however long is not passed by every refresh held after it (those
        leave by their bound anyway, `start_overdue`). It is built, signed with the credential as it is now,
        and its retransmission schedule starts at `now` (RFC 8489 6.2.1). False when none is held."""
        if not self._held:
            return False
        held = self._held.pop(0)
        self._send_request(held.kind, held.attributes, now, held.subject, held.retries)
        return True

    def start_overdue(self, now: float) -> bool:
        """Send every held request whose latest time has come, slot or not (a refresh must reach the server
        before what it refreshes expires, RFC 8656 8); True when one was."""
        due = [h for h in self._held if h.latest <= now]
        for held in due:
            self._held.remove(held)
            self._send_request(held.kind, held.attributes, now, held.subject, held.retries)
        return bool(due)

    @property
    def expects_response(self) -> bool:
        """True while a request is waiting for its response (the driver must read from the server)."""
        return bool(self._requests)

    # ---- permissions and channels (RFC 8656 9, 10, 12) ----

    def create_permission(self, ip: str, now: float) -> None:
        """Ask for a permission for `ip` unless one is installed or pending (RFC 8656 10.1)."""
        perm = self._permissions.get(ip)
        if perm is not None and perm.state is not _PermState.FAILED:
            return
        if perm is None:
            perm = self._permissions[ip] = _Permission(ip, _PermState.PENDING)
        else:
            perm.state = _PermState.PENDING
            perm.error = None
        if self.state is AllocationState.ALLOCATED:
            self._request(_Kind.PERMISSION, [(Attr.XOR_PEER_ADDRESS, (ip, 0))], now, subject=ip)

    def permission_state(self, ip: str) -> str | None:
        """The permission's state: "pending", "active", "failed", or None when none was asked for `ip`."""
        perm = self._permissions.get(ip)
        return None if perm is None else perm.state.value

    def permission_error(self, ip: str) -> TurnError | None:
        """Why the permission for `ip` failed (None unless it did)."""
        perm = self._permissions.get(ip)
        return None if perm is None else perm.error

    def bind_channel(self, peer: Address, now: float) -> int:
        """Bind a channel to `peer` (RFC 8656 12.1) unless one is bound or pending; returns its number.

        A peer that had a channel gets the same number again (always allowed, RFC 8656 12)."""
        ch = self._channels.get(peer)
        if ch is not None and (ch.bound or ch.pending):
            return ch.number
        if ch is None:
            if self._next_channel > CHANNEL_MAX:
                raise TurnUnsupported(
                    f"all {CHANNEL_MAX - CHANNEL_MIN + 1} channel numbers of the allocation on {self.server_name} "
                    "are in use (RFC 8656 12)"
                )
            ch = self._channels[peer] = _Channel(peer, self._next_channel)
            self._next_channel += 1
        ch.pending = True
        self.peer_of_channel[ch.number] = peer
        if self.state is AllocationState.ALLOCATED:
            self._request(
                _Kind.CHANNEL,
                [(Attr.CHANNEL_NUMBER, ch.number), (Attr.XOR_PEER_ADDRESS, peer)],
                now,
                subject=peer,
            )
        return ch.number

    def channel_state(self, peer: Address) -> str | None:
        """The channel's state: "bound", "pending", "failed", or None when none was asked for `peer`."""
        ch = self._channels.get(peer)
        if ch is None:
            return None
        return "bound" if ch.bound else "pending" if ch.pending else "failed"

    # ---- data (RFC 8656 11, 12) ----

    def send(self, data: bytes, peer: Address, now: float) -> bytes | None:
        """The message that carries `data` to `peer` now: ChannelData once its channel is bound, else a Send
        indication (RFC 8656 11.1, 12.5). None when it cannot go yet: held until the permission for the
        peer's IP is installed (asked for here if needed), or dropped (counted in `dropped`), also when `data`
        does not fit the message (`CHANNEL_DATA_MAX`, `SEND_DATA_MAX`)."""
        ch = self.channel_of.get(peer)
        if ch is not None:
            if len(data) > CHANNEL_DATA_MAX:  # it does not fit (RFC 8656 12.4): lost, as UDP loses it
                self.dropped += 1
                return None
            return self.channel_data(ch, data)
        if (
            self.state is not AllocationState.ALLOCATED
            or not self._family_ok(peer)
            or len(data) > SEND_DATA_MAX[_family_of(peer[0])]  # no Send indication holds it (RFC 8656 11.1)
        ):
            self.dropped += 1
            return None
        perm = self._permissions.get(peer[0])
        if perm is None or (perm.state is _PermState.FAILED and now >= perm.retry_at):
            self.create_permission(peer[0], now)
            perm = self._permissions[peer[0]]
        if perm.state is _PermState.ACTIVE:
            if self.auto_channel:
                ch_state = self._channels.get(peer)
                if ch_state is None or (not ch_state.bound and not ch_state.pending and now >= ch_state.retry_at):
                    self.bind_channel(peer, now)
            return self.send_indication(data, peer)
        if perm.state is _PermState.PENDING and len(perm.queue) < self.max_queued:
            perm.queue.append((data, peer))
            return None
        self.dropped += 1
        return None

    def channel_data(self, channel: int, data: bytes) -> bytes:
        """A ChannelData message (RFC 8656 12.4), padded to 4 bytes over TCP/TLS (12.5). ChannelDataError (a
        ValueError) for more data than its 16-bit Length field counts (`CHANNEL_DATA_MAX`)."""
        n = len(data)
        if n > CHANNEL_DATA_MAX:
            raise ChannelDataError(f"ChannelData carries at most {CHANNEL_DATA_MAX} bytes, not {n} (RFC 8656 12.4)")
        head = _TLV.pack(channel, n)
        if self.reliable and n & 3:
            return head + data + _PAD[n & 3]
        return head + data

    def send_indication(self, data: bytes, peer: Address) -> bytes:
        """A Send indication with XOR-PEER-ADDRESS and DATA (RFC 8656 11.1); indications carry no credential."""
        return Message(
            Method.SEND, MessageClass.INDICATION, attributes=[(Attr.XOR_PEER_ADDRESS, peer), (Attr.DATA, data)]
        ).encode()

    def receive(self, frame: bytes, now: float) -> tuple[bytes, Address] | None:
        """Process one message from the server: returns (data, peer) for a Data indication or ChannelData
        (RFC 8656 11.4, 12.6), None for anything else (responses update the state and queue events)."""
        if not frame:
            return None
        first = frame[0]
        if 0x40 <= first <= 0x4F:
            if len(frame) < 4:
                return None
            channel, n = _TLV.unpack_from(frame)
            peer = self.peer_of_channel.get(channel)
            if peer is None or len(frame) < 4 + n:
                return None  # unknown channel or truncated: discard (RFC 8656 12.6)
            return frame[4 : 4 + n], peer
        if first >= 0x40:
            return None
        try:
            msg = Message.decode(frame)
        except StunDecodeError:
            return None
        return self.receive_message(msg, now)

    def receive_message(self, msg: Message, now: float) -> tuple[bytes, Address] | None:
        """Process one decoded STUN message from the server (see `receive`)."""
        cls = msg.message_class
        if cls is MessageClass.INDICATION:
            if msg.method != Method.DATA:
                return None
            peer = msg.get(Attr.XOR_PEER_ADDRESS)
            data = msg.get(Attr.DATA)
            if peer is None or data is None:
                return None
            # Only from peers we asked a permission for (RFC 8656 11.4).
            perm = self._permissions.get(peer[0])
            if perm is None or perm.state is _PermState.FAILED:
                return None
            return data, peer
        if cls is MessageClass.REQUEST:
            return None
        req = self._requests.get(msg.transaction_id)
        if req is None or req.transaction.state is not TransactionState.PENDING:
            return None
        if not self._integrity_ok(req, msg):
            return None  # as if it never arrived (RFC 8489 9.2.5)
        del self._requests[msg.transaction_id]
        req.transaction.handle_response(now)
        if cls is MessageClass.SUCCESS:
            self._on_success(req, msg, now)
        else:
            self._on_error(req, msg, now)
        return None

    # ---- the driver's loop ----

    def datagrams_to_send(self) -> list[bytes]:
        """Messages to send to the server now (requests, retransmissions, held data); empties the queue. With
        `paced=True` a new request is here only once `start_paced` let it out."""
        out = self._outgoing
        self._outgoing = []
        return out

    def unsent(self, frames: Sequence[bytes]) -> None:
        """Put back, first in line and in order, what the driver took from `datagrams_to_send()` and did not send
        (a cancellation came first): the next call returns them again."""
        self._outgoing[:0] = frames

    def next_event(self) -> TurnEvent | None:
        """The next thing that happened, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When `handle_timer` must be called next (retransmission, refresh, expiry), or None."""
        times: list[float] = []
        for req in self._requests.values():
            t = req.transaction.get_timer()
            if t is not None:
                times.append(t)
        if self.state is AllocationState.ALLOCATED:
            if self._refresh_at is not None and not self._pending(_Kind.REFRESH):
                times.append(self._refresh_at)
            times.append(self.expires_at)
            if self._keepalive_at is not None:
                times.append(self._keepalive_at)
            for perm in self._permissions.values():
                if perm.state is _PermState.ACTIVE and not perm.refreshing:
                    times.append(perm.refresh_at)
            for ch in self._channels.values():
                if ch.bound and not ch.pending:
                    times.append(ch.refresh_at)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Retransmit, time out, refresh and expire what is due at `now` (RFC 8489 6.2, RFC 8656 8-12)."""
        for tid, req in list(self._requests.items()):
            data = req.transaction.handle_timer(now)
            if data is not None:
                self._outgoing.append(data)
            elif req.transaction.timed_out:
                del self._requests[tid]
                self._on_timeout(req, now)
        if self.state is not AllocationState.ALLOCATED:
            return
        if now >= self.expires_at:
            self._lose(
                TurnAllocationLost(f"the allocation on {self.server_name} expired: no Refresh succeeded in time"),
                now,
            )
            return
        if self._refresh_at is not None and now >= self._refresh_at:
            self.refresh(now)
        if self._keepalive_at is not None and self.keepalive is not None and now >= self._keepalive_at:
            # a Binding indication needs no answer (RFC 8489 6.3.2)
            self._outgoing.append(Message(Method.BINDING, MessageClass.INDICATION).encode(fingerprint=True))
            self._keepalive_at = now + self.keepalive
        for perm in list(self._permissions.values()):
            if perm.state is _PermState.ACTIVE and not perm.refreshing and now >= perm.refresh_at:
                perm.refreshing = True
                self._request(_Kind.PERMISSION, [(Attr.XOR_PEER_ADDRESS, (perm.ip, 0))], now, subject=perm.ip)
            elif perm.state is _PermState.ACTIVE and now >= perm.expires_at and not perm.refreshing:
                self._drop_permission(perm)
        for ch in self._channels.values():
            if ch.bound and not ch.pending and now >= ch.refresh_at:
                ch.pending = True
                self._request(
                    _Kind.CHANNEL,
                    [(Attr.CHANNEL_NUMBER, ch.number), (Attr.XOR_PEER_ADDRESS, ch.peer)],
                    now,
                    subject=ch.peer,
                )

    def _family_ok(self, peer: Address) -> bool:
        relayed = self.relayed_address
        return relayed is None or _family_of(relayed[0]) == _family_of(peer[0])

    # ---- introspection ----

    def permissions(self) -> dict[str, str]:
        """{peer IP: "pending" | "active" | "failed"}."""
        return {ip: p.state.value for ip, p in self._permissions.items()}

    def channels(self) -> dict[Address, int]:
        """{peer address: channel number} of the bound channels."""
        return dict(self.channel_of)


def requests_in(messages: Iterable[bytes]) -> list[Message]:
    """Decode the STUN requests among `messages` (a helper for tests and traces)."""
    out = []
    for data in messages:
        if data and data[0] < 0x40:
            msg = Message.decode(data)
            if msg.message_class is MessageClass.REQUEST:
                out.append(msg)
    return out
