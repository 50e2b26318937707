"""Connectivity-check messages: Binding requests and their responses (RFC 8445 7.2.2, 7.3)."""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from socket import AF_INET, inet_pton
from typing import Any, cast

from ..stun.attributes import CHECK_FIELD_SLOTS, CHECK_FIELDS_EMPTY, Attr
from ..stun.message import MAGIC_COOKIE, Message, MessageClass, Method, encode_attributes, seal, seal_short_term
from .candidate import IceParameters

__all__ = [
    "CheckFields",
    "RoleConflict",
    "authenticate_request",
    "check_request",
    "error_response",
    "read_check",
    "read_fields",
    "role_conflict",
    "roles_conflict",
    "screen_check",
    "screen_request",
    "seal_check",
    "success_response",
    "username_attribute",
]

Address = tuple[str, int]


def check_request(  # positional too: the session calls it once per check without keyword matching
    transaction_id: bytes,
    local: IceParameters,
    remote: IceParameters,
    priority: int,
    controlling: bool,
    tie_breaker: int,
    use_candidate: bool = False,
    nomination: int | None = None,
    key: bytes | None = None,
) -> bytes:
    """A check: USERNAME rfrag:lfrag, PRIORITY, ICE-CONTROLLING/-CONTROLLED, optional USE-CANDIDATE,
    optional NOMINATION (renomination negotiated: draft-thatcher-ice-renomination 4), MESSAGE-INTEGRITY
    with the remote password (`key`: its UTF-8 bytes, when the caller has them), FINGERPRINT (RFC 8445 7.2.2).

    The attributes are packed directly (the generic encoder gives the same bytes: tests/test_checks.py); a
    session keeps its USERNAME attribute and key and calls `seal_check`."""
    return seal_check(
        transaction_id,
        username_attribute(local, remote),
        priority,
        controlling,
        tie_breaker,
        use_candidate,
        nomination,
        remote.pwd.encode() if key is None else key,
    )


def username_attribute(local: IceParameters, remote: IceParameters) -> bytes:
    """The USERNAME attribute of our checks, "rfrag:lfrag" (RFC 8445 7.2.2), padded: the same for every check
    of a session to one peer, so the session makes it once (`seal_check`).
    Raises ValueError for a USERNAME over 65535 bytes."""
    user = f"{remote.ufrag}:{local.ufrag}".encode()
    n = len(user)
    if n > 0xFFFF:  # as the generic encoder (ufrags are bounded long before: RFC 8445 5.3)
        raise ValueError(f"cannot encode USERNAME: attribute value is {n} bytes, more than 65535")
    return _TLV.pack(_USERNAME, n) + user + _PADDING[-n & 3]


def seal_check(  # positional: the session calls it once per check without keyword matching
    transaction_id: bytes,
    username: bytes,
    priority: int,
    controlling: bool,
    tie_breaker: int,
    use_candidate: bool,
    nomination: int | None,
    key: bytes,
) -> bytes:
    """`check_request` with its USERNAME attribute already encoded (`username_attribute`) and the remote
    password's UTF-8 bytes `key`: the attributes after it, MESSAGE-INTEGRITY and FINGERPRINT (RFC 8445 7.2.2)."""
    role = _CONTROLLING if controlling else _CONTROLLED
    if use_candidate:
        tail = _TAIL_USE.pack(_PRIORITY, 4, priority, role, 8, tie_breaker, _USE, 0)
    else:
        tail = _TAIL.pack(_PRIORITY, 4, priority, role, 8, tie_breaker)
    if nomination is not None:
        tail += _PRIORITY_TLV.pack(_NOMINATION, 4, nomination)
    return seal_short_term(_BINDING_REQUEST, transaction_id, username + tail, key)


_PADDING = (b"", b"\x00", b"\x00\x00", b"\x00\x00\x00")
_TLV = struct.Struct("!HH")
_PRIORITY_TLV = struct.Struct("!HHI")
_TAIL = struct.Struct("!HHIHHQ")  # PRIORITY, ICE-CONTROLLING/-CONTROLLED in one pack
_TAIL_USE = struct.Struct("!HHIHHQHH")  # ... and USE-CANDIDATE
_XOR_V4_TLV = struct.Struct("!HHxBHI")
_USERNAME, _PRIORITY = int(Attr.USERNAME), int(Attr.PRIORITY)
_CONTROLLING, _CONTROLLED = int(Attr.ICE_CONTROLLING), int(Attr.ICE_CONTROLLED)
_USE = int(Attr.USE_CANDIDATE)
_NOMINATION = int(Attr.NOMINATION)
_BINDING_REQUEST = 0x0001  # Binding request, Binding success: the interleaved message types (RFC 8489 5)
_BINDING_SUCCESS = 0x0101


def success_response(request: Message, source: Address, local: IceParameters, key: bytes | None = None) -> bytes:
    """Success with XOR-MAPPED-ADDRESS = the request's source, MESSAGE-INTEGRITY with the local password
    (`key`: its UTF-8 bytes, when the caller has them), FINGERPRINT (RFC 8445 7.3.1.1 end, RFC 8489 6.3.1)."""
    tid = request.transaction_id
    host, port = source
    if key is None:
        key = local.pwd.encode()
    if ":" in host:  # IPv6: the transaction id is part of the XOR (RFC 8489 14.2)
        body = encode_attributes([(Attr.XOR_MAPPED_ADDRESS, source)], tid)
    else:  # IPv4: XORed with the magic cookie only (RFC 8489 14.2)
        address = int.from_bytes(inet_pton(AF_INET, host), "big")
        body = _XOR_V4_TLV.pack(_XOR_MAPPED, 8, 0x01, port ^ (MAGIC_COOKIE >> 16), address ^ MAGIC_COOKIE)
    if request.method == _BINDING:
        return seal_short_term(_BINDING_SUCCESS, tid, body, key)
    return seal(request.method, MessageClass.SUCCESS, tid, body, integrity_key=key, fingerprint=True)


_XOR_MAPPED = int(Attr.XOR_MAPPED_ADDRESS)
_BINDING = int(Method.BINDING)


def error_response(
    request: Message, code: int, *, local: IceParameters | None = None, unknown: Sequence[int] = ()
) -> bytes:
    """An error response with FINGERPRINT, integrity-protected with the local password when given
    (never for 400/401, whose requests could not be authenticated, RFC 8489 6.3.4, 9.1.3)."""
    attributes: list[tuple[Attr | int, Any]] = []
    if unknown:
        attributes.append((Attr.UNKNOWN_ATTRIBUTES, list(unknown)))
    response = request.error_response(code, attributes=attributes)
    key = local.pwd.encode() if local is not None else None
    return response.encode(integrity_key=key, fingerprint=True)


def authenticate_request(request: Message, local: IceParameters) -> int | None:
    """Short-term credential check of a request (RFC 8445 7.3, RFC 8489 9.1.3): None if it passes, else the
    error code to answer with (400: no USERNAME/MESSAGE-INTEGRITY or not our ufrag, 401: bad integrity)."""
    fields = read_check(request)
    return _authenticate(fields[0], fields[6], local, request.verify_integrity(local.pwd.encode()))


def _authenticate(username: str | None, integrity: bool, local: IceParameters, verified: bool) -> int | None:
    """The error code for a check's USERNAME and MESSAGE-INTEGRITY (`integrity`: present; `verified`: it holds
    for the local password), or None when they pass (RFC 8489 9.1.3: 400 before 401)."""
    if username is None or not integrity:
        return 400
    ours, colon, _theirs = username.partition(":")
    if not colon or ours != local.ufrag:
        return 400
    if verified is not True:  # the verdict only: a stale caller passing the key fails closed
        return 401
    return None


CheckFields = tuple[str | None, int | None, int | None, int | None, bool, int | None, bool]
"""What `read_check` finds: USERNAME, PRIORITY, ICE-CONTROLLING, ICE-CONTROLLED, whether USE-CANDIDATE is
there, NOMINATION, whether MESSAGE-INTEGRITY(-SHA256) is there (None: absent)."""


def read_check(request: Message) -> CheckFields:
    """The attributes of a check that ICE acts on (RFC 8445 7.3), as decoded; of a repeated type the first
    counts, as with `Message.get`. A Binding request decoded by a compiled layout has them already."""
    fields: CheckFields | None = request._fields  # no cast(): a call on every check
    if fields is not None:
        return fields
    return read_fields(request.attributes)


def read_fields(attributes: list[tuple[Attr | int, Any]]) -> CheckFields:
    """`read_check` of an attribute list, in one pass over it."""
    fields: list[Any] = list(CHECK_FIELDS_EMPTY)
    slot_of = CHECK_FIELD_SLOTS.get
    for t, v in reversed(attributes):  # backwards: the first of a type is stored last
        i = slot_of(t)
        if i is not None:
            fields[i] = True if i == 4 or i == 6 else v  # USE-CANDIDATE and integrity: whether present
    return cast(CheckFields, tuple(fields))


def screen_request(request: Message, local: IceParameters) -> bytes | None:
    """The error response a check gets before any state changes, or None if it may be processed: 400/401
    (credentials, RFC 8489 9.1.3), 420 (unknown comprehension-required attributes, RFC 8489 6.3.1), 400
    (no PRIORITY, RFC 8445 7.2.2)."""
    return screen_check(request, read_check(request), local, request.verify_integrity(local.pwd.encode()))


def screen_check(request: Message, fields: CheckFields, local: IceParameters, verified: bool) -> bytes | None:
    """`screen_request` on the check's `read_check` fields, `verified` telling whether its integrity holds
    for the local password (`Message._verify_short_term`)."""
    code = _authenticate(fields[0], fields[6], local, verified)
    if code is not None:
        return error_response(request, code)
    unknown = request.unknown_required if request._unknown is None else request._unknown
    if unknown:
        return error_response(request, 420, local=local, unknown=unknown)
    if fields[1] is None:
        return error_response(request, 400, local=local)
    return None


class RoleConflict(enum.Enum):
    """What a role conflict in an incoming check calls for (RFC 8445 7.3.1.1)."""

    NONE = "none"
    SWITCH = "switch"  # take the other role, then answer the check
    REJECT = "reject"  # answer 487 Role Conflict


def role_conflict(request: Message, *, controlling: bool, tie_breaker: int) -> RoleConflict:
    """Compare tie-breakers when both sides claim the same role (RFC 8445 7.3.1.1)."""
    theirs = request.get(Attr.ICE_CONTROLLING if controlling else Attr.ICE_CONTROLLED)
    return roles_conflict(controlling, tie_breaker, theirs)


def roles_conflict(controlling: bool, tie_breaker: int, theirs: int | None) -> RoleConflict:
    """`role_conflict` given the tie-breaker of the role attribute the peer claims that is ours (None: it
    claims the other role, or none)."""
    if theirs is None:
        return RoleConflict.NONE
    if controlling:
        return RoleConflict.REJECT if tie_breaker >= theirs else RoleConflict.SWITCH
    return RoleConflict.SWITCH if tie_breaker >= theirs else RoleConflict.REJECT
