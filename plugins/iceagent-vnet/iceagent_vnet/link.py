"""Link properties (latency, jitter, loss, duplication, reordering, MTU) and the seeded randomness of a link.

Randomness is drawn per flow (protocol, source, destination): each flow has its own `random.Random`
seeded from the link's seed and the flow, so what happens to one flow does not depend on how its
packets interleave with other flows, and a scenario's outcome repeats for a seed. A flow idle for
FLOW_IDLE seconds is forgotten (its next packet starts afresh, as a new flow would): NAT rebinds and
restarts make new flows all the time, and a long simulation must not keep every one it ever saw. The
sweeps run at the first packet after each multiple of FLOW_IDLE of simulated time, so when they happen
depends on the clock, not on the traffic.
"""

from __future__ import annotations

import collections
import random
from typing import Any

import attrs

from .addresses import Address
from .packet import Packet


def _non_negative(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"Link.{attribute.name} must be >= 0, not {value!r}")


def _probability(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"Link.{attribute.name} must be a probability in [0, 1], not {value!r}")


def _mtu(_inst: Any, _attribute: attrs.Attribute[Any], value: int) -> None:
    if not value >= 68:  # RFC 791: every IPv4 link carries 68 bytes
        raise ValueError(f"Link.mtu must be >= 68, not {value!r}")


#: Seconds without a packet after which a flow's generator and ordering state are dropped (as long as a
#: NAT keeps an idle UDP mapping by default, RFC 4787 REQ-5: 2 minutes).
FLOW_IDLE = 120.0


class _Flow:
    __slots__ = ("last", "rng", "used")

    def __init__(self, seed: str) -> None:
        self.rng = random.Random(seed)
        self.last = 0.0  # arrival time of the flow's last in-order packet (nothing overtakes it)
        self.used = 0.0  # when the flow last sent a packet


@attrs.define(eq=False)
class Link:
    """How a segment carries packets (like Linux netem). Change fields at any time; they apply to new packets.

    * latency: one-way delay in seconds; jitter: extra uniform delay in [0, jitter] that never reorders a flow;
    * loss: probability a datagram is lost (TCP segments are delayed by a retransmission timeout instead);
    * duplicate: probability a datagram arrives twice; reorder: probability it is held back
      `reorder_delay` seconds so later ones overtake it;
    * mtu: bytes of IP packet (IP + UDP headers + payload) the link carries; bigger datagrams are dropped;
    * seed: of the per-flow random generators.
    """

    latency: float = attrs.field(default=0.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.0, validator=_non_negative)
    loss: float = attrs.field(default=0.0, validator=_probability)
    duplicate: float = attrs.field(default=0.0, validator=_probability)
    reorder: float = attrs.field(default=0.0, validator=_probability)
    reorder_delay: float = attrs.field(default=0.01, validator=_non_negative)
    mtu: int = attrs.field(default=1500, validator=_mtu)
    seed: int | str = 0
    tcp_rto: float = attrs.field(default=0.2, validator=_non_negative)
    stats: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False, repr=False)
    _flows: dict[tuple[Any, str, Address, Address], _Flow] = attrs.field(factory=dict, init=False, repr=False)
    _next_sweep: float = attrs.field(default=FLOW_IDLE, init=False, repr=False)

    @property
    def flows(self) -> int:
        """Flows with randomness state (active in the last FLOW_IDLE to 2 x FLOW_IDLE seconds)."""
        return len(self._flows)

    def transit(self, packet: Packet, now: float) -> list[float] | str:
        """Arrival times of `packet` (two if duplicated) sent at `now`, or the reason it is dropped."""
        stats = self.stats
        stats["sent"] += 1
        reliable = packet.proto == "tcp"
        if not reliable and len(packet.payload) + (48 if ":" in packet.dst[0] else 28) > self.mtu:  # packet.size
            stats["mtu"] += 1
            return "mtu"
        if now >= self._next_sweep:
            self._forget_idle(now)
        key = (self.seed, packet.proto, packet.src, packet.dst)
        flow = self._flows.get(key)
        if flow is None:
            flow = self._flows[key] = _Flow(f"{self.seed}|{packet.proto}|{packet.src}|{packet.dst}")
        flow.used = now
        rng = flow.rng
        delay = self.latency
        if rng.random() < self.loss:
            if not reliable:
                stats["loss"] += 1
                return "loss"
            rto = self.tcp_rto  # RFC 6298: retransmit after an RTO that doubles each time
            for _ in range(8):
                delay += rto
                rto *= 2
                stats["retransmitted"] += 1
                if rng.random() >= self.loss:
                    break
        if self.jitter:
            delay += rng.uniform(0.0, self.jitter)
        when = now + delay
        if when < flow.last:
            when = flow.last
        if self.reorder and rng.random() < self.reorder:
            stats["reordered"] += 1
            times = [when + self.reorder_delay]
        else:
            flow.last = when
            times = [when]
        if self.duplicate and rng.random() < self.duplicate:
            stats["duplicated"] += 1
            times.append(times[0])
        return times

    def _forget_idle(self, now: float) -> None:
        """Drop the flows idle for FLOW_IDLE seconds with nothing in flight; next time after the next multiple
        of FLOW_IDLE."""
        self._next_sweep = (now // FLOW_IDLE + 1) * FLOW_IDLE
        idle = now - FLOW_IDLE
        for key in [k for k, f in self._flows.items() if f.used <= idle and f.last <= now]:
            del self._flows[key]

    def forget_flows(self) -> None:
        """Drop the per-flow generators (the next packets start fresh sequences from the seed)."""
        self._flows.clear()
