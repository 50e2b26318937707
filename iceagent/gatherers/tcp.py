"""The built-in ICE-TCP gatherer (`tcp=True`): a passive and an active host candidate per local address
(RFC 6544 4.5), with the TCP local preference of RFC 6544 4.2. Simultaneous-open (`so`) candidates are
not gathered. The endpoints live as long as the session; their connections and listeners close with it."""

from __future__ import annotations

import trio

from ..hookspecs import hookimpl
from ..ice.candidate import Candidate
from ..ice.priority import DEFAULT_OTHER_PREFERENCE, candidate_priority, local_preferences, tcp_local_preference
from ..logs import get_logger
from .base import GatherContext, GatherOptions
from .host import host_addresses
from .tcp_transport import TcpActiveEndpoint, TcpPassiveEndpoint

log = get_logger("iceagent.gather.tcp")

#: The port of an active candidate: the discard port, as RFC 6544 4.5 says (the real one is ephemeral).
ACTIVE_PORT = 9


def tcp_candidate(ctx: GatherContext, address: str, port: int, tcptype: str, other_pref: int) -> Candidate:
    """A TCP host candidate: local preference 2^13 * direction-pref + other-pref (RFC 6544 4.2).

    UDP host candidates keep a local preference of 65535 - n (RFC 8421), above any TCP host candidate's
    (at most 6 * 2^13 + 8191 = 57343), so of two pairs of the same types the UDP one is checked and
    nominated first: TCP is the fallback for networks that block UDP.
    """
    return Candidate(
        foundation=ctx.foundation("host", address, "tcp"),
        component=1,
        transport="tcp",
        priority=candidate_priority("host", 1, local_pref=tcp_local_preference("host", tcptype, other_pref)),
        address=address,
        port=port,
        type="host",
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
        try:
            addresses = host_addresses(ctx.network, opts.host_addresses)
        except ValueError as exc:
            ctx.error(str(exc))
            ctx.done()
            return
        other_prefs = local_preferences(addresses, maximum=DEFAULT_OTHER_PREFERENCE) if addresses else {}
        config = opts.config
        async with trio.open_nursery() as nursery:
            for address in addresses:
                other = other_prefs[address]
                try:
                    listener = await ctx.network.listen_tcp(address, 0)
                except OSError as exc:
                    ctx.error(f"cannot listen on TCP {address}: {exc.strerror or exc}")
                else:
                    passive = TcpPassiveEndpoint(listener, config)
                    await nursery.start(passive.run)
                    port = listener.local_address[1]
                    ctx.emit(tcp_candidate(ctx, address, port, "passive", other), passive)
                active = TcpActiveEndpoint(ctx.network, address, config)
                await nursery.start(active.run)
                ctx.emit(tcp_candidate(ctx, address, ACTIVE_PORT, "active", other), active)
            ctx.done()
            await trio.sleep_forever()  # the endpoints serve their connections until the session ends


@hookimpl
def iceagent_gatherers(options: GatherOptions) -> list[object]:
    """The TCP gatherer when `tcp=True` (not under the relay-only policy, which offers no host candidates)."""
    if not options.tcp or options.ice_transport_policy == "relay":
        return []
    return [TcpGatherer()]
