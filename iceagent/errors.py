"""The exception hierarchy: every error the agent raises on purpose is an IceError."""

from __future__ import annotations

import errno


class IceError(Exception):
    """Base class of every error raised by iceagent on purpose."""


class IceFailed(IceError):
    """ICE could not establish (or lost) connectivity: every pair failed, or consent expired (RFC 8445 8.1.2)."""


class CandidateParseError(IceError, ValueError):
    """An `a=candidate` line does not follow the RFC 8839 5.1 grammar; the message names the bad token."""


class IceServerError(IceError, ValueError):
    """A `stun:`/`turn:` URI or an IceServer entry is malformed (RFC 7064, RFC 7065)."""


class StunTimeout(IceError):
    """A STUN transaction got no response within its retransmission schedule (RFC 8489 6.2.1)."""


class PortRangeExhausted(IceError, OSError):
    """No port of `open_agent(port_range=(lo, hi))` was free on an address: the message names the range, the
    address and the protocol. An `OSError` (EADDRINUSE) too, so code that handles a failed bind handles it."""

    def __init__(self, message: str) -> None:
        OSError.__init__(self, errno.EADDRINUSE, message)

    def __str__(self) -> str:
        return str(self.strerror)
