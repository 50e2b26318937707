"""The Trio side of the limits both embedded servers share on TCP/TLS (`iceagent.stun.limits` is the sans-IO
part): waiting for a reserved rate-limit token, and the whole-message read deadline."""

from __future__ import annotations

from collections.abc import Callable

import trio

from .limits import RequestLimiter

__all__ = ["ReadDeadline", "wait_for_rate"]


async def wait_for_rate(limiter: RequestLimiter, ip: str, count: Callable[[str], None]) -> bool:
    """A request over TCP/TLS, where the source is real: over the rate it waits for its reserved tokens (counted
    by reason) instead of being dropped, so a pipelining client is slowed, not broken; one sleep, no polling.
    False (counted as "rate_wait"): the wait would pass `read_timeout`, so the caller closes the connection."""
    reserved = limiter.reserve(ip, trio.current_time(), limiter.limits.read_timeout)
    if reserved is None:
        count("rate_wait")
        return False
    delay, reason = reserved
    if reason is not None:
        count(reason)  # once per request held back
        await trio.sleep(delay)
    return True


class ReadDeadline:
    """The read side of a TCP/TLS client of the STUN and TURN servers: a message begun must arrive whole within
    `read_timeout` (a client trickling a byte at a time is closed however steadily it sends: slowloris), and a
    connection with no message begun waits `idle_timeout` for one. The deadline runs from the chunk a message
    began in, or from when the server finished the messages before it (its own rate-limit waits do not count)."""

    def __init__(self, stream: trio.abc.Stream, read_timeout: float, idle_timeout: float) -> None:
        self.stream = stream
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.deadline: float | None = None  # when the message begun must be complete; None: none begun

    async def receive(self) -> bytes | bytearray | None:
        """The next bytes; b"" when the client closed; None when the deadline passed (mid-message if `deadline`
        is set, else idle)."""
        with trio.move_on_at(trio.current_time() + self.idle_timeout if self.deadline is None else self.deadline):
            return await self.stream.receive_some(65536)
        return None

    def handled(self, pending: int, fresh: bool) -> None:
        """A chunk's complete messages were handled; `pending` bytes of the next remain, which began in this chunk
        (`fresh`: the buffer was empty before it, or a message ended in it) or earlier."""
        if not pending:
            self.deadline = None
        elif fresh or self.deadline is None:
            self.deadline = trio.current_time() + self.read_timeout
