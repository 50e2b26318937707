"""What every protocol's answer must satisfy before its external address becomes a candidate."""

from __future__ import annotations

import ipaddress

from .errors import PortMapDecodeError


def external_address(text: str) -> str:
    """The gateway's external address as a normalized IP literal; PortMapDecodeError when it is not an
    address a peer could send to (unspecified: the gateway has none yet, RFC 6886 3.2; loopback, multicast)."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise PortMapDecodeError(f"external address {text[:60]!r} is not an IP address") from None
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_link_local:
        raise PortMapDecodeError(f"external address {ip} cannot receive from peers")
    return str(ip)
