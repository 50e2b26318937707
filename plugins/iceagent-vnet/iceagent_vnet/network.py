"""VirtualNetwork: the iceagent `Network` seam of one virtual host (interfaces, UDP, TCP, names, multicast)."""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from iceagent.net.base import Address, Interface
from iceagent.net.watch import InterfaceChanges, InterfaceWatcher

from .addresses import WILDCARD_V4, check_port, is_ipv6, is_multicast, is_wildcard, normalize_ip, os_error
from .scheduler import current_scheduler
from .tcp import VirtualTcpListener, VirtualTcpStream
from .udp import VirtualUdpSocket

if TYPE_CHECKING:
    from .host import Host


def _bind_address(address: str) -> str:
    if address == "":
        return WILDCARD_V4
    try:
        return normalize_ip(address)
    except ValueError:
        raise os_error(errno.EADDRNOTAVAIL, f"{address!r} is not an IP address") from None


class VirtualNetwork:
    """The `iceagent.net.Network` of a virtual host; errors are the OS's (OSError with errno)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._watcher: InterfaceWatcher | None = None

    def interfaces(self) -> Sequence[Interface]:
        """The loopback ("lo": 127.0.0.1, ::1) and one interface per attachment (eth0, eth1, ...)."""
        return self.host.interfaces()

    async def bind_udp(self, address: str, port: int = 0, *, reuse: bool = False) -> VirtualUdpSocket:
        """Bind a UDP socket: OSError(EADDRNOTAVAIL) for an address the host lacks, EADDRINUSE for a taken port."""
        await trio.lowlevel.checkpoint()
        current_scheduler().advance()
        return self.host._bind_udp(_bind_address(address), check_port(port), reuse)

    async def connect_tcp(self, remote: Address, *, local: Address | None = None) -> tuple[trio.abc.Stream, Address]:
        """Open a TCP connection (through NATs); returns the stream and its local address."""
        await trio.lowlevel.checkpoint()
        current_scheduler().advance()
        host, port = remote
        try:
            ip = normalize_ip(host)
        except ValueError:
            resolved = await self.resolve(host, port)
            ip = resolved[0][0]
        local_address = None
        if local is not None:
            local_address = (_bind_address(local[0]), check_port(local[1]))
        stream: VirtualTcpStream
        stream, bound = await self.host.tcp.connect((ip, check_port(port)), local_address)
        return stream, bound

    async def listen_tcp(self, address: str, port: int = 0) -> VirtualTcpListener:
        """Listen for TCP connections on (address, port)."""
        await trio.lowlevel.checkpoint()
        current_scheduler().advance()
        return self.host.tcp.listen(_bind_address(address), check_port(port))

    async def resolve(self, host: str, port: int) -> list[Address]:
        """IP literals as given; "localhost"; names registered on the host or on segments it reaches."""
        await trio.lowlevel.checkpoint()
        try:
            return [(normalize_ip(host), port)]
        except ValueError:
            pass
        addresses = self.host.resolve_name(host)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, f"Name or service not known: {host!r}")
        return [(ip, port) for ip in sorted(addresses, key=is_ipv6)]

    async def join_multicast(self, sock: object, group: str, interface_address: str) -> None:
        """Join `group` on the interface with `interface_address` (a wildcard picks the first interface).

        As on Linux, datagrams to the group reach sockets bound to the group's port on the
        wildcard address or on the group address, that joined it on the interface they arrive on.
        """
        await trio.lowlevel.checkpoint()
        if not isinstance(sock, VirtualUdpSocket) or sock.host is not self.host:
            raise TypeError("join_multicast needs a socket from this VirtualNetwork's bind_udp")
        if sock.closed:
            raise trio.ClosedResourceError("the UDP socket was closed")
        try:
            group_ip = normalize_ip(group)
        except ValueError:
            raise os_error(errno.EINVAL, f"{group!r} is not an IP address") from None
        if not is_multicast(group_ip):
            raise os_error(errno.EINVAL, f"{group_ip} is not a multicast group")
        if is_ipv6(group_ip) != is_ipv6(sock.ip):
            raise os_error(errno.EINVAL, f"{group_ip} is not of the socket's family ({sock.ip})")
        iface_ip = _bind_address(interface_address)
        if is_wildcard(iface_ip):
            attachment = self.host.default_attachment(is_ipv6(group_ip))
        elif self.host.has_address(iface_ip):
            attachment = self.host.attachment_of(iface_ip)
        else:
            raise os_error(errno.EADDRNOTAVAIL, f"{iface_ip} is not an address of host {self.host.name!r}")
        membership = (group_ip, attachment)
        if membership in sock.groups:
            raise os_error(errno.EADDRINUSE, f"already a member of {group_ip} on {iface_ip}")
        sock.groups.add(membership)

    async def default_gateway(self, family: int = 4) -> str | None:
        """The gateway of the first interface with an address of `family` (4 or 6): the LAN-side address
        of that segment's router (the gateway of a host behind a simulated NAT); None on a segment
        without a router (the internet) or when that router has no address of the family."""
        if family not in (4, 6):
            raise ValueError(f"family must be 4 or 6, not {family!r}")
        await trio.lowlevel.checkpoint()
        ipv6 = family == 6
        for attachment in self.host.attachments:
            gateway = attachment.segment.gateway
            if attachment.address_for(ipv6) is not None and gateway is not None:
                return gateway.address_for(ipv6)
        return None

    def watch_interfaces(self) -> InterfaceChanges:
        """Address changes of this host (`Host.attach`, `detach`, `add_address`, `remove_address`), as
        `Network.watch_interfaces()` reports them; one watcher per host however many agents subscribe."""
        if self._watcher is None:
            self._watcher = InterfaceWatcher(self.host.interfaces, lambda: HostChanges(self.host))
        return self._watcher.subscribe()

    def __repr__(self) -> str:
        return f"<VirtualNetwork of {self.host.name}>"


class HostChanges:
    """The watcher's wake-up source on a virtual host: the host calls back on every change."""

    def __init__(self, host: Host) -> None:
        self._changed = False
        self._event: trio.Event | None = None
        self._stop = host.on_interfaces_changed(self._on_change)

    def _on_change(self) -> None:
        self._changed = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        while not self._changed:
            self._event = trio.Event()
            try:
                await self._event.wait()
            finally:
                self._event = None
        self._changed = False
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        self._stop()
