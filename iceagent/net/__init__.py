"""The Network seam (interfaces, UDP, TCP, resolution, multicast) and its OS implementation."""

from .base import Address, Interface, Network, NetworkWrapper, TcpListener, UdpSocket
from .os import OSNetwork

__all__ = ["Address", "Interface", "Network", "NetworkWrapper", "OSNetwork", "TcpListener", "UdpSocket"]
