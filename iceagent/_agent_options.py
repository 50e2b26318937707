"""`open_agent`'s server options (DESIGN.md "Contract", "ICE-lite", "Addresses"): checked before anything opens.

The address options (`port_range`, `public_ips`, `public_ip_mode`, `interface_filter`, `ip_filter`) and `lite`
come back normalized, as GatherOptions fields. Options whose issue has not landed raise NotImplementedError, after
every check that can already be made (so a wrong combination is reported as such, not as "not yet").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._addresses import IP, category
from .uri import IceServer

__all__ = ["MAX_PUBLIC_IPS", "check_agent_options"]

#: Most entries of `public_ips`: one per host address; a host with more addresses than this has other problems.
MAX_PUBLIC_IPS = 1024
PUBLIC_IP_MODES = ("srflx", "host")
#: What no 1:1 NAT can map to or from: a datagram to these reaches no one host (RFC 8445 5.1.1.1's exclusions).
_NOT_MAPPABLE = frozenset({"unspecified", "multicast", "broadcast"})


def check_agent_options(
    *,
    controlling: bool,
    mdns: bool,
    mux: object,
    lite: bool,
    port_range: object,
    public_ips: object,
    public_ip_mode: str,
    interface_filter: object,
    ip_filter: object,
    port_mapping: bool,
    continual_gathering: bool,
    ice_servers: object = (),
) -> dict[str, Any]:
    """Validate the options; return the GatherOptions fields for the address ones.

    ValueError/TypeError for values that can never work, NotImplementedError for options not built yet."""
    for flag, value in (("lite", lite), ("port_mapping", port_mapping)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be True or False, not {type(value).__name__}")
    if lite and controlling:
        raise ValueError(
            "open_agent(lite=True, controlling=True): an ICE-lite agent never controls against a full peer "
            "(RFC 8445 6.1.1, 7.3.1.1); open it with controlling=False (a full peer takes the controlling role)"
        )
    if public_ip_mode not in PUBLIC_IP_MODES:
        raise ValueError(f"public_ip_mode must be 'srflx' or 'host', not {public_ip_mode!r}")
    if lite:
        public_ip_mode = _lite_options(
            mdns=mdns, public_ips=public_ips, ice_servers=ice_servers, port_mapping=port_mapping, mode=public_ip_mode
        )
    if public_ip_mode == "host" and mdns:
        raise ValueError(
            "public_ip_mode='host' with mdns=True: a public host address needs no .local name (it is public "
            "anyway); use public_ip_mode='srflx' to keep the host address behind mDNS and add the public one"
        )
    if mux is not None and port_range is not None:
        raise ValueError(
            f"open_agent(mux=..., port_range={port_range!r}): a mux agent binds no port of its own (it uses the "
            "mux's ports, chosen by open_mux(port=...)); drop port_range or open the agent without mux"
        )
    if mux is not None and port_mapping:
        raise ValueError(
            "open_agent(mux=..., port_mapping=True): every agent on the mux would ask the gateway to map the "
            "same shared port (RFC 6887 refuses a second nonce, and the first agent to close would delete the "
            "mapping the others advertise); forward the mux port on the gateway once and pass public_ips instead"
        )
    options = {
        "port_range": _port_range(port_range),
        "public_ips": _public_ips(public_ips),
        "public_ip_mode": public_ip_mode,
        "interface_filter": _callable("interface_filter", interface_filter),
        "ip_filter": _callable("ip_filter", ip_filter),
        "lite": lite,
        "port_mapping": port_mapping,
    }
    return options


def _lite_options(*, mdns: bool, public_ips: object, ice_servers: object, port_mapping: bool, mode: str) -> str:
    """A lite agent offers host candidates only (RFC 8445 2.5, 5.1.1.1): STUN/TURN servers and port mapping
    have nothing to do for it (a ValueError, not silently unused), and `public_ips` replace the host address
    (mode "host", whatever `public_ip_mode` says). Returns the public_ip_mode to use."""
    if port_mapping:
        raise ValueError(
            "open_agent(lite=True, port_mapping=True): an ICE-lite agent offers host candidates only (RFC 8445 "
            "2.5), so a mapped address would go unused; give public_ips={host: public} for a forwarded address"
        )
    if ice_servers:
        raise ValueError(
            "open_agent(lite=True, ice_servers=...): an ICE-lite agent offers host candidates only (RFC 8445 "
            "2.5), so STUN/TURN servers would go unused; give none, and public_ips={host: public} for a "
            "1:1 NAT address"
        )
    if public_ips is None:
        return mode
    if mdns:
        raise ValueError(
            "open_agent(lite=True, public_ips=..., mdns=True): a lite agent's public_ips replace the host "
            "address (RFC 8445 2.5: host candidates only), and a public host address needs no .local name"
        )
    return "host"


def _port_range(value: object) -> tuple[int, int] | None:
    if value is None:
        return None
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or not all(isinstance(p, int) and not isinstance(p, bool) for p in value)
    ):
        raise TypeError(f"port_range must be a pair of ints (lo, hi), not {value!r:.60}")
    low, high = value
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"port_range=({low}, {high}) must satisfy 1 <= lo <= hi <= 65535")
    return (low, high)


def _ip(value: object, what: str) -> IP:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        ip: IP = value
    elif isinstance(value, str):
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"public_ips: {what} {value!r:.60} is not an IP address") from None
    else:
        raise TypeError(f"public_ips: {what} must be an IP address string, not {type(value).__name__}")
    reason = category(ip, _NOT_MAPPABLE)
    if reason is not None:
        raise ValueError(f"public_ips: {what} {ip} is a {reason} address: no 1:1 NAT maps it")
    return ip


def _public_ips(value: object) -> dict[str, str] | None:
    """{host address: public address} as normalized strings; both IP literals of one family (a 1:1 NAT)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(
            f"public_ips must be a mapping of host address to public address such as "
            f"{{'10.0.0.5': '203.0.113.7'}}, not {type(value).__name__}"
        )
    if len(value) > MAX_PUBLIC_IPS:
        raise ValueError(f"public_ips has {len(value)} entries; at most {MAX_PUBLIC_IPS}")
    out: dict[str, str] = {}
    for key, public in value.items():
        local_ip = _ip(key, "host address")
        public_ip = _ip(public, f"public address of {key}")
        if local_ip.version != public_ip.version:
            raise ValueError(
                f"public_ips: {local_ip} -> {public_ip} maps between address families (a 1:1 NAT keeps the family)"
            )
        if str(local_ip) in out:
            raise ValueError(f"public_ips names {local_ip} twice")
        out[str(local_ip)] = str(public_ip)
    return out


def _callable(name: str, value: object) -> Callable[[Any], object] | None:
    if value is None or callable(value):
        return value
    raise TypeError(f"{name} must be a callable returning a bool (or None), not {type(value).__name__}")


def check_servers(ice_servers: Sequence[IceServer] | None, ice_transport_policy: str) -> tuple[IceServer, ...]:
    """The ICE servers as a tuple, checked against the transport policy ("relay" needs a TURN server)."""
    if ice_transport_policy not in ("all", "relay"):
        raise ValueError(f"ice_transport_policy must be 'all' or 'relay', not {ice_transport_policy!r}")
    servers = tuple(ice_servers or ())
    for server in servers:
        if not isinstance(server, IceServer):
            raise TypeError(f"ice_servers takes IceServer objects, not {type(server).__name__}")
    if ice_transport_policy == "relay" and not any(u.is_turn for s in servers for u in s.uris):
        raise ValueError(
            "ice_transport_policy='relay' gathers relay candidates only: give a TURN server, e.g. "
            "ice_servers=[IceServer(urls=['turn:HOST:3478'], username=..., credential=...)]"
        )
    return servers
