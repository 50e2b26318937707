"""Fresh ICE credentials (RFC 8445 5.3): a ufrag and password of random ice-chars."""

from __future__ import annotations

import string

from ..stun.message import random_bytes
from .candidate import IceParameters

__all__ = ["new_parameters", "random_ice_string"]

_ICE_CHARS = string.ascii_letters + string.digits + "+/"


def random_ice_string(n: int) -> str:
    """n uniformly random ice-chars (RFC 8445 5.3): 64 of them, so 6 random bits each."""
    return "".join([_ICE_CHARS[b & 63] for b in random_bytes(n)])


def new_parameters(pacing: int | None = None, *, lite: bool = False) -> IceParameters:
    """Fresh credentials: 8-char ufrag (>= 4 required) and 24-char pwd (>= 22), RFC 8445 5.3; `pacing` is
    the a=ice-pacing (ms) to signal, for a non-default Ta (RFC 8445 14.2, RFC 8839 4.4); `lite` the
    a=ice-lite of an ICE-lite agent (RFC 8445 2.5, RFC 8839 5.3)."""
    return IceParameters(ufrag=random_ice_string(8), pwd=random_ice_string(24), pacing=pacing, lite=lite)
