"""The embedded TURN server's responses on the wire: signed successes, errors, LIFETIME seconds (RFC 8489 9.2.4).

Pure functions of `iceagent.turn.server.state`: no clock, no socket, no counters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ...stun.attributes import Attr
from ...stun.message import Message
from .auth import Authenticated

__all__ = ["error_response", "signed_success", "wire_seconds"]


def wire_seconds(seconds: float) -> int:
    """A duration as the whole seconds of LIFETIME (RFC 8656 18.2): at least 1 unless it is 0."""
    return 0 if seconds <= 0 else max(1, math.ceil(seconds - 1e-6))


def _software(software: str | None) -> list[tuple[Attr | int, Any]]:
    return [(Attr.SOFTWARE, software)] if software else []


def signed_success(
    request: Message,
    attributes: Sequence[tuple[Attr | int, Any]],
    auth: Authenticated,
    fingerprint: bool,
    software: str | None,
) -> bytes:
    """A success response signed with the request's credentials (RFC 8489 9.2.4), SOFTWARE last if set."""
    response = request.success_response([*attributes, *_software(software)])
    return response.encode(integrity_key=auth.key, integrity=auth.integrity, fingerprint=fingerprint)


def error_response(
    request: Message,
    code: int,
    reason: str,
    auth: Authenticated | None,
    fingerprint: bool,
    extra: Sequence[tuple[Attr | int, Any]],
    software: str | None,
) -> bytes:
    """An error response, signed when the request was authenticated (RFC 8489 9.2.4). Unauthenticated ones
    carry no SOFTWARE: a stranger gets no more bytes (amplification) and no fingerprint of the server."""
    if auth is None:
        return request.error_response(code, reason, extra).encode(fingerprint=fingerprint)
    response = request.error_response(code, reason, [*extra, *_software(software)])
    return response.encode(integrity_key=auth.key, integrity=auth.integrity, fingerprint=fingerprint)
