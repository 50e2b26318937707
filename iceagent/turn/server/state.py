"""The sans-IO core of the embedded TURN server (RFC 8656): allocations, permissions, channels and quotas.

`TurnServerState` is fed what arrives (from a client on a 5-tuple, from a peer at a relayed address) with
`now`, and returns what to do: `SendToClient`, `SendToPeer`, `OpenRelay` (bind a relay socket, then call
`relay_opened` or `relay_failed`) and `CloseRelay`. It reads no clock and no socket; the Trio layer
(`iceagent.turn.server.io`) moves the bytes, calls `handle_timer` at `get_timer()` and passes the wall-clock
`unix_time` that ephemeral credentials expire by.

Every table has a bound an authenticated user cannot push past: allocations (`max_allocations`, per user
`max_allocations_per_user`), permissions (`max_permissions` per allocation), channels (4096 numbers per
allocation, cooldowns as many), pending Allocates (counted with the allocations), the timer heap (2 x the
timed items + 64, `timers.Timers`), the response cache (16 per client, 10,000 in all); nonces are
stateless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ...stun.attributes import Attr
from ...stun.message import Message, MessageClass, Method, StunDecodeError
from .auth import Authenticated, AuthError, LongTermAuth
from .channels import channel_conflict, frame_for_client
from .policy import PeerPolicy, burst, desired_lifetime, spend
from .responses import error_response, signed_success, wire_seconds
from .timers import ResponseCache, Timers
from .types import (
    DEFAULT_SOFTWARE,
    Address,
    Allocation,
    CloseRelay,
    FiveTuple,
    OpenRelay,
    Output,
    PendingAllocate,
    SendToClient,
    SendToPeer,
    TurnServerConfig,
    TurnServerStats,
    ip_version,
    split_stream,
)

__all__ = [
    "DEFAULT_SOFTWARE",
    "Allocation",
    "CloseRelay",
    "FiveTuple",
    "OpenRelay",
    "Output",
    "SendToClient",
    "SendToPeer",
    "TurnServerConfig",
    "TurnServerState",
    "TurnServerStats",
    "split_stream",
]

UDP = 17  # REQUESTED-TRANSPORT value for UDP, the IANA protocol number (RFC 8656 18.6)
_FAMILIES = {1: 4, 2: 6}  # REQUESTED-ADDRESS-FAMILY -> IP version (RFC 8656 18.8)
_AUTHENTICATED = (Method.ALLOCATE, Method.REFRESH, Method.CREATE_PERMISSION, Method.CHANNEL_BIND)


_TimerKey = tuple[str, Allocation, Any]  # ("allocation" | "permission" | "channel" | "cooldown", allocation, item)


class TurnServerState:
    """A TURN server without I/O: allocations keyed by 5-tuple, relays by address (RFC 8656 5-12)."""

    def __init__(
        self,
        *,
        realm: str,
        users: Mapping[str, str],
        relay_families: Sequence[int] = (4,),
        config: TurnServerConfig | None = None,
        secret: bytes | None = None,
        auth_secrets: Sequence[bytes] = (),
        server_addresses: Sequence[Address] = (),
    ) -> None:
        """`auth_secrets`: shared secrets of ephemeral credentials (TURN REST API). `server_addresses`: the
        UDP ip:port the server listens on, which relays never send to (a wildcard one: on `policy`'s local IPs)."""
        self.config = config if config is not None else TurnServerConfig()
        self.auth = LongTermAuth(
            realm,
            users,
            nonce_lifetime=self.config.nonce_lifetime,
            password_algorithms=self.config.password_algorithms,
            secret=secret,
            auth_secrets=auth_secrets,
        )
        self.relay_families = frozenset(relay_families)
        self.policy = PeerPolicy(self.config, server_addresses)
        self.allocations: dict[FiveTuple, Allocation] = {}
        self._by_relay: dict[Address, Allocation] = {}
        self._pending: dict[FiveTuple, PendingAllocate] = {}
        self._per_user: dict[str, int] = {}  # allocations and pending Allocates per user
        self._responses: ResponseCache[FiveTuple] = ResponseCache(self.config.response_cache_time)
        self._timers: Timers[_TimerKey] = Timers()
        self._stats = TurnServerStats()

    # ---- queries ----

    @property
    def stats(self) -> TurnServerStats:
        """The counters, with the current numbers of allocations, permissions and channels."""
        s = self._stats
        s.allocations = len(self.allocations)
        s.permissions = sum(len(a.permissions) for a in self.allocations.values())
        s.channels = sum(len(a.channels) for a in self.allocations.values())
        s.timers = len(self._timers)
        s.timer_visits = self._timers.visits
        return attrs.evolve(
            s, dropped_by_reason=dict(s.dropped_by_reason), forbidden_by_reason=dict(s.forbidden_by_reason)
        )

    def allocation(self, five_tuple: FiveTuple, now: float) -> Allocation | None:
        """The live allocation on `five_tuple`, if any (RFC 8656 5)."""
        allocation = self.allocations.get(five_tuple)
        if allocation is None or allocation.expires <= now:
            return None
        return allocation

    def count_dropped(self) -> None:
        """Count input dropped by the I/O layer (a TCP client too slow for its relayed data)."""
        self._stats.dropped += 1

    def get_timer(self) -> float | None:
        """When `handle_timer` should next run (an allocation, permission or channel may expire then)."""
        return self._timers.next()

    # ---- input ----

    def receive_from_client(
        self, data: bytes, five_tuple: FiveTuple, now: float, unix_time: float | None = None
    ) -> list[Output]:
        """A STUN message or ChannelData from a client (RFC 8656 7-12); over TCP, one frame of `split_stream`.
        `unix_time`: the wall clock ephemeral usernames expire by. A source that is one of our relays is forged."""
        if five_tuple.client in self._by_relay:
            self._drop("own-address")
            return []
        if len(data) >= 4 and data[0] & 0xC0 == 0x40:
            out = self._channel_data(data, five_tuple, now)
            return [out] if out is not None else []
        try:
            message = Message.decode(data)
        except StunDecodeError:
            self._stats.dropped += 1
            return []
        if Attr.FINGERPRINT in message and not message.verify_fingerprint():
            self._stats.dropped += 1
            return []  # RFC 8489 7.3: not STUN after all
        if message.message_class is MessageClass.REQUEST:
            return self._request(message, five_tuple, now, unix_time)
        if message.message_class is MessageClass.INDICATION and message.method is Method.SEND:
            out = self._send_indication(message, five_tuple, now)
            return [out] if out is not None else []
        self._stats.dropped += 1  # responses and other indications are not for a server (RFC 8489 6.3)
        return []

    def receive_from_peer(self, relay: Address, data: bytes, peer: Address, now: float) -> SendToClient | None:
        """A UDP datagram from `peer` at the relayed address `relay`: a ChannelData message if a channel is
        bound to the peer, else a Data indication; dropped without a permission or from our own listener (RFC 8656
        11.3, 12.6; `PeerPolicy.own`)."""
        if self.policy.own(peer):
            self._drop("own-address")
            return None
        allocation = self._by_relay.get(relay)
        if allocation is None or allocation.expires <= now or allocation.permissions.get(peer[0], 0.0) <= now:
            self._stats.dropped += 1
            return None
        if not self._spend(allocation, len(data), now):
            return None
        ft = allocation.five_tuple
        frame = frame_for_client(allocation, peer, data, now)
        if frame is None:
            self._stats.dropped += 1
            return None
        self._stats.to_clients += 1
        return SendToClient(ft, frame)

    def relay_opened(self, five_tuple: FiveTuple, relay: Address, now: float) -> list[Output]:
        """The relay socket for an `OpenRelay` is bound at `relay`: create the allocation, answer (RFC 8656 7.2)."""
        pending = self._pending.pop(five_tuple, None)
        if pending is None:  # the client went away (TCP closed) while the socket was being bound
            return [CloseRelay(five_tuple, relay, "the client left before the allocation was made")]
        request = pending.request
        allocation = Allocation(five_tuple, relay, pending.auth.username, now + pending.lifetime, pending.family)
        allocation.tokens, allocation.tokens_at = burst(self.config.relay_bandwidth), now
        self.allocations[five_tuple] = allocation
        self._by_relay[relay] = allocation
        self._timers.wake_by(("allocation", allocation, None), allocation.expires)
        self._stats.allocations_created += 1
        attributes: list[tuple[Attr | int, Any]] = [
            (Attr.XOR_RELAYED_ADDRESS, relay),
            (Attr.LIFETIME, wire_seconds(pending.lifetime)),
            (Attr.XOR_MAPPED_ADDRESS, five_tuple.client),
        ]
        response = self._success(request, attributes, pending.auth, pending.fingerprint, five_tuple, now)
        return [response]

    def relay_failed(self, five_tuple: FiveTuple, reason: str, now: float) -> list[Output]:
        """No relay socket could be bound for an `OpenRelay`: answer 508 (RFC 8656 7.2)."""
        pending = self._pending.pop(five_tuple, None)
        if pending is None:
            return []
        self._count_user(pending.auth.username, -1)
        return [
            self._error(
                pending.request,
                508,
                f"Insufficient Capacity: cannot open a relay socket: {reason}",
                five_tuple,
                pending.auth,
                pending.fingerprint,
            )
        ]

    def client_closed(self, five_tuple: FiveTuple, now: float) -> list[Output]:
        """The TCP/TLS connection of `five_tuple` closed: its allocation ends with it (RFC 8656 5)."""
        pending = self._pending.pop(five_tuple, None)
        if pending is not None:
            self._count_user(pending.auth.username, -1)
        allocation = self.allocations.get(five_tuple)
        if allocation is None:
            return []
        self._stats.allocations_deleted += 1
        return [self._remove(allocation, "the client's connection closed")]

    def handle_timer(self, now: float) -> list[Output]:
        """Expire allocations, permissions and channels whose time has come (RFC 8656 6, 9, 12); only the
        timer entries that are due are looked at."""
        out: list[Output] = []
        for kind, allocation, item in self._timers.due(now):
            if self.allocations.get(allocation.five_tuple) is not allocation:
                continue  # removed meanwhile
            if kind == "allocation":
                if allocation.expires <= now:
                    self._stats.allocations_expired += 1
                    out.append(self._remove(allocation, "the allocation expired (not refreshed)"))
                else:
                    self._timers.wake_by((kind, allocation, item), allocation.expires)
            elif kind == "permission":
                expiry = allocation.permissions.get(item)
                if expiry is not None and expiry <= now:
                    del allocation.permissions[item]
                elif expiry is not None:
                    self._timers.wake_by((kind, allocation, item), expiry)
            elif kind == "channel":
                self._expire_channel(allocation, item, now)
            else:
                cooling = allocation.cooldown.get(item)
                if cooling is not None and cooling[1] <= now:
                    del allocation.cooldown[item]
                elif cooling is not None:
                    self._timers.wake_by((kind, allocation, item), cooling[1])
        self._responses.prune(now)
        return out

    def _expire_channel(self, allocation: Allocation, number: int, now: float) -> None:
        """A channel's timer is due: unbind it if it was not refreshed, and cool its number down (RFC 8656 12)."""
        bound = allocation.channels.get(number)
        if bound is None:
            return
        peer, expiry = bound
        if expiry > now:
            self._timers.wake_by(("channel", allocation, number), expiry)
            return
        del allocation.channels[number]
        del allocation.channel_by_peer[peer]
        until = expiry + self.config.channel_cooldown
        if until > now:
            allocation.cooldown[number] = (peer, until)
            self._timers.wake_by(("cooldown", allocation, number), until)

    # ---- requests ----

    def _request(self, request: Message, ft: FiveTuple, now: float, unix_time: float | None) -> list[Output]:
        fingerprint = Attr.FINGERPRINT in request
        method = request.method
        if method is Method.BINDING:
            return [self._binding(request, ft, fingerprint)]
        if method not in _AUTHENTICATED:
            # Only Binding, Allocate, Refresh, CreatePermission and ChannelBind are requests to a TURN server.
            return [self._error(request, 400, "Bad Request", ft, None, fingerprint)]
        cached = self._responses.get(ft, request.transaction_id, now)
        if cached is not None:
            self._stats.requests += 1
            return [SendToClient(ft, cached)]  # a retransmission: the same answer (RFC 8489 6.3.1)
        checked = self.auth.check(request, ft.client, ft.transport, now, unix_time)
        if isinstance(checked, AuthError):
            return [self._error(request, checked.code, checked.reason, ft, None, fingerprint, checked.attributes)]
        auth = checked
        unknown = request.unknown_required
        if unknown:
            return [
                self._error(
                    request,
                    420,
                    "Unknown Attribute: this server does not understand the attributes listed",
                    ft,
                    auth,
                    fingerprint,
                    [(Attr.UNKNOWN_ATTRIBUTES, unknown)],
                )
            ]
        if method is Method.ALLOCATE:
            return self._allocate(request, ft, auth, fingerprint, now)
        allocation = self.allocation(ft, now)
        if allocation is None:
            reason = "Allocation Mismatch: no allocation on this 5-tuple (it expired or was deleted); Allocate first"
            return [self._error(request, 437, reason, ft, auth, fingerprint)]
        if allocation.username != auth.username:
            reason = f"Wrong Credentials: this allocation belongs to another user than {auth.username!r}"
            return [self._error(request, 441, reason, ft, auth, fingerprint)]
        if method is Method.REFRESH:
            return self._refresh(request, allocation, auth, fingerprint, now)
        if method is Method.CREATE_PERMISSION:
            return [self._create_permission(request, allocation, auth, fingerprint, now)]
        return [self._channel_bind(request, allocation, auth, fingerprint, now)]

    def _binding(self, request: Message, ft: FiveTuple, fingerprint: bool) -> SendToClient:
        """A TURN server is a STUN server: Binding needs no credentials (RFC 8656 2.1, RFC 8489 6.3)."""
        unknown = request.unknown_required
        if unknown:
            return self._error(
                request, 420, "Unknown Attribute", ft, None, fingerprint, [(Attr.UNKNOWN_ATTRIBUTES, unknown)]
            )
        self._stats.requests += 1
        response = request.success_response([(Attr.XOR_MAPPED_ADDRESS, ft.client)])  # unauthenticated: no SOFTWARE
        return SendToClient(ft, response.encode(fingerprint=fingerprint))

    def _allocate(
        self, request: Message, ft: FiveTuple, auth: Authenticated, fingerprint: bool, now: float
    ) -> list[Output]:
        """Allocate (RFC 8656 7.2), checks in the RFC's order; the relay socket is bound by the I/O layer."""

        def error(code: int, reason: str, extra: Sequence[tuple[Attr | int, Any]] = ()) -> list[Output]:
            return [self._error(request, code, reason, ft, auth, fingerprint, extra)]

        existing = self.allocation(ft, now)
        if existing is not None or ft in self._pending:
            where = f" (relayed address {existing.relay[0]}:{existing.relay[1]})" if existing else ""
            return error(
                437,
                f"Allocation Mismatch: this 5-tuple already has an allocation{where}; refresh it, or delete it "
                "with Refresh LIFETIME 0 before allocating again",
            )
        transport = request.get(Attr.REQUESTED_TRANSPORT)
        if transport is None:
            return error(400, "Bad Request: Allocate needs REQUESTED-TRANSPORT (17 for UDP), RFC 8656 7.2")
        if transport != UDP:
            return error(
                442, f"Unsupported Transport Protocol: this server relays UDP (17) only, not protocol {transport}"
            )
        if Attr.DONT_FRAGMENT in request:
            return error(
                420,
                "Unknown Attribute: this server cannot set the DF bit; retry without DONT-FRAGMENT (RFC 8656 7.2)",
                [(Attr.UNKNOWN_ATTRIBUTES, [int(Attr.DONT_FRAGMENT)])],
            )
        even_port = request.get(Attr.EVEN_PORT)
        family_code = request.get(Attr.REQUESTED_ADDRESS_FAMILY)
        if Attr.RESERVATION_TOKEN in request:
            if even_port is not None or family_code is not None:
                return error(400, "Bad Request: RESERVATION-TOKEN with EVEN-PORT or REQUESTED-ADDRESS-FAMILY")
            return error(508, "Insufficient Capacity: this server keeps no reservations; allocate without the token")
        if even_port:
            return error(508, "Insufficient Capacity: this server cannot reserve the next port (EVEN-PORT R bit)")
        family = 4 if family_code is None else _FAMILIES.get(family_code)
        if family is None:
            return error(440, f"Address Family not Supported: {family_code} is neither IPv4 (1) nor IPv6 (2)")
        if family not in self.relay_families:
            return error(440, f"Address Family not Supported: this server has no IPv{family} relay address")
        owned = self._per_user.get(auth.username, 0)
        if owned >= self.config.max_allocations_per_user:
            return error(
                486,
                f"Allocation Quota Reached: user {auth.username!r} has {owned} allocations, the most allowed; delete "
                "one (Refresh LIFETIME 0) or let it expire",
            )
        if len(self.allocations) + len(self._pending) >= self.config.max_allocations:
            return error(508, f"Insufficient Capacity: this server holds {self.config.max_allocations} allocations")
        lifetime = desired_lifetime(self.config, request.get(Attr.LIFETIME))
        self._pending[ft] = PendingAllocate(request, auth, lifetime, family, fingerprint)
        self._count_user(auth.username, 1)
        return [OpenRelay(ft, family, even_port=even_port is not None)]

    def _refresh(
        self, request: Message, allocation: Allocation, auth: Authenticated, fingerprint: bool, now: float
    ) -> list[Output]:
        """Refresh (RFC 8656 8.2): a new lifetime, or LIFETIME 0 to delete the allocation."""
        ft = allocation.five_tuple
        family_code = request.get(Attr.REQUESTED_ADDRESS_FAMILY)
        if family_code is not None and _FAMILIES.get(family_code) != allocation.family:
            reason = f"Peer Address Family Mismatch: the allocation is IPv{allocation.family} (RFC 8656 8.2)"
            return [self._error(request, 443, reason, ft, auth, fingerprint)]
        requested = request.get(Attr.LIFETIME)
        if requested == 0:
            self._stats.allocations_deleted += 1
            close = self._remove(allocation, "deleted by the client (Refresh LIFETIME 0)")
            # The relay is closed before the client hears that it is gone.
            return [close, self._success(request, [(Attr.LIFETIME, 0)], auth, fingerprint, ft, now)]
        lifetime = desired_lifetime(self.config, requested)
        allocation.expires = now + lifetime
        self._timers.wake_by(("allocation", allocation, None), allocation.expires)
        return [self._success(request, [(Attr.LIFETIME, wire_seconds(lifetime))], auth, fingerprint, ft, now)]

    def _create_permission(
        self, request: Message, allocation: Allocation, auth: Authenticated, fingerprint: bool, now: float
    ) -> SendToClient:
        """CreatePermission (RFC 8656 9.2): install or refresh a permission for every XOR-PEER-ADDRESS."""
        ft = allocation.five_tuple
        peers = request.get_all(Attr.XOR_PEER_ADDRESS)
        if not peers:
            reason = "Bad Request: CreatePermission needs at least one XOR-PEER-ADDRESS (RFC 8656 9.2)"
            return self._error(request, 400, reason, ft, auth, fingerprint)
        for peer in peers:
            refused = self._check_peer(peer, allocation, channel=False)
            if refused is not None:
                return self._error(request, refused[0], refused[1], ft, auth, fingerprint)
        new = {p[0] for p in peers} - set(allocation.permissions)
        if len(allocation.permissions) + len(new) > self.config.max_permissions:
            reason = f"Insufficient Capacity: at most {self.config.max_permissions} permissions per allocation"
            return self._error(request, 508, reason, ft, auth, fingerprint)
        expiry = now + self.config.permission_lifetime
        for peer in peers:
            self._permit(allocation, peer[0], expiry)
        return self._success(request, [], auth, fingerprint, ft, now)

    def _channel_bind(
        self, request: Message, allocation: Allocation, auth: Authenticated, fingerprint: bool, now: float
    ) -> SendToClient:
        """ChannelBind (RFC 8656 11.2): bind or refresh a channel, and the peer's permission with it."""
        ft = allocation.five_tuple

        def error(code: int, reason: str) -> SendToClient:
            return self._error(request, code, reason, ft, auth, fingerprint)

        number = request.get(Attr.CHANNEL_NUMBER)
        peer = request.get(Attr.XOR_PEER_ADDRESS)
        if number is None or peer is None:
            return error(400, "Bad Request: ChannelBind needs CHANNEL-NUMBER and XOR-PEER-ADDRESS (RFC 8656 11.2)")
        conflict = channel_conflict(allocation, number, peer, now, self.config.channel_cooldown)
        if conflict is not None:
            return error(400, conflict)
        bound = allocation.channels.get(number)
        other = allocation.channel_by_peer.get(peer)
        refused = self._check_peer(peer, allocation, channel=True)
        if refused is not None:
            return error(*refused)
        if peer[0] not in allocation.permissions and len(allocation.permissions) >= self.config.max_permissions:
            return error(
                508, f"Insufficient Capacity: at most {self.config.max_permissions} permissions per allocation"
            )
        if bound is not None and bound[0] != peer:  # an expired binding not swept yet
            allocation.channel_by_peer.pop(bound[0], None)
        if other is not None and other != number:
            allocation.channels.pop(other, None)
            self._timers.cancel(("channel", allocation, other))
        if allocation.cooldown.pop(number) is not None:
            self._timers.cancel(("cooldown", allocation, number))
        expiry = now + self.config.channel_lifetime
        allocation.channels[number] = (peer, expiry)
        allocation.channel_by_peer[peer] = number
        self._timers.wake_by(("channel", allocation, number), expiry)
        self._permit(allocation, peer[0], now + self.config.permission_lifetime)
        return self._success(request, [], auth, fingerprint, ft, now)

    # ---- data from the client ----

    def _send_indication(self, message: Message, ft: FiveTuple, now: float) -> SendToPeer | None:
        """A Send indication: relay DATA to XOR-PEER-ADDRESS if a permission allows it (RFC 8656 10.2)."""
        allocation = self.allocation(ft, now)
        peer = message.get(Attr.XOR_PEER_ADDRESS)
        data = message.get(Attr.DATA)
        if (
            allocation is None
            or peer is None
            or data is None
            or Attr.DONT_FRAGMENT in message  # we cannot set DF: treated as unknown, so discarded
            or message.unknown_required  # RFC 8489 6.3.2
            or ip_version(peer[0]) != allocation.family
        ):
            self._stats.dropped += 1
            return None
        if self.policy.own(peer):
            self._drop("own-address")  # a relay must not feed the server itself, whatever the permissions
            return None
        if allocation.permissions.get(peer[0], 0.0) <= now:
            self._drop(self.policy.refused(peer[0]) or "no-permission")
            return None
        if not self._spend(allocation, len(data), now):
            return None
        self._stats.to_peers += 1
        return SendToPeer(allocation.relay, peer, data)

    def _channel_data(self, data: bytes, ft: FiveTuple, now: float) -> SendToPeer | None:
        """ChannelData: relay its payload to the channel's peer (RFC 8656 12.5); dropped if anything is off."""
        number = data[0] << 8 | data[1]
        length = data[2] << 8 | data[3]
        allocation = self.allocation(ft, now)
        bound = allocation.channels.get(number) if allocation is not None else None
        if (
            allocation is None
            or bound is None
            or bound[1] <= now
            or len(data) < 4 + length
            or allocation.permissions.get(bound[0][0], 0.0) <= now
        ):
            self._stats.dropped += 1
            return None
        # A channel's peer passed the policy and the own-address check at ChannelBind (403 otherwise).
        if not self._spend(allocation, length, now):
            return None
        self._stats.to_peers += 1
        return SendToPeer(allocation.relay, bound[0], data[4 : 4 + length])

    # ---- helpers ----

    def _check_peer(self, peer: Address, allocation: Allocation, *, channel: bool) -> tuple[int, str] | None:
        """443 or 403 for a peer this allocation may not reach (RFC 8656 9.2, 11.2); 403s counted by reason."""
        refused = self.policy.check(peer, allocation.family, channel=channel)
        if refused is not None and refused[0] == 403:
            counts = self._stats.forbidden_by_reason
            counts[refused[2]] = counts.get(refused[2], 0) + 1
        return None if refused is None else refused[:2]

    def _permit(self, allocation: Allocation, ip: str, expiry: float) -> None:
        """Install or refresh the permission for `ip` (RFC 8656 9)."""
        allocation.permissions[ip] = expiry
        self._timers.wake_by(("permission", allocation, ip), expiry)

    def _spend(self, allocation: Allocation, size: int, now: float) -> bool:
        """Take `size` relayed bytes from the allocation's bandwidth; False (dropped, counted) when over it."""
        if spend(allocation, size, now, self.config.relay_bandwidth):
            return True
        self._drop("bandwidth")
        return False

    def _drop(self, reason: str) -> None:
        self._stats.dropped += 1
        counts = self._stats.dropped_by_reason
        counts[reason] = counts.get(reason, 0) + 1

    def _count_user(self, username: str, delta: int) -> None:
        count = self._per_user.get(username, 0) + delta
        if count > 0:
            self._per_user[username] = count
        else:
            self._per_user.pop(username, None)

    def _remove(self, allocation: Allocation, reason: str) -> CloseRelay:
        del self.allocations[allocation.five_tuple]
        self._by_relay.pop(allocation.relay, None)
        self._count_user(allocation.username, -1)
        timers = self._timers
        timers.cancel(("allocation", allocation, None))
        for ip in allocation.permissions:
            timers.cancel(("permission", allocation, ip))
        for number in allocation.channels:
            timers.cancel(("channel", allocation, number))
        for number in allocation.cooldown:
            timers.cancel(("cooldown", allocation, number))
        return CloseRelay(allocation.five_tuple, allocation.relay, reason)

    def _success(
        self,
        request: Message,
        attributes: Sequence[tuple[Attr | int, Any]],
        auth: Authenticated,
        fingerprint: bool,
        ft: FiveTuple,
        now: float,
    ) -> SendToClient:
        """A signed success response, kept a while for retransmissions (RFC 8489 6.3.1)."""
        self._stats.requests += 1
        data = signed_success(request, attributes, auth, fingerprint, self.config.software)
        self._responses.put(ft, request.transaction_id, data, now)
        return SendToClient(ft, data)

    def _error(
        self,
        request: Message,
        code: int,
        reason: str,
        ft: FiveTuple,
        auth: Authenticated | None,
        fingerprint: bool,
        extra: Sequence[tuple[Attr | int, Any]] = (),
    ) -> SendToClient:
        """An error response (`responses.error_response`), counted."""
        self._stats.requests += 1
        self._stats.errors += 1
        return SendToClient(ft, error_response(request, code, reason, auth, fingerprint, extra, self.config.software))
