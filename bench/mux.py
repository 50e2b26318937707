"""Benchmark for issue 14 item 5: N agent pairs in one process, the N server agents on ONE mux port.

`pairs` (the default): for each N in `--n` (default 1000 10000), in a fresh subprocess: one `open_mux` on
127.0.0.1, N server agents (controlled) opened with `mux=mux`, N client agents (controlling) with their own
sockets on 127.0.0.1 (so every server agent sees a distinct remote address), all `IceConfig(global_pacing=
False)`. Setup (opening, gathering, serializing the candidates) is not timed; then every agent gets its
peer's parameters and candidates at once and the clock runs until every `connect()` returned ("connect s")
and until all 2N agents are COMPLETED. Also reported: process CPU time over the connect, peak RSS and
(peak - RSS before the first agent) / 2N per agent, descriptors open once all are connected (target: at
most N + 50: one per client, a handful for all server agents), the mux's drops by reason (a burst of N
first checks can overflow the socket's receive buffer: they converge by retransmission) and the mux
socket's SO_RCVBUF. Next to it, in the same run, bench/scale.py's children: aioice at `--aioice` pairs
(its own sockets; default 1000) and iceagent without a mux at the same N.

`routing`: the mux's routing alone (no agents): N endpoints registered on one port, N client sockets each
sending K checks in a burst; time (and process CPU time, sending included) until all are routed or dropped,
and what was dropped.

    .venv/bin/python bench/mux.py [pairs] [--n 1000 10000] [--aioice 1000] [--plain 1000] [--timeout 300]
                                  [--rcvbuf BYTES]   (a small mux buffer: the burst overflows, and converges)
    .venv/bin/python bench/mux.py routing [--agents N ...] [--checks K]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import sys
import time

import trio
import trio.testing

from iceagent.net.mux import MuxEndpoint, open_mux
from iceagent.stun import Attr, Message, MessageClass, Method


def check(ufrag: str, i: int) -> bytes:
    msg = Message(Method.BINDING, MessageClass.REQUEST, transaction_id=os.urandom(12),
                  attributes=[(Attr.USERNAME, f"{ufrag}:client{i}"), (Attr.PRIORITY, 1)])
    return msg.encode(integrity_key=b"bench-password-0123456789", fingerprint=True)


async def run(agents: int, checks: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    async with open_mux(["127.0.0.1"], 0) as mux:
        target = mux.local_addresses[0]
        endpoints: list[MuxEndpoint] = []
        for i in range(agents):
            ep = mux.register(f"agent{i}")
            ep.add_ufrag(f"uf{i:05d}")
            endpoints.append(ep)
        clients = []
        for _ in range(agents):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            clients.append(s)
        payloads = [[check(f"uf{i:05d}", i) for _ in range(checks)] for i in range(agents)]
        total = agents * checks

        settled = trio.Event()
        taken = [0]

        async def drain(ep: MuxEndpoint) -> None:
            while True:
                try:
                    batch = await ep.transports[0].receive_batch()
                except trio.ClosedResourceError:
                    return
                taken[0] += len(batch)  # an agent would feed these to its session
                if taken[0] + sum(mux.stats()["dropped"].values()) >= total:
                    settled.set()

        fds = len(os.listdir("/proc/self/fd"))
        rcvbuf = mux._ports[0].sock.raw.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)  # type: ignore[attr-defined]
        async with trio.open_nursery() as nursery:
            for ep in endpoints:
                nursery.start_soon(drain, ep)
            await trio.testing.wait_all_tasks_blocked()
            start, cpu0 = time.perf_counter(), time.process_time()
            for i, s in enumerate(clients):
                for p in payloads[i]:
                    try:
                        s.sendto(p, target)
                    except BlockingIOError:
                        pass
                if i % 64 == 63:
                    await trio.lowlevel.checkpoint()
            with trio.move_on_after(10):  # drops after the last routed check are only seen here
                await settled.wait()
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu0
            nursery.cancel_scope.cancel()
        stats = mux.stats()
        print(f"agents={agents} checks/agent={checks} sent={total} routed={stats['routed']} "
              f"dropped={stats['dropped']} time={elapsed * 1000:.1f} ms cpu={cpu * 1000:.1f} ms "
              f"rate={stats['routed'] / elapsed:,.0f}/s rcvbuf={rcvbuf} fds_open={fds}")
        for s in clients:
            s.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def main() -> None:
    if sys.argv[1:2] == ["routing"]:
        parser = argparse.ArgumentParser(description="the mux's routing alone")
        parser.add_argument("--agents", type=int, nargs="*", default=[1000, 10000])
        parser.add_argument("--checks", type=int, default=1)
        args = parser.parse_args(sys.argv[2:])
        for n in args.agents:
            trio.run(run, n, args.checks)
        return
    from mux_pairs import main as pairs_main

    sys.exit(pairs_main(sys.argv[2:] if sys.argv[1:2] == ["pairs"] else sys.argv[1:]))


if __name__ == "__main__":
    main()
