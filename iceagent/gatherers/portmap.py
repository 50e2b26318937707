"""The built-in port-mapping gatherer (`open_agent(port_mapping=True)`): ask the default gateway to forward
a public port to each host UDP socket, by PCP (RFC 6887, falling back to NAT-PMP, RFC 6886) and UPnP-IGD at
the same time, and offer each granted mapping as a srflx candidate whose base is that socket.

Each protocol's mapping is its own candidate, with a foundation per gateway and protocol (RFC 8445
5.1.1.3); a second one with the same address is dropped as a duplicate, as a STUN srflx equal to a
mapping is. The lease is renewed at half its lifetime (RFC 6887 11.2.1, RFC 6886 3.3) and deleted
(lifetime 0) when the session ends. A gateway that answers nothing costs the initial gathering at most
`timeout` (the gatherer then says done and reports the silence in `stats()["gatherers"]["portmap"]`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ..hookspecs import hookimpl
from ..logs import get_logger
from ..net.base import UdpSocket
from ..portmap.errors import PortMapError
from .base import GatherContext, GatherOptions
from .host import base_preference
from .srflx import emit_reflexive

if TYPE_CHECKING:  # the port-mapping clients load when a mapping is asked for (_mapper), not with the plugins
    from ..portmap.client import Lease, Mapper

log = get_logger("iceagent.gather.portmap")

#: Seconds the initial gathering waits for a gateway's answer, per protocol (they run at the same time).
PORT_MAPPING_TIMEOUT = 4.0
#: Lifetime asked for, in seconds (RFC 6886 3.3 recommends 7200; the gateway may grant less).
PORT_MAPPING_LIFETIME = 7200
#: Seconds the close waits for the gateway to confirm a delete (shielded: the agent's close waits this long
#: at most, per mapping, all mappings at once).
DELETE_TIMEOUT = 1.0
#: Host sockets mapped at most (one request per protocol each): bounded work per gathering.
MAX_MAPPED_BASES = 8
#: Shortest wait before renewing a lease (a gateway granting a few seconds must not make us spin).
MIN_RENEW = 1.0
#: New external addresses offered per mapping at most, after its first (a gateway, or a spoofed NAT-PMP
#: answer, that names another address at every renewal must not add a candidate per renewal).
MAX_MOVES = 4

PROTOCOLS = ("pcp", "upnp")


def _eligible(address: str, gateway: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """An IPv4 base on the gateway's link (or on a link whose subnet the Network does not say)."""
    ip = ipaddress.ip_address(address)
    if ip.version != 4 or ip.is_loopback or ip.is_link_local or ip.is_unspecified:
        return False
    own = [n for n in networks if ip in n]
    return not own or any(ipaddress.ip_address(gateway) in n for n in own)


class PortMapGatherer:
    """Maps each host UDP socket on the default gateway's link, by each protocol in `protocols`."""

    kind = "portmap"

    def __init__(
        self,
        *,
        timeout: float = PORT_MAPPING_TIMEOUT,
        lifetime: int = PORT_MAPPING_LIFETIME,
        protocols: tuple[str, ...] = PROTOCOLS,
    ) -> None:
        unknown = set(protocols) - set(PROTOCOLS)
        if unknown:
            raise ValueError(f"unknown port mapping protocol(s) {sorted(unknown)}; use {', '.join(PROTOCOLS)}")
        self.timeout = timeout
        self.lifetime = lifetime
        self.protocols = protocols

    def _mapper(self, ctx: GatherContext, protocol: str, gateway: str, sock: UdpSocket) -> Mapper:
        from ..portmap.client import PcpMapper, UpnpMapper

        address, port = sock.local_address
        if protocol == "pcp":
            return PcpMapper(ctx.network, gateway, address, port, timeout=self.timeout)
        return UpnpMapper(ctx.network, gateway, address, port, timeout=self.timeout)

    async def run(self, ctx: GatherContext) -> None:
        find = getattr(ctx.network, "default_gateway", None)
        gateway = None if find is None else await find(4)
        if gateway is None:
            ctx.error("no IPv4 default gateway: no port mapping asked")
            ctx.done()
            return
        networks = [ipaddress.ip_network(n, strict=False) for i in ctx.network.interfaces() for n in i.networks]
        pending = [0]
        settled = trio.Event()
        bases_known = False

        def one_settled() -> None:
            pending[0] -= 1
            if pending[0] == 0 and bases_known:
                settled.set()

        async with trio.open_nursery() as nursery:
            mapped = 0
            async for sock in ctx.bases():
                if not _eligible(sock.local_address[0], gateway, networks):
                    continue
                mapped += 1
                if mapped > MAX_MAPPED_BASES:
                    if mapped == MAX_MAPPED_BASES + 1:
                        ctx.error(f"more than {MAX_MAPPED_BASES} host sockets: the others are not mapped")
                    continue
                for protocol in self.protocols:
                    pending[0] += 1
                    mapper = self._mapper(ctx, protocol, gateway, sock)
                    nursery.start_soon(self._keep, ctx, gateway, sock, mapper, one_settled)
            bases_known = True
            if pending[0] == 0:
                settled.set()
            await settled.wait()
            ctx.done()

    async def _keep(
        self, ctx: GatherContext, gateway: str, sock: UdpSocket, mapper: Mapper, settled: Callable[[], None]
    ) -> None:
        """Get the mapping, emit it, renew it at half its lifetime; delete it when cancelled (session end)."""
        name = f"{mapper.protocol.upper()} on gateway {gateway}"
        lease: Lease | None = None
        try:
            try:
                with trio.move_on_after(self.timeout) as scope:
                    lease = await mapper.map(self.lifetime)
                if scope.cancelled_caught:
                    ctx.error(f"{name}: no answer within {self.timeout:g} s{mapper.drops.describe()}")
            except PortMapError as exc:
                ctx.error(f"{name}: {exc}")
            finally:
                settled()
            if lease is None:
                return
            self._emit(ctx, gateway, sock, lease)
            await self._renew(ctx, name, gateway, sock, mapper, lease)
        finally:
            with trio.CancelScope(shield=True):
                try:
                    # also without a lease: a request whose answer we never saw may have made a mapping
                    with trio.move_on_after(DELETE_TIMEOUT):
                        try:
                            await mapper.delete()
                        except (PortMapError, OSError) as exc:
                            log.info("%s: deleting the mapping: %s", name, exc)
                finally:
                    mapper.aclose()  # its socket is closed whatever delete() raised

    async def _renew(
        self, ctx: GatherContext, name: str, gateway: str, sock: UdpSocket, mapper: Mapper, lease: Lease
    ) -> None:
        """RFC 6887 11.2.1 / RFC 6886 3.3: renew at half the remaining lifetime, again at half of what is left
        after a failed try, until the lease expires (then say so: the candidate is dead). A renewal granting
        another external address is offered as a new candidate."""
        if not lease.lifetime:
            await trio.sleep_forever()  # a permanent UPnP lease: deleted on close
        expires = trio.current_time() + lease.lifetime
        moves = 0
        while True:
            remaining = expires - trio.current_time()
            await trio.sleep(max(MIN_RENEW, remaining / 2))
            try:
                with trio.fail_after(self.timeout):
                    renewed = await mapper.map(self.lifetime)
            except (PortMapError, trio.TooSlowError) as exc:
                if trio.current_time() >= expires:
                    ctx.error(f"{name}: the mapping expired, its renewal failed: {exc or 'no answer'}")
                    return
                continue
            if renewed.external != lease.external:
                # the gateway moved the forward (a reboot, a new public IP: RFC 6887 8.5, 11.2.1): offer the new
                # address as a late candidate (Agent.new_candidates, for the application to trickle)
                log.info("%s: the renewed mapping is %s, was %s", name, renewed.external, lease.external)
                moves += 1
                if moves <= MAX_MOVES:
                    self._emit(ctx, gateway, sock, renewed)
                elif moves == MAX_MOVES + 1:
                    ctx.error(f"{name}: the mapping moved more than {MAX_MOVES} times: new addresses are not offered")
            lease = renewed
            if not lease.lifetime:
                await trio.sleep_forever()
            expires = trio.current_time() + lease.lifetime

    def _emit(self, ctx: GatherContext, gateway: str, sock: UdpSocket, lease: Lease) -> None:
        """The mapping as a srflx candidate on `sock` (the related address hidden with mdns=True, as a STUN
        srflx's is)."""
        base_host = sock.local_address[0]
        if emit_reflexive(ctx, sock, lease.external, f"{lease.protocol}:{gateway}", base_preference(ctx, base_host)):
            log.debug("%s mapping %s -> %s", lease.protocol, lease.external, sock.local_address)


@hookimpl
def iceagent_gatherers(options: GatherOptions) -> list[object]:
    """The port-mapping gatherer with `port_mapping=True`, except under the relay policy (nothing is asked)."""
    if not options.port_mapping or options.ice_transport_policy == "relay":
        return []
    return [PortMapGatherer()]
