"""Which sources are on the local link (RFC 6762 11 "Source Address Check", 5.5): mDNS answers and
queries from anywhere else are ignored, so a host beyond a router can neither forge answers (sent by
unicast to port 5353) nor learn our names' addresses with unicast queries.

The Network seam cannot show a datagram's IP TTL (the other test of RFC 6762 11: TTL 255) or its
destination address, so the test is the source address: on-link when it is one of ours, in a subnet
of one of our interfaces, link-local (169.254/16, fe80::/10) or loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from ..net.base import Interface

__all__ = ["LocalLink"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class LocalLink:
    """The subnets of a host's interfaces. A Network that reports no subnet (`Interface.networks` empty
    on every non-loopback interface) cannot tell: then every source counts as on-link, as before."""

    def __init__(self, interfaces: Sequence[Interface]) -> None:
        self.networks: list[IPNetwork] = []
        self.known = any(iface.networks for iface in interfaces if not iface.loopback)
        for iface in interfaces:
            for text in (*iface.networks, *iface.addresses):
                try:
                    network = ipaddress.ip_network(text.split("%", 1)[0], strict=False)
                except ValueError:
                    continue
                if network not in self.networks:
                    self.networks.append(network)

    def __contains__(self, address: str) -> bool:
        """True if `address` (a datagram's source) is on a link of this host (RFC 6762 11)."""
        if not self.known:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if ip.is_link_local or ip.is_loopback:
            return True
        return any(ip in network for network in self.networks)
