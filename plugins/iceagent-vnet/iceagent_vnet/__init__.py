"""iceagent-vnet: a virtual internet in one process on Trio time, with RFC 4787 NATs, for iceagent.

Build a topology from `Internet`, `Lan`, `Router` and `Host` (each host's `.network` is an
iceagent `Network`), or take the ready-made `vnet()` scenario (also found through the
`iceagent_networks` plugin hook as "vnet").
"""

from .addresses import Address
from .host import Host
from .link import Link
from .nat import (
    ADF,
    ADM,
    APDF,
    APDM,
    EIF,
    EIM,
    PRESETS,
    Dependency,
    Mapping,
    NatBehavior,
    nat_preset,
)
from .network import VirtualNetwork
from .router import Router
from .scenario import Scenario, collect_drops, vnet
from .segment import Attachment, Internet, Lan, Segment
from .tcp import VirtualTcpListener, VirtualTcpStream
from .udp import VirtualUdpSocket

__all__ = [
    "ADF",
    "ADM",
    "APDF",
    "APDM",
    "EIF",
    "EIM",
    "PRESETS",
    "Address",
    "Attachment",
    "Dependency",
    "Host",
    "Internet",
    "Lan",
    "Link",
    "Mapping",
    "NatBehavior",
    "Router",
    "Scenario",
    "Segment",
    "VirtualNetwork",
    "VirtualTcpListener",
    "VirtualTcpStream",
    "VirtualUdpSocket",
    "collect_drops",
    "nat_preset",
    "vnet",
]
