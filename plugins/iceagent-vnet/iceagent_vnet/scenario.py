"""The ready-made scenario of the `iceagent_networks` hook: two hosts behind NATs, a server on the internet.

```
  a (192.168.1.2) ── lan_a ── nat_a (203.0.113.1) ──┐
                                                    internet ── server (198.51.100.1, .2, .3)
  b (192.168.2.2) ── lan_b ── nat_b (203.0.113.2) ──┘
```

With a NAT preset "none" the host sits directly on the internet instead (no LAN, no router).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

import attrs

from .addresses import Address
from .host import Host
from .link import Link
from .nat import NatBehavior, resolve_nat
from .network import VirtualNetwork
from .router import Router
from .scheduler import advance_if_running
from .segment import Internet, Lan, Segment

STUN_PORT = 3478
SERVER_ADDRESSES = ("198.51.100.1", "198.51.100.2", "198.51.100.3")
SERVER_ADDRESSES_V6 = ("2001:db8:100::1", "2001:db8:100::2", "2001:db8:100::3")

Element = Host | Router | Segment


def collect_drops(elements: Iterable[Element]) -> collections.Counter[str]:
    """The drop counters of hosts, routers and segments added up by reason (loss, mtu, filtered, ...)."""
    advance_if_running()
    total: collections.Counter[str] = collections.Counter()
    for element in elements:
        total.update(element.drops)
    return total


class Scenario:
    """Two hosts (A, B) each behind its own NAT router (or on the internet), and a server host on the internet.

    * network_a, network_b, server_network: the `Network` of each host;
    * stun_addresses: two public addresses (RFC 5780 primary and alternate) at port 3478;
      turn_address: a third one, port 3478; stun_addresses_v6 / turn_address_v6 with ipv6=True;
    * nat_a, nat_b: the routers (None for "none"), for reboot() and change_public_address();
    * internet, lan_a, lan_b, host_a, host_b, server: the topology; link: the internet's Link.
    """

    def __init__(
        self,
        *,
        nat_a: NatBehavior | None,
        nat_b: NatBehavior | None,
        loss: float,
        rtt: float,
        seed: int,
        jitter: float,
        duplicate: float,
        reorder: float,
        mtu: int,
        lan_latency: float,
        ipv6: bool,
        same_lan: bool,
    ) -> None:
        self.loss = loss
        self.rtt = rtt
        self.seed = seed
        self.link = Link(
            latency=rtt / 2, jitter=jitter, loss=loss, duplicate=duplicate, reorder=reorder, mtu=mtu, seed=seed
        )
        self.internet = Internet(link=self.link, ipv6_pool="2001:db8:ff::/64" if ipv6 else None)
        self.server = Host("server", self.internet, *SERVER_ADDRESSES, *(SERVER_ADDRESSES_V6 if ipv6 else ()))
        self.server_network: VirtualNetwork = self.server.network
        self.stun_addresses: list[Address] = [(ip, STUN_PORT) for ip in SERVER_ADDRESSES[:2]]
        self.turn_address: Address = (SERVER_ADDRESSES[2], STUN_PORT)
        self.stun_addresses_v6: list[Address] = [(ip, STUN_PORT) for ip in SERVER_ADDRESSES_V6[:2]] if ipv6 else []
        self.turn_address_v6: Address | None = (SERVER_ADDRESSES_V6[2], STUN_PORT) if ipv6 else None
        v6 = SERVER_ADDRESSES_V6 if ipv6 else ("", "", "")
        self.internet.register_name("stun.vnet", *filter(None, (SERVER_ADDRESSES[0], v6[0])))
        self.internet.register_name("turn.vnet", *filter(None, (SERVER_ADDRESSES[2], v6[2])))

        self.lan_a, self.nat_a = self._site("a", 1, nat_a, lan_latency, ipv6)
        if same_lan:
            self.lan_b, self.nat_b = self.lan_a, self.nat_a
        else:
            self.lan_b, self.nat_b = self._site("b", 2, nat_b, lan_latency, ipv6)
        self.host_a = Host("a", self.internet if self.lan_a is None else self.lan_a)
        self.host_b = Host("b", self.internet if self.lan_b is None else self.lan_b)
        self.network_a: VirtualNetwork = self.host_a.network
        self.network_b: VirtualNetwork = self.host_b.network

    def _site(
        self, label: str, index: int, nat: NatBehavior | None, latency: float, ipv6: bool
    ) -> tuple[Lan | None, Router | None]:
        if nat is None:
            return None, None
        lan = Lan(
            f"192.168.{index}.0/24",
            f"fd00:{index}::/64" if ipv6 else None,
            name=f"lan_{label}",
            link=Link(latency=latency, seed=f"{self.seed}-lan-{label}"),
        )
        return lan, Router(self.internet, lan, nat=nat, name=f"nat_{label}")

    @property
    def hosts(self) -> list[Host]:
        """A, B and the server."""
        return [self.host_a, self.host_b, self.server]

    @property
    def routers(self) -> list[Router]:
        """The NAT routers (none for "none")."""
        return list(dict.fromkeys(r for r in (self.nat_a, self.nat_b) if r is not None))

    @property
    def segments(self) -> list[Segment]:
        """The internet and the LANs."""
        lans = [lan for lan in (self.lan_a, self.lan_b) if lan is not None]
        return [self.internet, *dict.fromkeys(lans)]

    def drops(self) -> collections.Counter[str]:
        """Every drop in the scenario by reason (loss, mtu, filtered, no_mapping, no_route, no_listener, ...)."""
        return collect_drops([*self.hosts, *self.routers, *self.segments])

    def register_name(self, name: str, *addresses: str) -> None:
        """Make `name` resolve to `addresses` for every host."""
        self.internet.register_name(name, *addresses)

    def describe(self) -> str:
        """A few lines saying what this scenario is."""
        lines = []
        for label, host, router in (("A", self.host_a, self.nat_a), ("B", self.host_b, self.nat_b)):
            if router is None or router.nat is None:
                lines.append(f"{label}: {host.address} on the internet (no NAT)")
            else:
                lines.append(
                    f"{label}: {host.address} behind {router.name} {router.public_address} ({router.nat.name}: "
                    f"{router.nat.describe()})"
                )
        stun = ", ".join(f"{ip}:{port}" for ip, port in self.stun_addresses)
        lines.append(f"server: STUN {stun}, TURN {self.turn_address[0]}:{self.turn_address[1]}")
        lines.append(f"internet: rtt {self.rtt * 1000:g} ms, loss {self.loss:.1%}, seed {self.seed}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        names = [r.nat.name if r is not None and r.nat else "none" for r in (self.nat_a, self.nat_b)]
        return f"<Scenario nat_a={names[0]} nat_b={names[1]} rtt={self.rtt} loss={self.loss} seed={self.seed}>"


def vnet(
    nat_a: NatBehavior | str | None = "eim-apdf",
    nat_b: NatBehavior | str | None = "eim-apdf",
    loss: float = 0.0,
    rtt: float = 0.0,
    seed: int = 0,
    *,
    jitter: float = 0.0,
    duplicate: float = 0.0,
    reorder: float = 0.0,
    mtu: int = 1500,
    lan_latency: float = 0.0,
    ipv6: bool = False,
    same_lan: bool = False,
    mapping_lifetime: float | None = None,
    hairpinning: bool | None = None,
    port_preservation: bool | None = None,
) -> Scenario:
    """The "vnet" network factory: A and B behind NATs (presets or NatBehavior), a STUN/TURN server host.

    `rtt` is the round trip over the internet (each way rtt/2), `loss` its datagram loss rate;
    `lan_latency` is each LAN's one-way delay. `same_lan=True` puts B on A's LAN behind nat_a.
    mapping_lifetime / hairpinning / port_preservation override both NATs' behaviour.
    """
    overrides: dict[str, Any] = {}
    if mapping_lifetime is not None:
        overrides["mapping_lifetime"] = mapping_lifetime
    if hairpinning is not None:
        overrides["hairpinning"] = hairpinning
    if port_preservation is not None:
        overrides["port_preservation"] = port_preservation
    behaviors = []
    for spec in (nat_a, nat_b):
        behavior = resolve_nat(spec)
        if behavior is not None and overrides:
            behavior = attrs.evolve(behavior, **overrides)
        behaviors.append(behavior)
    if same_lan and behaviors[0] is None:
        raise ValueError("same_lan=True needs a NAT for nat_a (the LAN's router)")
    return Scenario(
        nat_a=behaviors[0],
        nat_b=behaviors[1],
        loss=loss,
        rtt=rtt,
        seed=seed,
        jitter=jitter,
        duplicate=duplicate,
        reorder=reorder,
        mtu=mtu,
        lan_latency=lan_latency,
        ipv6=ipv6,
        same_lan=same_lan,
    )
