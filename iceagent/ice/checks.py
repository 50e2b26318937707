"""Connectivity-check messages: Binding requests and their responses (RFC 8445 7.2.2, 7.3)."""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from typing import Any

from ..stun.attributes import Attr
from ..stun.message import Message, MessageClass, Method, encode_attributes, seal
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
) -> bytes:
    """A check: USERNAME rfrag:lfrag, PRIORITY, ICE-CONTROLLING/-CONTROLLED, optional USE-CANDIDATE,
    MESSAGE-INTEGRITY with the remote password, FINGERPRINT (RFC 8445 7.2.2)."""
    body = _check_body(f"{remote.ufrag}:{local.ufrag}", priority, controlling, tie_breaker, use_candidate)
    return seal(
        Method.BINDING, MessageClass.REQUEST, transaction_id, body, integrity_key=remote.pwd.encode(), fingerprint=True
    )


@functools.lru_cache(maxsize=8192)  # two entries per agent: thousands of agents per process fit
def _check_body(username: str, priority: int, controlling: bool, tie_breaker: int, use_candidate: bool) -> bytes:
    """The attributes of a check before integrity: the same for every check of a pair and role, so they are
    encoded once (none depends on the transaction id)."""
    attributes: list[tuple[Attr | int, Any]] = [
        (Attr.USERNAME, username),
        (Attr.PRIORITY, priority),
        (Attr.ICE_CONTROLLING if controlling else Attr.ICE_CONTROLLED, tie_breaker),
    ]
    if use_candidate:
        attributes.append((Attr.USE_CANDIDATE, None))
    return encode_attributes(attributes, b"")


def success_response(request: Message, source: Address, local: IceParameters) -> bytes:
    """Success with XOR-MAPPED-ADDRESS = the request's source, MESSAGE-INTEGRITY with the local password,
    FINGERPRINT (RFC 8445 7.3.1.1 end, RFC 8489 6.3.1)."""
    tid = request.transaction_id
    if ":" in source[0]:  # IPv6: the transaction id is part of the XOR (RFC 8489 14.2)
        body = encode_attributes([(Attr.XOR_MAPPED_ADDRESS, source)], tid)
    else:
        body = _xor_mapped_ipv4(source)
    return seal(request.method, MessageClass.SUCCESS, tid, body, integrity_key=local.pwd.encode(), fingerprint=True)


@functools.lru_cache(maxsize=4096)
def _xor_mapped_ipv4(source: Address) -> bytes:
    """XOR-MAPPED-ADDRESS of an IPv4 source: XORed with the magic cookie only, so it is encoded once."""
    return encode_attributes([(Attr.XOR_MAPPED_ADDRESS, source)], bytes(12))


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
