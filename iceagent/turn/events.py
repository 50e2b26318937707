"""What the sans-IO TURN client reports (RFC 8656 7-12): small immutable events, and the allocation states."""

from __future__ import annotations

import enum

import attrs

from ..net.base import Address
from .errors import TurnError

__all__ = [
    "AllocateFailed",
    "Allocated",
    "AllocationLost",
    "AllocationState",
    "ChannelBindFailed",
    "ChannelBound",
    "PermissionFailed",
    "PermissionInstalled",
    "Redirected",
    "Refreshed",
    "Released",
    "TurnEvent",
]


@attrs.frozen
class Allocated:
    """The Allocate request succeeded (RFC 8656 7.3)."""

    relayed_address: Address
    mapped_address: Address | None
    lifetime: int


@attrs.frozen
class AllocateFailed:
    """The Allocate request failed for good (RFC 8656 7.3); `error` says why and what to do."""

    error: TurnError


@attrs.frozen
class Redirected:
    """300 Try Alternate: allocate on `server` instead, checking TLS names against `domain` (RFC 8489 10)."""

    server: Address
    domain: str | None


@attrs.frozen
class Refreshed:
    """A Refresh request succeeded; the allocation now lasts `lifetime` seconds (RFC 8656 8)."""

    lifetime: int


@attrs.frozen
class AllocationLost:
    """The allocation is gone (expired, or 437 on Refresh); nothing more can be relayed (RFC 8656 8)."""

    error: TurnError


@attrs.frozen
class Released:
    """`deallocate` finished: the server confirmed, or gave up waiting (`error` set) (RFC 8656 8)."""

    error: TurnError | None = None


@attrs.frozen
class PermissionInstalled:
    """A CreatePermission for `ip` succeeded (or was refreshed) (RFC 8656 10)."""

    ip: str


@attrs.frozen
class PermissionFailed:
    """A CreatePermission for `ip` failed; data for it is dropped until it is asked again (RFC 8656 10)."""

    ip: str
    error: TurnError


@attrs.frozen
class ChannelBound:
    """A ChannelBind succeeded (or was refreshed): ChannelData on `channel` reaches `peer` (RFC 8656 12)."""

    peer: Address
    channel: int


@attrs.frozen
class ChannelBindFailed:
    """A ChannelBind failed; data for `peer` keeps going in Send indications (RFC 8656 12)."""

    peer: Address
    channel: int
    error: TurnError


TurnEvent = (
    Allocated
    | AllocateFailed
    | Redirected
    | Refreshed
    | AllocationLost
    | Released
    | PermissionInstalled
    | PermissionFailed
    | ChannelBound
    | ChannelBindFailed
)


class AllocationState(enum.Enum):
    """Where the allocation is (RFC 8656 7, 8)."""

    NEW = "new"
    ALLOCATING = "allocating"
    ALLOCATED = "allocated"
    DEALLOCATING = "deallocating"
    RELEASED = "released"
    FAILED = "failed"
    LOST = "lost"
