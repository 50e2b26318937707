"""One iceagent ICE peer driven over stdin/stdout with JSON lines, for the kernel-NAT tests (tests/test_netns_nat.py).

Run inside a private network namespace:
`ip netns exec PRIV .venv/bin/python tests/netns_peer.py --controlling --host 10.0.1.2 --stun 198.51.100.1:3478`.
Gathering is restricted to `--host` (and the STUN/TURN servers given), so nothing leaves the namespaces.

Output (one JSON object per line, "event" key):
- `{"event": "local", "ufrag", "pwd"}` first; then `{"event": "candidate", "sdp"}` per candidate as gathered
  (trickle), then `{"event": "gathered", "gatherers"}` (stats()["gatherers"]);
- `{"event": "connected", "pair": {...}}` when `connect()` returns, or `{"event": "failed", "error"}`;
- `{"event": "received", "data", "pair": {...}}` when the peer's greeting arrived (the pair then in use);
- `{"event": "completed", "state", "pair": {...}}` after that, once nomination concluded (COMPLETED; or the
  state it ended in instead, FAILED), with the selected pair then;
- `{"event": "closed"}` before exiting.
A pair is `{"local": {"type", "address", "port"}, "remote": {...}, "nominated"}`.

Input (one JSON object per line, "cmd" key):
- `{"cmd": "remote", "ufrag", "pwd"}`; `{"cmd": "candidate", "sdp": str | null}` (null: end-of-candidates);
- `{"cmd": "close"}` (end of stdin closes too).
Once connected the peer sends `hello from <name>` and waits for the other's greeting.

With `--turn URI --user NAME:PASSWORD` the agent also allocates on that TURN server: relay candidates
join the same flow. With `--port-mapping` it asks its default gateway for port mappings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import trio

from iceagent import Agent, Candidate, IceConfig, IceFailed, IceParameters, IceServer, IceState, IceStream, open_agent

#: when this process started (time.monotonic()): each event's "t" counts from it
STARTED = time.monotonic()


def emit(event: str, **fields: Any) -> None:
    """One event line; "t" is the seconds since the process started (a failing lab test prints it)."""
    print(json.dumps({"event": event, "t": round(time.monotonic() - STARTED, 3), **fields}), flush=True)


def describe_pair(pair: Any) -> dict[str, Any] | None:
    if pair is None:
        return None

    def cand(c: Candidate) -> dict[str, Any]:
        return {"type": c.type, "address": c.address, "port": c.port}

    return {"local": cand(pair.local), "remote": cand(pair.remote), "nominated": bool(pair.nominated)}


async def read_commands(receive: trio.MemorySendChannel[dict[str, Any]]) -> None:
    """stdin lines -> commands (a thread reads, so the Trio loop never blocks on the pipe)."""
    async with receive:
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                await receive.send({"cmd": "close"})
                return
            if line.strip():
                await receive.send(json.loads(line))


async def main(args: argparse.Namespace) -> None:
    servers: list[IceServer] = []
    if args.stun:
        servers.append(IceServer(urls=[f"stun:{args.stun}"]))
    if args.turn:
        name, _, password = (args.user or ":").partition(":")
        servers.append(IceServer(urls=[args.turn], username=name, credential=password))
    config = IceConfig(failed_timeout=args.failed_timeout)
    async with (
        open_agent(
            controlling=args.controlling,
            ice_servers=servers,
            host_addresses=[args.host],
            config=config,
            port_mapping=args.port_mapping,
            name=args.name,
        ) as agent,
        trio.open_nursery() as nursery,
    ):
        async def run_ice() -> None:
            stream = await connect_or_report(agent)
            if stream is None:
                return
            await stream.send(f"hello from {args.name}".encode())
            data = await stream.receive()
            emit("received", data=data.decode(errors="replace"), pair=describe_pair(agent.selected_pair))
            await agent.state.wait_value(lambda s: s in (IceState.COMPLETED, IceState.FAILED))
            emit("completed", state=agent.state.value.value, pair=describe_pair(agent.selected_pair))
            await trio.sleep_forever()  # keep answering (consent, the peer's retransmissions) until closed

        nursery.start_soon(run_ice)
        await signal_until_closed(agent, nursery)
    emit("closed")


async def connect_or_report(agent: Agent) -> IceStream | None:
    """`agent.connect()`, emitting "connected" (with the pair) or "failed" (then None)."""
    try:
        stream = await agent.connect()
    except IceFailed as e:
        emit("failed", error=str(e))
        return None
    emit("connected", pair=describe_pair(agent.selected_pair))
    return stream


async def signal_until_closed(agent: Agent, nursery: trio.Nursery) -> None:
    """Emit the agent's parameters and trickled candidates, apply the peer's from stdin, until "close";
    then cancel `nursery` (the caller's tasks for this agent)."""
    params = agent.local_parameters
    emit("local", ufrag=params.ufrag, pwd=params.pwd)

    async def gather() -> None:
        async for cand in agent.gather():
            emit("candidate", sdp=cand.to_sdp())
        emit("gathered", gatherers=agent.stats()["gatherers"])

    nursery.start_soon(gather)
    send, receive = trio.open_memory_channel[dict[str, Any]](100)
    nursery.start_soon(read_commands, send)
    async for command in receive:
        kind = command.get("cmd")
        if kind == "remote":
            agent.set_remote_parameters(IceParameters(ufrag=command["ufrag"], pwd=command["pwd"]))
        elif kind == "candidate":
            sdp = command.get("sdp")
            agent.add_remote_candidate(None if sdp is None else Candidate.from_sdp(sdp))
        elif kind == "close":
            break
    nursery.cancel_scope.cancel()


def peer_parser(description: str) -> argparse.ArgumentParser:
    """The options every lab peer has: its role, its only host address, its STUN server, its name."""
    p = argparse.ArgumentParser(description=description)
    role = p.add_mutually_exclusive_group(required=True)
    role.add_argument("--controlling", action="store_true")
    role.add_argument("--controlled", action="store_true")
    p.add_argument("--host", required=True, help="the only host address to gather (this namespace's private IP)")
    p.add_argument("--stun", help="IP:PORT of the STUN server")
    p.add_argument("--name", default="peer")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = peer_parser(__doc__.splitlines()[0])
    p.add_argument("--turn", help="a turn: URI (e.g. turn:198.51.100.3:3478?transport=udp)")
    p.add_argument("--user", help="NAME:PASSWORD for --turn")
    p.add_argument("--port-mapping", action="store_true", help="open_agent(port_mapping=True)")
    p.add_argument("--failed-timeout", type=float, default=5.0, help="IceConfig.failed_timeout (seconds)")
    return p.parse_args(argv)


if __name__ == "__main__":
    trio.run(main, parse_args())
