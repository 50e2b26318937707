"""The Network seam: everything the agent, gatherers and servers need from a network (DESIGN.md).

`OSNetwork` implements it on trio.socket; the vnet plugin implements it in memory. Code above this
layer never imports trio.socket directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import attrs
import trio

if TYPE_CHECKING:
    from .watch import InterfaceChanges

Address = tuple[str, int]


@attrs.frozen
class Interface:
    """A network interface, the IP addresses configured on it, and the subnets they are on (CIDR, e.g.
    "192.168.1.0/24"; empty when the Network does not know them): mDNS answers only its own link."""

    name: str
    addresses: tuple[str, ...]
    loopback: bool = False
    networks: tuple[str, ...] = ()


@attrs.frozen
class InterfaceChange:
    """An address that appeared on an interface ("added") or left it ("removed"), with the interface as it
    was then (`Network.watch_interfaces()`)."""

    kind: Literal["added", "removed"]
    address: str
    interface: Interface


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

    async def default_gateway(self, family: int = 4) -> str | None:
        """The IP address of the default route's next hop for IPv4 (`family` 4) or IPv6 (6), None without
        one: where port mapping requests go (RFC 6887 8.1, RFC 6886 3.1: the client's default router)."""

    def watch_interfaces(self) -> InterfaceChanges:
        """A subscription to address changes (iceagent.net.watch): one watcher per Network, whoever subscribes."""
        ...


# ---- what carries a candidate's data, and what it can do besides `send` and `receive` ----


@runtime_checkable
class CandidateTransport(Protocol):
    """What data for a local candidate goes through: a UDP socket, a TURN allocation, a TCP endpoint."""

    async def send(self, data: bytes, remote: Address) -> None: ...

    async def receive(self) -> tuple[bytes, Address]: ...


@runtime_checkable
class ConnectionTransport(CandidateTransport, Protocol):
    """A transport with one connection per remote address (ICE-TCP, RFC 6544 7): the agent hears when one
    closes by itself, says which carried a valid check, and closes those of pairs that lost.

    Have it: the ICE-TCP endpoints (`TcpPassiveEndpoint`, `TcpActiveEndpoint` in gatherers/tcp_transport.py).
    """

    @property
    def connections(self) -> Sequence[Address]:
        """The remote addresses of the open (or opening) connections."""
        ...

    def watch(self, on_closed: Callable[[Address], None]) -> None:
        """Call `on_closed(remote)` when a connection ends other than by `close_connection` (RFC 6544 7.1)."""

    def confirm(self, remote: Address) -> None:
        """A valid check arrived on the connection from `remote`: it is no longer timed out."""

    def close_connection(self, remote: Address) -> None:
        """Close the connection to `remote`, if there is one (not reported to `watch`)."""


@runtime_checkable
class SupportsSendNowait(Protocol):
    """A transport that sends at once, without a checkpoint: `send_nowait(data, remote)` hands the datagram
    over or drops it when there is no room (as UDP may); it never waits and never raises for a full buffer.

    Have it: `OSUdpSocket` (net/os.py), a TURN `Allocation` over an operating system UDP socket, the
    ICE-TCP endpoints. Not the vnet plugin's sockets (every vnet send is a checkpoint).
    """

    def send_nowait(self, data: bytes, remote: Address) -> None: ...


@runtime_checkable
class SupportsTrySend(Protocol):
    """A transport that can say whether a datagram goes without waiting: `try_send(data, remote)` sends it
    synchronously and returns True, or returns False without sending when the call would block (then
    `await send(...)` waits for room). A datagram the network refuses is lost and still True, as UDP.

    Have it: `OSUdpSocket` (net/os.py) only.
    """

    def try_send(self, data: bytes, remote: Address) -> bool: ...


@runtime_checkable
class SupportsReceiveBatch(Protocol):
    """A transport that drains what is queued in one call: `await receive_batch()` returns every datagram
    already there (at least one: it waits for the first), with one checkpoint per batch, not per datagram.
    Raises what `receive` raises.

    Have it: `OSUdpSocket` (net/os.py), every TURN `Allocation` (several items only over an operating
    system UDP socket). Not the vnet plugin's sockets nor the ICE-TCP endpoints.
    """

    async def receive_batch(self) -> list[tuple[bytes, Address]]: ...


@attrs.frozen
class TransportCapabilities:
    """The optional fast paths of one transport, as bound methods (None where it lacks one).

    Made by `transport_capabilities(transport)`, once per transport: the caller keeps it beside the
    transport and calls e.g. `caps.send_nowait(data, remote)` after a None check, with no per-packet probe.
    """

    #: `SupportsSendNowait.send_nowait` of the transport.
    send_nowait: Callable[[bytes, Address], None] | None = None
    #: `SupportsTrySend.try_send` of the transport.
    try_send: Callable[[bytes, Address], bool] | None = None
    #: `SupportsReceiveBatch.receive_batch` of the transport.
    receive_batch: Callable[[], Awaitable[list[tuple[bytes, Address]]]] | None = None
    #: The transport itself when it is a `ConnectionTransport` (ICE-TCP), else None.
    connection: ConnectionTransport | None = None

    @property
    def names(self) -> frozenset[str]:
        """The capabilities present, by field name (for logs and tests)."""
        return frozenset(f.name for f in attrs.fields(type(self)) if getattr(self, f.name) is not None)


def _protocol_members(protocol: type) -> tuple[str, ...]:
    """The public names a Protocol declares, with those of its Protocol bases: what isinstance checks."""
    mro = protocol.__mro__
    names: set[str] = set()
    for klass in mro[: mro.index(Protocol)]:
        names.update(vars(klass))
        names.update(vars(klass).get("__annotations__", {}))
    return tuple(sorted(name for name in names if not name.startswith("_")))


_SEND_NOWAIT = _protocol_members(SupportsSendNowait)
_TRY_SEND = _protocol_members(SupportsTrySend)
_RECEIVE_BATCH = _protocol_members(SupportsReceiveBatch)
_CONNECTION = _protocol_members(ConnectionTransport)


def _has(transport: object, names: tuple[str, ...]) -> bool:
    return all(hasattr(transport, name) for name in names)


def transport_capabilities(transport: CandidateTransport) -> TransportCapabilities:
    """Which of the optional capability Protocols `transport` has, with their bound methods.

    The same answer as isinstance with `SupportsSendNowait`, `SupportsTrySend`, `SupportsReceiveBatch` and
    `ConnectionTransport`, for the cost of a few `hasattr` (a runtime Protocol check costs tens of
    microseconds). A transport's class decides what it can do, so compute this once per transport
    (when it is registered) and keep it; do not call it per packet.
    """
    t: Any = transport  # checked against each Protocol's declared names just below
    return TransportCapabilities(
        send_nowait=t.send_nowait if _has(t, _SEND_NOWAIT) else None,
        try_send=t.try_send if _has(t, _TRY_SEND) else None,
        receive_batch=t.receive_batch if _has(t, _RECEIVE_BATCH) else None,
        connection=t if _has(t, _CONNECTION) else None,
    )


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

    async def default_gateway(self, family: int = 4) -> str | None:
        return await self.inner.default_gateway(family)

    def watch_interfaces(self) -> InterfaceChanges:
        return self.inner.watch_interfaces()
