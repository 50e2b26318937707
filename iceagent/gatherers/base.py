"""What a gatherer plugin sees: its options, the GatherContext the agent hands it, and the Gatherer protocol.

Gatherers never see the agent. They open or find transports, emit candidates with the transport that
carries their data, report errors, and say when their initial gathering is done (DESIGN.md "Plugins").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs
import pluggy

from .._addresses import IP
from ..config import IceConfig
from ..ice.candidate import Candidate
from ..net.base import Address, Network, UdpSocket

# The transport Protocols live with the Network seam; plugins import them from here too.
from ..net.base import CandidateTransport as CandidateTransport
from ..net.base import ConnectionTransport as ConnectionTransport

if TYPE_CHECKING:
    from ..net._mux_agent import MuxGeneration
    from ..stun.message import Message
    from ..uri import IceServer


@attrs.frozen
class GatherOptions:
    """The agent options a gatherer may act on (validated by `open_agent`; see DESIGN.md "Addresses").

    `port_range`: host sockets bind only ports in [lo, hi]; `public_ips`: host address -> public address
    of a 1:1 NAT (normalized IP literals, same family), advertised as a srflx candidate
    (`public_ip_mode="srflx"`) or as the host candidate's address ("host"); `interface_filter(name)` and
    `ip_filter(ipaddress)` narrow the host addresses (both apply, after `host_addresses`); with `mux` they
    narrow the mux's addresses."""

    ice_servers: Sequence[IceServer] = ()
    ice_transport_policy: str = "all"
    host_addresses: Sequence[str] | None = None
    mdns: bool = False
    tcp: bool = False
    config: IceConfig = attrs.field(factory=IceConfig)
    port_range: tuple[int, int] | None = None
    public_ips: Mapping[str, str] | None = attrs.field(default=None, hash=False)
    public_ip_mode: str = "srflx"
    interface_filter: Callable[[str], object] | None = None
    ip_filter: Callable[[IP], object] | None = None
    #: an ICE-lite agent (RFC 8445 2.5): host candidates only, ICE-TCP passive only (RFC 6544 4.5)
    lite: bool = False
    #: ask the default gateway for port mappings (PCP/NAT-PMP and UPnP-IGD): the "portmap" gatherer
    port_mapping: bool = False
    mux: MuxGeneration | None = attrs.field(default=None, eq=False)
    """With `open_agent(mux=...)`: this ICE generation's share of the mux (the agent sets it per generation);
    the host (and ICE-TCP) gatherers take the mux's transports instead of binding sockets."""


class GatherContext(Protocol):
    """The agent-side services a gatherer uses while it runs (a task of its generation, in the agent's nursery)."""

    options: GatherOptions
    network: Network
    #: The agent's pluggy PluginManager (for hooks such as iceagent_turn_transports).
    plugin_manager: pluggy.PluginManager
    #: `await pace(latest)` before each new STUN or TURN transaction the gatherer sends itself: a slot of the
    #: process-wide pacer, returning by `latest` at the latest (RFC 8445 14.2); None when the agent does not
    #: pace (`IceConfig(global_pacing=False)`). `stun_request` paces itself.
    pace: Callable[[float], Awaitable[None]] | None

    def bases(self) -> AsyncIterator[UdpSocket]:
        """The host sockets as the host gatherer opens them; ends when the host gatherer is done."""
        ...

    def add_base(self, sock: UdpSocket) -> None:
        """Register a host socket: the agent starts receiving on it (the host gatherer calls this)."""

    def emit(self, candidate: Candidate, transport: CandidateTransport) -> None:
        """Hand a gathered local candidate to the agent, with the transport its data goes through."""

    def error(self, message: str) -> None:
        """Report a non-fatal problem (shown in `agent.stats()` and logged)."""

    def done(self) -> None:
        """This gatherer's initial gathering is over (it may keep running to refresh what it owns)."""

    def foundation(self, type: str, base_address: str, transport: str, server: str | None = None) -> str:
        """The foundation for a candidate (RFC 8445 5.1.1.3): equal inputs give equal foundations."""
        ...

    async def stun_request(
        self, sock: UdpSocket, server: Address, message: Message, *, rto: float | None = None
    ) -> Message:
        """Send a STUN request from a base socket and wait for its response (RFC 8489 retransmissions).

        The agent's receive loop owns the socket, so responses are routed here by transaction id. `rto`: the
        transaction's initial RTO (None: `IceConfig.rto`); gatherers pass RFC 8445 14.3's gathering RTO
        (gatherers/_rto.py `gathering_rto`). Raises StunTimeout when no response arrives.
        """
        ...


@runtime_checkable
class Gatherer(Protocol):
    """A candidate gatherer: runs as a task of its ICE generation until that generation ends."""

    kind: str

    async def run(self, ctx: GatherContext) -> None: ...
