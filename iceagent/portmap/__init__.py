"""Port mapping on the default gateway: PCP (RFC 6887) with NAT-PMP fallback (RFC 6886), and UPnP-IGD.

pcp.py, natpmp.py, upnp.py and schedule.py are sans-IO (wire formats, validation, retransmission
schedules); client.py drives them over the Network seam; the `portmap` gatherer
(iceagent/gatherers/portmap.py) turns a granted mapping into a srflx candidate.
"""

from .errors import PortMapDecodeError, PortMapError, PortMapRefused, PortMapTimeout, UnsupportedVersion

__all__ = ["PortMapDecodeError", "PortMapError", "PortMapRefused", "PortMapTimeout", "UnsupportedVersion"]
