"""A router's port-mapping server, as a home router runs one on its LAN address, UDP 5351: PCP MAP
(RFC 6887 11) and NAT-PMP (RFC 6886 3), or NAT-PMP alone (a PCP request then gets the version-0
"Unsupported Version" answer, RFC 6886 9). A granted mapping is a forward in the router's NAT table:
endpoint-independent and unfiltered for its lifetime (RFC 6887 11.1), whatever the NAT's behaviour.

Opt-in: `router.port_mapping = "pcp"` (PCP and NAT-PMP) or `"natpmp"`; None (the default) answers nothing.
Only what the tests need: UDP mappings, no options, no THIRD_PARTY; requests are validated and a
malformed one is dropped (counted in `router.drops["portmap"]`).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import TYPE_CHECKING

from .addresses import Address

if TYPE_CHECKING:
    from .nat import NatTable

PORT = 5351
MODES = ("pcp", "natpmp")
#: Longest lifetime granted (seconds); a longer request gets this (RFC 6887 15: the server may shorten).
MAX_LIFETIME = 3600


def _ip16(ip: str) -> bytes:
    packed = ipaddress.ip_address(ip).packed
    return b"\x00" * 10 + b"\xff\xff" + packed if len(packed) == 4 else packed


class PortMapServer:
    """Answers the requests of one router's LAN (sans-IO: `answer` takes the request and `now`)."""

    def __init__(self, mode: str, table: NatTable, public_ip: str, started: float) -> None:
        if mode not in MODES:
            raise ValueError(f"port_mapping must be one of {MODES} or None, not {mode!r}")
        self.mode = mode
        self.table = table
        self.public_ip = public_ip
        self.started = started
        #: requests answered, by kind ("pcp-map", "pcp-delete", "natpmp-address", "natpmp-map", ...)
        self.requests: dict[str, int] = {}

    def _count(self, kind: str) -> None:
        self.requests[kind] = self.requests.get(kind, 0) + 1

    def _epoch(self, now: float) -> int:
        return int(now - self.started)

    def answer(self, payload: bytes, client: Address, now: float) -> bytes | None:
        """The response to a request from `client`, or None to drop it."""
        if len(payload) < 2:
            return None
        if payload[0] == 0:
            return self._natpmp(payload, client, now)
        if self.mode == "natpmp" or payload[0] != 2:
            self._count("unsupported-version")
            return struct.pack("!BBHI", 0, 128 + (payload[1] & 0x7F), 1, self._epoch(now))
        return self._pcp(payload, client, now)

    def _map(self, internal: Address, suggested: int, lifetime: int, now: float) -> int | None:
        """Make, renew or (lifetime 0) delete the forward of `internal`; the external port, None if none."""
        if lifetime == 0:
            self.table.remove_forward("udp", internal)
            return 0
        lifetime = min(lifetime, MAX_LIFETIME)
        mapping = self.table.forward("udp", internal, suggested, now + lifetime, now)
        return None if mapping is None else mapping.external[1]

    def _natpmp(self, payload: bytes, client: Address, now: float) -> bytes | None:
        epoch = self._epoch(now)
        if payload[1] == 0 and len(payload) == 2:
            self._count("natpmp-address")
            return struct.pack("!BBHI", 0, 128, 0, epoch) + ipaddress.IPv4Address(self.public_ip).packed
        if payload[1] != 1 or len(payload) != 12:
            return None
        _, _, _, internal_port, suggested, lifetime = struct.unpack("!BBHHHI", payload)
        self._count("natpmp-delete" if lifetime == 0 else "natpmp-map")
        external = self._map((client[0], internal_port), suggested, lifetime, now)
        if external is None:
            return struct.pack("!BBHIHHI", 0, 129, 4, epoch, internal_port, 0, 0)  # Out of resources
        return struct.pack("!BBHIHHI", 0, 129, 0, epoch, internal_port, external, min(lifetime, MAX_LIFETIME))

    def _pcp(self, payload: bytes, client: Address, now: float) -> bytes | None:
        if len(payload) < 60 or len(payload) > 1100 or len(payload) % 4 or payload[1] != 1:
            return None
        lifetime = struct.unpack_from("!I", payload, 4)[0]
        if payload[8:24] != _ip16(client[0]):
            result = 12  # ADDRESS_MISMATCH (RFC 6887 8.3... the NAT rewrote the source)
        else:
            result = 0
        nonce = payload[24:36]
        protocol, internal_port, suggested = struct.unpack_from("!B3xHH", payload, 36)
        epoch = self._epoch(now)
        external = 0
        granted = 0
        if result == 0:
            self._count("pcp-delete" if lifetime == 0 else "pcp-map")
            port = self._map((client[0], internal_port), suggested, lifetime, now)
            if port is None:
                result = 8  # NO_RESOURCES
            else:
                external, granted = port, min(lifetime, MAX_LIFETIME)
        header = struct.pack("!BBBBII", 2, 0x81, 0, result, granted, epoch) + b"\x00" * 12
        body = nonce + struct.pack("!B3xHH", protocol, internal_port, external) + _ip16(self.public_ip)
        return header + body
