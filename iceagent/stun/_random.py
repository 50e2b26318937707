"""Pooled cryptographic random bytes for transaction ids (RFC 8489 5), ICE credentials and tie-breakers
(RFC 8445 5.3, 7.1.1).

Private to `iceagent.stun`; the public name is `iceagent.stun.message.random_bytes`.
"""

from __future__ import annotations

import os
import threading

__all__ = ["POOL", "random_bytes"]


class _RandomPool(threading.local):
    """Cryptographically random bytes from os.urandom, read 4 KiB at a time: a transaction id per
    check then costs a slice instead of a system call. One pool per thread; emptied in a forked child
    (which must not repeat its parent's bytes)."""

    def __init__(self) -> None:
        self.buf = b""
        self.pos = 0

    def take(self, n: int) -> bytes:
        # each attribute of a threading.local is looked up in the thread's dict: read once each, written once
        buf, pos = self.buf, self.pos
        if pos + n > len(buf):
            if n > 1024:
                return os.urandom(n)
            self.buf = buf = os.urandom(4096)
            pos = 0
        self.pos = pos + n
        return buf[pos : pos + n]


POOL = _RandomPool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: setattr(POOL, "buf", b""))


def random_bytes(n: int) -> bytes:
    """`n` cryptographically random bytes (os.urandom, pooled): transaction ids (RFC 8489 5), ICE credentials
    and tie-breakers (RFC 8445 5.3, 7.1.1)."""
    return POOL.take(n)
