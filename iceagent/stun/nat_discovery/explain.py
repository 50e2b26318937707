"""What a NAT behaviour means for direct ICE connections: a small model of two NATs and the sentence for it.

Sans-IO and pure (RFC 8445, RFC 4787 4.1 and 5): `direct_connection_possible` plays the connectivity checks
of two hosts behind two NATs on paper; `explain_direct_connectivity` words the result for a user.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from .model import (
    ADF,
    ADM,
    ALL_CLASSES,
    APDM,
    EIF,
    EIM,
    Address,
    FilteringBehavior,
    MappingBehavior,
    NatClass,
    classic_name,
    short_name,
)

__all__ = ["direct_connection_possible", "explain_direct_connectivity"]


def direct_connection_possible(local: NatClass, peer: NatClass) -> bool:
    """Whether ICE connects two hosts behind these NATs without a relay (RFC 8445, RFC 4787 4.1, 5).

    A small model of two NATs with one public IP each (distinct from the STUN server's): each side knows
    the other's server-reflexive candidate, sends checks to every remote candidate it knows, learns
    peer-reflexive candidates from requests that reach it and answers them. A side succeeds when a
    response comes back from the address its request went to (RFC 8445 7.2.5.2.1); the connection works
    when both sides succeed. Hosts without NAT are endpoint-independent with their firewall's filtering.
    The outcome agrees with real agents on a simulated network for all 100 combinations
    (tests/test_nat_discovery.py).
    """
    return _connects(local, peer)


class _ModelNat:
    """The translation state of one NAT in `direct_connection_possible`'s model (RFC 4787 4.1, 5)."""

    def __init__(self, public: str, nat: NatClass) -> None:
        self.public = public
        self.mapping, self.filtering = nat
        self.ports: dict[object, int] = {}
        self.sent: dict[int, set[Address]] = {}

    def outbound(self, destination: Address) -> Address:
        key: object = None
        if self.mapping is ADM:
            key = destination[0]
        elif self.mapping is APDM:
            key = destination
        if key not in self.ports:
            self.ports[key] = 1024 + len(self.ports)
            self.sent[self.ports[key]] = set()
        port = self.ports[key]
        self.sent[port].add(destination)
        return self.public, port

    def inbound(self, port: int, source: Address) -> bool:
        sent = self.sent.get(port)
        if sent is None:
            return False
        if self.filtering is EIF:
            return True
        if self.filtering is ADF:
            return any(ip == source[0] for ip, _ in sent)
        return source in sent

    def state(self) -> object:
        return sorted((port, sorted(dests)) for port, dests in self.sent.items())


@functools.cache
def _connects(a: NatClass, b: NatClass) -> bool:
    nats = (_ModelNat("a", a), _ModelNat("b", b))
    server = ("server", 3478)
    srflx = [nat.outbound(server) for nat in nats]
    known: list[set[Address]] = [{srflx[1]}, {srflx[0]}]
    succeeded = [False, False]
    previous: object = None
    for _ in range(32):  # the state only grows, so this reaches a fixpoint in a few rounds
        for me, peer in ((0, 1), (1, 0)):
            for remote in sorted(known[me]):
                source = nats[me].outbound(remote)
                if remote[0] != nats[peer].public or not nats[peer].inbound(remote[1], source):
                    continue
                known[peer].add(source)  # a peer-reflexive candidate (RFC 8445 7.3.1.3)
                answer_from = nats[peer].outbound(source)
                if answer_from == remote and nats[me].inbound(source[1], answer_from):
                    succeeded[me] = True
        state = (sorted(known[0]), sorted(known[1]), succeeded, nats[0].state(), nats[1].state())
        if state == previous:
            break
        previous = state
    return all(succeeded)


def _describe_peers(classes: Iterable[NatClass]) -> str:
    """Words for a set of peer behaviours: whole mapping rows by their mapping, the rest one by one."""
    chosen = set(classes)
    whole = [m for m in MappingBehavior if all((m, f) in chosen for f in FilteringBehavior)]
    parts: list[str] = []
    if EIM in whole:
        parts.append("endpoint-independent mapping (cone NATs, any filtering)")
    if ADM in whole and APDM in whole:
        parts.append("address- or port-dependent mapping (symmetric NATs)")
    else:
        parts.extend(f"{m.value} mapping (any filtering)" for m in (ADM, APDM) if m in whole)
    for nat in ALL_CLASSES:
        if nat in chosen and nat[0] not in whole:
            name = classic_name(True, *nat)
            parts.append(short_name(nat) + (f" ({name})" if name != "symmetric-like" else ""))
    return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else "".join(parts)


def explain_direct_connectivity(behind_nat: bool, mapping: MappingBehavior, filtering: FilteringBehavior) -> str:
    """What this behaviour means for direct (relay-free) ICE connections, in one sentence (RFC 4787, RFC 8445)."""
    me: NatClass = (mapping, filtering)
    name = classic_name(behind_nat, mapping, filtering)
    label = f"{mapping.abbreviation} + {filtering.abbreviation} ({name})" if behind_nat else name
    works = [peer for peer in ALL_CLASSES if direct_connection_possible(me, peer)]
    fails = [peer for peer in ALL_CLASSES if peer not in works]
    if not fails:
        return (
            f"{label}: direct connections work with every peer, even one behind a symmetric NAT (its checks "
            "arrive from new mappings and are learnt as peer-reflexive candidates)"
        )
    why = "" if mapping is EIM else "every new destination gets a new mapping, so "
    return (
        f"{label}: {why}direct connections work with peers with no NAT or {_describe_peers(works)}; "
        f"peers with {_describe_peers(fails)} need a relay (TURN)"
    )
