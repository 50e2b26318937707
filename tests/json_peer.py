"""A peer ICE implementation in a subprocess, driven with JSON lines over stdin/stdout.

tests/aioice_peer.py and tests/libnice_peer.py speak the same small protocol: commands
`{"cmd": ...}` in, events `{"event": ...}` out. `open_json_peer` runs one and always cleans up: on the
way out (failure included) the peer is asked to close (end of stdin), killed if it does not exit
within 5 s, and waited for.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio


class PeerError(AssertionError):
    pass


class JsonPeer:
    """The test's handle on a peer subprocess: send commands, wait for events."""

    def __init__(self, process: trio.Process, who: str) -> None:
        self.process = process
        self.who = who
        self._buffer = bytearray()
        self._pending: list[dict[str, Any]] = []

    async def command(self, cmd: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all((json.dumps({"cmd": cmd, **fields}) + "\n").encode())

    async def learn(self, agent: Any) -> None:
        """Tell the peer the agent's credentials, every candidate it gathers and end-of-candidates."""
        await self.command("remote", ufrag=agent.local_parameters.ufrag, pwd=agent.local_parameters.pwd)
        async for cand in agent.gather():
            await self.command("candidate", sdp=cand.to_sdp())
        await self.command("candidate", sdp=None)

    async def _read_event(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some(65536)
            if not chunk:
                raise PeerError(f"the {self.who} peer exited (code {self.process.poll()}) before answering")
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        event: dict[str, Any] = json.loads(line)
        if event.get("event") == "error":
            raise PeerError(f"the {self.who} peer reported: {event['error']}")
        return event

    async def expect(self, name: str) -> dict[str, Any]:
        """The next event called `name` (others are kept for later); a `failed` event is an error."""
        for i, event in enumerate(self._pending):
            if event["event"] == name:
                return self._pending.pop(i)
        while True:
            event = await self._read_event()
            if event["event"] == name:
                return event
            if event["event"] == "failed":
                raise PeerError(f"{self.who} failed to connect: {event['error']}")
            self._pending.append(event)


@asynccontextmanager
async def open_json_peer(
    argv: Sequence[str], who: str, *, env: Mapping[str, str] | None = None
) -> AsyncIterator[JsonPeer]:
    """Run the peer `argv`; see the module docstring for how it ends."""
    process = await trio.lowlevel.open_process(
        list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=None if env is None else dict(env)
    )
    try:
        yield JsonPeer(process, who)
    finally:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(5):
                try:
                    assert process.stdin is not None
                    await process.stdin.aclose()  # end of stdin: the peer closes and exits
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                await process.wait()
            if process.returncode is None:
                process.kill()
            await process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    await pipe.aclose()
