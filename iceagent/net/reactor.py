"""UdpReactor: one epoll that serves every subscribed OS UDP socket of a `trio.run` (Linux).

A receive task per socket costs a Trio task (about 2 KiB) and, per wake-up, an epoll_ctl plus a
scheduling round. With thousands of agents in one process that dominates (bench/scale.py), so the
agent subscribes its host sockets here instead: a level-triggered epoll of their own, watched by one
task through its file descriptor, reads every ready socket and hands the datagrams to the socket's
callback at once, as asyncio's protocols get them.

The task is a Trio system task, started when the first socket subscribes and ended when the last one
leaves: a run-wide service like Trio's own I/O manager, which no one agent's nursery could own (it
outlives any one agent). A callback must not raise: the agent wraps its own and reports what escapes to
its owner (see SessionRunner), so a bug still surfaces in that agent's nursery.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

import trio

from ..logs import get_logger

log = get_logger("iceagent.net")

Address = tuple[str, int]
#: What a subscriber gets: the datagrams read from its socket in one round, in order.
Callback = Callable[[list[tuple[bytes, Address]]], None]

#: Datagrams read from one socket per round before the next socket gets its turn (fairness).
BATCH = 64
#: Ready sockets taken from the epoll per round.
MAX_EVENTS = 1024


def available() -> bool:
    """Whether this platform has epoll (Linux); elsewhere sockets keep a receive task each."""
    return hasattr(select, "epoll")


class UdpReactor:
    """The epoll, its subscribers and the system task that serves them (one per `trio.run`)."""

    def __init__(self) -> None:
        self._ep: select.epoll | None = None
        self._subscribers: dict[int, tuple[socket.socket, Callback]] = {}

    def subscribe(self, sock: socket.socket, callback: Callback) -> None:
        """Deliver what arrives on `sock` (non-blocking) to `callback` until `unsubscribe`."""
        fd = sock.fileno()
        if fd in self._subscribers:
            raise RuntimeError(f"socket {fd} is already subscribed")
        ep = self._ep
        if ep is None:
            ep = self._ep = select.epoll()
            trio.lowlevel.spawn_system_task(self._run, ep, name="iceagent-udp-reactor")
        ep.register(fd, select.EPOLLIN)
        self._subscribers[fd] = (sock, callback)

    def unsubscribe(self, sock: socket.socket) -> None:
        """Stop delivering for `sock`; call before closing it (its descriptor number may be reused)."""
        fd = sock.fileno()
        entry = self._subscribers.get(fd)
        if entry is not None and entry[0] is sock:
            self._drop(fd)

    def __len__(self) -> int:
        return len(self._subscribers)

    async def _run(self, ep: select.epoll) -> None:
        """Serve until the last subscriber leaves (then `ep` is no longer the reactor's: a later subscriber
        starts a new epoll and task)."""
        subscribers = self._subscribers
        try:
            while ep is self._ep:
                try:
                    await trio.lowlevel.wait_readable(ep)
                except trio.ClosedResourceError:
                    return  # notify_closing: the last subscriber left
                for fd, _events in ep.poll(0, MAX_EVENTS):
                    entry = subscribers.get(fd)
                    if entry is not None:
                        self._serve(fd, *entry)
        finally:
            ep.close()

    def _serve(self, fd: int, sock: socket.socket, callback: Callback) -> None:
        out: list[tuple[bytes, Address]] = []
        recvfrom = sock.recvfrom
        while len(out) < BATCH:
            try:
                data, addr = recvfrom(65536)
            except BlockingIOError:
                break
            except ConnectionResetError:
                continue  # an ICMP error reported on a later recv: not an error for UDP
            except OSError as exc:
                log.warning("UDP socket %d: %s; no longer watched", fd, exc)
                self._drop(fd)
                break
            out.append((data, addr if len(addr) == 2 else (addr[0].split("%", 1)[0], addr[1])))
        if out:
            try:
                callback(out)
            except Exception:  # a system task must not raise: the subscriber reports its own bugs
                log.exception("UDP socket %d: the receive callback raised; no longer watched", fd)
                self._drop(fd)

    def _drop(self, fd: int) -> None:
        del self._subscribers[fd]
        ep = self._ep
        if ep is None:
            return
        try:
            ep.unregister(fd)
        except OSError:
            pass
        if not self._subscribers:
            self._ep = None
            trio.lowlevel.notify_closing(ep)  # wakes the task, which closes it


_reactor: trio.lowlevel.RunVar[UdpReactor] = trio.lowlevel.RunVar("iceagent_udp_reactor")


def udp_reactor() -> UdpReactor:
    """The reactor of this `trio.run`."""
    try:
        return _reactor.get()
    except LookupError:
        reactor = UdpReactor()
        _reactor.set(reactor)
        return reactor
