"""The mux's sockets (iceagent/net/mux.py): one per address through the Network seam, or a wildcard socket of
the OS network that learns each datagram's destination (IP_PKTINFO, IPV6_RECVPKTINFO; RFC 3542 6)."""

from __future__ import annotations

import ipaddress
import socket as _stdsocket
import struct
import sys
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from itertools import repeat
from typing import Protocol

import trio

from .base import Address, Network, UdpSocket
from .os import OSNetwork, OSUdpSocket

#: Receive and send buffer asked of the kernel per mux socket: a burst of checks for thousands of agents
#: must not overflow it (the kernel caps it at net.core.rmem_max / wmem_max, and that is accepted).
SOCKET_BUFFER = 4 << 20
#: Datagrams one receive task takes from its socket per wake-up: more than SOCKET_BUFFER holds (a
#: datagram takes at least ~768 bytes of it in the kernel), so each wake-up empties the socket. One task
#: drains it for every agent on it, and Trio runs it once per scheduling round, in which thousands of agents
#: may run: a smaller batch left the rest of a burst for later rounds, each as long as the number of agents,
#: until checks outlived their RTO and were retransmitted ever more (bench/mux.py: 1024 per wake-up made
#: 2000 pairs retransmit 3 checks in 4).
RECEIVE_BATCH = 16384
#: Datagrams waiting for a network without synchronous sends (e.g. the vnet) per mux socket.
OUTBOX = 4096
#: Bytes a small datagram takes of a socket's receive buffer in the kernel, about (its sk_buff and memory: 832
#: on Linux 6 for up to a few hundred bytes of STUN): what a port's `capacity` is counted in.
DATAGRAM_TRUESIZE = 1024
_IP_PKTINFO = getattr(_stdsocket, "IP_PKTINFO", 8)  # Linux's value; the stdlib names it from 3.13
_IPV6_RECVPKTINFO = getattr(_stdsocket, "IPV6_RECVPKTINFO", 49)
_IPV6_PKTINFO = getattr(_stdsocket, "IPV6_PKTINFO", 50)
WILDCARDS = ("0.0.0.0", "::")

Item = tuple[bytes, Address]  # data, remote: as a socket gives it, and as an inbox keeps it
#: One datagram as a port gives it: (data, remote) and the mux address it came to. A port's batch is an iterable
#: of rows that is falsy when empty (`()`); a socket's (data, remote) tuples are kept, not copied.
Row = tuple[Item, Address]


class Port(Protocol):
    """One mux socket, as the receive task and the transports see it."""

    locals: list[Address]
    bind_address: str  # the address given to bind (a wildcard for a PktinfoPort)
    capacity: int  # small datagrams its receive buffer holds, about (`receive_capacity`)
    #: the stdlib socket's own `sendto(data, remote)` for a port that sends from its one address on an OS socket
    #: (no Python call between a transport and the socket); else None. It raises BlockingIOError when the
    #: buffer is full and OSError when the datagram is lost.
    direct: Callable[[bytes, Address], object] | None
    #: wait until the socket has a datagram, reading nothing, for a port whose `receive_now` reads the socket (an
    #: OS socket); None where only `receive_batch` can wait (the vnet's sockets)
    wait_readable: Callable[[], Awaitable[None]] | None

    async def receive_batch(self) -> Iterable[Row]: ...

    def receive_now(self, limit: int) -> Iterable[Row]: ...

    async def send(self, data: bytes, remote: Address, local: Address) -> None: ...

    def try_send(self, data: bytes, remote: Address, local: Address) -> bool: ...

    def close(self) -> None: ...


class SeamPort:
    """A socket bound on one explicit address through the Network seam (OS or virtual)."""

    def __init__(self, sock: UdpSocket) -> None:
        self.sock = sock
        self.locals = [sock.local_address]
        self.bind_address = sock.local_address[0]
        self._try_send = getattr(sock, "try_send", None)
        self._batch = getattr(sock, "receive_batch", None)
        self._now = getattr(sock, "receive_now", None)
        self.outbox: trio.MemorySendChannel[tuple[bytes, Address]] | None = None
        self.outbox_receive: trio.MemoryReceiveChannel[tuple[bytes, Address]] | None = None
        if self._try_send is None:  # no synchronous send: a sender task drains a bounded outbox
            self.outbox, self.outbox_receive = trio.open_memory_channel(OUTBOX)
        self.direct: Callable[[bytes, Address], object] | None = (
            sock.sync_sendto if isinstance(sock, OSUdpSocket) else None)
        self.capacity = receive_capacity(sock.raw if isinstance(sock, OSUdpSocket) else None)
        self.wait_readable: Callable[[], Awaitable[None]] | None = (
            partial(trio.lowlevel.wait_readable, sock.raw) if isinstance(sock, OSUdpSocket) and self._now else None
        )

    async def receive_batch(self) -> Iterable[Row]:
        if self._batch is not None:
            return self._rows(await self._batch(RECEIVE_BATCH))
        data, remote = await self.sock.receive()
        return [((data, remote), self.locals[0])]

    def receive_now(self, limit: int) -> Iterable[Row]:
        """What the socket holds now (at most `limit`), without waiting; `()` if nothing (or where the socket
        cannot tell)."""
        if self._now is None:
            return ()
        items = self._now(limit)
        if not items:
            return ()
        if self.direct is not None:  # (`_rows`, inline)
            return zip(items, repeat(self.locals[0]))
        return self._rows(items)

    def _rows(self, items: list[Item]) -> Iterable[Row]:
        """`items` with this port's address; the OS socket's own (data, remote) tuples are kept (others are copied:
        an inbox and the table of waiting checks need tuples)."""
        if self.direct is not None:
            return zip(items, repeat(self.locals[0]))
        return [((data, remote), self.locals[0]) for data, remote in items]

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
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return  # the mux is closing

    def close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
        self.sock.close()


class PktinfoPort:
    """A wildcard socket of the OS network that learns each datagram's destination address and sends from
    a chosen source address (IP_PKTINFO, IPV6_RECVPKTINFO / IPV6_PKTINFO; RFC 3542 6.1, Linux ip(7))."""

    def __init__(self, raw: _stdsocket.socket, locals_: list[Address]) -> None:
        self.raw = raw
        self.locals = locals_
        self.bind_address = str(raw.getsockname()[0])
        self.v6 = raw.family == _stdsocket.AF_INET6
        self._port = raw.getsockname()[1]
        self._ancsize = _stdsocket.CMSG_SPACE(20 if self.v6 else 12)
        self.direct: Callable[[bytes, Address], object] | None = None  # each datagram names its source (IP_PKTINFO)
        self.capacity = receive_capacity(raw)
        self.wait_readable: Callable[[], Awaitable[None]] | None = partial(trio.lowlevel.wait_readable, raw)

    async def receive_batch(self) -> Iterable[Row]:
        await trio.lowlevel.checkpoint_if_cancelled()
        out = self.receive_now(RECEIVE_BATCH)
        if out:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return out
        while not out:
            await trio.lowlevel.wait_readable(self.raw)
            out = self.receive_now(RECEIVE_BATCH)
        return out

    def receive_now(self, limit: int) -> list[Row]:
        """The datagrams queued now (at most `limit`) with their destinations, without waiting."""
        recvmsg, ancsize, port = self.raw.recvmsg, self._ancsize, self._port
        out: list[Row] = []
        while len(out) < limit:
            try:
                data, anc, _flags, addr = recvmsg(65536, ancsize)
            except BlockingIOError:
                break
            except ConnectionResetError:
                continue
            out.append(((data, (str(addr[0]).split("%", 1)[0], addr[1])), (self._destination(anc), port)))
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


def receive_capacity(sock: _stdsocket.socket | trio.socket.SocketType | None) -> int:
    """Small datagrams `sock`'s receive buffer holds, about: SO_RCVBUF as the kernel reports it (twice what was
    granted: its bookkeeping included, socket(7)) over DATAGRAM_TRUESIZE; a socket that is not the OS's (the
    vnet's) counts as the SOCKET_BUFFER asked for."""
    rcvbuf = 2 * SOCKET_BUFFER
    if sock is not None:
        try:
            rcvbuf = sock.getsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_RCVBUF)
        except OSError:
            pass
    return max(1, rcvbuf // DATAGRAM_TRUESIZE)


def _grow_buffers(sock: _stdsocket.socket | trio.socket.SocketType) -> None:
    """Ask for SOCKET_BUFFER of receive and send buffer; the kernel gives what its limits allow."""
    for option in (_stdsocket.SO_RCVBUF, _stdsocket.SO_SNDBUF):
        try:
            sock.setsockopt(_stdsocket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            pass


async def _bind_wildcard(network: Network, address: str, port: int) -> PktinfoPort:
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
    return PktinfoPort(raw, [(a, bound) for a in locals_])


async def bind_port(network: Network, address: str, port: int) -> Port:
    if address in WILDCARDS:
        return await _bind_wildcard(network, address, port)
    sock = await network.bind_udp(address, port)
    if isinstance(sock, OSUdpSocket):
        _grow_buffers(sock.raw)
    return SeamPort(sock)
