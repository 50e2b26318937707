"""iceagent-vnet: a virtual internet in one process on Trio time, with RFC 4787 NATs, for iceagent.

Build a topology from `Internet`, `Lan`, `Router` and `Host` (each host's `.network` is an
iceagent `Network`), or take the ready-made `vnet()` scenario (also found through the
`iceagent_networks` plugin hook as "vnet").

The names load their modules on first use (PEP 562): the entry point (`iceagent_vnet.plugin`) is
loaded by every process that opens an agent, and must not bring the whole virtual network with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from iceagent._lazy_names import lazy_names

if TYPE_CHECKING:
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

#: Each public name and the submodule that defines it, imported on first access (PEP 562).
_LAZY = {
    "Address": "addresses",
    "Host": "host",
    "Link": "link",
    "ADF": "nat",
    "ADM": "nat",
    "APDF": "nat",
    "APDM": "nat",
    "EIF": "nat",
    "EIM": "nat",
    "PRESETS": "nat",
    "Dependency": "nat",
    "Mapping": "nat",
    "NatBehavior": "nat",
    "nat_preset": "nat",
    "VirtualNetwork": "network",
    "Router": "router",
    "Scenario": "scenario",
    "collect_drops": "scenario",
    "vnet": "scenario",
    "Attachment": "segment",
    "Internet": "segment",
    "Lan": "segment",
    "Segment": "segment",
    "VirtualTcpListener": "tcp",
    "VirtualTcpStream": "tcp",
    "VirtualUdpSocket": "udp",
}
#: The submodules the package imported when it loaded everything at once: still reachable as attributes.
_SUBMODULES = (
    "addresses",
    "host",
    "link",
    "nat",
    "network",
    "packet",
    "portmap",
    "router",
    "scenario",
    "scheduler",
    "segment",
    "tcp",
    "udp",
)

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

if not TYPE_CHECKING:  # mypy sees the imports above, so a misspelt name stays an error for it
    __getattr__, __dir__ = lazy_names(globals(), _LAZY, _SUBMODULES)
