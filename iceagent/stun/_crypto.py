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
from typing import Any

from .attributes import FINGERPRINT_XOR, MAGIC_COOKIE, Attr, PasswordAlgorithm

__all__ = [
    "HMAC_CACHE_SIZE",
    "SHA1_INNER",
    "SHA1_OUTER",
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
HMAC_CACHE_SIZE = 32768
"""Keys whose HMAC pads are kept: an agent's two passwords each, so 16 000 agents per process before the cache
empties and every key's pads are made again (about 500 bytes of OpenSSL hash state per key: 16 MiB at most).
At 8192, 6000 pairs in one process (12 000 agents, 24 000 keys) remade pads on most checks (7 % of the CPU of
their consent, bench/consent.py)."""
_HashFactory = Any  # hashlib.sha1 / hashlib.sha256 constructors
_Pads = tuple[Any, Any]  # the inner and outer hash states
SHA1_INNER: dict[bytes, Any] = {}
"""HMAC-SHA1 inner pad states by key, and `SHA1_OUTER` the outer ones: `Message.verify_integrity` and
`seal_short_term` read them inline (the hot path of every check), `sha1_pads` fills both on a miss. Two dicts
of hash states (objects the cyclic collector does not track), not one of (inner, outer) tuples: no GC-tracked
object per key (an agent's password each) for the collector to count and walk."""
SHA1_OUTER: dict[bytes, Any] = {}
_SHA256_PADS: dict[bytes, _Pads] = {}


def _pad_states(key: bytes, factory: _HashFactory) -> _Pads:
    """The inner and outer hash states of HMAC for `key` (RFC 2104 2)."""
    block = key if len(key) <= 64 else factory(key).digest()
    block = block.ljust(64, b"\x00")
    return factory(block.translate(_IPAD)), factory(block.translate(_OPAD))


def _pads(key: bytes, cache: dict[bytes, _Pads], factory: _HashFactory) -> _Pads:
    """The HMAC pad states of `key`, made once and cached in `cache`."""
    pads = _pad_states(key, factory)
    if len(cache) >= HMAC_CACHE_SIZE:
        cache.clear()
    cache[key] = pads
    return pads


def sha1_pads(key: bytes) -> _Pads:
    """The HMAC-SHA1 pad states of `key`, made and cached on a miss of `SHA1_INNER` / `SHA1_OUTER`."""
    inner, outer = pads = _pad_states(key, hashlib.sha1)
    if len(SHA1_INNER) >= HMAC_CACHE_SIZE:
        SHA1_INNER.clear()
        SHA1_OUTER.clear()
    SHA1_INNER[key] = inner
    SHA1_OUTER[key] = outer
    return pads


_sha1_inner_for, _sha1_outer_for = SHA1_INNER.get, SHA1_OUTER.get


def hmac_sha1(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA1 (RFC 2104), as MESSAGE-INTEGRITY uses it (RFC 8489 14.5), on the cached pad states."""
    inner, outer = _sha1_inner_for(key), _sha1_outer_for(key)
    if inner is None or outer is None:
        inner, outer = sha1_pads(key)
    return _finish(inner, outer, data)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104), as MESSAGE-INTEGRITY-SHA256 uses it (RFC 8489 14.6), on the cached pad states."""
    inner, outer = _SHA256_PADS.get(key) or _pads(key, _SHA256_PADS, hashlib.sha256)
    return _finish(inner, outer, data)


def _finish(inner: Any, outer: Any, data: bytes) -> bytes:
    """H(outer, H(inner, data)) from the key's pad states (RFC 2104 2)."""
    h = inner.copy()
    h.update(data)
    o = outer.copy()
    o.update(h.digest())
    return o.digest()  # type: ignore[no-any-return]

_HEADER_TID = struct.Struct("!HHI12s")
_FP_TLV = struct.Struct("!HHI")
_FP_TYPE = int(Attr.FINGERPRINT)
_MI_TYPE = int(Attr.MESSAGE_INTEGRITY)
_MAX_LENGTH = 0xFFFC  # the largest multiple of 4 the 16-bit length field can hold


def seal_short_term(mtype: int, transaction_id: bytes, body: bytes, key: bytes) -> bytes:
    """`seal` with MESSAGE-INTEGRITY (HMAC-SHA1 with `key`) and FINGERPRINT, the two every ICE check and
    answer carries (RFC 8445 7.2.2, 7.3.1.1; RFC 8489 14.5, 14.7), for a message type `mtype` already
    interleaved (RFC 8489 5). The hot path of every check: no option checks.
    Raises ValueError for more than 65535 bytes of attributes. `body` may be any bytes-like object."""
    if type(body) is not bytes:  # (the packers below take bytes; a memoryview or bytearray is copied)
        body = bytes(body)
    n = len(body) + 24
    if n > _MAX_LENGTH - 8:
        raise ValueError(f"message attributes are {n + 8} bytes, more than {_MAX_LENGTH}")
    inner, outer = _sha1_inner_for(key), _sha1_outer_for(key)  # hmac_sha1(key, ...), inline: once per check
    if inner is None or outer is None:  # and answer
        inner, outer = sha1_pads(key)
    layouts = _sealed_layout(n) or _sealed_layouts(n)
    h = inner.copy()
    h.update(layouts[0](mtype, n, MAGIC_COOKIE, transaction_id, body))
    o = outer.copy()
    o.update(h.digest())
    data: bytes = layouts[1](mtype, n + 8, MAGIC_COOKIE, transaction_id, body, _MI_TYPE, 20, o.digest())
    return data + _FP_TLV.pack(_FP_TYPE, 4, zlib.crc32(data) ^ FINGERPRINT_XOR)


_Packer = Any  # struct.Struct.pack
_SEALED: dict[int, tuple[_Packer, _Packer]] = {}
"""By `seal_short_term`'s `n` (the body's length + 24): packers of the header and body that MESSAGE-INTEGRITY
covers, and of the message up to FINGERPRINT. One pack each instead of a header pack and three concatenations;
ICE's checks and answers have a few lengths, so a few entries (emptied when `_SEALED_MAX` are held)."""
_SEALED_MAX = 64
_sealed_layout = _SEALED.get


def _sealed_layouts(n: int) -> tuple[_Packer, _Packer]:
    """`_SEALED[n]`, made on a miss."""
    size = n - 24
    packers = (struct.Struct(f"!HHI12s{size}s").pack, struct.Struct(f"!HHI12s{size}sHH20s").pack)
    if len(_SEALED) >= _SEALED_MAX:
        _SEALED.clear()
    _SEALED[n] = packers
    return packers


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
