"""Opening the embedded TURN server's sockets: listen addresses, relay IPs, UDP listeners paired with TCP ones.

Helpers of `bind_turn_server` (`iceagent.turn.server.io`); the relay IP follows RFC 8656 7.2. They reach
the network only through the `Network` seam.
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Sequence

from ...net.base import Address, Network, TcpListener, UdpSocket
from ...uri import parse_host_port

__all__ = ["bind_listeners", "bind_relay", "parse_address", "relay_ips"]

_BIND_ATTEMPTS = 20  # port 0 with TCP too: retries when the UDP port is taken for TCP
_EVEN_PORT_ATTEMPTS = 16  # EVEN-PORT: binds tried until the kernel hands out an even port (RFC 8656 7.2)


def parse_address(address: str | Address) -> Address:
    """`"IP:PORT"`, `"[IPv6]:PORT"` or (ip, port) as (ip, port); ValueError for a host name."""
    host, port = parse_host_port(address, 3478) if isinstance(address, str) else (str(address[0]), int(address[1]))
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"the TURN server listens on IP addresses, not {host!r}") from None
    return host, port


def relay_ips(listen: list[Address], relay_address: str | Sequence[str] | None) -> dict[int, str]:
    """One relay IP per IP version: the ones given, else the listening IPs (RFC 8656 7.2)."""
    if relay_address is None:
        candidates = [host for host, _ in listen]
    elif isinstance(relay_address, str):
        candidates = [relay_address]
    else:
        candidates = list(relay_address)
    out: dict[int, str] = {}
    for host in candidates:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"relay address {host!r} is not an IP address") from None
        if ip.is_unspecified:
            if relay_address is None:
                continue
            raise ValueError(f"relay address {host} is a wildcard; XOR-RELAYED-ADDRESS needs a specific IP")
        out.setdefault(ip.version, str(ip))
    if not out:
        raise ValueError("the TURN server listens on a wildcard address: give relay_address (--relay), a specific IP")
    return out


async def bind_listeners(network: Network, host: str, port: int, tcp: bool) -> tuple[UdpSocket, TcpListener | None]:
    """A UDP socket and, with `tcp`, a TCP listener on the same port (retried when port 0 lands on a taken one)."""
    attempts = _BIND_ATTEMPTS if tcp and port == 0 else 1
    for attempt in range(attempts):
        sock = await network.bind_udp(host, port)
        if not tcp:
            return sock, None
        try:
            return sock, await network.listen_tcp(host, sock.local_address[1])
        except OSError as e:
            sock.close()
            if e.errno != errno.EADDRINUSE or attempt == attempts - 1:
                raise
        except BaseException:
            sock.close()
            raise
    raise AssertionError("unreachable")


async def bind_relay(network: Network, host: str, *, even: bool) -> UdpSocket:
    """The UDP socket of a new relayed address; with EVEN-PORT, on an even port (RFC 8656 7.2)."""
    if not even:
        return await network.bind_udp(host, 0)
    for _ in range(_EVEN_PORT_ATTEMPTS):
        sock = await network.bind_udp(host, 0)
        if sock.local_address[1] % 2 == 0:
            return sock
        sock.close()
    raise OSError(errno.EADDRNOTAVAIL, f"no even port found in {_EVEN_PORT_ATTEMPTS} attempts")
