"""The built-in ICE-TCP gatherer (`tcp=True`): a passive and an active host candidate per local address
(RFC 6544 4.5), with the TCP local preference of RFC 6544 4.2. Simultaneous-open (`so`) candidates are
not gathered. The endpoints live as long as the session; their connections and listeners close with it."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import trio

from ..errors import PortRangeExhausted
from ..hookspecs import hookimpl
from ..ice.candidate import Candidate
from ..ice.priority import DEFAULT_OTHER_PREFERENCE, candidate_priority, local_preferences, tcp_local_preference
from ..logs import get_logger
from ._ports import bind_in_range
from .base import GatherContext, GatherOptions

if TYPE_CHECKING:
    from ..net._mux_agent import MuxGeneration
from .host import PUBLIC_IPS_SERVER, addresses_or_report, public_address
from .tcp_transport import TcpActiveEndpoint, TcpPassiveEndpoint

log = get_logger("iceagent.gather.tcp")

#: The port of an active candidate: the discard port, as RFC 6544 4.5 says (the real one is ephemeral).
ACTIVE_PORT = 9


def tcp_candidate(
    ctx: GatherContext,
    address: str,
    port: int,
    tcptype: str,
    other_pref: int,
    *,
    public: str | None = None,
    type: str = "host",
) -> Candidate:
    """A TCP host candidate: local preference 2^13 * direction-pref + other-pref (RFC 6544 4.2). `public`
    is the 1:1 NAT address from `public_ips`: the candidate's address in place of the host's (type "host"), or
    that of a srflx candidate whose base and related address are the host's (type "srflx", RFC 6544 4.5:
    a passive srflx candidate works through a NAT that forwards every port, which a 1:1 NAT does).

    UDP host candidates keep a local preference of 65535 - n (RFC 8421), above any TCP host candidate's
    (at most 6 * 2^13 + 8191 = 57343), so of two pairs of the same types the UDP one is checked and
    nominated first: TCP is the fallback for networks that block UDP.
    """
    srflx = type == "srflx"
    return Candidate(
        foundation=ctx.foundation(type, address, "tcp", PUBLIC_IPS_SERVER if srflx else None),
        component=1,
        transport="tcp",
        priority=candidate_priority(type, 1, local_pref=tcp_local_preference(type, tcptype, other_pref)),
        address=public or address,
        port=port,
        type=type,
        related_address=address if srflx else None,
        related_port=port if srflx else None,
        tcptype=tcptype,
    )


class TcpGatherer:
    """Listens on each local address (passive candidate) and offers an active candidate beside it."""

    kind = "tcp"

    async def run(self, ctx: GatherContext) -> None:
        opts = ctx.options
        if opts.mdns:
            # a TCP host candidate would carry the raw IP that mdns=True hides (mdns-ice-candidates 3.1.1)
            ctx.error("ICE-TCP candidates are not offered with mdns=True (they would reveal the host address)")
            ctx.done()
            return
        if opts.mux is not None:
            self._run_on_mux(ctx, opts.mux)
            return
        addresses = addresses_or_report(ctx)
        if addresses is None:
            return
        other_prefs = local_preferences(addresses, maximum=DEFAULT_OTHER_PREFERENCE) if addresses else {}
        config = opts.config
        async with trio.open_nursery() as nursery:
            for address in addresses:
                other = other_prefs[address]
                public = public_address(opts, address)
                replace = public if opts.public_ip_mode == "host" else None
                try:
                    listen = functools.partial(ctx.network.listen_tcp, address)
                    listener = await bind_in_range(listen, opts.port_range, address, "TCP listener")
                except PortRangeExhausted as exc:
                    ctx.error(str(exc))
                except OSError as exc:
                    ctx.error(f"cannot listen on TCP {address}: {exc.strerror or exc}")
                else:
                    passive = TcpPassiveEndpoint(listener, config)
                    await nursery.start(passive.run)
                    port = listener.local_address[1]
                    ctx.emit(tcp_candidate(ctx, address, port, "passive", other, public=replace), passive)
                    if public is not None and replace is None:
                        srflx = tcp_candidate(ctx, address, port, "passive", other, public=public, type="srflx")
                        ctx.emit(srflx, passive)
                if opts.lite:
                    continue  # a lite agent opens no connection: passive candidates only (RFC 6544 4.5)
                active = TcpActiveEndpoint(ctx.network, address, config, port_range=opts.port_range)
                await nursery.start(active.run)
                ctx.emit(tcp_candidate(ctx, address, ACTIVE_PORT, "active", other, public=replace), active)
            ctx.done()
            await trio.sleep_forever()  # the endpoints serve their connections until the session ends

    def _run_on_mux(self, ctx: GatherContext, generation: MuxGeneration) -> None:
        """With a mux: a passive candidate per mux ICE-TCP address (the mux listens and accepts; RFC 6544
        4.5); no active candidate, which would open a connection (a descriptor) per pair of every agent."""
        views = generation.tcp_transports
        if not views:
            ctx.error("the mux has no ICE-TCP listener: open it with open_mux(..., tcp=True)")
            ctx.done()
            return
        addresses = addresses_or_report(ctx, served=[v.local_address[0] for v in views])
        if addresses is None:
            return
        other_prefs = local_preferences(addresses, maximum=DEFAULT_OTHER_PREFERENCE) if addresses else {}
        for view in views:
            address, port = view.local_address
            if address not in other_prefs:
                continue
            public = public_address(ctx.options, address)
            replace = public if ctx.options.public_ip_mode == "host" else None
            ctx.emit(tcp_candidate(ctx, address, port, "passive", other_prefs[address], public=replace), view)
            if public is not None and replace is None:
                ctx.emit(tcp_candidate(ctx, address, port, "passive", other_prefs[address], public=public,
                                       type="srflx"), view)
        ctx.done()


#: The gatherer holds no state (what it opens lives in the session it runs for): one serves every agent.
_TCP = TcpGatherer()


@hookimpl
def iceagent_gatherers(options: GatherOptions) -> list[object]:
    """The TCP gatherer when `tcp=True` (not under the relay-only policy, which offers no host candidates)."""
    if not options.tcp or options.ice_transport_policy == "relay":
        return []
    return [_TCP]
