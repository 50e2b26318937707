"""The Network seam (interfaces, UDP, TCP, resolution, multicast), transport Protocols, and its OS implementation."""

from .base import (
    Address,
    CandidateTransport,
    ConnectionTransport,
    Interface,
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

__all__ = [
    "Address",
    "CandidateTransport",
    "ConnectionTransport",
    "Interface",
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
