"""Counting what a long-running vnet scenario holds: tasks, sockets, per-session tables, live objects.

The soak test (tests/test_soak_vnet.py) takes a `Snapshot` at checkpoints and compares each with the
baseline. Everything here reads state; nothing changes it. Private attributes are read on purpose: the
point is to count the tables a hostile or merely long-lived peer could make grow (DESIGN.md
"Security defaults": every per-peer table has a bound).
"""

from __future__ import annotations

import collections
import gc
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import trio
from iceagent_vnet.scenario import Scenario
from iceagent_vnet.scheduler import current_scheduler

from iceagent import Agent
from iceagent.stun import _fastdecode
from iceagent.turn.server import TurnServer

_DIGITS = re.compile(r"\d+")


def task_counts() -> collections.Counter[str]:
    """Every task of this `trio.run` (the whole tree from the root), by name with numbers folded to N
    ("session-A-7" and "session-A-8" are the same task of different generations)."""
    counts: collections.Counter[str] = collections.Counter()
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        counts[_DIGITS.sub("N", task.name)] += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return counts


def socket_counts(scenario: Scenario) -> dict[str, int]:
    """Open vnet UDP sockets, TCP listeners and connections per host; the process's open file descriptors."""
    out: dict[str, int] = {}
    if os.path.isdir("/proc/self/fd"):
        out["fds"] = len(os.listdir("/proc/self/fd"))
    for host in scenario.hosts:
        out[f"udp.{host.name}"] = sum(len(socks) for socks in host._udp.values())
        out[f"tcp_listeners.{host.name}"] = sum(len(ls) for ls in host.tcp.listeners.values())
        out[f"tcp_connections.{host.name}"] = len(host.tcp.connections)
    return out


def nat_counts(scenario: Scenario) -> dict[str, int]:
    """Each NAT's raw translation table (expired entries included: they are purged only when touched)."""
    out: dict[str, int] = {}
    for router in scenario.routers:
        table = router._table
        assert table is not None
        out[f"nat.{router.name}.by_key"] = len(table._by_key)
        out[f"nat.{router.name}.by_external"] = len(table._by_external)
        out[f"nat.{router.name}.lan_cache"] = len(router._lan_cache)
    return out


def agent_counts(agent: Agent) -> dict[str, int]:
    """The agent's sessions (one per live ICE generation) and the tables of each, summed."""
    name = agent.name
    out: dict[str, int] = collections.Counter()
    out[f"{name}.runners"] = len(agent._runners)
    out[f"{name}.foundations"] = len(agent._foundations)
    gate = agent._gate  # made by the first ignored candidate or peer restart: none before
    out[f"{name}.ignored_reasons"] = 0 if gate is None else len(gate.ignored)
    out[f"{name}.held_parameters"] = int(gate is not None and gate.held is not None)
    for runner in agent._runners:
        ice = runner.ice
        checklist = ice._checklist
        cands = ice._candidates
        pairs = {*checklist.pairs, *checklist.valid}
        for key, value in (
            ("pairs", len(checklist.pairs)),
            ("valid", len(checklist.valid)),
            ("triggered", len(checklist.triggered)),
            ("by_route", checklist.sizes()["routes"]),
            ("transactions", len(ice._requests)),
            ("rto", sum(pair.rto_estimator is not None for pair in pairs)),
            ("generated", len(ice._generated)),
            ("use_candidate", len(ice._use_candidate)),
            ("peer_nominated", len(ice._peer_nominated)),
            ("locals", len(cands.locals)),
            ("remotes", len(cands.remotes)),
            ("prflx_by_source", len(cands._prflx_by_source or ())),
            ("prflx", cands._prflx_locals + cands._prflx_remotes),
            ("candidates", len(runner.gathering.candidates)),
            ("bases", len(runner.bases)),
            ("transports", len(runner.transport_of)),
            ("base_of", len(runner._base_of)),
            ("owned_sockets", len(runner._owned)),
            ("data_pairs", len(runner._data_pairs)),
            ("stun_waiters", len(runner.stun_requests)),
            ("gatherer_errors", sum(len(errors) for errors in runner.gathering.errors.values())),
            ("outbox", len(runner._outbox)),
        ):
            out[f"{name}.{key}"] += value
    return dict(out)


def turn_counts(server: TurnServer) -> dict[str, int]:
    """The TURN server's allocations and what hangs off them, its timer heap and response cache."""
    state = server.state
    allocations = list(state.allocations.values())
    return {
        "turn.allocations": len(allocations),
        "turn.by_relay": len(state._by_relay),
        "turn.pending": len(state._pending),
        "turn.permissions": sum(len(a.permissions) for a in allocations),
        "turn.channels": sum(len(a.channels) for a in allocations),
        "turn.channel_by_peer": sum(len(a.channel_by_peer) for a in allocations),
        "turn.cooldown": sum(len(a.cooldown) for a in allocations),
        "turn.timers": len(state._timers),
        "turn.responses": len(state._responses),
        "turn.relay_sockets": len(server._relays),
        "turn.connections": len(server._connections),
    }


def _shape_cache_objects() -> set[int]:
    """Ids of the objects of the STUN decoder's shape cache (iceagent.stun._fastdecode.SHAPES: one compiled
    decoder per message layout seen often, a process-wide cache bounded at MAX_SHAPES): the shape tuple,
    the decoder function, its namespace dict, its bound `unpack` and that Struct. The cache fills as new
    layouts turn up (lengths of nonces, usernames, error reasons, ...): it is counted on its own."""
    ids: set[int] = set()
    for shape in _fastdecode.SHAPES.values():
        decode = shape[0]
        namespace = decode.__globals__
        unpack = namespace["unpack"]
        ids.update(map(id, (shape, decode, namespace, unpack, unpack.__self__, namespace["expected"])))
    return ids


def object_counts() -> collections.Counter[str]:
    """Live objects tracked by the garbage collector, by type (module-qualified), after a full collection;
    the STUN shape cache's objects are one entry, "stun shape cache" (see `_shape_cache_objects`), and the
    soak's own Snapshots are left out."""
    for _ in range(3):  # a tuple is untracked only once the tuples inside it are: nested ones take a pass each
        gc.collect()
    cached = _shape_cache_objects()
    counts: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        cls = type(obj)
        if id(obj) in cached or cls is Snapshot:
            continue
        counts[f"{cls.__module__}.{cls.__qualname__}"] += 1
    counts["stun shape cache"] = len(_fastdecode.SHAPES)
    return counts


@attrs.frozen
class Snapshot:
    """Everything counted at one checkpoint."""

    hour: float
    tasks: Mapping[str, int]
    tables: Mapping[str, int]
    objects: Mapping[str, int]

    @property
    def total_tasks(self) -> int:
        return sum(self.tasks.values())

    @property
    def total_objects(self) -> int:
        return sum(self.objects.values())


def snapshot(hour: float, scenario: Scenario, agents: Iterable[Agent], server: TurnServer) -> Snapshot:
    """Count tasks, sockets, tables and objects now."""
    tables: dict[str, int] = {}
    tables.update(socket_counts(scenario))
    tables.update(nat_counts(scenario))
    for agent in agents:
        tables.update(agent_counts(agent))
    tables.update(turn_counts(server))
    tables["vnet.scheduler_events"] = current_scheduler().pending()
    tables["vnet.link_flows"] = sum(segment.link.flows for segment in scenario.segments)
    return Snapshot(hour, dict(task_counts()), tables, dict(object_counts()))


def growth(
    base: Mapping[str, int], now: Mapping[str, int], tolerance: Mapping[str, int], default: int = 0
) -> dict[str, tuple[int, int]]:
    """{name: (baseline, now)} for every count that grew by more than its tolerance."""
    out: dict[str, tuple[int, int]] = {}
    for key in sorted(set(base) | set(now)):
        b, n = base.get(key, 0), now.get(key, 0)
        if n - b > tolerance.get(key, default):
            out[key] = (b, n)
    return out


def describe(rows: Any) -> str:
    """A plain-text table of rows (lists of cells), for the assertion messages and the report."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
