"""HMAC (RFC 2104) with the key pads cached, for MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256
(RFC 8489 14.5, 14.6).

hmac.digest() re-derives the key schedule on every call; an ICE agent signs and checks many messages with
the same few keys, so the hash states after ipad/opad are kept per key and copied instead. Private to
`iceagent.stun`: `message.py` signs and checks with these, and this module never imports it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

__all__ = ["HMAC_CACHE_SIZE", "SHA1_PADS", "compare_digest", "hmac_sha1", "hmac_sha256", "sha1_pads"]

compare_digest = hmac.compare_digest
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
HMAC_CACHE_SIZE = 8192
"""Keys whose HMAC pads are kept: an agent's two passwords each, for thousands of agents per process."""
_HashFactory = Any  # hashlib.sha1 / hashlib.sha256 constructors
_Pads = tuple[Any, Any]  # the inner and outer hash states
SHA1_PADS: dict[bytes, _Pads] = {}
"""HMAC-SHA1 pad states by key: `Message.verify_integrity` reads it inline (the hot path of every check),
`sha1_pads` fills it on a miss."""
_SHA256_PADS: dict[bytes, _Pads] = {}


def _pads(key: bytes, cache: dict[bytes, _Pads], factory: _HashFactory) -> _Pads:
    """The inner and outer hash states of HMAC for `key` (RFC 2104 2), made once and cached."""
    block = key if len(key) <= 64 else factory(key).digest()
    block = block.ljust(64, b"\x00")
    pads = (factory(block.translate(_IPAD)), factory(block.translate(_OPAD)))
    if len(cache) >= HMAC_CACHE_SIZE:
        cache.clear()
    cache[key] = pads
    return pads


def sha1_pads(key: bytes) -> _Pads:
    """The HMAC-SHA1 pad states of `key`, made and cached on a miss of `SHA1_PADS`."""
    return _pads(key, SHA1_PADS, hashlib.sha1)


def _cached_hmac(cache: dict[bytes, _Pads], factory: _HashFactory) -> Callable[[bytes, bytes], bytes]:
    """HMAC(key, data) over `factory`, from the key's pad states kept in `cache`: H(opad-state, H(ipad-state,
    data)) (RFC 2104 2). A closure, not a shared helper, so that a MAC costs one Python call."""

    def mac(key: bytes, data: bytes) -> bytes:
        inner, outer = cache.get(key) or _pads(key, cache, factory)
        h = inner.copy()
        h.update(data)
        o = outer.copy()
        o.update(h.digest())
        return o.digest()  # type: ignore[no-any-return]

    return mac


hmac_sha1 = _cached_hmac(SHA1_PADS, hashlib.sha1)
"""HMAC-SHA1 (RFC 2104), as MESSAGE-INTEGRITY uses it (RFC 8489 14.5)."""
hmac_sha256 = _cached_hmac(_SHA256_PADS, hashlib.sha256)
"""HMAC-SHA256 (RFC 2104), as MESSAGE-INTEGRITY-SHA256 uses it (RFC 8489 14.6)."""
