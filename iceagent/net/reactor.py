"""The run-wide reactor: one epoll for every subscribed OS UDP socket and one timer heap, served by a
single system task (asyncio's model, under Trio).

A receive task per socket costs a Trio task (about 2 KiB) and, per wake-up, an epoll_ctl plus a
scheduling round; a sleeping task per timer costs the same. With thousands of agents in one process
that dominates (bench/scale.py). So an agent subscribes its host sockets here and sets one timer: a
level-triggered epoll of the reactor's own, watched through its file descriptor, is read when ready and
each socket's datagrams go to its callback at once; due timers call their client's `on_timer()`.

The task is a Trio system task, started when the first socket or timer arrives and ended when the last
one leaves: a run-wide service like Trio's own I/O manager, which no one agent's nursery could own (it
outlives any one agent). Callbacks must not raise: the agent wraps its own and re-raises what escapes
in its own task, so a bug still surfaces in that agent's nursery. Sockets need epoll (Linux); timers
work everywhere.
"""

from __future__ import annotations

import heapq
import itertools
import math
import select
import socket
from collections.abc import Callable
from typing import Protocol

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


class TimerClient(Protocol):
    """Something with one timer at a time (`Reactor.set_timer`)."""

    def on_timer(self) -> None: ...


def available() -> bool:
    """Whether sockets can subscribe: this platform has epoll (Linux). Elsewhere they keep a receive task."""
    return hasattr(select, "epoll")


class Reactor:
    """The epoll, the timers and the system task that serves them (one per `trio.run`)."""

    def __init__(self) -> None:
        self._ep: select.epoll | None = None  # open while the task runs (where epoll exists)
        self._subscribers: dict[int, tuple[socket.socket, Callback]] = {}
        self._heap: list[tuple[float, int, TimerClient]] = []
        self._want: dict[TimerClient, float] = {}  # when each client asked to be called
        self._armed: dict[TimerClient, float] = {}  # each client's heap entry that counts (<= its want)
        self._stale = 0  # heap entries that no longer count (superseded or cancelled)
        self._soon: dict[TimerClient, None] = {}  # clients to call in the next round (call_soon)
        self._seq = itertools.count()
        self._scope: trio.CancelScope | None = None  # the task's current wait
        self._running = False

    # ---- sockets ----

    def subscribe(self, sock: socket.socket, callback: Callback) -> None:
        """Deliver what arrives on `sock` (non-blocking) to `callback` until `unsubscribe`."""
        if not available():
            raise RuntimeError("no epoll on this platform: receive on the socket instead")
        fd = sock.fileno()
        if fd in self._subscribers:
            raise RuntimeError(f"socket {fd} is already subscribed")
        self._start()
        assert self._ep is not None
        self._ep.register(fd, select.EPOLLIN)
        self._subscribers[fd] = (sock, callback)

    def unsubscribe(self, sock: socket.socket) -> None:
        """Stop delivering for `sock`; call before closing it (its descriptor number may be reused)."""
        fd = sock.fileno()
        entry = self._subscribers.get(fd)
        if entry is not None and entry[0] is sock:
            self._drop(fd)

    # ---- timers ----

    def set_timer(self, client: TimerClient, at: float) -> None:
        """Call `client.on_timer()` once Trio time reaches `at`, replacing the client's previous timer;
        math.inf cancels it. Moving a timer later costs no heap entry: the earlier one re-arms when due."""
        if at == math.inf:
            if self._want.pop(client, None) is not None:
                if self._armed.pop(client, None) is not None:
                    self._stale += 1
                self._idle_check()
            return
        self._want[client] = at
        armed = self._armed.get(client)
        if armed is not None and armed <= at:
            return
        if armed is not None:
            self._stale += 1
        self._armed[client] = at
        heapq.heappush(self._heap, (at, next(self._seq), client))
        if self._stale > len(self._armed) + 64:
            self._heap = [(t, next(self._seq), c) for c, t in self._armed.items()]
            heapq.heapify(self._heap)
            self._stale = 0
        scope = self._scope
        if scope is not None and at < scope.deadline:
            scope.deadline = at
        self._start()

    def call_soon(self, client: TimerClient) -> None:
        """Call `client.on_timer()` in the next round, once however often asked (its timer is untouched)."""
        soon = self._soon
        if client not in soon:
            soon[client] = None
            if len(soon) == 1:  # the first of this round: end the task's wait (later ones ride along)
                scope = self._scope
                if scope is not None:
                    scope.deadline = -math.inf
                self._start()

    def __len__(self) -> int:
        return len(self._subscribers) + len(self._want) + len(self._soon)

    # ---- the task ----

    def _start(self) -> None:
        if not self._running:
            self._running = True
            if available():  # the task's own epoll: closed when the task ends, not left to the collector
                self._ep = select.epoll()
            trio.lowlevel.spawn_system_task(self._run, name="iceagent-reactor")

    def _idle_check(self) -> None:
        if not self._subscribers and not self._want and not self._soon and self._scope is not None:
            self._scope.cancel()  # nothing left: let the task end

    async def _run(self) -> None:
        ep = self._ep
        subscribers = self._subscribers
        heap = self._heap
        try:
            while subscribers or self._want or self._soon:
                heap = self._heap
                deadline = -math.inf if self._soon else heap[0][0] if heap else math.inf
                with trio.CancelScope(deadline=deadline) as scope:
                    self._scope = scope
                    if ep is not None:
                        await trio.lowlevel.wait_readable(ep)
                    else:
                        await trio.sleep_forever()
                self._scope = None
                if ep is not None and subscribers:
                    for fd, _events in ep.poll(0, MAX_EVENTS):
                        entry = subscribers.get(fd)
                        if entry is not None:
                            self._serve(fd, *entry)
                self._fire(trio.current_time())
        finally:
            self._scope = None
            self._running = False
            if not self._want:  # idle: what the heap still holds is stale, and would keep dead clients alive
                self._heap.clear()
                self._armed.clear()
                self._stale = 0
            self._ep = None
            if ep is not None:
                ep.close()

    def _fire(self, now: float) -> None:
        soon = self._soon
        if soon:
            self._soon = {}
            for client in soon:
                try:
                    client.on_timer()
                except Exception:  # a system task must not raise: clients report their own bugs
                    log.exception("timer client %r raised", client)
        heap = self._heap
        armed = self._armed
        want = self._want
        due = []
        while heap and heap[0][0] <= now:
            at, _seq, client = heapq.heappop(heap)
            if armed.get(client) != at:
                self._stale -= 1
                continue
            del armed[client]
            wanted = want.get(client)
            if wanted is None:
                continue
            if wanted > now:  # moved later meanwhile: arm for then
                armed[client] = wanted
                heapq.heappush(heap, (wanted, next(self._seq), client))
                continue
            del want[client]
            due.append(client)
        for client in due:  # after the pops: a client that re-arms for `now` waits for the next round
            try:
                client.on_timer()
            except Exception:  # a system task must not raise: clients report their own bugs
                log.exception("timer client %r raised", client)

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
        if self._ep is not None:
            try:
                self._ep.unregister(fd)
            except OSError:
                pass
        self._idle_check()


_reactor: trio.lowlevel.RunVar[Reactor] = trio.lowlevel.RunVar("iceagent_reactor")


def reactor() -> Reactor:
    """The reactor of this `trio.run`."""
    try:
        return _reactor.get()
    except LookupError:
        r = Reactor()
        _reactor.set(r)
        return r
