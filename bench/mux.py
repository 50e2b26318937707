"""Benchmark skeleton for issue 14 item 5: the mux's routing alone, before agents are wired to it.

What it measures now: N endpoints registered on one `open_mux` port on 127.0.0.1, N client sockets
(one per endpoint, as clients have their own sockets), each client sending K connectivity checks
carrying its endpoint's ufrag in a burst; one receive task per endpoint drains its inbox. Reported: time
from the first send until every check was routed or dropped, datagrams routed per second, what was
dropped (by reason: a burst can overflow the socket's receive buffer, which is what SO_RCVBUF sizing is
for), the mux socket's receive buffer, and open descriptors (N client sockets + the mux's one).

What it does not measure yet (needs `open_agent(mux=)`): whole ICE agents connecting through the mux
(N = 1000 and 10 000 pairs, RSS per agent, next to aioice at 1000 pairs with its own sockets).

    .venv/bin/python bench/mux.py [--agents N] [--checks K]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
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
            start = time.perf_counter()
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
            nursery.cancel_scope.cancel()
        stats = mux.stats()
        print(f"agents={agents} checks/agent={checks} sent={total} routed={stats['routed']} "
              f"dropped={stats['dropped']} time={elapsed * 1000:.1f} ms "
              f"rate={stats['routed'] / elapsed:,.0f}/s rcvbuf={rcvbuf} fds_open={fds}")
        for s in clients:
            s.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--checks", type=int, default=1)
    args = parser.parse_args()
    for n in args.agents:
        trio.run(run, n, args.checks)


if __name__ == "__main__":
    main()
