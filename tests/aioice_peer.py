"""An aioice ICE peer driven over stdin/stdout with JSON lines (for interop tests against iceagent).

Run: `python tests/aioice_peer.py --controlled` (or `--controlling`). Gathering is restricted to
127.0.0.1 (`aioice.ice.get_host_addresses` is replaced) and no STUN or TURN server is used, so nothing
leaves loopback.

Every line on stdout is one JSON object with an "event" key; every line on stdin is one JSON object
with a "cmd" key. Candidates travel as SDP attribute values; lines read may carry `a=` and
`candidate:` prefixes, lines written are aioice's `to_sdp()` form (without `candidate:`).

Output:
- `{"event": "local", "ufrag", "pwd", "candidates": [sdp, ...]}` once gathering is done (first line).
- `{"event": "connected", "pair": {"local": sdp, "remote": sdp}}` when `connect()` returns, or
  `{"event": "failed", "error": str}`.
- `{"event": "sent", "count": n, "echoes": [hex, ...]}` after a `send` command.
- `{"event": "stats", "received": n, "echoed": n}`; `{"event": "closed"}` before exiting;
  `{"event": "error", "error": str}` for a command it cannot carry out.

Commands:
- `{"cmd": "remote", "ufrag": str, "pwd": str}`: the peer's ICE parameters.
- `{"cmd": "candidate", "sdp": str | null}`: a remote candidate; null is end-of-candidates.
- `{"cmd": "connect"}`: start `connect()`; once connected, every datagram received is echoed back.
- `{"cmd": "send", "data": [hex, ...]}` or `{"cmd": "send", "count": n, "size": bytes}`: send these
  datagrams (or n generated ones), then collect as many datagrams coming back (the other side echoes
  them) instead of echoing, and report them in the `sent` event. `"expect_echo": false` skips the wait.
- `{"cmd": "stats"}`; `{"cmd": "close"}` (end of stdin closes too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import aioice
import aioice.ice


def _loopback_only(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    """Replacement for aioice.ice.get_host_addresses: only 127.0.0.1, never a real interface."""
    return ["127.0.0.1"] if use_ipv4 else []


aioice.ice.get_host_addresses = _loopback_only


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def strip_sdp(line: str) -> str:
    """aioice parses the value after `candidate:`; accept `a=candidate:...` and `candidate:...` too."""
    line = line.strip()
    if line.startswith("a="):
        line = line[2:]
    if line.startswith("candidate:"):
        line = line[len("candidate:"):]
    return line


def generated_payload(i: int, size: int) -> bytes:
    """Datagram i of a generated burst: a recognisable header, padded to `size` bytes."""
    body = b"aioice-%06d:" % i + bytes((i + k) % 251 for k in range(size))
    return body[:size]


class Peer:
    def __init__(self, controlling: bool) -> None:
        self.conn = aioice.Connection(ice_controlling=controlling, stun_server=None, use_ipv6=False)
        self.connected = asyncio.Event()
        self.received = 0
        self.echoed = 0
        self._collector: asyncio.Queue[bytes] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> None:
        try:
            await self.conn.connect()
        except Exception as exc:
            emit("failed", error=f"{type(exc).__name__}: {exc}")
            return
        pair = self.conn._nominated.get(1)  # aioice keeps no public "selected pair"
        emit(
            "connected",
            pair=None
            if pair is None
            else {"local": pair.local_candidate.to_sdp(), "remote": pair.remote_candidate.to_sdp()},
        )
        self.connected.set()
        self.spawn(self._receive_loop())

    async def _receive_loop(self) -> None:
        while True:
            try:
                data = await self.conn.recv()
            except ConnectionError:
                return
            self.received += 1
            if self._collector is not None:
                self._collector.put_nowait(data)
            else:
                await self.conn.send(data)
                self.echoed += 1

    async def _send(self, cmd: dict[str, Any]) -> None:
        if "data" in cmd:
            payloads = [bytes.fromhex(h) for h in cmd["data"]]
        else:
            payloads = [generated_payload(i, int(cmd.get("size", 100))) for i in range(int(cmd["count"]))]
        expect = bool(cmd.get("expect_echo", True))
        await self.connected.wait()
        collector: asyncio.Queue[bytes] = asyncio.Queue()
        if expect:
            self._collector = collector
        try:
            for p in payloads:
                await self.conn.send(p)
            echoes = []
            if expect:
                timeout = float(cmd.get("timeout", 10.0))
                for _ in payloads:
                    echoes.append(await asyncio.wait_for(collector.get(), timeout))
        except (asyncio.TimeoutError, ConnectionError) as exc:
            emit("error", error=f"send: {type(exc).__name__}: {exc}")
            return
        finally:
            self._collector = None
        emit("sent", count=len(payloads), echoes=[e.hex() for e in echoes])

    async def handle(self, cmd: dict[str, Any]) -> bool:
        """Carry out one command; False means: stop."""
        name = cmd.get("cmd")
        if name == "remote":
            self.conn.remote_username = cmd["ufrag"]
            self.conn.remote_password = cmd["pwd"]
        elif name == "candidate":
            sdp = cmd.get("sdp")
            await self.conn.add_remote_candidate(None if sdp is None else aioice.Candidate.from_sdp(strip_sdp(sdp)))
        elif name == "connect":
            self.spawn(self._connect())
        elif name == "send":
            self.spawn(self._send(cmd))
        elif name == "stats":
            emit("stats", received=self.received, echoed=self.echoed)
        elif name == "close":
            return False
        else:
            emit("error", error=f"unknown command {name!r}")
        return True


async def main(controlling: bool) -> None:
    peer = Peer(controlling)
    await peer.conn.gather_candidates()
    emit(
        "local",
        ufrag=peer.conn.local_username,
        pwd=peer.conn.local_password,
        candidates=[c.to_sdp() for c in peer.conn.local_candidates],
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            if not line.strip():
                continue
            try:
                cmd = json.loads(line)
                if not await peer.handle(cmd):
                    break
            except Exception as exc:  # report, keep serving: the test decides what is fatal
                emit("error", error=f"{type(exc).__name__}: {exc}")
    finally:
        for task in list(peer._tasks):
            task.cancel()
        await asyncio.gather(*peer._tasks, return_exceptions=True)
        await peer.conn.close()
        emit("closed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--controlling", dest="controlling", action="store_true", help="start as controlling agent")
    role.add_argument("--controlled", dest="controlling", action="store_false", help="start as controlled agent")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args().controlling))
