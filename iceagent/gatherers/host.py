"""The built-in host gatherer: one UDP socket per local address, one host candidate each (RFC 8445 5.1.1.1).

With `public_ips` (a 1:1 NAT, such as a cloud VM's elastic IP) the public address of a host address is
advertised without a STUN round trip: as a server-reflexive candidate whose base is the host socket
(`public_ip_mode="srflx"`, RFC 8445 5.1.1.2), or in place of the host candidate's address ("host").
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import trio

from .._addresses import IP
from ..errors import PortRangeExhausted
from ..hookspecs import hookimpl
from ..ice.candidate import Candidate
from ..ice.priority import candidate_priority, local_preferences
from ..logs import get_logger
from ..net.base import Network, UdpSocket
from ._ports import bind_in_range
from .base import GatherContext, GatherOptions

if TYPE_CHECKING:
    from ..net._mux_agent import MuxGeneration

log = get_logger("iceagent.gather.host")

V = TypeVar("V")

#: The `server` part of the foundation of a srflx candidate made from `public_ips` (RFC 8445 5.1.1.3: one
#: foundation per type, base IP, transport and server; here the "server" is the configuration).
PUBLIC_IPS_SERVER = "public_ips"


def host_addresses(
    network: Network,
    restrict: Sequence[str] | None,
    *,
    interface_filter: Callable[[str], object] | None = None,
    ip_filter: Callable[[IP], object] | None = None,
) -> list[str]:
    """The local IPs to gather on: `restrict` as given (validated), else every usable interface address;
    then only those whose interface `interface_filter(name)` and whose address `ip_filter(ip)` accept
    (an explicit address on no interface the Network lists is judged by `ip_filter` alone).

    Loopback and link-local addresses are skipped when enumerating (RFC 8445 5.1.1.1 says they
    SHOULD NOT be included); they are used when named explicitly. A filter that raises is a ValueError.
    """
    if restrict is not None:
        addresses = host_addresses_of(restrict)
    else:
        found: list[str] = []
        for iface in network.interfaces():
            for a in iface.addresses:
                ip = ipaddress.ip_address(a.split("%", 1)[0])
                if enumerable(ip):
                    found.append(str(ip))
        addresses = list(dict.fromkeys(found))
    if interface_filter is None and ip_filter is None:
        return addresses
    names: dict[str, str] = {}
    if interface_filter is not None:
        for iface in network.interfaces():
            for a in iface.addresses:
                names.setdefault(str(ipaddress.ip_address(a.split("%", 1)[0])), iface.name)
    kept = []
    for address in addresses:
        name = names.get(address)
        if interface_filter is not None and name is not None and not _ask(interface_filter, name, "interface_filter"):
            continue
        if ip_filter is not None and not _ask(ip_filter, ipaddress.ip_address(address), "ip_filter"):
            continue
        kept.append(address)
    return kept


def enumerable(ip: IP) -> bool:
    """Whether an address found by enumerating interfaces is gathered (RFC 8445 5.1.1.1: not loopback nor
    link-local; never unspecified, multicast or IPv4-mapped)."""
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast
                or (ip.version == 6 and ip.ipv4_mapped is not None))


def _ask(check: Callable[[V], object], value: V, what: str) -> bool:
    try:
        return bool(check(value))
    except Exception as exc:
        raise ValueError(f"{what}({str(value)!r}) raised {type(exc).__name__}: {exc}") from exc


def gather_addresses(ctx: GatherContext, served: Sequence[str] | None = None) -> list[str]:
    """`host_addresses` with the agent's options: what every host-based gatherer (UDP, TCP, mDNS) uses.
    With a mux, `served` (default: the mux's UDP addresses) stands for the interfaces: see `mux_addresses`."""
    opts = ctx.options
    restrict = opts.host_addresses
    if opts.mux is not None:
        if served is None:
            served = [t.local_address[0] for t in opts.mux.transports]
        restrict = mux_addresses(opts.mux, served, restrict)
    return host_addresses(ctx.network, restrict, interface_filter=opts.interface_filter, ip_filter=opts.ip_filter)


def addresses_or_report(ctx: GatherContext, served: Sequence[str] | None = None) -> list[str] | None:
    """`gather_addresses`, or None after reporting why there are none to the gatherer's context and ending
    its gathering (a host-based gatherer then has nothing to do)."""
    try:
        return gather_addresses(ctx, served)
    except ValueError as exc:
        ctx.error(str(exc))
        ctx.done()
        return None


def base_preference(ctx: GatherContext, address: str) -> int:
    """The local preference the host gatherer gave the base at `address` (RFC 8421), for the candidates
    built on it (srflx, relay); 65535 when it is not one of the gathered addresses."""
    try:
        addresses = gather_addresses(ctx)
    except ValueError:
        addresses = []
    return local_preferences(addresses or [address]).get(address, 65535)


def mux_addresses(generation: MuxGeneration, served: Sequence[str], restrict: Sequence[str] | None) -> list[str]:
    """The mux addresses an agent gathers on: those `host_addresses` names (a ValueError names one the mux
    does not serve), else all but the loopback and link-local ones a wildcard mux found (RFC 8445 5.1.1.1)."""
    if restrict is None:
        return [a for a in served if not (generation.from_wildcard(a) and not enumerable(ipaddress.ip_address(a)))]
    wanted = host_addresses_of(restrict)
    missing = [a for a in wanted if a not in served]
    if missing:
        raise ValueError(f"host_addresses: the mux serves no {missing[0]} (it serves {', '.join(served) or 'nothing'}; "
                         "open_mux decides the addresses of a mux agent)")
    return wanted


def host_addresses_of(restrict: Sequence[str]) -> list[str]:
    """`host_addresses` as normalized IP literals, in order, without repeats (ValueError on a non-IP)."""
    key = tuple(restrict)
    try:
        return list(_normalized(key))
    except TypeError:  # an unhashable item (not an IP address either): judged without the cache
        return list(_normalized.__wrapped__(key))


@functools.lru_cache(maxsize=256)
def _normalized(restrict: tuple[str, ...]) -> tuple[str, ...]:
    """`host_addresses_of`, remembered: every agent of an application usually names the same addresses, and
    parsing them is most of what the host gatherer computes per agent. Bounded; errors are not remembered."""
    out = []
    for a in restrict:
        try:
            out.append(str(ipaddress.ip_address(a)))
        except ValueError:
            raise ValueError(f"host_addresses: {a!r} is not an IP address") from None
    return tuple(dict.fromkeys(out))


def public_address(options: GatherOptions, address: str) -> str | None:
    """The 1:1 NAT address `public_ips` gives a host address, None when there is none or it is the same
    (then a srflx candidate would be redundant with the host one, RFC 8445 5.1.3)."""
    public = (options.public_ips or {}).get(address)
    return None if public == address else public


class HostGatherer:
    """Binds a UDP socket on each local address and emits a host candidate for it; with a mux, takes the
    mux's transport of each address instead (one port shared by many agents, DESIGN.md "open_mux")."""

    kind = "host"

    async def run(self, ctx: GatherContext) -> None:
        opts = ctx.options
        if opts.mux is not None:
            await self._run_on_mux(ctx, opts.mux)
            return
        addresses = addresses_or_report(ctx)
        if addresses is None:
            return
        prefs = local_preferences(addresses)
        for address in addresses:
            try:
                bind = functools.partial(ctx.network.bind_udp, address)
                sock = await bind_in_range(bind, opts.port_range, address, "UDP")
            except PortRangeExhausted as exc:
                ctx.error(str(exc))
                continue
            except OSError as exc:
                ctx.error(f"cannot bind UDP on {address}: {exc.strerror or exc}")
                continue
            _emit_host(ctx, sock, prefs[address])
        ctx.done()

    async def _run_on_mux(self, ctx: GatherContext, generation: MuxGeneration) -> None:
        """The generation's views of the mux's addresses are its host sockets (the agent opened the
        generation on the mux, its ufrag registered, and closes it with the generation)."""
        addresses = addresses_or_report(ctx)
        if addresses is None:
            return
        prefs = local_preferences(addresses)
        for view in generation.transports:
            if view.local_address[0] in prefs:
                _emit_host(ctx, view, prefs[view.local_address[0]])
        ctx.done()
        await trio.lowlevel.checkpoint()


def _emit_host(ctx: GatherContext, sock: UdpSocket, local_pref: int) -> None:
    """Register a host socket as a base and emit its host candidate (and the 1:1 NAT's srflx one)."""
    opts = ctx.options
    ctx.add_base(sock)
    if opts.ice_transport_policy == "relay":
        return  # relay-only hides host addresses
    host, port = sock.local_address
    public = public_address(opts, host)
    if not opts.mdns:  # with mdns=True the mdns gatherer names the socket
        cand = Candidate(
            foundation=ctx.foundation("host", host, "udp"),
            component=1,
            transport="udp",
            priority=candidate_priority("host", 1, local_pref=local_pref),
            address=public if public is not None and opts.public_ip_mode == "host" else host,
            port=port,
            type="host",
        )
        ctx.emit(cand, sock)
    if public is not None and opts.public_ip_mode == "srflx":
        # RFC 8445 5.1.1.2: a srflx candidate's base is the host socket, so checks leave from it
        cand = Candidate(
            foundation=ctx.foundation("srflx", host, "udp", PUBLIC_IPS_SERVER),
            component=1,
            transport="udp",
            priority=candidate_priority("srflx", 1, local_pref=local_pref),
            address=public,
            port=port,
            type="srflx",
            related_address=host,
            related_port=port,
        )
        ctx.emit(cand, sock)


#: The gatherer holds no state (what it opens lives in the session it runs for): one serves every agent.
_HOST = HostGatherer()


@hookimpl
def iceagent_gatherers(options: GatherOptions) -> list[object]:
    """The host gatherer is always on: other gatherers build on its sockets."""
    return [_HOST]
