"""Connectivity-check messages: Binding requests and their responses (RFC 8445 7.2.2, 7.3)."""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from socket import AF_INET, inet_pton
from typing import Any

from ..stun.attributes import Attr
from ..stun.message import MAGIC_COOKIE, Message, MessageClass, Method, encode_attributes, seal
from .candidate import IceParameters

__all__ = [
    "RoleConflict",
    "authenticate_request",
    "check_request",
    "error_response",
    "role_conflict",
    "screen_request",
    "success_response",
]

Address = tuple[str, int]


def check_request(
    *,
    transaction_id: bytes,
    local: IceParameters,
    remote: IceParameters,
    priority: int,
    controlling: bool,
    tie_breaker: int,
    use_candidate: bool = False,
    nomination: int | None = None,
) -> bytes:
    """A check: USERNAME rfrag:lfrag, PRIORITY, ICE-CONTROLLING/-CONTROLLED, optional USE-CANDIDATE,
    optional NOMINATION (renomination negotiated: draft-thatcher-ice-renomination 4), MESSAGE-INTEGRITY
    with the remote password, FINGERPRINT (RFC 8445 7.2.2)."""
    body = _check_body(f"{remote.ufrag}:{local.ufrag}", priority, controlling, tie_breaker, use_candidate)
    if nomination is not None:
        body += _PRIORITY_TLV.pack(_NOMINATION, 4, nomination)
    return seal(
        Method.BINDING, MessageClass.REQUEST, transaction_id, body, integrity_key=remote.pwd.encode(), fingerprint=True
    )


def _check_body(username: str, priority: int, controlling: bool, tie_breaker: int, use_candidate: bool) -> bytes:
    """The attributes of a check before integrity, packed directly: every agent sends its first checks
    once, so this is a hot path that a generic encoder or a cache would only slow down (the generic
    encoder gives the same bytes: tests/test_checks.py)."""
    user = username.encode()
    n = len(user)
    if n > 0xFFFF:  # as the generic encoder (ufrags are bounded long before: RFC 8445 5.3)
        raise ValueError(f"cannot encode USERNAME: attribute value is {n} bytes, more than 65535")
    body = _TLV.pack(_USERNAME, n) + user + b"\x00" * (-n & 3) + _PRIORITY_TLV.pack(_PRIORITY, 4, priority)
    body += _ROLE_TLV.pack(_CONTROLLING if controlling else _CONTROLLED, 8, tie_breaker)
    return body + _USE_CANDIDATE if use_candidate else body


_TLV = struct.Struct("!HH")
_PRIORITY_TLV = struct.Struct("!HHI")
_ROLE_TLV = struct.Struct("!HHQ")
_XOR_V4_TLV = struct.Struct("!HHxBHI")
_USERNAME, _PRIORITY = int(Attr.USERNAME), int(Attr.PRIORITY)
_CONTROLLING, _CONTROLLED = int(Attr.ICE_CONTROLLING), int(Attr.ICE_CONTROLLED)
_USE_CANDIDATE = _TLV.pack(Attr.USE_CANDIDATE, 0)
_NOMINATION = int(Attr.NOMINATION)


def success_response(request: Message, source: Address, local: IceParameters) -> bytes:
    """Success with XOR-MAPPED-ADDRESS = the request's source, MESSAGE-INTEGRITY with the local password,
    FINGERPRINT (RFC 8445 7.3.1.1 end, RFC 8489 6.3.1)."""
    tid = request.transaction_id
    if ":" in source[0]:  # IPv6: the transaction id is part of the XOR (RFC 8489 14.2)
        body = encode_attributes([(Attr.XOR_MAPPED_ADDRESS, source)], tid)
    else:
        body = _xor_mapped_ipv4(source)
    return seal(request.method, MessageClass.SUCCESS, tid, body, integrity_key=local.pwd.encode(), fingerprint=True)


def _xor_mapped_ipv4(source: Address) -> bytes:
    """XOR-MAPPED-ADDRESS of an IPv4 source (RFC 8489 14.2): XORed with the magic cookie only."""
    host, port = source
    address = int.from_bytes(inet_pton(AF_INET, host), "big")
    return _XOR_V4_TLV.pack(_XOR_MAPPED, 8, 0x01, port ^ (MAGIC_COOKIE >> 16), address ^ MAGIC_COOKIE)


_XOR_MAPPED = int(Attr.XOR_MAPPED_ADDRESS)


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
    username = request.get(Attr.USERNAME)
    if username is None or (Attr.MESSAGE_INTEGRITY not in request and Attr.MESSAGE_INTEGRITY_SHA256 not in request):
        return 400
    ours, colon, _theirs = username.partition(":")
    if not colon or ours != local.ufrag:
        return 400
    if not request.verify_integrity(local.pwd.encode()):
        return 401
    return None


def screen_request(request: Message, local: IceParameters) -> bytes | None:
    """The error response a check gets before any state changes, or None if it may be processed: 400/401
    (credentials, RFC 8489 9.1.3), 420 (unknown comprehension-required attributes, RFC 8489 6.3.1), 400
    (no PRIORITY, RFC 8445 7.2.2)."""
    code = authenticate_request(request, local)
    if code is not None:
        return error_response(request, code)
    if request.unknown_required:
        return error_response(request, 420, local=local, unknown=request.unknown_required)
    if request.get(Attr.PRIORITY) is None:
        return error_response(request, 400, local=local)
    return None


class RoleConflict(enum.Enum):
    """What a role conflict in an incoming check calls for (RFC 8445 7.3.1.1)."""

    NONE = "none"
    SWITCH = "switch"  # take the other role, then answer the check
    REJECT = "reject"  # answer 487 Role Conflict


def role_conflict(request: Message, *, controlling: bool, tie_breaker: int) -> RoleConflict:
    """Compare tie-breakers when both sides claim the same role (RFC 8445 7.3.1.1)."""
    if controlling:
        theirs = request.get(Attr.ICE_CONTROLLING)
        if theirs is None:
            return RoleConflict.NONE
        return RoleConflict.REJECT if tie_breaker >= theirs else RoleConflict.SWITCH
    theirs = request.get(Attr.ICE_CONTROLLED)
    if theirs is None:
        return RoleConflict.NONE
    return RoleConflict.SWITCH if tie_breaker >= theirs else RoleConflict.REJECT
