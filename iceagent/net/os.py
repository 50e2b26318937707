"""OSNetwork: the Network seam on the operating system's sockets (trio.socket) and ifaddr."""

from __future__ import annotations

import ipaddress
import os as _os
import socket as _stdsocket
import struct
from collections.abc import Callable, Sequence

import ifaddr
import trio

from ._routes import read_default_gateway
from .base import Address, Interface, TcpListener, UdpSocket
from .watch import InterfaceChanges, InterfaceWatcher, os_change_source


def _family(address: str) -> int:
    return trio.socket.AF_INET6 if ":" in address else trio.socket.AF_INET


def _norm(addr: tuple[object, ...]) -> Address:
    host = str(addr[0])
    if "%" in host:  # link-local scope id
        host = host.split("%", 1)[0]
    return host, int(addr[1])  # type: ignore[call-overload]


class OSUdpSocket:
    """A UDP socket of the operating system.

    Sends and batched receives go straight to the non-blocking stdlib socket (the data fast path);
    they are still Trio checkpoints: cancellation is checked and the scheduler runs once per call.
    """

    __slots__ = ("_ipv6", "_local", "_raw", "_sock", "_wake_fd", "fileno", "tap")

    #: The socket's descriptor (-1 once closed), for `trio.lowlevel.wait_readable(sock)`: the stdlib socket's
    #: own method, so that Trio's call of it per wait is no Python call of ours.
    fileno: Callable[[], int]

    def __init__(self, raw: _stdsocket.socket) -> None:
        self._raw = raw
        self.fileno = raw.fileno
        self._ipv6 = raw.family == _stdsocket.AF_INET6  # its addresses are 4-tuples, normalized on receipt
        self._sock: trio.socket.SocketType | None = None  # made when first needed (memory per agent)
        self._local = _norm(raw.getsockname())
        self._wake_fd: int | None = None  # wait_readable's duplicate descriptor, while it has one
        #: Set by the agent while a receive task serves this socket: how that task and the stream's reader
        #: take turns waiting on it (agent/_tap.py); None otherwise.
        self.tap: object | None = None

    @property
    def local_address(self) -> Address:
        return self._local

    @property
    def raw(self) -> trio.socket.SocketType:
        """The underlying trio socket (for socket options)."""
        if self._sock is None:
            self._sock = trio.socket.from_stdlib_socket(self._raw)
        return self._sock

    async def send(self, data: bytes, remote: Address) -> None:
        """Send one datagram; a full buffer waits, an unreachable destination is a lost datagram."""
        await trio.lowlevel.checkpoint_if_cancelled()
        raw = self._raw
        while True:
            try:
                raw.sendto(data, remote)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(raw)
                continue
            except OSError:
                pass  # UDP is unreliable anyway (ICMP errors, no route): the datagram is lost
            break
        await trio.lowlevel.cancel_shielded_checkpoint()

    def try_send(self, data: bytes, remote: Address) -> bool:
        """Send one datagram if the socket can take it now; False when its buffer is full."""
        try:
            self._raw.sendto(data, remote)
        except BlockingIOError:
            return False
        except OSError:
            pass  # lost, as UDP allows
        return True

    @property
    def sync_sendto(self) -> Callable[[bytes, Address], object]:
        """The stdlib socket's own `sendto`, for IceStream's fast path (one Python call less per datagram than
        `try_send`): it raises BlockingIOError when the buffer is full and OSError when the datagram is lost."""
        return self._raw.sendto

    @property
    def sync_recvfrom(self) -> Callable[[int], tuple[bytes, Address]] | None:
        """The stdlib socket's own `recvfrom`, for the stream reader's direct read (agent/_tap.py); None on IPv6,
        whose source addresses `receive_now` normalizes. It raises BlockingIOError when nothing is queued."""
        return None if self._ipv6 else self._raw.recvfrom

    def queued(self) -> bool:
        """Whether a datagram is queued on the socket now (a peek: nothing is taken off it), so that a task
        waiting for it to be readable wakes; False when none is (or on any error)."""
        try:
            self._raw.recv(1, _stdsocket.MSG_PEEK)
        except OSError:
            return False
        return True

    def send_nowait(self, data: bytes, remote: Address) -> None:
        """Send one datagram without waiting; dropped when the socket buffer is full (as UDP may)."""
        try:
            self._raw.sendto(data, remote)
        except OSError:
            pass

    async def receive(self) -> tuple[bytes, Address]:
        while True:
            try:
                data, addr = await self.raw.recvfrom(65536)
            except ConnectionResetError:
                continue  # ICMP port unreachable reported on a later recv: not an error for UDP
            return data, _norm(addr)

    async def receive_batch(self, limit: int = 64) -> list[tuple[bytes, Address]]:
        """Every datagram already queued (at most `limit`), waiting for the first one if none is."""
        await trio.lowlevel.checkpoint_if_cancelled()
        out = self.receive_now(limit)
        if out:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return out
        while not out:
            await trio.lowlevel.wait_readable(self._raw)
            out = self.receive_now(limit)
        return out

    def receive_now(self, limit: int = 64) -> list[tuple[bytes, Address]]:
        """The datagrams queued now (at most `limit`; none if none is), without waiting or a checkpoint."""
        recvfrom = self._raw.recvfrom
        out: list[tuple[bytes, Address]] = []
        append = out.append
        if self._ipv6:  # (host, port, flowinfo, scope_id), normalized; IPv4's (host, port) is kept as it is
            for _ in range(limit):
                try:
                    data, addr = recvfrom(65536)
                except BlockingIOError:
                    break
                except ConnectionResetError:
                    continue  # ICMP port unreachable reported on a later recv: not an error for UDP
                append((data, _norm(addr)))
            return out
        for _ in range(limit):  # the data path's loop: one call per datagram besides recvfrom
            try:
                append(recvfrom(65536))
            except BlockingIOError:
                break
            except ConnectionResetError:
                continue
        return out

    async def wait_readable(self) -> None:
        """Wait until a datagram is queued, or until `interrupt()` (or `close()`) is called; one task at a
        time. It waits on a duplicate of the socket's descriptor, so that `interrupt()` can wake it (by
        closing that duplicate) without a cancel scope per wait, and a task waiting to send is not
        disturbed. trio.ClosedResourceError if the socket is already closed."""
        fd = self._wake_fd
        if fd is None:
            if self._raw.fileno() < 0:
                raise trio.ClosedResourceError("the socket is closed")
            fd = self._wake_fd = _os.dup(self._raw.fileno())
        try:
            await trio.lowlevel.wait_readable(fd)
        except trio.ClosedResourceError:
            pass  # interrupted

    def interrupt(self) -> None:
        """Wake the task in `wait_readable` (it returns), if there is one."""
        fd = self._wake_fd
        if fd is not None:
            self._wake_fd = None
            try:
                trio.lowlevel.notify_closing(fd)
            except RuntimeError:
                pass  # not inside trio.run: nobody can be waiting
            _os.close(fd)

    def close(self) -> None:
        self.interrupt()
        if self._sock is not None:
            self._sock.close()
            return
        if self._raw.fileno() >= 0:
            try:
                trio.lowlevel.notify_closing(self._raw)  # wake tasks waiting in receive_batch
            except RuntimeError:
                pass  # not inside trio.run: nobody can be waiting
        self._raw.close()


class OSTcpListener:
    """A listening TCP socket of the operating system."""

    def __init__(self, listener: trio.SocketListener) -> None:
        self._listener = listener
        self._local = _norm(listener.socket.getsockname())

    @property
    def local_address(self) -> Address:
        return self._local

    async def accept(self) -> tuple[trio.abc.Stream, Address]:
        stream = await self._listener.accept()
        return stream, _norm(stream.socket.getpeername())

    def close(self) -> None:
        self._listener.socket.close()


class OSNetwork:
    """The real network of this host."""

    def interfaces(self) -> Sequence[Interface]:
        result = []
        for adapter in ifaddr.get_adapters():
            addrs: list[str] = []
            networks: list[str] = []
            for ip in adapter.ips:
                address = ip.ip[0] if isinstance(ip.ip, tuple) else ip.ip
                addrs.append(address)
                network = str(ipaddress.ip_interface(f"{address.split('%', 1)[0]}/{ip.network_prefix}").network)
                if network not in networks:
                    networks.append(network)
            loop = any(ipaddress.ip_address(a).is_loopback for a in addrs)
            result.append(Interface(name=adapter.nice_name, addresses=tuple(addrs), loopback=loop,
                                    networks=tuple(networks)))
        return result

    async def bind_udp(self, address: str, port: int = 0, *, reuse: bool = False) -> UdpSocket:
        raw = _stdsocket.socket(_family(address), _stdsocket.SOCK_DGRAM)
        try:
            raw.setblocking(False)
            if reuse:
                raw.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
                if hasattr(_stdsocket, "SO_REUSEPORT"):
                    raw.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEPORT, 1)
            if _family(address) == _stdsocket.AF_INET6:
                raw.setsockopt(_stdsocket.IPPROTO_IPV6, _stdsocket.IPV6_V6ONLY, 1)
            raw.bind((address, port))  # an IP literal: no name resolution, never blocks
            await trio.lowlevel.checkpoint()  # cancelled here: the socket is closed, not left to the collector
        except BaseException:
            raw.close()
            raise
        return OSUdpSocket(raw)

    async def connect_tcp(self, remote: Address, *, local: Address | None = None) -> tuple[trio.abc.Stream, Address]:
        sock = trio.socket.socket(_family(remote[0]), trio.socket.SOCK_STREAM)
        try:
            if local is not None:
                sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
                await sock.bind(local)
            await sock.connect(remote)
        except BaseException:
            sock.close()
            raise
        stream = trio.SocketStream(sock)
        return stream, _norm(sock.getsockname())

    async def listen_tcp(self, address: str, port: int = 0) -> TcpListener:
        sock = trio.socket.socket(_family(address), trio.socket.SOCK_STREAM)
        try:
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
            if _family(address) == trio.socket.AF_INET6:
                sock.setsockopt(trio.socket.IPPROTO_IPV6, trio.socket.IPV6_V6ONLY, 1)
            await sock.bind((address, port))
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        return OSTcpListener(trio.SocketListener(sock))

    async def resolve(self, host: str, port: int) -> list[Address]:
        try:
            ipaddress.ip_address(host)
            return [(host, port)]
        except ValueError:
            pass
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_DGRAM)
        out: list[Address] = []
        for family, *_rest, sockaddr in sorted(infos, key=lambda i: i[0] != trio.socket.AF_INET):
            addr = _norm(sockaddr)
            if addr not in out and family in (trio.socket.AF_INET, trio.socket.AF_INET6):
                out.append(addr)
        return out

    async def default_gateway(self, family: int = 4) -> str | None:
        """The next hop of the default route of IPv4 (4) or IPv6 (6), from /proc/net/route or
        /proc/net/ipv6_route (lowest metric); None when there is none (or no /proc: not Linux)."""
        gateway = read_default_gateway(family)
        await trio.lowlevel.checkpoint()
        return gateway

    async def join_multicast(self, sock: UdpSocket, group: str, interface_address: str) -> None:
        if not isinstance(sock, OSUdpSocket):
            raise TypeError("OSNetwork.join_multicast needs a socket from OSNetwork.bind_udp")
        raw = sock.raw
        if ":" in group:
            index = 0
            for adapter in ifaddr.get_adapters():
                for ip in adapter.ips:
                    if isinstance(ip.ip, tuple) and ip.ip[0] == interface_address:
                        index = adapter.index or 0
            mreq6 = _stdsocket.inet_pton(_stdsocket.AF_INET6, group) + struct.pack("@I", index)
            raw.setsockopt(trio.socket.IPPROTO_IPV6, trio.socket.IPV6_JOIN_GROUP, mreq6)
        else:
            mreq = _stdsocket.inet_aton(group) + _stdsocket.inet_aton(interface_address)
            raw.setsockopt(trio.socket.IPPROTO_IP, trio.socket.IP_ADD_MEMBERSHIP, mreq)
        await trio.lowlevel.checkpoint()

    def watch_interfaces(self) -> InterfaceChanges:
        """Address changes on this host: rtnetlink on Linux, else `interfaces()` polled (iceagent.net.watch).
        Every OSNetwork sees the same host, so they share one watcher per Trio run (one netlink socket
        however many agents subscribe)."""
        try:
            watcher = _OS_WATCHER.get()
        except LookupError:
            watcher = InterfaceWatcher(self.interfaces, os_change_source)
            _OS_WATCHER.set(watcher)
        return watcher.subscribe()


#: The OSNetworks' shared interface watcher, one per Trio run (its socket and tasks belong to that run).
_OS_WATCHER: trio.lowlevel.RunVar[InterfaceWatcher] = trio.lowlevel.RunVar("iceagent_os_interface_watcher")
