"""The TURN client's exceptions (RFC 8656 19): each says what failed and what the user can do about it."""

from __future__ import annotations

from ..errors import IceError

__all__ = [
    "TurnAllocationLost",
    "TurnAllocationMismatch",
    "TurnAuthenticationError",
    "TurnConnectionError",
    "TurnError",
    "TurnForbidden",
    "TurnInsufficientCapacity",
    "TurnQuotaReached",
    "TurnRedirectError",
    "TurnServerError",
    "TurnTimeout",
    "TurnUnsupported",
    "TurnUnsupportedFamily",
]


class TurnError(IceError):
    """A TURN server refused or failed a request (RFC 8656 19); subclasses say which and what to do."""


class TurnTimeout(TurnError):
    """No answer from the TURN server within the STUN retransmission schedule (RFC 8489 6.2)."""


class TurnConnectionError(TurnError):
    """The connection to the TURN server could not be opened or broke (TCP refused, TLS failure, ...)."""


class TurnAuthenticationError(TurnError):
    """The server rejected the long-term credentials: 401 after they were sent, or 441 (RFC 8656 7.3)."""


class TurnForbidden(TurnError):
    """403 Forbidden: the server refuses this request, e.g. a permission to a loopback peer (RFC 8656 9)."""


class TurnAllocationMismatch(TurnError):
    """437 Allocation Mismatch: no such allocation, or one already exists for this 5-tuple (RFC 8656 7.2)."""


class TurnQuotaReached(TurnError):
    """486 Allocation Quota Reached: this user has as many allocations as the server allows (RFC 8656 7.2)."""


class TurnInsufficientCapacity(TurnError):
    """508 Insufficient Capacity: the server has no relay address left (RFC 8656 7.2)."""


class TurnUnsupported(TurnError):
    """420, 440, 442, 443: the server does not support what was asked (RFC 8656 7.2, 19)."""


class TurnUnsupportedFamily(TurnUnsupported):
    """440 Address Family not Supported: the server does not relay the family asked for (RFC 8656 7.2)."""


class TurnRedirectError(TurnError):
    """300 Try Alternate without a usable ALTERNATE-SERVER, or too many redirections (RFC 8489 10)."""


class TurnServerError(TurnError):
    """Any other error response (400, 500, ...), or a malformed success response."""


class TurnAllocationLost(TurnError):
    """The allocation ended before it was released: it expired, or the server no longer knows it."""


def error_from_response(
    code: int,
    reason: str,
    *,
    server_name: str,
    request: str,
    peer_request: bool = False,
    allocate: bool = False,
    username: str = "",
    family: str = "ipv4",
) -> TurnError:
    """The specific TurnError for an error response to `request` (RFC 8656 19), with what to do about it."""
    head = f"{server_name} refused {request}: {code} {reason}".rstrip()
    if code == 403:
        hint = (
            "the server does not relay to this peer address (coturn refuses loopback and private peers "
            "unless started with --allow-loopback-peers, and any peer listed with --denied-peer-ip)"
            if peer_request
            else "the server refuses this user or client address"
        )
        return TurnForbidden(f"{head}: {hint}")
    if code == 437:
        if allocate:
            return TurnAllocationMismatch(
                f"{head}: the server still holds an allocation for this client address and port "
                "(a previous run did not release it); allocate again from a new local port"
            )
        return TurnAllocationMismatch(f"{head}: the server no longer knows this allocation (it expired)")
    if code == 441:
        return TurnAuthenticationError(
            f"{head}: wrong credentials for user {username!r}: check IceServer(username=..., credential=...)"
        )
    if code == 486:
        return TurnQuotaReached(
            f"{head}: user {username!r} already has as many allocations as the server allows; "
            "close other sessions or raise the quota (coturn: --user-quota / --total-quota)"
        )
    if code == 508:
        return TurnInsufficientCapacity(
            f"{head}: the server has no relay port left; try again later or use another TURN server "
            "(coturn: widen --min-port/--max-port)"
        )
    if code == 440:
        return TurnUnsupportedFamily(
            f"{head}: the server cannot relay {family} (RFC 8656 7.2); ask for the other family"
        )
    if code == 443:
        return TurnUnsupported(f"{head}: the peer's address family differs from the relayed address's (RFC 8656 10.2)")
    if code in (420, 442):
        return TurnUnsupported(f"{head}: the server does not support this request (RFC 8656 19)")
    return TurnServerError(head)
