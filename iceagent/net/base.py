"""The Network seam: everything the agent, gatherers and servers need from a network (DESIGN.md).

`OSNetwork` implements it on trio.socket; the vnet plugin implements it in memory. Code above this
layer never imports trio.socket directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import attrs
import trio

Address = tuple[str, int]


@attrs.frozen
class Interface:
    """A network interface, the IP addresses configured on it, and the subnets they are on (CIDR, e.g.
    "192.168.1.0/24"; empty when the Network does not know them): mDNS answers only its own link."""

    name: str
    addresses: tuple[str, ...]
    loopback: bool = False
    networks: tuple[str, ...] = ()


@runtime_checkable
class UdpSocket(Protocol):
    """A bound UDP socket. `receive` returns one datagram and its source address."""

    @property
    def local_address(self) -> Address: ...

    async def send(self, data: bytes, remote: Address) -> None: ...

    async def receive(self) -> tuple[bytes, Address]: ...

    def close(self) -> None: ...


@runtime_checkable
class TcpListener(Protocol):
    """A listening TCP socket; `accept` returns a connected stream and the peer's address."""

    @property
    def local_address(self) -> Address: ...

    async def accept(self) -> tuple[trio.abc.Stream, Address]: ...

    def close(self) -> None: ...


@runtime_checkable
class Network(Protocol):
    """Interfaces, UDP, TCP, name resolution and multicast of one host (real or virtual)."""

    def interfaces(self) -> Sequence[Interface]: ...

    async def bind_udp(self, address: str, port: int = 0, *, reuse: bool = False) -> UdpSocket: ...

    async def connect_tcp(self, remote: Address, *, local: Address | None = None) -> tuple[trio.abc.Stream, Address]:
        """Open a TCP connection; returns the stream and its local address."""
        ...

    async def listen_tcp(self, address: str, port: int = 0) -> TcpListener: ...

    async def resolve(self, host: str, port: int) -> list[Address]:
        """Resolve a name (or pass through an IP literal) to addresses, IPv4 first."""
        ...

    async def join_multicast(self, sock: UdpSocket, group: str, interface_address: str) -> None: ...


class NetworkWrapper:
    """A Network that forwards everything to `inner`: subclass it to watch or change one operation
    (tests tap or count datagrams, or block UDP, by overriding `bind_udp`)."""

    def __init__(self, inner: Network) -> None:
        self.inner = inner

    def interfaces(self) -> Sequence[Interface]:
        return self.inner.interfaces()

    async def bind_udp(self, address: str, port: int = 0, *, reuse: bool = False) -> UdpSocket:
        return await self.inner.bind_udp(address, port, reuse=reuse)

    async def connect_tcp(self, remote: Address, *, local: Address | None = None) -> tuple[trio.abc.Stream, Address]:
        return await self.inner.connect_tcp(remote, local=local)

    async def listen_tcp(self, address: str, port: int = 0) -> TcpListener:
        return await self.inner.listen_tcp(address, port)

    async def resolve(self, host: str, port: int) -> list[Address]:
        return await self.inner.resolve(host, port)

    async def join_multicast(self, sock: UdpSocket, group: str, interface_address: str) -> None:
        await self.inner.join_multicast(sock, group, interface_address)
