"""The Network seam (interfaces, UDP, TCP, resolution, multicast), transport Protocols, and its OS implementation."""

from .base import (
    Address,
    CandidateTransport,
    ConnectionTransport,
    Interface,
    InterfaceChange,
    Network,
    NetworkWrapper,
    SupportsReceiveBatch,
    SupportsSendNowait,
    SupportsTrySend,
    TcpListener,
    TransportCapabilities,
    UdpSocket,
    transport_capabilities,
)
from .os import OSNetwork
from .watch import InterfaceChanges

__all__ = [
    "Address",
    "CandidateTransport",
    "ConnectionTransport",
    "Interface",
    "InterfaceChange",
    "InterfaceChanges",
    "Network",
    "NetworkWrapper",
    "OSNetwork",
    "SupportsReceiveBatch",
    "SupportsSendNowait",
    "SupportsTrySend",
    "TcpListener",
    "TransportCapabilities",
    "UdpSocket",
    "transport_capabilities",
]
