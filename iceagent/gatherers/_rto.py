"""The initial RTO of the STUN and TURN transactions of gathering (RFC 8445 14.3).

"During the ICE gathering phase, ICE agents SHOULD calculate the RTO value using the following formula:
RTO = MAX (500ms, Ta * (Num-Of-Cands))", Num-Of-Cands being the number of server-reflexive and relay
candidates: with many servers and bases, every first request then goes out (one per Ta) before any is
sent again. Here the 500 ms is `IceConfig.rto` (500 ms by default) and Ta is `IceConfig.ta`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from .base import GatherContext, GatherOptions
from .host import gather_addresses

__all__ = ["gathering_rto", "num_of_cands"]


def _family(host: str) -> int | None:
    """4 or 6 for an IP literal, None for a name (it may resolve to either)."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def num_of_cands(options: GatherOptions, addresses: Sequence[str]) -> int:
    """RFC 8445 14.3's Num-Of-Cands for gathering on the host `addresses` with `options.ice_servers`: a
    server-reflexive candidate per address and `stun:` server over UDP of its IP version (a name counts
    for every address), a relayed one per `turn:`/`turns:` URL (gatherers/relay.py: one allocation each),
    and, with no `stun:` server, a server-reflexive one per address and `turn:` server over UDP (the relay
    gatherer asks those for it unless the policy is relay only)."""
    stun: list[str] = []
    turn_udp: list[str] = []
    relays = 0
    for server in options.ice_servers:
        for uri in server.uris:
            if uri.is_turn:
                relays += 1
                if uri.protocol == "udp":
                    turn_udp.append(uri.host)
            elif uri.scheme == "stun" and uri.transport == "udp":
                stun.append(uri.host)
    reflexive = stun if stun else turn_udp if options.ice_transport_policy != "relay" else []
    families = [_family(address) for address in addresses]
    return relays + sum(1 for host in reflexive for version in families if _family(host) in (None, version))


def gathering_rto(ctx: GatherContext) -> float:
    """The initial RTO of a gathering transaction of this generation: max(config.rto, Ta x Num-Of-Cands)
    (RFC 8445 14.3), counted over the addresses the host gatherer gathers on (none when it cannot say)."""
    config = ctx.options.config
    try:
        addresses = gather_addresses(ctx)
    except ValueError:  # a filter that raises: the host gatherer reports it
        addresses = []
    return max(config.rto, config.ta * num_of_cands(ctx.options, addresses))
