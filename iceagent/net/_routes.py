"""The default gateway from Linux's routing tables as /proc shows them (for OSNetwork.default_gateway).

/proc/net/route (IPv4: hex fields, the gateway little-endian) and /proc/net/ipv6_route (IPv6: 32 hex
digits per address). The default route is the one to 0/0 flagged UP and GATEWAY; the lowest metric wins.
Text that does not parse is skipped line by line (a malformed table gives None, never an exception).
"""

from __future__ import annotations

import ipaddress
import socket
import struct

__all__ = ["MAX_ROUTES", "default_gateway_v4", "default_gateway_v6", "read_default_gateway"]

RTF_UP = 0x1
RTF_GATEWAY = 0x2
#: Lines of a routing table looked at (a host with more routes than this has its default route first anyway).
MAX_ROUTES = 4096


def default_gateway_v4(text: str) -> str | None:
    """The IPv4 default gateway in /proc/net/route's `text`, or None."""
    best: tuple[int, str] | None = None
    for line in text.splitlines()[1 : MAX_ROUTES + 1]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            destination, gateway, flags, metric, mask = (int(fields[i], 16) for i in (1, 2, 3, 6, 7))
        except ValueError:
            continue
        if destination or mask or flags & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY or not 0 < gateway < 2**32:
            continue
        address = socket.inet_ntoa(struct.pack("<I", gateway))
        if best is None or metric < best[0]:
            best = (metric, address)
    return None if best is None else best[1]


def default_gateway_v6(text: str) -> str | None:
    """The IPv6 default gateway in /proc/net/ipv6_route's `text`, or None."""
    best: tuple[int, str] | None = None
    for line in text.splitlines()[:MAX_ROUTES]:
        fields = line.split()
        if len(fields) < 10 or len(fields[0]) != 32 or len(fields[4]) != 32:
            continue
        try:
            destination, prefix = int(fields[0], 16), int(fields[1], 16)
            nexthop, metric, flags = int(fields[4], 16), int(fields[5], 16), int(fields[8], 16)
        except ValueError:
            continue
        if destination or prefix or not nexthop or flags & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY:
            continue
        address = str(ipaddress.IPv6Address(nexthop))
        if best is None or metric < best[0]:
            best = (metric, address)
    return None if best is None else best[1]


def read_default_gateway(family: int) -> str | None:
    """The default gateway of IPv4 (`family` 4) or IPv6 (6) from /proc; None without one or without /proc."""
    if family not in (4, 6):
        raise ValueError(f"family must be 4 or 6, not {family!r}")
    path = "/proc/net/route" if family == 4 else "/proc/net/ipv6_route"
    try:
        with open(path, encoding="ascii", errors="replace") as table:
            text = table.read(1 << 20)
    except OSError:
        return None
    return default_gateway_v4(text) if family == 4 else default_gateway_v6(text)
