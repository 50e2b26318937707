"""IP address helpers: normalization, families, multicast, header sizes, OS-style errors, address pools."""

from __future__ import annotations

import errno
import functools
import ipaddress
import os

Address = tuple[str, int]

WILDCARD_V4 = "0.0.0.0"
WILDCARD_V6 = "::"
LOOPBACK_V4 = "127.0.0.1"
LOOPBACK_V6 = "::1"

UDP_HEADER = 8
"""Bytes of UDP header (RFC 768) counted against a link's MTU."""


@functools.lru_cache(maxsize=8192)
def normalize_ip(text: str) -> str:
    """The canonical (compressed) text of an IP literal; ValueError if `text` is not one."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).compressed
    except (ValueError, AttributeError):
        raise ValueError(f"{text!r} is not an IP address") from None


def is_ip_literal(text: str) -> bool:
    """True if `text` is an IPv4 or IPv6 literal."""
    try:
        normalize_ip(text)
    except ValueError:
        return False
    return True


def is_ipv6(ip: str) -> bool:
    """True for an IPv6 address (normalized text)."""
    return ":" in ip


def same_family(a: str, b: str) -> bool:
    """True if both addresses are IPv4 or both are IPv6."""
    return (":" in a) == (":" in b)


def wildcard_for(ip: str) -> str:
    """The wildcard address of `ip`'s family."""
    return WILDCARD_V6 if ":" in ip else WILDCARD_V4


def is_wildcard(ip: str) -> bool:
    """True for 0.0.0.0 and ::."""
    return ip in (WILDCARD_V4, WILDCARD_V6)


@functools.lru_cache(maxsize=4096)
def is_multicast(ip: str) -> bool:
    """True for 224.0.0.0/4 and ff00::/8."""
    return ipaddress.ip_address(ip).is_multicast


def ip_header_size(ip: str) -> int:
    """Bytes of IP header: 20 for IPv4 (RFC 791), 40 for IPv6 (RFC 8200)."""
    return 40 if ":" in ip else 20


def check_port(port: int) -> int:
    """Validate a port number (0-65535) as the OS does."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise OverflowError(f"port must be 0-65535, not {port!r}")
    return port


def os_error(code: int, detail: str) -> OSError:
    """An OSError with `code`, the OS's message for it and a detail, like the socket layer raises."""
    return OSError(code, f"{os.strerror(code)}: {detail}")


def addr_not_avail(address: str, host: str) -> OSError:
    """OSError(EADDRNOTAVAIL) for binding an address the host does not have."""
    return os_error(errno.EADDRNOTAVAIL, f"{address} is not an address of host {host!r}")


def addr_in_use(address: Address, host: str) -> OSError:
    """OSError(EADDRINUSE) for binding a port already bound."""
    return os_error(errno.EADDRINUSE, f"{address[0]}:{address[1]} is already bound on host {host!r}")


class AddressPool:
    """Hands out the host addresses of a subnet in order, skipping `reserve` at the start and those in use."""

    def __init__(self, network: str, *, reserve: int = 0) -> None:
        self.network = ipaddress.ip_network(network, strict=False)
        self.reserve = reserve
        self._next = 0

    @property
    def ipv6(self) -> bool:
        """True for an IPv6 pool."""
        return self.network.version == 6

    def __contains__(self, ip: str) -> bool:
        return ipaddress.ip_address(ip) in self.network

    def first(self) -> str:
        """The first host address (the conventional gateway, .1 or ::1)."""
        return (self.network.network_address + 1).compressed

    def take(self, used: set[str]) -> str:
        """The next host address not in `used` (ValueError when the pool is exhausted)."""
        base = self.network.network_address
        limit = self.network.num_addresses - (0 if self.ipv6 else 1)  # no IPv4 broadcast address
        while 1 + self.reserve + self._next < limit:
            candidate = (base + 1 + self.reserve + self._next).compressed
            self._next += 1
            if candidate not in used:
                return candidate
        raise ValueError(f"address pool {self.network} is exhausted")

    def __repr__(self) -> str:
        return f"AddressPool({str(self.network)!r})"
