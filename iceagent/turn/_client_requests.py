"""The request half of the sans-IO TURN client: the records `TurnClient` keeps, and the requests it sends to
the server with what their answers do (RFC 8489 9.2 credentials, RFC 8656 7-12 responses).

`TurnClient` (iceagent.turn.client) inherits `_Exchanges`: its public calls decide what to ask the
server; the methods here build and sign each request, match the responses and move the state.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ..net.base import Address
from ..stun.attributes import Attr
from ..stun.message import Message, MessageClass, Method
from ..stun.transaction import Transaction
from .auth import LongTermCredential
from .errors import (
    TurnAllocationLost,
    TurnAllocationMismatch,
    TurnAuthenticationError,
    TurnError,
    TurnForbidden,
    TurnRedirectError,
    TurnServerError,
    TurnTimeout,
    error_from_response,
)
from .events import (
    Allocated,
    AllocateFailed,
    AllocationLost,
    AllocationState,
    ChannelBindFailed,
    ChannelBound,
    PermissionFailed,
    PermissionInstalled,
    Redirected,
    Refreshed,
    Released,
    TurnEvent,
)


class _Kind(enum.Enum):
    ALLOCATE = Method.ALLOCATE
    REFRESH = Method.REFRESH
    PERMISSION = Method.CREATE_PERMISSION
    CHANNEL = Method.CHANNEL_BIND


_NAMES = {
    _Kind.ALLOCATE: "Allocate",
    _Kind.REFRESH: "Refresh",
    _Kind.PERMISSION: "CreatePermission",
    _Kind.CHANNEL: "ChannelBind",
}


@attrs.define(eq=False)
class _Ask:
    """What a request asks for: enough to build it again (a retry) or later (a held one)."""

    kind: _Kind
    attributes: list[tuple[Attr | int, Any]]
    subject: Any  # the peer IP (permission), peer address (channel), requested lifetime (refresh)
    retries: int


@attrs.define(eq=False)
class _Request(_Ask):
    """A request sent: its transaction and the credential it was signed with."""

    transaction: Transaction
    authenticated: bool
    nonce: str | None


@attrs.define(eq=False)
class _Held(_Ask):
    """A new request waiting for its pacer slot (RFC 8445 14.2): built and signed only when it leaves."""

    latest: float  # it leaves by then even without a slot (see `_Exchanges._pace_latest`)


class _PermState(enum.Enum):
    PENDING = "pending"
    ACTIVE = "active"
    FAILED = "failed"


@attrs.define(eq=False)
class _Permission:
    ip: str
    state: _PermState
    refresh_at: float = 0.0
    expires_at: float = 0.0
    refreshing: bool = False
    retry_at: float = 0.0
    error: TurnError | None = None
    queue: deque[tuple[bytes, Address]] = attrs.field(factory=deque)


@attrs.define(eq=False)
class _Channel:
    peer: Address
    number: int
    bound: bool = False
    pending: bool = False
    refresh_at: float = 0.0
    retry_at: float = 0.0


_MAX_AUTH_RETRIES = 3
#: The longest a paced request that keeps something alive (Refresh, a permission's or channel's refresh, the
#: deallocating Refresh) waits for its pacer slot; it also leaves with half the time left before what it
#: refreshes expires (RFC 8656 7, 8, 9, 12: a refresh must reach the server in time).
MAX_PACED_WAIT = 0.5
_FAILED_PERMISSION_RETRY = 5.0  # seconds before data to a peer whose permission failed asks again
_FAILED_CHANNEL_RETRY = 30.0


def _error_code(msg: Message) -> tuple[int, str]:
    value = msg.get(Attr.ERROR_CODE)
    if value is None:
        return 0, ""
    code, reason = value
    return int(code), str(reason)


def _fmt(address: Any) -> str:
    if isinstance(address, tuple) and len(address) == 2:
        host, port = address
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


class _Exchanges:
    """Requests to the TURN server and their outcome; the state it reads and changes is `TurnClient`'s."""

    # Set by TurnClient.__init__ (see there).
    username: str
    server_name: str
    reliable: bool
    family: Literal["ipv4", "ipv6"]
    permission_refresh: float
    channel_refresh: float
    permission_lifetime: float
    rto: float
    allocate_rto: float
    rc: int
    rm: int
    reliable_timeout: float
    auto_channel: bool
    keepalive: float | None
    _keepalive_at: float | None
    state: AllocationState
    relayed_address: Address | None
    mapped_address: Address | None
    lifetime: int
    expires_at: float
    _refresh_at: float | None
    error: TurnError | None
    credential: LongTermCredential
    _requests: dict[bytes, _Request]
    _outgoing: list[bytes]
    _events: deque[TurnEvent]
    _permissions: dict[str, _Permission]
    _channels: dict[Address, _Channel]
    channel_of: dict[Address, int]
    peer_of_channel: dict[int, Address]
    dropped: int
    requests_sent: dict[str, int]
    paced: bool
    _held: list[_Held]

    if TYPE_CHECKING:  # TurnClient's public calls, used when a permission is installed

        def bind_channel(self, peer: Address, now: float) -> int: ...

        def send_indication(self, data: bytes, peer: Address) -> bytes: ...

    def _pending(self, kind: _Kind) -> bool:
        return any(r.kind is kind for r in self._requests.values()) or any(h.kind is kind for h in self._held)

    def _request(
        self,
        kind: _Kind,
        attributes: list[tuple[Attr | int, Any]],
        now: float,
        *,
        subject: Any = None,
        retries: int = 0,
    ) -> None:
        """Start a new transaction now, or (paced) hold it until the driver has a pacer slot for it."""
        if self.paced:
            self._held.append(_Held(kind, attributes, subject, retries, self._pace_latest(kind, subject, now)))
        else:
            self._send_request(kind, attributes, now, subject, retries)

    def _pace_latest(self, kind: _Kind, subject: Any, now: float) -> float:
        """When a held request leaves at the latest: Allocate (and its retries), a first CreatePermission or
        ChannelBind wait for their slot however long the pacer says; a request that keeps the allocation, a
        permission or a channel alive, or releases the allocation, waits at most MAX_PACED_WAIT."""
        expiry = math.inf
        if kind is _Kind.REFRESH:
            if self.state is AllocationState.ALLOCATED:
                expiry = self.expires_at
        elif kind is _Kind.PERMISSION:
            perm = self._permissions.get(subject)
            if perm is None or perm.state is not _PermState.ACTIVE:
                return math.inf
            expiry = perm.expires_at
        elif kind is _Kind.CHANNEL:
            ch = self._channels.get(subject)
            if ch is None or not ch.bound:
                return math.inf
        else:
            return math.inf
        return now + min(MAX_PACED_WAIT, max(0.0, (expiry - now) / 2))

    def _send_request(
        self, kind: _Kind, attributes: list[tuple[Attr | int, Any]], now: float, subject: Any, retries: int
    ) -> None:
        cred = self.credential
        msg = Message(kind.value, MessageClass.REQUEST, attributes=[*attributes, *cred.attributes()])
        if cred.key is not None:
            data = msg.encode(integrity_key=cred.key, integrity=cred.integrity, fingerprint=True)
        else:
            data = msg.encode(fingerprint=True)
        tx = Transaction(
            data,
            msg.transaction_id,
            now,
            rto=self.allocate_rto if kind is _Kind.ALLOCATE else self.rto,
            rc=self.rc,
            rm=self.rm,
            reliable=self.reliable,
            reliable_timeout=self.reliable_timeout,
        )
        self._requests[msg.transaction_id] = _Request(kind, attributes, subject, retries, tx, cred.ready, cred.nonce)
        name = _NAMES[kind]
        self.requests_sent[name] = self.requests_sent.get(name, 0) + 1
        if self._keepalive_at is not None and self.keepalive is not None:
            self._keepalive_at = now + self.keepalive
        self._outgoing.append(data)

    def _resend(self, req: _Request, now: float) -> None:
        self._request(req.kind, req.attributes, now, subject=req.subject, retries=req.retries + 1)

    def _integrity_ok(self, req: _Request, msg: Message) -> bool:
        """Responses to authenticated requests must carry a valid MESSAGE-INTEGRITY(-SHA256) (RFC 8489 9.2.5);
        401 and 438 are checked by their content instead, error responses without integrity are accepted."""
        key = self.credential.key
        if not req.authenticated or key is None:
            return True
        if msg.message_class is MessageClass.ERROR:
            code, _ = _error_code(msg)
            if code in (401, 438):
                return True
            if Attr.MESSAGE_INTEGRITY not in msg and Attr.MESSAGE_INTEGRITY_SHA256 not in msg:
                return code != 300  # an unsigned redirection of an authenticated request is ignored (RFC 8489 10)
        return msg.verify_integrity(key)

    # ---- responses ----

    def _on_success(self, req: _Request, msg: Message, now: float) -> None:
        kind = req.kind
        if kind is _Kind.ALLOCATE:
            relayed = msg.get(Attr.XOR_RELAYED_ADDRESS)
            if relayed is None:
                self._fail(TurnServerError(f"{self.server_name} answered Allocate without XOR-RELAYED-ADDRESS"))
                return
            self.relayed_address = relayed
            self.mapped_address = msg.get(Attr.XOR_MAPPED_ADDRESS)
            self.state = AllocationState.ALLOCATED
            self._set_lifetime(msg.get(Attr.LIFETIME), now)
            if self.keepalive is not None:
                self._keepalive_at = now + self.keepalive
            self._events.append(Allocated(relayed, self.mapped_address, self.lifetime))
            # permissions and channels asked for before the allocation existed
            for perm in self._permissions.values():
                if perm.state is _PermState.PENDING:
                    self._request(_Kind.PERMISSION, [(Attr.XOR_PEER_ADDRESS, (perm.ip, 0))], now, subject=perm.ip)
            for ch in self._channels.values():
                if ch.pending:
                    self._request(
                        _Kind.CHANNEL,
                        [(Attr.CHANNEL_NUMBER, ch.number), (Attr.XOR_PEER_ADDRESS, ch.peer)],
                        now,
                        subject=ch.peer,
                    )
        elif kind is _Kind.REFRESH:
            if self.state is AllocationState.DEALLOCATING:
                self._release(None)
                return
            self._set_lifetime(msg.get(Attr.LIFETIME), now)
            self._events.append(Refreshed(self.lifetime))
        elif kind is _Kind.PERMISSION:
            self._permission_ok(req.subject, now)
        elif kind is _Kind.CHANNEL:
            bound = self._channels.get(req.subject)
            if bound is None:
                return
            bound.pending = False
            bound.bound = True
            bound.refresh_at = now + self.channel_refresh
            self.channel_of[bound.peer] = bound.number
            self._events.append(ChannelBound(bound.peer, bound.number))

    def _permission_ok(self, ip: str, now: float) -> None:
        perm = self._permissions.get(ip)
        if perm is None:
            return
        perm.state = _PermState.ACTIVE
        perm.refreshing = False
        perm.error = None
        perm.refresh_at = now + self.permission_refresh
        perm.expires_at = now + self.permission_lifetime
        self._events.append(PermissionInstalled(ip))
        while perm.queue:
            data, peer = perm.queue.popleft()
            self._outgoing.append(self.send_indication(data, peer))
            if self.auto_channel and peer not in self._channels:
                self.bind_channel(peer, now)

    def _set_lifetime(self, lifetime: int | None, now: float) -> None:
        self.lifetime = 600 if lifetime is None else int(lifetime)
        self.expires_at = now + self.lifetime
        # Refresh a minute early, or half way through a short lifetime (RFC 8656 8 leaves the moment open).
        self._refresh_at = now + max(self.lifetime * 0.5, self.lifetime - 60)

    def _on_error(self, req: _Request, msg: Message, now: float) -> None:
        code, reason = _error_code(msg)
        if code == 401:
            # Credentials asked for. Retry only with something new: the first time, or with a fresh nonce
            # (some servers answer a stale nonce with 401); never twice with the same (RFC 8489 9.2.5).
            fresh = not req.authenticated or (msg.get(Attr.NONCE) not in (None, req.nonce))
            if fresh and req.retries < _MAX_AUTH_RETRIES:
                err = self.credential.learn(msg)
                if err is None:
                    self._resend(req, now)
                    return
                self._request_failed(req, err, now)
                return
            realm = msg.get(Attr.REALM) or self.credential.realm
            self._request_failed(
                req,
                TurnAuthenticationError(
                    f"{self.server_name} rejected the credentials of user {self.username!r} in realm {realm!r} "
                    f"(401 {reason or 'Unauthenticated'}): check IceServer(username=..., credential=...) against "
                    "the server's user database (coturn: --user=NAME:PASSWORD with --realm)"
                ),
                now,
            )
            return
        if code == 438 and req.retries < _MAX_AUTH_RETRIES:
            err = self.credential.learn(msg)
            if err is None:
                self._resend(req, now)
                return
            self._request_failed(req, err, now)
            return
        if code == 300 and req.kind is _Kind.ALLOCATE:
            alternate = msg.get(Attr.ALTERNATE_SERVER)
            if alternate is None:
                self._fail(TurnRedirectError(f"{self.server_name} answered 300 Try Alternate without ALTERNATE-SERVER"))
                return
            self.state = AllocationState.FAILED
            self._cancel_all(now)
            self._events.append(Redirected(alternate, msg.get(Attr.ALTERNATE_DOMAIN)))
            return
        self._request_failed(req, self._error_for(req, code, reason), now)

    def _error_for(self, req: _Request, code: int, reason: str) -> TurnError:
        name = _NAMES[req.kind]
        if req.kind in (_Kind.PERMISSION, _Kind.CHANNEL):
            name = f"{name} for {_fmt(req.subject)}"
        return error_from_response(
            code,
            reason,
            server_name=self.server_name,
            request=name,
            peer_request=req.kind in (_Kind.PERMISSION, _Kind.CHANNEL),
            allocate=req.kind is _Kind.ALLOCATE,
            username=self.username,
            family=self.family,
        )

    def _on_timeout(self, req: _Request, now: float) -> None:
        over = "TCP/TLS" if self.reliable else "UDP"
        waited = req.transaction.timeout_at - req.transaction.started
        self._request_failed(
            req,
            TurnTimeout(
                f"no response from {self.server_name} to {_NAMES[req.kind]} after {waited:g} s "
                f"over {over}: check that the server runs at that address and port and that nothing blocks it"
            ),
            now,
        )

    def _request_failed(self, req: _Request, error: TurnError, now: float) -> None:
        kind = req.kind
        if kind is _Kind.ALLOCATE:
            self._fail(error)
        elif kind is _Kind.REFRESH:
            if self.state is AllocationState.DEALLOCATING:
                self._release(None if isinstance(error, TurnAllocationMismatch) else error)
            elif isinstance(error, (TurnAllocationMismatch, TurnAuthenticationError, TurnForbidden)):
                self._lose(TurnAllocationLost(f"the allocation on {self.server_name} was lost: {error}"), now)
            else:
                # try again before it expires (RFC 8656 8)
                self._refresh_at = now + min(30.0, max(0.0, (self.expires_at - now) / 2))
        elif kind is _Kind.PERMISSION:
            perm = self._permissions.get(req.subject)
            if perm is None:
                return
            perm.refreshing = False
            if perm.state is _PermState.ACTIVE and now < perm.expires_at and isinstance(error, TurnTimeout):
                perm.refresh_at = now + min(30.0, max(0.0, (perm.expires_at - now) / 2))
                return
            dropped = len(perm.queue)
            perm.queue.clear()
            self.dropped += dropped
            perm.state = _PermState.FAILED
            perm.error = error
            perm.retry_at = now + _FAILED_PERMISSION_RETRY
            self._events.append(PermissionFailed(perm.ip, error))
        elif kind is _Kind.CHANNEL:
            ch = self._channels.get(req.subject)
            if ch is None:
                return
            ch.pending = False
            ch.bound = False
            ch.retry_at = now + _FAILED_CHANNEL_RETRY
            self.channel_of.pop(ch.peer, None)
            self._events.append(ChannelBindFailed(ch.peer, ch.number, error))

    def _fail(self, error: TurnError) -> None:
        self.state = AllocationState.FAILED
        self.error = error
        self._requests.clear()
        self._held.clear()
        self._events.append(AllocateFailed(error))

    def _lose(self, error: TurnError, now: float) -> None:
        self._cancel_all(now)
        self.state = AllocationState.LOST
        self.error = error
        self.channel_of.clear()
        self._events.append(AllocationLost(error))

    def _release(self, error: TurnError | None) -> None:
        self.state = AllocationState.RELEASED
        self._requests.clear()
        self._held.clear()
        self.channel_of.clear()
        self._events.append(Released(error))

    def _drop_permission(self, perm: _Permission) -> None:
        del self._permissions[perm.ip]
        for peer, ch in list(self._channels.items()):
            if peer[0] == perm.ip and not ch.bound:
                self.peer_of_channel.pop(ch.number, None)

    def _cancel_all(self, now: float) -> None:
        for req in self._requests.values():
            req.transaction.cancel(now)
        self._requests.clear()
        self._held.clear()
        self._outgoing.clear()
