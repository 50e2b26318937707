"""The built-in relay gatherer: one TURN allocation per `turn:`/`turns:` URL (RFC 8445 5.1.1.2, RFC 8656).

Each allocation yields a relay candidate whose transport is the allocation itself (its related address
is the mapped address of the Allocate response, or 0.0.0.0:0 under the relay-only policy, as browsers
do, so that no local or public address of this host appears in any candidate). The allocation lives
as long as the session: this gatherer keeps running to refresh it and releases it (Refresh with
LIFETIME 0) when the session ends. A server that cannot be used (wrong credentials, unreachable, TLS
failure, quota) is reported with `ctx.error` and gathering completes without it.

When no `stun:` server is configured, a TURN server over UDP also serves as the STUN server (it is
one, RFC 8656 2): a Binding request from each host socket yields a server-reflexive candidate based on
that socket, as other agents do. (The Allocate response's mapped address is that of the allocation's
own socket, which is not a base the agent receives checks on, so it is used only as related address.)

Pacing (RFC 8445 14.2: all agents of a process together start at most one new transaction per 5 ms). With
`IceConfig.global_pacing` (the default) each new STUN or TURN transaction this gatherer starts waits for a
slot of the process-wide pacer: the Binding requests (`ctx.stun_request`) and, through
`open_allocation(pace=ctx.pace)`, every new TURN request of the allocation:

- the Allocate, and its retry with credentials after 401 or with the new nonce after 438: RFC 8445
  5.1.1.2 counts a retry after a recoverable error such as an authentication failure as a new
  transaction of its own, paced like the first; so is a new Allocate after 300, 437 or 440;
- CreatePermission and ChannelBind, sent when checks go through the relay: 14.1 paces the STUN and TURN
  transactions of connectivity checks as well as of gathering;
- Refresh, the refreshes of permissions and channels, and the releasing Refresh: 14.2's cap is on all
  transactions of all agents, not only those of gathering and checks. Each of these waits at most
  MAX_PACED_WAIT (0.5 s) and half the time left before what it refreshes expires, then leaves with or
  without a slot, so that it reaches the server in time (RFC 8656 7, 8, 9, 12).

Retransmissions are the same transaction, timed by RFC 8489 6.2.1: they never wait for a slot. With
`global_pacing=False` `ctx.pace` is None and nothing waits.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import trio

from ..errors import StunTimeout
from ..hookspecs import hookimpl
from ..ice.candidate import Candidate
from ..ice.priority import candidate_priority
from ..logs import get_logger
from ..net.base import Address, UdpSocket
from ..stun.attributes import Attr
from ..stun.message import Message, MessageClass, Method
from ..turn.errors import TurnError, TurnUnsupportedFamily
from ..turn.transports import TurnTransportFactory, turn_transports
from ..uri import IceServer, IceUri
from ._rto import gathering_rto
from .base import GatherContext, GatherOptions
from .host import base_preference

if TYPE_CHECKING:  # the TURN client and driver load when a relay gatherer runs (_relay), not with the plugins
    from ..turn.allocation import Allocation

log = get_logger("iceagent.gather.relay")

#: Local preference of relay candidates by how the server is reached: UDP first, then TCP, then TLS
#: (RFC 8445 5.1.2.1 leaves it to the agent; relaying over TCP adds head-of-line blocking).
RELAY_LOCAL_PREFERENCE = {"udp": 65535, "tcp": 32767, "tls": 16383}


def _family(host: str) -> int:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return 4  # a name: IPv4 first, as Network.resolve orders them


class _Countdown:
    """Calls `done` once every initial task has reported (each exactly once)."""

    def __init__(self, count: int, done: Callable[[], None]) -> None:
        self.remaining = count
        self._done = done
        if count == 0:
            done()

    def finish(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self._done()


class RelayGatherer:
    """Allocates on every TURN server and emits the relay candidates; keeps the allocations alive."""

    kind = "relay"

    def __init__(self, servers: list[tuple[IceServer, IceUri]], reflexive_from: list[IceUri]) -> None:
        self.servers = servers
        #: `turn:` URLs over UDP also asked for server-reflexive candidates (no `stun:` server configured).
        self.reflexive_from = reflexive_from

    async def run(self, ctx: GatherContext) -> None:
        srflx = bool(self.reflexive_from) and ctx.options.ice_transport_policy != "relay"
        countdown = _Countdown(len(self.servers) + (1 if srflx else 0), ctx.done)
        try:
            transports = turn_transports(ctx.plugin_manager)
        except Exception:  # a broken plugin: the built-ins still work
            log.exception("collecting TURN transports from plugins failed")
            from ..turn.transports import BUILTIN_TRANSPORTS

            transports = dict(BUILTIN_TRANSPORTS)
        # Each step ends a little before gathering times out, so that its reason is the one reported.
        timeout = ctx.options.config.gather_timeout
        deadline = trio.current_time() + max(timeout * 0.9, timeout - 1.0)
        rto = gathering_rto(ctx)  # RFC 8445 14.3
        async with trio.open_nursery() as nursery:
            for index, (server, uri) in enumerate(self.servers):
                nursery.start_soon(
                    self._relay, ctx, server, uri, index, transports, deadline, countdown, rto, name=f"relay-{uri}"
                )
            if srflx:
                nursery.start_soon(self._reflexive, ctx, deadline, countdown, rto)

    async def _relay(
        self,
        ctx: GatherContext,
        server: IceServer,
        uri: IceUri,
        index: int,
        transports: dict[str, TurnTransportFactory],
        deadline: float,
        countdown: _Countdown,
        rto: float,
    ) -> None:
        from ..turn.allocation import open_allocation

        opts = ctx.options
        finished = False

        def finish() -> None:
            nonlocal finished
            if not finished:
                finished = True
                countdown.finish()

        local = _local_address(uri.host, opts.host_addresses)
        if local is None:
            restricted = list(opts.host_addresses or [])
            ctx.error(f"{uri}: no address of the server's family in host_addresses={restricted}: add one")
            finish()
            return
        assert server.username is not None and server.credential is not None  # IceServer checks turn: URLs
        # An IPv4 relayed address first (the default, RFC 8656 7.1); a server that relays only IPv6 answers
        # 440 and is asked again for that (7.2), as a TURN server on an IPv6-only network would need.
        families: list[Literal["ipv4", "ipv6"]] = ["ipv4", "ipv6"]
        try:
            for family in families:
                try:
                    async with open_allocation(
                        uri,
                        server.username,
                        server.credential,
                        network=ctx.network,
                        ssl_context=server.ssl_context,
                        local_address=local or None,  # "" = any
                        config=opts.config,
                        transports=transports,
                        deadline=deadline,
                        family=family,
                        pace=ctx.pace,
                        allocate_rto=rto,
                    ) as allocation:
                        allocation.on_lost = lambda error: ctx.error(str(error))
                        ctx.emit(self._candidate(ctx, allocation, uri, index), allocation)
                        finish()
                        await trio.sleep_forever()
                except TurnUnsupportedFamily as exc:
                    if family == families[-1]:
                        raise
                    log.info("%s; asking for an %s relayed address", exc, families[-1])
        except TurnError as exc:
            ctx.error(str(exc))
        finally:
            finish()

    def _candidate(self, ctx: GatherContext, allocation: Allocation, uri: IceUri, index: int) -> Candidate:
        """The relay candidate (RFC 8445 5.1.1.2): priority with type preference 0, foundation per server."""
        host, port = allocation.relayed_address
        if ctx.options.ice_transport_policy == "relay":
            related: Address | None = ("0.0.0.0", 0) if _family(host) == 4 else ("::", 0)
        else:
            related = allocation.mapped_address
        local_pref = max(0, RELAY_LOCAL_PREFERENCE.get(uri.protocol, 8191) - index)
        return Candidate(
            foundation=ctx.foundation(
                "relay", allocation.local_address[0], "udp", f"{allocation.server[0]}/{uri.protocol}"
            ),
            component=1,
            transport="udp",
            priority=candidate_priority("relay", 1, local_pref=local_pref),
            address=host,
            port=port,
            type="relay",
            related_address=None if related is None else related[0],
            related_port=None if related is None else related[1],
        )

    async def _reflexive(self, ctx: GatherContext, deadline: float, countdown: _Countdown, rto: float) -> None:
        """Server-reflexive candidates from Binding requests to the TURN servers (RFC 8445 5.1.1.2)."""
        resolved: list[Address] = []
        for uri in self.reflexive_from:
            try:
                for address in await ctx.network.resolve(uri.host, uri.port):
                    if address not in resolved:
                        resolved.append(address)
            except OSError as exc:
                log.debug("cannot resolve %s for a server-reflexive candidate: %s", uri, exc)
        try:
            with trio.move_on_at(deadline):
                await self._bindings(ctx, resolved, rto)
        finally:
            countdown.finish()

    async def _bindings(self, ctx: GatherContext, resolved: list[Address], rto: float) -> None:
        async with trio.open_nursery() as nursery:
            async for sock in ctx.bases():
                for server in resolved:
                    if _family(server[0]) == _family(sock.local_address[0]):
                        nursery.start_soon(self._binding, ctx, sock, server, rto)

    async def _binding(self, ctx: GatherContext, sock: UdpSocket, server: Address, rto: float) -> None:
        try:
            message = Message(Method.BINDING, MessageClass.REQUEST)
            response = await ctx.stun_request(sock, server, message, rto=rto)
        except StunTimeout as exc:
            log.debug("no server-reflexive candidate from the TURN server: %s", exc)
            return
        mapped = response.get(Attr.XOR_MAPPED_ADDRESS) or response.get(Attr.MAPPED_ADDRESS)
        if response.message_class is not MessageClass.SUCCESS or mapped is None:
            return
        base_host, base_port = sock.local_address
        if mapped == (base_host, base_port):
            return  # no NAT in between: the host candidate says it all
        ctx.emit(
            Candidate(
                foundation=ctx.foundation("srflx", base_host, "udp", server[0]),
                component=1,
                transport="udp",
                priority=candidate_priority("srflx", 1, local_pref=base_preference(ctx, base_host)),
                address=mapped[0],
                port=mapped[1],
                type="srflx",
                related_address=base_host,
                related_port=base_port,
            ),
            sock,
        )


def _local_address(server_host: str, host_addresses: Sequence[str] | None) -> str | None:
    """The local IP to reach the server from: "" for any, an address of host_addresses of the server's
    family, or None when host_addresses has none of that family."""
    if host_addresses is None:
        return ""
    family = _family(server_host)
    for address in host_addresses:
        if _family(address) == family:
            return address
    return None


@hookimpl
def iceagent_gatherers(options: GatherOptions) -> list[object]:
    """One relay gatherer when `turn:`/`turns:` servers are configured (RFC 8656, RFC 7065)."""
    servers: list[tuple[IceServer, IceUri]] = []
    has_stun = False
    for server in options.ice_servers:
        for uri in server.uris:
            if uri.is_turn:
                servers.append((server, uri))
            elif uri.scheme == "stun":
                has_stun = True
    if not servers:
        return []
    reflexive = [] if has_stun else [uri for _, uri in servers if uri.protocol == "udp"]
    return [RelayGatherer(servers, reflexive)]
