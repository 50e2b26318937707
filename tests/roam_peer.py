"""One roaming ICE peer driven over stdin/stdout with JSON lines, for tests/test_roaming_netns.py.

Run inside a network namespace: `ip netns exec NS .venv/bin/python tests/roam_peer.py --controlling
--interface eth0`. It gathers on the addresses of `--interface` only (whatever they become), with
`auto_restart=True`, and streams a numbered datagram every `--interval` seconds once connected,
resending as the loss tests' applications do (a datagram lost while the agent restarts is not resent:
the next one goes).

Output (one JSON object per line, "event" key):
- per generation: `{"event": "local", "generation", "ufrag", "pwd"}`, then `{"event": "candidate", "sdp"}`
  per candidate;
- `{"event": "connected"}` once; `{"event": "network", "changes": [[kind, address], ...]}` per change the
  agent saw (the iceagent_network_changed hook);
- `{"event": "report", "gap", "after", "generation", "state"}` for `{"cmd": "report"}`: the longest
  silence between two received datagrams since the last `{"cmd": "mark"}` (monotonic seconds), how many
  arrived after the mark;
- `{"event": "closed"}` before exiting.
Input: `{"cmd": "remote", "ufrag", "pwd"}`, `{"cmd": "candidate", "sdp"}`, `{"cmd": "mark"}`,
`{"cmd": "report"}`, `{"cmd": "close"}` (end of stdin closes too).
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

import trio
from netns_peer import emit, read_commands  # this script's directory is on sys.path

from iceagent import Candidate, IceParameters, open_agent
from iceagent.hookspecs import hookimpl
from iceagent.plugins import create_plugin_manager


class NetworkEvents:
    @hookimpl
    def iceagent_network_changed(self, agent: Any, changes: Any) -> None:
        emit("network", changes=[[c.kind, c.address] for c in changes])


async def main(args: argparse.Namespace) -> None:
    pm = create_plugin_manager()
    pm.register(NetworkEvents())
    arrivals: list[float] = []
    mark = [0.0]
    async with (
        open_agent(controlling=args.controlling, auto_restart=True, name=args.name, plugin_manager=pm,
                   interface_filter=lambda name: name == args.interface) as agent,
        trio.open_nursery() as nursery,
    ):

        async def signal_generations() -> None:
            async for generation in agent.generation.eventual_values():
                params = agent.local_parameters
                emit("local", generation=generation, ufrag=params.ufrag, pwd=params.pwd)
                async for cand in agent.gather():
                    emit("candidate", sdp=cand.to_sdp())

        async def data() -> None:
            stream = await agent.connect()
            emit("connected")

            async def receive() -> None:
                while True:
                    await stream.receive()
                    arrivals.append(time.monotonic())
                    del arrivals[:-5000]

            nursery.start_soon(receive)
            seq = 0
            while True:
                await stream.send(seq.to_bytes(4, "big"))
                seq += 1
                await trio.sleep(args.interval)

        def report() -> None:
            since = [t for t in arrivals if t <= mark[0]][-1:] + [t for t in arrivals if t > mark[0]]
            gap = max((b - a for a, b in itertools.pairwise(since)), default=None)
            emit("report", gap=gap, after=sum(1 for t in arrivals if t > mark[0]),
                 generation=agent.generation.value, state=agent.state.value.value)

        nursery.start_soon(signal_generations)
        nursery.start_soon(data)
        send, receive = trio.open_memory_channel[dict[str, Any]](100)
        nursery.start_soon(read_commands, send)
        async for command in receive:
            kind = command.get("cmd")
            if kind == "remote":
                agent.set_remote_parameters(IceParameters(ufrag=command["ufrag"], pwd=command["pwd"]))
            elif kind == "candidate":
                agent.add_remote_candidate(Candidate.from_sdp(command["sdp"]))
            elif kind == "mark":
                mark[0] = time.monotonic()
            elif kind == "report":
                report()
            elif kind == "close":
                break
        nursery.cancel_scope.cancel()
    emit("closed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    role = p.add_mutually_exclusive_group(required=True)
    role.add_argument("--controlling", action="store_true")
    role.add_argument("--controlled", action="store_true")
    p.add_argument("--interface", required=True, help="the only interface to gather on")
    p.add_argument("--name", default="peer")
    p.add_argument("--interval", type=float, default=0.02, help="seconds between two data datagrams")
    return p.parse_args(argv)


if __name__ == "__main__":
    trio.run(main, parse_args())
