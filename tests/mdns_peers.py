"""Processes for the mDNS interop tests (tests/test_mdns_netns.py), each run inside a network namespace
with `ip netns exec NS .venv/bin/python tests/mdns_peers.py MODE ...`. JSON lines: events on stdout
("event" key), commands on stdin ("cmd" key); end of stdin ends the process.

Modes:
- `iceagent-agent --address IP [--controlling] [--mdns]`: an iceagent agent gathering on IP only.
- `aioice-agent --address IP [--controlling]`: an aioice Connection gathering on IP only; it resolves
  remote `.local` candidates with its own mDNS module (aioice.mdns).
  Both agents: `{"event": "local", "ufrag", "pwd", "candidates": [sdp]}` once gathered; commands
  `{"cmd": "remote", "ufrag", "pwd"}`, `{"cmd": "candidate", "sdp": str | null}`, `{"cmd": "connect"}`;
  then `{"event": "connected", "pair": [local sdp, remote sdp]}` (or `{"event": "failed"}`); the
  controlling side sends `ping`, the other echoes it, the controlling side reports `{"event": "echo"}`.
  The iceagent agent then reports `{"event": "stats", "mdns": {...}}`.
- `aioice-publish --address IP --name NAME` / `iceagent-publish --address IP`: publish a name for IP
  (`{"event": "published", "name"}`) and answer for it until stdin ends.
- `aioice-resolve --name NAME` / `iceagent-resolve --address IP --name NAME`: `{"event": "resolved",
  "address": str | null}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


# ---- iceagent (Trio) ----


async def _trio_lines(send: Any) -> None:
    import trio

    async with send:
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                return
            if line.strip():
                await send.send(json.loads(line))


async def iceagent_agent(args: argparse.Namespace) -> None:
    import trio

    from iceagent import Candidate, IceConfig, IceFailed, IceParameters, open_agent

    config = IceConfig(global_pacing=False, failed_timeout=10.0)
    send, commands = trio.open_memory_channel[dict[str, Any]](100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_trio_lines, send)
        async with open_agent(controlling=args.controlling, host_addresses=[args.address], mdns=args.mdns,
                              config=config, name="iceagent") as agent:
            cands = [c.to_sdp() async for c in agent.gather()]
            params = agent.local_parameters
            emit("local", ufrag=params.ufrag, pwd=params.pwd, candidates=cands)
            async for cmd in commands:
                if cmd["cmd"] == "remote":
                    agent.set_remote_parameters(IceParameters(ufrag=cmd["ufrag"], pwd=cmd["pwd"]))
                elif cmd["cmd"] == "candidate":
                    sdp = cmd["sdp"]
                    agent.add_remote_candidate(None if sdp is None else Candidate.from_sdp(sdp))
                elif cmd["cmd"] == "connect":
                    try:
                        with trio.fail_after(20):
                            stream = await agent.connect()
                    except (IceFailed, trio.TooSlowError) as exc:
                        emit("failed", error=str(exc), stats=agent.stats()["mdns"])
                        break
                    pair = agent.selected_pair
                    assert pair is not None
                    emit("connected", pair=[pair.local.to_sdp(), pair.remote.to_sdp()])
                    if args.controlling:
                        with trio.fail_after(10):
                            while True:
                                await stream.send(b"ping")
                                with trio.move_on_after(0.5):
                                    emit("echo", data=(await stream.receive()).decode())
                                    break
                    else:
                        with trio.move_on_after(10):
                            data = await stream.receive()
                            await stream.send(data)
                    emit("stats", mdns=agent.stats()["mdns"])
        nursery.cancel_scope.cancel()


async def iceagent_publish(args: argparse.Namespace) -> None:
    import trio

    from iceagent.mdns import open_responder
    from iceagent.net.os import OSNetwork

    send, commands = trio.open_memory_channel[dict[str, Any]](10)
    async with trio.open_nursery() as nursery:
        async with open_responder(OSNetwork()) as responder:
            emit("published", name=await responder.publish(args.address))
            await _trio_lines(send)  # until stdin ends
        nursery.cancel_scope.cancel()
    del commands


async def iceagent_resolve(args: argparse.Namespace) -> None:
    import trio

    from iceagent.mdns import MdnsResolveError, MdnsResolver
    from iceagent.net.os import OSNetwork

    async with trio.open_nursery() as nursery:
        resolver = MdnsResolver(OSNetwork())
        await nursery.start(resolver.run, [args.address])
        try:
            address: str | None = await resolver.resolve(args.name, args.timeout)
        except MdnsResolveError as exc:
            address = None
            emit("error", error=str(exc))
        emit("resolved", address=address)
        nursery.cancel_scope.cancel()


# ---- aioice (asyncio) ----


async def _asyncio_lines() -> Any:
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        if line.strip():
            yield json.loads(line)


def _strip(sdp: str) -> str:
    return sdp[len("candidate:"):] if sdp.startswith("candidate:") else sdp


async def aioice_agent(args: argparse.Namespace) -> None:
    import aioice
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: [args.address]
    conn = aioice.Connection(ice_controlling=args.controlling, stun_server=None, use_ipv6=False)
    await conn.gather_candidates()
    emit("local", ufrag=conn.local_username, pwd=conn.local_password,
         candidates=["candidate:" + c.to_sdp() for c in conn.local_candidates])
    async for cmd in _asyncio_lines():
        if cmd["cmd"] == "remote":
            conn.remote_username, conn.remote_password = cmd["ufrag"], cmd["pwd"]
        elif cmd["cmd"] == "candidate":
            sdp = cmd["sdp"]
            await conn.add_remote_candidate(None if sdp is None else aioice.Candidate.from_sdp(_strip(sdp)))
        elif cmd["cmd"] == "connect":
            try:
                await asyncio.wait_for(conn.connect(), 20)
            except Exception as exc:
                emit("failed", error=repr(exc))
                break
            pair = conn._nominated.get(1)
            emit("connected", pair=None if pair is None else [pair.local_candidate.to_sdp(),
                                                               pair.remote_candidate.to_sdp()],
                 remote_candidates=[c.to_sdp() for c in conn.remote_candidates])
            if args.controlling:
                await conn.send(b"ping")
                emit("echo", data=(await asyncio.wait_for(conn.recv(), 10)).decode())
            else:
                data = await asyncio.wait_for(conn.recv(), 10)
                await conn.send(data)
    await conn.close()


async def aioice_publish(args: argparse.Namespace) -> None:
    from aioice import mdns

    protocol = await mdns.create_mdns_protocol()
    await protocol.publish(args.name, args.address)
    emit("published", name=args.name)
    async for _cmd in _asyncio_lines():
        pass
    await protocol.close()


async def aioice_resolve(args: argparse.Namespace) -> None:
    from aioice import mdns

    protocol = await mdns.create_mdns_protocol()
    emit("resolved", address=await protocol.resolve(args.name, timeout=args.timeout))
    await protocol.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode")
    parser.add_argument("--address")
    parser.add_argument("--name")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--controlling", action="store_true")
    parser.add_argument("--mdns", action="store_true")
    args = parser.parse_args()
    trio_modes = {"iceagent-agent": iceagent_agent, "iceagent-publish": iceagent_publish,
                  "iceagent-resolve": iceagent_resolve}
    asyncio_modes = {"aioice-agent": aioice_agent, "aioice-publish": aioice_publish, "aioice-resolve": aioice_resolve}
    if args.mode in trio_modes:
        import trio

        trio.run(trio_modes[args.mode], args)
    else:
        asyncio.run(asyncio_modes[args.mode](args))


if __name__ == "__main__":
    main()
