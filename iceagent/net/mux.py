"""open_mux: one UDP port per address shared by many agents (DESIGN.md "Concurrency", open_mux).

The application opens the mux in its own nursery; it owns one socket per address and one receive task
per socket, which drains datagrams in batches and routes each into one endpoint's bounded inbox by the
sans-IO table of `_mux_routes` (checks by ufrag, responses by transaction id, everything else by a source
address an endpoint confirmed). Routing never calls agent code: it appends to an inbox and wakes the
task waiting on it, so nothing an agent does can raise in (or end) the mux.

An agent uses the mux through a `MuxEndpoint` (`mux.register(name)`): one `MuxTransport` per mux
address, each looking like a UDP socket (`send`, `send_nowait`, `try_send`, `receive`, `receive_batch`,
`local_address`, `close`) plus `confirm(remote)`. A wildcard address ("0.0.0.0", "::") is served on the
OS network with IP_PKTINFO / IPV6_RECVPKTINFO (RFC 3542 6): each datagram's destination picks the
transport, and replies leave from that address.

Not yet: ICE-TCP passive listeners (`tcp=True`) and server-reflexive candidates through the mux (one STUN
binding per server, shared by every agent) raise or are left to the agents' own sockets.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import socket as _stdsocket
import struct
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import trio

from ._mux_routes import MuxError, MuxFull, MuxLimits, MuxRoutes, request_transaction_id
from .base import Address, Network, UdpSocket
from .os import OSNetwork, OSUdpSocket

__all__ = ["Mux", "MuxEndpoint", "MuxError", "MuxFull", "MuxLimits", "MuxTransport", "open_mux"]

log = logging.getLogger("iceagent.mux")

#: Receive and send buffer asked of the kernel per mux socket: a burst of checks for thousands of agents
#: must not overflow it (the kernel caps it at net.core.rmem_max / wmem_max, and that is accepted).
SOCKET_BUFFER = 4 << 20
#: Datagrams one receive task takes from its socket per wake-up.
RECEIVE_BATCH = 64
#: Datagrams waiting for a network without synchronous sends (e.g. the vnet) per mux socket.
OUTBOX = 4096
_IP_PKTINFO = getattr(_stdsocket, "IP_PKTINFO", 8)  # Linux's value; the stdlib names it from 3.13
_IPV6_RECVPKTINFO = getattr(_stdsocket, "IPV6_RECVPKTINFO", 49)
_IPV6_PKTINFO = getattr(_stdsocket, "IPV6_PKTINFO", 50)
_WILDCARDS = ("0.0.0.0", "::")

Triple = tuple[bytes, Address, Address]  # data, remote, local


class _Port(Protocol):
    """One mux socket, as the receive task and the transports see it."""

    locals: list[Address]

    async def receive_batch(self) -> list[Triple]: ...

    async def send(self, data: bytes, remote: Address, local: Address) -> None: ...

    def try_send(self, data: bytes, remote: Address, local: Address) -> bool: ...

    def close(self) -> None: ...


class _SeamPort:
    """A socket bound on one explicit address through the Network seam (OS or virtual)."""

    def __init__(self, sock: UdpSocket) -> None:
        self.sock = sock
        self.locals = [sock.local_address]
        self._try_send = getattr(sock, "try_send", None)
        self._batch = getattr(sock, "receive_batch", None)
        self.outbox: trio.MemorySendChannel[tuple[bytes, Address]] | None = None
        self.outbox_receive: trio.MemoryReceiveChannel[tuple[bytes, Address]] | None = None
        if self._try_send is None:  # no synchronous send: a sender task drains a bounded outbox
            self.outbox, self.outbox_receive = trio.open_memory_channel(OUTBOX)

    async def receive_batch(self) -> list[Triple]:
        local = self.locals[0]
        if self._batch is not None:
            return [(data, remote, local) for data, remote in await self._batch(RECEIVE_BATCH)]
        data, remote = await self.sock.receive()
        return [(data, remote, local)]

    async def send(self, data: bytes, remote: Address, local: Address) -> None:
        await self.sock.send(data, remote)

    def try_send(self, data: bytes, remote: Address, local: Address) -> bool:
        if self._try_send is not None:
            return bool(self._try_send(data, remote))
        assert self.outbox is not None
        try:
            self.outbox.send_nowait((data, remote))
        except trio.WouldBlock:
            return False
        return True

    async def run_sender(self) -> None:
        """Send what `try_send` queued (networks without a synchronous send)."""
        assert self.outbox_receive is not None
        async for data, remote in self.outbox_receive:
            try:
                await self.sock.send(data, remote)
            except OSError:
                pass  # a lost datagram, as UDP allows

    def close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
        self.sock.close()


class _PktinfoPort:
    """A wildcard socket of the OS network that learns each datagram's destination address and sends from
    a chosen source address (IP_PKTINFO, IPV6_RECVPKTINFO / IPV6_PKTINFO; RFC 3542 6.1, Linux ip(7))."""

    def __init__(self, raw: _stdsocket.socket, locals_: list[Address]) -> None:
        self.raw = raw
        self.locals = locals_
        self.v6 = raw.family == _stdsocket.AF_INET6
        self._port = raw.getsockname()[1]
        self._ancsize = _stdsocket.CMSG_SPACE(20 if self.v6 else 12)

    async def receive_batch(self) -> list[Triple]:
        await trio.lowlevel.checkpoint_if_cancelled()
        raw, waited = self.raw, False
        out: list[Triple] = []
        while len(out) < RECEIVE_BATCH:
            try:
                data, anc, _flags, addr = raw.recvmsg(65536, self._ancsize)
            except BlockingIOError:
                if out:
                    break
                await trio.lowlevel.wait_readable(raw)
                waited = True
                continue
            except ConnectionResetError:
                continue
            out.append((data, (str(addr[0]).split("%", 1)[0], addr[1]), (self._destination(anc), self._port)))
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return out

    def _destination(self, anc: list[tuple[int, int, bytes]]) -> str:
        for level, kind, cdata in anc:
            if not self.v6 and level == _stdsocket.IPPROTO_IP and kind == _IP_PKTINFO and len(cdata) >= 12:
                return _stdsocket.inet_ntop(_stdsocket.AF_INET, cdata[8:12])  # in_pktinfo.ipi_addr
            if self.v6 and level == _stdsocket.IPPROTO_IPV6 and kind == _IPV6_PKTINFO and len(cdata) >= 16:
                return _stdsocket.inet_ntop(_stdsocket.AF_INET6, cdata[:16])  # in6_pktinfo.ipi6_addr
        return ""  # no ancillary data: counted as "unknown_local"

    def _cmsg(self, local: Address) -> list[tuple[int, int, bytes]]:
        if self.v6:
            return [(_stdsocket.IPPROTO_IPV6, _IPV6_PKTINFO,
                     _stdsocket.inet_pton(_stdsocket.AF_INET6, local[0]) + struct.pack("@I", 0))]
        return [(_stdsocket.IPPROTO_IP, _IP_PKTINFO,
                 struct.pack("@i", 0) + _stdsocket.inet_aton(local[0]) + bytes(4))]  # ipi_spec_dst = source

    async def send(self, data: bytes, remote: Address, local: Address) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                self.raw.sendmsg([data], self._cmsg(local), 0, remote)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.raw)
                continue
            except OSError:
                pass  # lost, as UDP allows
            break
        await trio.lowlevel.cancel_shielded_checkpoint()

    def try_send(self, data: bytes, remote: Address, local: Address) -> bool:
        try:
            self.raw.sendmsg([data], self._cmsg(local), 0, remote)
        except BlockingIOError:
            return False
        except OSError:
            pass
        return True

    def close(self) -> None:
        if self.raw.fileno() >= 0:
            try:
                trio.lowlevel.notify_closing(self.raw)
            except RuntimeError:
                pass
        self.raw.close()


class _Inbox:
    """A bounded queue of datagrams for one transport: the mux puts, the agent's receive task takes."""

    __slots__ = ("bytes", "closed", "items", "lot")

    def __init__(self) -> None:
        self.items: collections.deque[tuple[bytes, Address]] = collections.deque()
        self.bytes = 0
        self.lot = trio.lowlevel.ParkingLot()
        self.closed = False


class MuxTransport:
    """One mux address as one agent sees it: a socket-like transport (the `UdpSocket` shape plus
    `send_nowait`, `try_send`, `receive_batch`) and `confirm(remote)` to bind a verified source address."""

    def __init__(self, endpoint: MuxEndpoint, port: _Port, local: Address) -> None:
        self._endpoint = endpoint
        self._port = port
        self._local = local
        self._inbox = _Inbox()

    @property
    def local_address(self) -> Address:
        """The mux address (an interface address, never a wildcard) this transport sends from."""
        return self._local

    @property
    def endpoint(self) -> MuxEndpoint:
        """The endpoint (agent registration) this transport belongs to."""
        return self._endpoint

    def _before_send(self, data: bytes) -> None:
        if self._endpoint.closed:
            raise trio.ClosedResourceError(f"the mux endpoint {self._endpoint.name!r} is closed")
        tid = request_transaction_id(data)
        if tid is not None:  # its response comes back by transaction id (RFC 8489 6.3)
            self._endpoint._mux._routes.add_transaction(self._endpoint, tid, trio.current_time())

    async def send(self, data: bytes, remote: Address) -> None:
        """Send one datagram from this address; a STUN request's transaction id is recorded first."""
        self._before_send(data)
        await self._port.send(data, remote, self._local)

    def try_send(self, data: bytes, remote: Address) -> bool:
        """Send now if the socket can take it; False (nothing sent) when it cannot."""
        self._before_send(data)
        return self._port.try_send(data, remote, self._local)

    def send_nowait(self, data: bytes, remote: Address) -> None:
        """Send now, or drop the datagram (counted as "send_full") when the socket cannot take it."""
        if not self.try_send(data, remote):
            self._endpoint._mux._routes.drop("send_full")

    async def receive(self) -> tuple[bytes, Address]:
        """The next datagram routed to this transport and its source address."""
        return (await self.receive_batch(1))[0]

    async def receive_batch(self, limit: int = 64) -> list[tuple[bytes, Address]]:
        """Every datagram waiting (at most `limit`), waiting for the first if none is;
        `trio.ClosedResourceError` once the endpoint or the mux closed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        inbox = self._inbox
        parked = False
        while not inbox.items:
            if inbox.closed:
                raise trio.ClosedResourceError(f"the mux endpoint {self._endpoint.name!r} is closed")
            await inbox.lot.park()
            parked = True
        items = inbox.items
        out = [items.popleft() for _ in range(min(limit, len(items)))]
        inbox.bytes -= sum(len(d) for d, _ in out)
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return out

    def confirm(self, remote: Address) -> None:
        """Bind `remote` on this address to this endpoint: call it only after verifying the integrity of a
        check from, or a response to, `remote` (DESIGN.md). The latest confirm of any endpoint wins."""
        if not self._endpoint.closed:
            self._endpoint._mux._routes.confirm(self._endpoint, self._local, remote)

    def close(self) -> None:
        """Close the whole endpoint (every ufrag, transaction and binding of the agent goes at once)."""
        self._endpoint.close()

    def pending(self) -> int:
        """Datagrams waiting in the inbox."""
        return len(self._inbox.items)

    def _deliver(self, data: bytes, remote: Address, limits: MuxLimits) -> bool:
        inbox = self._inbox
        if len(inbox.items) >= limits.inbox_datagrams or inbox.bytes + len(data) > limits.inbox_bytes:
            return False
        inbox.items.append((data, remote))
        inbox.bytes += len(data)
        if inbox.lot:
            inbox.lot.unpark_all()
        return True

    def _close(self) -> None:
        inbox = self._inbox
        inbox.closed = True
        inbox.items.clear()
        inbox.bytes = 0
        inbox.lot.unpark_all()

    def __repr__(self) -> str:
        return f"<MuxTransport {self._endpoint.name!r} {self._local[0]}:{self._local[1]}>"


class MuxEndpoint:
    """One agent's registration with a mux: its ufrags (one per ICE generation) and one transport per mux
    address. Closing it (or leaving `with`) unbinds everything of the agent at once."""

    def __init__(self, mux: Mux, name: str) -> None:
        self._mux = mux
        self.name = name
        self.closed = False
        self.transports = [MuxTransport(self, port, local) for port, local in mux._port_of_local]
        """One transport per `mux.local_addresses`, in that order."""
        self._by_local = {t.local_address: t for t in self.transports}

    def transport(self, local: Address) -> MuxTransport:
        """The transport of mux address `local` (KeyError if the mux has no such address)."""
        return self._by_local[local]

    def add_ufrag(self, ufrag: str) -> None:
        """Route checks for `ufrag` (our local ufrag of one ICE generation) to this endpoint; `MuxError` if
        another endpoint has it, `MuxFull` past `MuxLimits.max_ufrags_per_agent`."""
        if self.closed:
            raise trio.ClosedResourceError(f"the mux endpoint {self.name!r} is closed")
        self._mux._routes.add_ufrag(self, ufrag)

    def remove_ufrag(self, ufrag: str) -> None:
        """Stop routing checks for `ufrag` (its generation closed)."""
        if not self.closed:
            self._mux._routes.remove_ufrag(self, ufrag)

    def stats(self) -> dict[str, int]:
        """How many ufrags, outstanding transactions and bound addresses this endpoint holds."""
        return self._mux._routes.owner_counts(self)

    def close(self) -> None:
        """Leave the mux: ufrags, transactions and bindings go at once; receivers get ClosedResourceError."""
        if self.closed:
            return
        self.closed = True
        self._mux._routes.remove_owner(self)
        self._mux._endpoints.discard(self)
        for t in self.transports:
            t._close()

    def __enter__(self) -> MuxEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MuxEndpoint {self.name!r}{' closed' if self.closed else ''}>"


class Mux:
    """An open mux (made by `open_mux`): its addresses, stats, and `register` for agents."""

    def __init__(self, limits: MuxLimits) -> None:
        self.limits = limits
        self._routes: MuxRoutes[MuxEndpoint] = MuxRoutes(limits)
        self._ports: list[_Port] = []
        self._port_of_local: list[tuple[_Port, Address]] = []
        self._local_set: set[Address] = set()
        self._endpoints: set[MuxEndpoint] = set()
        self.closed = False

    @property
    def local_addresses(self) -> list[Address]:
        """The mux's addresses (a wildcard expanded to the interface addresses): the agents' host bases."""
        return [local for _, local in self._port_of_local]

    def register(self, name: str = "") -> MuxEndpoint:
        """A new endpoint for one agent (use it as a context manager or call `close()`); `MuxFull` past
        `MuxLimits.max_agents`."""
        if self.closed:
            raise trio.ClosedResourceError("the mux is closed")
        endpoint = MuxEndpoint(self, name)
        self._routes.add_owner(endpoint)
        self._endpoints.add(endpoint)
        return endpoint

    def stats(self) -> dict[str, Any]:
        """{"agents": registered endpoints, "routed": datagrams put in an inbox, "dropped": {reason: n}}."""
        return {"agents": len(self._endpoints), "routed": self._routes.routed, "dropped": dict(self._routes.dropped)}

    def table_sizes(self) -> dict[str, int]:
        """The size of every routing table (agents, ufrags, transactions, bindings)."""
        return self._routes.sizes()

    def _add_port(self, port: _Port) -> None:
        self._ports.append(port)
        for local in port.locals:
            self._port_of_local.append((port, local))
            self._local_set.add(local)

    async def _receive_loop(self, port: _Port) -> None:
        """Drain one socket in batches and route each datagram into one inbox; never calls agent code."""
        routes, limits, local_set = self._routes, self.limits, self._local_set
        while True:
            try:
                batch = await port.receive_batch()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            now = trio.current_time()
            for data, remote, local in batch:
                if local not in local_set:
                    routes.drop("unknown_local")
                    continue
                owner = routes.route(data, local, remote, now)
                if owner is None:
                    continue
                if owner._by_local[local]._deliver(data, remote, limits):
                    routes.routed += 1
                else:
                    routes.drop("inbox_full")

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for endpoint in list(self._endpoints):
            endpoint.close()
        for port in self._ports:
            port.close()

    def __repr__(self) -> str:
        return f"<Mux {self.local_addresses} agents={len(self._endpoints)}>"


def _interface_addresses(network: Network, wildcard: str) -> list[str]:
    """The addresses a wildcard bind serves: every interface address of its family, IPv6 link-local left
    out (it needs a scope); loopback included (the agent chooses which bases to advertise)."""
    v6 = ":" in wildcard
    out: list[str] = []
    for iface in network.interfaces():
        for address in iface.addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if (ip.version == 6) == v6 and not (v6 and ip.is_link_local) and str(ip) not in out:
                out.append(str(ip))
    return out


def _grow_buffers(sock: _stdsocket.socket | trio.socket.SocketType) -> None:
    """Ask for SOCKET_BUFFER of receive and send buffer; the kernel gives what its limits allow."""
    for option in (_stdsocket.SO_RCVBUF, _stdsocket.SO_SNDBUF):
        try:
            sock.setsockopt(_stdsocket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            pass


async def _bind_wildcard(network: Network, address: str, port: int) -> _PktinfoPort:
    if not isinstance(network, OSNetwork) or not sys.platform.startswith("linux"):
        raise NotImplementedError(
            f"open_mux on {address!r} needs the destination address of each datagram (IP_PKTINFO), which only "
            "OSNetwork on Linux gives here: bind the mux to explicit addresses instead")
    locals_ = _interface_addresses(network, address)
    if not locals_:
        raise OSError(f"open_mux: no interface has an address of the family of {address!r}")
    family = _stdsocket.AF_INET6 if ":" in address else _stdsocket.AF_INET
    raw = _stdsocket.socket(family, _stdsocket.SOCK_DGRAM)
    try:
        raw.setblocking(False)
        if family == _stdsocket.AF_INET6:
            raw.setsockopt(_stdsocket.IPPROTO_IPV6, _stdsocket.IPV6_V6ONLY, 1)
            raw.setsockopt(_stdsocket.IPPROTO_IPV6, _IPV6_RECVPKTINFO, 1)
        else:
            raw.setsockopt(_stdsocket.IPPROTO_IP, _IP_PKTINFO, 1)
        _grow_buffers(raw)
        raw.bind((address, port))
        await trio.lowlevel.checkpoint()
    except BaseException:
        raw.close()
        raise
    bound = raw.getsockname()[1]
    return _PktinfoPort(raw, [(a, bound) for a in locals_])


async def _bind(network: Network, address: str, port: int) -> _Port:
    if address in _WILDCARDS:
        return await _bind_wildcard(network, address, port)
    sock = await network.bind_udp(address, port)
    if isinstance(sock, OSUdpSocket):
        _grow_buffers(sock.raw)
    return _SeamPort(sock)


@asynccontextmanager
async def open_mux(
    host_addresses: Sequence[str],
    port: int = 0,
    *,
    tcp: bool = False,
    network: Network | None = None,
    limits: MuxLimits | None = None,
) -> AsyncIterator[Mux]:
    """Open one UDP socket on `port` per address in `host_addresses`, shared by many agents.

    `port=0` picks an ephemeral port per address (`mux.local_addresses` says which). A wildcard
    ("0.0.0.0", "::") serves every interface address of its family (OS network on Linux only).
    `network=None` is the OS network; the vnet plugin's network runs the mux on the virtual network.
    `limits` bounds the routing tables and inboxes (`MuxLimits`). Every socket and task ends with the
    `async with`; endpoints still registered are closed then.
    """
    if tcp:
        raise NotImplementedError("open_mux(tcp=True): the ICE-TCP passive listener (RFC 6544) is not built yet")
    if isinstance(host_addresses, str) or not host_addresses:
        raise ValueError(f"open_mux needs a list of addresses to bind, got {host_addresses!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"open_mux: port {port} is out of range 0..65535")
    net = network if network is not None else OSNetwork()
    mux = Mux(limits or MuxLimits())
    try:
        for address in dict.fromkeys(host_addresses):
            mux._add_port(await _bind(net, address, port))
        async with trio.open_nursery() as nursery:
            for p in mux._ports:
                nursery.start_soon(mux._receive_loop, p, name=f"iceagent.mux receive {p.locals[0]}")
                if isinstance(p, _SeamPort) and p.outbox_receive is not None:
                    nursery.start_soon(p.run_sender, name=f"iceagent.mux send {p.locals[0]}")
            try:
                yield mux
            finally:
                mux._close()  # endpoints end their receivers, sockets end the receive tasks
                nursery.cancel_scope.cancel()
    finally:
        mux._close()

