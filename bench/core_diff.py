"""Differential check of the sans-IO ICE core: random two-agent scenarios, traced byte for byte.

Each scenario (seeded, so a run is reproducible) drives two `IceGeneration`s through a simulated network:
1-3 host UDP candidates each (sometimes IPv6, sometimes ICE-TCP ones), a NAT in front of either side
(srflx candidates signalled or not, so peer-reflexive ones are learned), loss, delay, trickled candidates,
late remote parameters (held-back triggered checks), role conflicts, ICE-lite, renomination (and
`renominate` calls), consent checks and keepalives, the process-wide pacer on or off, route failures.
Everything the core hands back is traced: the bytes of every datagram, every event, every timer, and at the
end every pair's state and counters. Run it under two trees and compare the digests:

    PYTHONHASHSEED=0 PYTHONPATH=/tmp/old .venv/bin/python bench/core_diff.py --n 3000 > old.txt
    PYTHONHASHSEED=0 .venv/bin/python bench/core_diff.py --n 3000 > new.txt
    diff old.txt new.txt

`--trace SEED` prints one scenario's trace instead (to find where two trees part).
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import math
import random
import sys
from typing import Any

from iceagent.config import IceConfig
from iceagent.ice.candidate import Candidate, IceParameters
from iceagent.ice.generation import IceGeneration
from iceagent.ice.pacing import GlobalPacer
from iceagent.stun.message import Message, StunDecodeError


def _pair(p: Any) -> str:
    if p is None:
        return "-"
    lo, re_ = p.local, p.remote
    return (
        f"{lo.type}/{lo.transport}/{lo.address}:{lo.port}->{re_.type}/{re_.address}:{re_.port}"
        f"[{p.state.value},{int(p.valid)},{int(p.nominated)},{p.priority}]"
    )


def _value(v: Any) -> str:
    if hasattr(v, "state") and hasattr(v, "remote"):
        return _pair(v)
    if isinstance(v, Candidate):
        return v.to_sdp()
    if isinstance(v, bytes):
        return hashlib.sha256(v).hexdigest()[:16]
    if hasattr(v, "value") and hasattr(v, "name"):
        return str(v.name)
    return repr(v)


def _event(e: Any) -> str:
    fields = e._fields if hasattr(e, "_fields") else [a.name for a in type(e).__attrs_attrs__]
    return type(e).__name__ + "(" + ",".join(_value(getattr(e, f)) for f in fields) + ")"


class Scenario:
    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.trace: list[str] = []
        renom = rng.random() < 0.25
        pacer = rng.random() < 0.4
        self.config = IceConfig(
            global_pacing=pacer,
            renomination=renom,
            ta=rng.choice([0.05, 0.05, 0.02]),
            max_pairs=rng.choice([100, 100, 100, 3, 5]),
            nomination_delay=rng.choice([0.5, 0.1, 2.0]),
            rc=rng.choice([7, 7, 3]),
        )
        self.pacer = GlobalPacer() if pacer else None
        lite_b = rng.random() < 0.15
        lite_a = lite_b and rng.random() < 0.2
        self.loss = rng.choice([0.0, 0.0, 0.0, 0.1, 0.3, 0.6])
        self.delay = rng.choice([(0.0, 0.0), (0.001, 0.01), (0.005, 0.12)])
        tcp = rng.random() < 0.15
        ipv6 = rng.random() < 0.15
        self.agents = []
        self.locals: list[list[tuple[Candidate, Candidate]]] = []
        self.nat: list[dict[tuple[str, int], tuple[str, int]]] = []  # base addr -> public addr
        self.symmetric: list[bool] = []
        self.bases: dict[tuple[str, str, int], tuple[int, Candidate]] = {}  # (transport, addr, port) -> (agent, base)
        self.public: dict[tuple[str, str, int], tuple[int, Candidate]] = {}
        for i, (lite, prefix) in enumerate(((lite_a, "10.0.1."), (lite_b, "10.0.2."))):
            controlling = (i == 0) if rng.random() < 0.8 else rng.random() < 0.5
            if lite:
                controlling = False
            params = IceParameters(
                ufrag=f"u{i}{rng.randrange(10**6):06d}", pwd=f"p{i}" + "x" * rng.choice([20, 22, 30]), lite=lite
            )
            r = random.Random(rng.random())
            gen = IceGeneration(
                local=params,
                controlling=controlling,
                tie_breaker=rng.choice([rng.getrandbits(64), 5]),
                config=self.config,
                pacer=self.pacer,
                random_bytes=r.randbytes,
                pair_state_events=rng.random() < 0.8,
            )
            cands: list[tuple[Candidate, Candidate]] = []
            natted = rng.random() < 0.4 and not lite
            self_symmetric = natted and rng.random() < 0.4  # a new mapping per destination: local prflx
            nat: dict[tuple[str, int], tuple[str, int]] = {}
            for k in range(rng.choice([1, 1, 2, 3])):
                addr = f"fd00::{i + 1}:{k + 1}" if ipv6 and k == 1 else f"{prefix}{k + 1}"
                port = 4000 + 10 * i + k
                base = Candidate(
                    foundation=f"h{k}",
                    component=1,
                    transport="udp",
                    priority=(126 << 24) | ((65535 - k) << 8) | 255,
                    address=addr,
                    port=port,
                    type="host",
                )
                cands.append((base, base))
                self.bases[("udp", addr, port)] = (i, base)
                if natted and ":" not in addr:
                    pub = (f"203.0.113.{i + 1}", 50000 + 10 * i + k)
                    nat[(addr, port)] = pub
                    self.public[("udp", *pub)] = (i, base)
                    srflx = Candidate(
                        foundation=f"s{k}",
                        component=1,
                        transport="udp",
                        priority=(100 << 24) | ((65535 - k) << 8) | 255,
                        address=pub[0],
                        port=pub[1],
                        type="srflx",
                        related_address=addr,
                        related_port=port,
                    )
                    cands.append((srflx, base))
            if tcp and not natted:
                tcptype = rng.choice(["active", "passive", "so"])
                base = Candidate(
                    foundation="t0",
                    component=1,
                    transport="tcp",
                    priority=(90 << 24) | (65000 << 8) | 255,
                    address=f"{prefix}1",
                    port=9 if tcptype == "active" else 6000 + i,
                    type="host",
                    tcptype=tcptype,
                )
                cands.append((base, base))
                self.bases[("tcp", base.address, base.port)] = (i, base)
            self.agents.append((gen, gen.session.local_parameters))  # with the renomination option
            self.locals.append(cands)
            self.nat.append(nat)
            self.symmetric.append(self_symmetric)
        self.queue: list[tuple[float, int, int, bytes, tuple[str, int], Candidate, str]] = []
        self.seq = 0
        self.now = 0.0
        self.actions: list[tuple[float, int, str, Any]] = []
        for i in (0, 1):
            gen, _ = self.agents[i]
            for c, b in self.locals[i]:
                gen.add_local_candidate(c, b)
            gen.gathering_done()
            j = 1 - i
            _, params = self.agents[j]
            self._action(rng.choice([0.0, 0.0, 0.05, 0.3]), i, "params", params)
            for c, _b in self.locals[j]:
                if c.type == "srflx" and rng.random() < 0.4:
                    continue  # not signalled: learned as prflx
                self._action(rng.choice([0.0, 0.0, 0.01, 0.2, 1.0]), i, "cand", c)
            if rng.random() < 0.8:
                self._action(rng.choice([0.0, 1.5]), i, "eoc", None)
            for _ in range(rng.choice([0, 0, 2])):
                self._action(rng.uniform(0.5, 8.0), i, "consent", None)
            if rng.random() < 0.2:
                self._action(rng.uniform(1.0, 5.0), i, "keepalive", None)
            if renom and rng.random() < 0.5:
                self._action(rng.uniform(1.0, 6.0), i, "renominate", None)
            if tcp and rng.random() < 0.2:
                self._action(rng.uniform(0.2, 3.0), i, "route_failed", None)
            if rng.random() < 0.1:
                self._action(rng.uniform(0.1, 2.0), i, "pair_state_events", None)

    def _action(self, at: float, agent: int, kind: str, arg: Any) -> None:
        self.seq += 1
        heapq.heappush(self.actions, (at, self.seq, agent, kind, arg))  # type: ignore[misc]

    def log(self, text: str) -> None:
        self.trace.append(f"{self.now:.6f} {text}")

    def run(self, horizon: float = 45.0, steps: int = 4000) -> None:
        for _ in range(steps):
            self.pump()
            at = min(self.agents[0][0].get_timer(), self.agents[1][0].get_timer())
            if self.queue:
                at = min(at, self.queue[0][0])
            if self.actions:
                at = min(at, self.actions[0][0])
            if at == math.inf or at > horizon:
                break
            self.now = max(self.now, at)
        self.finish()

    def pump(self) -> None:
        while self.actions and self.actions[0][0] <= self.now:
            _, _, i, kind, arg = heapq.heappop(self.actions)
            self.act(i, kind, arg)
        while self.queue and self.queue[0][0] <= self.now:
            _, _, dst, data, src, base, _tr = heapq.heappop(self.queue)
            gen = self.agents[dst][0]
            try:
                msg = Message.decode(data)
            except StunDecodeError:
                self.log(f"{dst} undecodable")
                continue
            gen.receive(msg, data, src, base, self.now)
            self.log(f"{dst} recv {_value(data)} from {src}")
        for i, (gen, _) in enumerate(self.agents):
            timer = gen.get_timer()
            self.log(f"{i} timer {timer!r}")
            if timer <= self.now:
                gen.handle_timer(self.now)
            for t in gen.datagrams_to_send(self.now):
                self.send(i, t)
            for e in gen.take_events():
                self.log(f"{i} event {_event(e)}")

    def send(self, i: int, t: Any) -> None:
        base = t.base
        self.log(f"{i} send {_value(t.data)} {base.transport}:{base.address}:{base.port}->{t.remote} {_pair(t.pair)}")
        src = (base.address, base.port)
        if base.transport == "udp":
            pub = self.nat[i].get(src)
            if pub is not None and self.symmetric[i]:  # symmetric NAT: a port per destination
                pub = (pub[0], 40000 + (hash(t.remote) & 0xFFF))
                self.public.setdefault(("udp", *pub), self.public[("udp", *self.nat[i][src])])
            src = pub or src
        dst = self.bases.get((base.transport, *t.remote)) or self.public.get((base.transport, *t.remote))
        if dst is None or dst[0] == i:
            return
        if base.transport == "tcp" and (base.tcptype == "passive" or dst[1].tcptype == "active"):
            return  # a passive end never connects; nothing listens on an active one
        if self.rng.random() < self.loss and base.transport == "udp":
            return
        self.seq += 1
        lo, hi = self.delay
        heapq.heappush(
            self.queue, (self.now + self.rng.uniform(lo, hi), self.seq, dst[0], t.data, src, dst[1], base.transport)
        )

    def act(self, i: int, kind: str, arg: Any) -> None:
        gen = self.agents[i][0]
        self.log(f"{i} act {kind} {_value(arg) if arg is not None else ''}")
        if kind == "params":
            gen.set_remote_parameters(arg)
        elif kind == "cand":
            self.log(f"{i} accepted {gen.add_remote_candidate(arg)}")
        elif kind == "eoc":
            gen.add_remote_candidate(None)
        elif kind == "consent":
            pair = gen.nominated
            if pair is not None and not gen.session.local_parameters.lite:  # consent is the full peer's (RFC 7675)
                gen.consent_check(pair, self.now)
        elif kind == "keepalive":
            pair = gen.nominated
            if pair is not None:
                gen.keepalive(pair)
        elif kind == "renominate":
            valid = [p for p in gen.session.valid_pairs if not p.nominated] or gen.session.valid_pairs
            if valid:
                self.log(f"{i} renominated {gen.renominate(self.rng.choice(valid))}")
        elif kind == "route_failed":
            for pair in gen.session.pairs:
                if pair.local.transport == "tcp":
                    failed = gen.route_failed(pair.base, pair.remote_address)
                    self.log(f"{i} route_failed {[_pair(p) for p in failed]}")
                    break
        elif kind == "pair_state_events":
            gen.pair_state_events = not gen.pair_state_events

    def finish(self) -> None:
        for i, (gen, _) in enumerate(self.agents):
            s = gen.session
            self.log(f"{i} end nominated {_pair(gen.nominated)} controlling {s.controlling} failed {s.failed}")
            for p in s.pairs + [p for p in s.valid_pairs if p not in s.pairs]:
                self.log(
                    f"{i} pair {_pair(p)} sent {p.requests_sent} recv {p.requests_received} "
                    f"rsp {p.responses_sent}/{p.responses_received} rtx {p.retransmissions_sent} "
                    f"consent {p.consent_requests_sent} rtt {p.rtt!r} last {p.last_consent!r}"
                )
            self.log(f"{i} locals {[c.to_sdp() for c in s.local_candidates]}")
            self.log(f"{i} remotes {[c.to_sdp() for c in s.remote_candidates]}")
            self.log(f"{i} sizes {s.table_sizes()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--trace", type=int, default=None)
    args = parser.parse_args()
    if args.trace is not None:
        s = Scenario(args.trace)
        s.run()
        print("\n".join(s.trace))
        return
    for seed in range(args.start, args.start + args.n):
        s = Scenario(seed)
        try:
            s.run()
        except Exception as e:  # a crash is part of the behaviour compared
            s.log(f"crash {type(e).__name__}: {e}")
        digest = hashlib.sha256("\n".join(s.trace).encode()).hexdigest()[:20]
        print(seed, len(s.trace), digest)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
