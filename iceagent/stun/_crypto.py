"""HMAC (RFC 2104) with the key pads cached, for MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256
(RFC 8489 14.5, 14.6), and the sealing of a short-term-authenticated message (MESSAGE-INTEGRITY, FINGERPRINT).

hmac.digest() re-derives the key schedule on every call; an ICE agent signs and checks many messages with
the same few keys, so the hash states after ipad/opad are kept per key and copied instead. Private to
`iceagent.stun`: `message.py` signs and checks with these, and this module never imports it.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from collections.abc import Callable
from typing import Any

from .attributes import FINGERPRINT_XOR, MAGIC_COOKIE, Attr, PasswordAlgorithm

__all__ = [
    "HMAC_CACHE_SIZE",
    "SHA1_PADS",
    "compare_digest",
    "hmac_sha1",
    "hmac_sha256",
    "long_term_key",
    "seal_short_term",
    "sha1_pads",
    "userhash",
]

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

_HEADER_TID = struct.Struct("!HHI12s")
_MI_HDR = struct.pack("!HH", Attr.MESSAGE_INTEGRITY, 20)
_FP_TLV = struct.Struct("!HHI")
_FP_TYPE = int(Attr.FINGERPRINT)
_MAX_LENGTH = 0xFFFC  # the largest multiple of 4 the 16-bit length field can hold


def seal_short_term(mtype: int, transaction_id: bytes, body: bytes, key: bytes) -> bytes:
    """`seal` with MESSAGE-INTEGRITY (HMAC-SHA1 with `key`) and FINGERPRINT, the two every ICE check and
    answer carries (RFC 8445 7.2.2, 7.3.1.1; RFC 8489 14.5, 14.7), for a message type `mtype` already
    interleaved (RFC 8489 5). The hot path of every check: no option checks.
    Raises ValueError for more than 65535 bytes of attributes."""
    n = len(body) + 24
    if n > _MAX_LENGTH - 8:
        raise ValueError(f"message attributes are {n + 8} bytes, more than {_MAX_LENGTH}")
    inner, outer = SHA1_PADS.get(key) or sha1_pads(key)  # hmac_sha1(key, ...), inline: once per check and answer
    h = inner.copy()
    h.update(_HEADER_TID.pack(mtype, n, MAGIC_COOKIE, transaction_id) + body)
    o = outer.copy()
    o.update(h.digest())
    data: bytes = _HEADER_TID.pack(mtype, n + 8, MAGIC_COOKIE, transaction_id) + body + _MI_HDR + o.digest()
    return data + _FP_TLV.pack(_FP_TYPE, 4, zlib.crc32(data) ^ FINGERPRINT_XOR)


def long_term_key(username: str, realm: str, password: str, algorithm: str | int = "md5") -> bytes:
    """The long-term credential key (RFC 8489 9.2.2): MD5(username ":" realm ":" password), or SHA-256 of the
    same with `algorithm="sha256"` (PASSWORD-ALGORITHM SHA-256, RFC 8489 18.5.1). Strings are used as UTF-8,
    already SASLprep/OpaqueString-processed by the caller."""
    if algorithm in ("md5", PasswordAlgorithm.MD5):
        name = "md5"
    elif algorithm in ("sha256", PasswordAlgorithm.SHA256):
        name = "sha256"
    else:
        raise ValueError(f"unknown password algorithm {algorithm!r}")
    return hashlib.new(name, f"{username}:{realm}:{password}".encode()).digest()


def userhash(username: str, realm: str) -> bytes:
    """The USERHASH value: SHA-256(username ":" realm) (RFC 8489 14.4)."""
    return hashlib.sha256(f"{username}:{realm}".encode()).digest()
