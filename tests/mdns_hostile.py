"""Hostile mDNS packets for the parser's work bounds (RFC 1035 4.1.4 compression), and a work counter."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from iceagent.mdns.wire import MAX_MESSAGE

HEADER_SIZE = 12
CHAIN_START = HEADER_SIZE + 3 + 10  # after the "x" name and the fixed fields of the record carrying the chain
A_RECORD_SIZE = 2 + 10 + 4  # a pointer name, type/class/ttl/rdlength, an IPv4 address


def pointer(offset: int) -> bytes:
    return (0xC000 | offset).to_bytes(2, "big")


def chain_packet(depth: int, size: int = MAX_MESSAGE) -> bytes:
    """A response of at most `size` bytes: a first answer named "x" whose rdata (an unknown type) is a chain
    of `depth` compression pointers, each to the one before (the first to "x"), then as many A records as
    fit, each named by a pointer to the chain's tail: a naive decoder follows the whole chain per record."""
    chain = bytearray(pointer(HEADER_SIZE))
    for i in range(1, depth):
        chain += pointer(CHAIN_START + 2 * (i - 1))
    tail = CHAIN_START + 2 * (depth - 1)
    first = b"\x01x\x00" + bytes.fromhex("ff00" "0001" "00000078") + len(chain).to_bytes(2, "big") + bytes(chain)
    count = (size - HEADER_SIZE - len(first)) // A_RECORD_SIZE
    record = pointer(tail) + bytes.fromhex("0001" "8001" "00000078" "0004" "0a000001")
    header = bytes.fromhex("0000" "8400" "0000") + (1 + count).to_bytes(2, "big") + bytes(4)
    return header + first + record * count


@contextmanager
def counting_calls() -> Iterator[Callable[[], int]]:
    """Count Python and C function calls made while the block runs (a measure of work, not of time)."""
    calls = 0

    def profile(_frame: object, event: str, _arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profile)
    try:
        yield lambda: calls
    finally:
        sys.setprofile(None)


def long_name_packet(size: int = MAX_MESSAGE) -> bytes:
    """A response: a first A record named by 127 one-letter labels (255 octets), then as many A records as
    fit, each named by a pointer to one of that name's suffixes (a naive decoder reads up to 127 labels
    per record)."""
    fields = bytes.fromhex("0001" "0001" "00000078" "0004" "0a000001")
    body = b"\x01a" * 127 + b"\x00" + fields
    count = (size - HEADER_SIZE - len(body)) // A_RECORD_SIZE
    body += b"".join(pointer(HEADER_SIZE + 2 * (i % 127)) + fields for i in range(count))
    return bytes.fromhex("0000" "8400" "0000") + (1 + count).to_bytes(2, "big") + bytes(4) + body
