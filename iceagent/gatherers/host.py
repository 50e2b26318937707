"""The built-in host gatherer: one UDP socket per local address, one host candidate each (RFC 8445 5.1.1.1)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from ..hookspecs import hookimpl
from ..ice.candidate import Candidate
from ..ice.priority import candidate_priority, local_preferences
from ..logs import get_logger
from ..net.base import Network
from .base import GatherContext, GatherOptions

log = get_logger("iceagent.gather.host")


def host_addresses(network: Network, restrict: Sequence[str] | None) -> list[str]:
    """The local IPs to gather on: `restrict` as given (validated), else every usable interface address.

    Loopback and link-local addresses are skipped when enumerating (RFC 8445 5.1.1.1 says they
    SHOULD NOT be included); they are used when named explicitly.
    """
    if restrict is not None:
        out = []
        for a in restrict:
            try:
                out.append(str(ipaddress.ip_address(a)))
            except ValueError:
                raise ValueError(f"host_addresses: {a!r} is not an IP address") from None
        return list(dict.fromkeys(out))
    found: list[str] = []
    for iface in network.interfaces():
        for a in iface.addresses:
            ip = ipaddress.ip_address(a.split("%", 1)[0])
            if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
                continue
            if ip.version == 6 and ip.ipv4_mapped is not None:
                continue
            found.append(str(ip))
    return list(dict.fromkeys(found))


class HostGatherer:
    """Binds a UDP socket on each local address and emits a host candidate for it."""

    kind = "host"

    async def run(self, ctx: GatherContext) -> None:
        opts = ctx.options
        try:
            addresses = host_addresses(ctx.network, opts.host_addresses)
        except ValueError as exc:
            ctx.error(str(exc))
            ctx.done()
            return
        prefs = local_preferences(addresses)
        for address in addresses:
            try:
                sock = await ctx.network.bind_udp(address, 0)
            except OSError as exc:
                ctx.error(f"cannot bind UDP on {address}: {exc.strerror or exc}")
                continue
            ctx.add_base(sock)
            if opts.mdns or opts.ice_transport_policy == "relay":
                continue  # the mdns gatherer names it / relay-only hides host addresses
            host, port = sock.local_address
            cand = Candidate(
                foundation=ctx.foundation("host", host, "udp"),
                component=1,
                transport="udp",
                priority=candidate_priority("host", 1, local_pref=prefs[address]),
                address=host,
                port=port,
                type="host",
            )
            ctx.emit(cand, sock)
        ctx.done()


@hookimpl
def iceagent_gatherers(options: GatherOptions) -> list[object]:
    """The host gatherer is always on: other gatherers build on its sockets."""
    return [HostGatherer()]
