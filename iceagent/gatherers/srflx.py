"""The built-in server-reflexive gatherer: a STUN Binding from each host socket to each `stun:` server
(RFC 8445 5.1.1.2); one srflx candidate per distinct mapped address, related address = the base.

A request unanswered after its first RTO gets company: another transaction (new id) to the same server, up
to `PARALLEL_BINDINGS` in flight per base and server, started one RTO apart (RFC 8489 6.2 allows ten
outstanding transactions to one server; each new one also waits for its pacer slot, RFC 8445 14.2). Each
keeps RFC 8489 6.2.1's own schedule; the first answer wins and the others are cancelled. Under heavy loss
this quintuples the transmissions that fit in `gather_timeout` (5 -> 25 at 40 % loss per direction: a side
without a srflx candidate goes from 11 % to about 1 in 70 000; with 3 transactions, 15 transmissions, it
was 1 in 800, and behind a port-restricted NAT that side cannot be reached), at a cost of at most four more
requests per server on a path that has not answered for an RTO.

On a mux the base is the mux's shared socket, so the gatherer asks the mux (`MuxEndpoint.reflexive`): one
Binding transaction per (mux address, server) serves every agent on it, cached and kept alive by the mux.
"""

from __future__ import annotations

import ipaddress

import trio

from ..errors import StunTimeout
from ..hookspecs import hookimpl
from ..ice.candidate import Candidate
from ..ice.priority import candidate_priority
from ..logs import get_logger
from ..net._mux_routes import MuxError
from ..net.base import Address, UdpSocket
from ..stun.attributes import Attr
from ..stun.client import StunErrorResponse
from ..stun.message import Message, MessageClass, Method
from ._rto import gathering_rto
from .base import GatherContext, GatherOptions
from .host import base_preference

log = get_logger("iceagent.gather.srflx")

#: Binding transactions in flight at most per (base, server) while none has been answered (RFC 8489 6.2).
PARALLEL_BINDINGS = 5


def _family(host: str) -> int:
    return ipaddress.ip_address(host).version


def stun_preference(ctx: GatherContext, address: str) -> int:
    """The base's local preference; with port mapping 32768 less, so that every mapped srflx candidate (which
    takes the base's) comes first and each srflx of one base has its own (RFC 8445 5.1.2.1)."""
    preference = base_preference(ctx, address)
    return max(0, preference - 32768) if ctx.options.port_mapping else preference


class SrflxGatherer:
    """Learns this host's public mappings from STUN servers, over UDP."""

    kind = "srflx"

    def __init__(self, servers: list[tuple[str, int]]) -> None:
        self.servers = servers

    async def run(self, ctx: GatherContext) -> None:
        resolved: list[Address] = []
        for host, port in self.servers:
            try:
                addrs = await ctx.network.resolve(host, port)
            except OSError as exc:
                ctx.error(f"cannot resolve STUN server {host}:{port}: {exc}")
                continue
            resolved.extend(a for a in addrs if a not in resolved)
        query = self._query if ctx.options.mux is None else self._query_mux
        rto = gathering_rto(ctx)  # RFC 8445 14.3
        async with trio.open_nursery() as nursery:
            async for sock in ctx.bases():
                base_family = _family(sock.local_address[0])
                for server in resolved:
                    if _family(server[0]) == base_family:
                        nursery.start_soon(query, ctx, sock, server, rto)
        ctx.done()

    async def _query_mux(self, ctx: GatherContext, sock: UdpSocket, server: Address, rto: float) -> None:
        """Ask the mux for its shared binding to `server` (no request of this agent's own)."""
        assert ctx.options.mux is not None
        cfg = ctx.options.config
        try:
            mapped = await ctx.options.mux.agent.endpoint.reflexive(
                sock.local_address, server, rto=rto, rc=cfg.rc, rm=cfg.rm, refresh_rto=cfg.rto)
        except (StunTimeout, StunErrorResponse, MuxError) as exc:
            ctx.error(str(exc))
            return
        except trio.ClosedResourceError:
            return  # the agent or the mux is closing
        _emit(ctx, sock, server, mapped)

    async def _query(self, ctx: GatherContext, sock: UdpSocket, server: Address, rto: float) -> None:
        try:
            response = await first_answer(ctx, sock, server, rto=rto)
        except StunTimeout as exc:
            ctx.error(str(exc))
            return
        if response.message_class is not MessageClass.SUCCESS:
            error = response.get(Attr.ERROR_CODE)
            ctx.error(f"STUN server {server[0]}:{server[1]} answered with an error: {error}")
            return
        mapped = response.get(Attr.XOR_MAPPED_ADDRESS) or response.get(Attr.MAPPED_ADDRESS)
        if mapped is None:
            ctx.error(f"STUN server {server[0]}:{server[1]} sent no mapped address")
            return
        _emit(ctx, sock, server, mapped)


async def first_answer(
    ctx: GatherContext, sock: UdpSocket, server: Address, parallel: int = PARALLEL_BINDINGS, *, rto: float | None = None
) -> Message:
    """The first response to one of up to `parallel` Binding transactions from `sock` to `server`, started
    one RTO apart while none has been answered; the others are then cancelled (a late answer is dropped as
    unknown). When the first transaction times out (RFC 8489 6.2.1: 39.5 s at an RTO of 500 ms) the server is
    given up, the later ones too, and its StunTimeout raised. `rto`: each transaction's initial RTO (None:
    IceConfig.rto; the gatherer passes RFC 8445 14.3's gathering RTO)."""
    if rto is None:
        rto = ctx.options.config.rto
    answers: list[Message] = []
    timeouts: list[StunTimeout] = []
    async with trio.open_nursery() as nursery:

        async def one() -> None:
            try:
                message = Message(Method.BINDING, MessageClass.REQUEST)
                answers.append(await ctx.stun_request(sock, server, message, rto=rto))
            except StunTimeout as exc:
                timeouts.append(exc)
            nursery.cancel_scope.cancel()

        for i in range(parallel):
            if i:
                await trio.sleep(rto)
            nursery.start_soon(one)
    if answers:
        return answers[0]
    raise timeouts[0]


def _emit(ctx: GatherContext, sock: UdpSocket, server: Address, mapped: Address) -> None:
    """Emit the srflx candidate of `mapped` on base `sock`, unless it is the base itself (no NAT)."""
    emit_reflexive(ctx, sock, mapped, server[0], stun_preference(ctx, sock.local_address[0]))


def emit_reflexive(ctx: GatherContext, sock: UdpSocket, mapped: Address, source: str, local_pref: int) -> bool:
    """Emit a server-reflexive candidate (RFC 8445 5.1.1.2) at `mapped` whose base is `sock`, its foundation
    keyed by `source` (a STUN server, a port-mapping gateway); none when it is the base itself and the base
    is not hidden (no NAT: the host candidate says it all). With mdns=True the related address is hidden:
    raddr 0.0.0.0 (or ::), rport 9 (draft-ietf-mmusic-mdns-ice-candidates 3.1.1). True when emitted."""
    host, port = mapped
    base_host, base_port = sock.local_address
    mdns = ctx.options.mdns
    if (host, port) == (base_host, base_port) and not mdns:
        return False
    related = ("::" if ":" in base_host else "0.0.0.0", 9) if mdns else (base_host, base_port)
    cand = Candidate(
        foundation=ctx.foundation("srflx", base_host, "udp", source),
        component=1,
        transport="udp",
        priority=candidate_priority("srflx", 1, local_pref=local_pref),
        address=host,
        port=port,
        type="srflx",
        related_address=related[0],
        related_port=related[1],
    )
    ctx.emit(cand, sock)
    return True


@hookimpl
def iceagent_gatherers(options: GatherOptions) -> list[object]:
    """One srflx gatherer when `stun:` servers are configured (UDP; TCP arrives with ICE-TCP)."""
    servers: list[tuple[str, int]] = []
    for server in options.ice_servers:
        for uri in server.uris:
            if uri.scheme == "stun" and uri.transport == "udp":
                servers.append((uri.host, uri.port))
    return [SrflxGatherer(servers)] if servers else []
