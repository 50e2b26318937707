"""The run-wide Reactor (iceagent.net.reactor): socket subscriptions on loopback, timers on Trio time."""

from __future__ import annotations

import math
import socket

import pytest
import trio
import trio.testing

from iceagent.net import reactor as reactor_module
from iceagent.net.reactor import Reactor, reactor

pytestmark = pytest.mark.skipif(not reactor_module.available(), reason="epoll is Linux-only")


def udp_pair() -> tuple[socket.socket, socket.socket]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    return a, b


class Clock:
    """A timer client that records when it was called."""

    def __init__(self, r: Reactor, name: str, log: list[tuple[str, float]]) -> None:
        self.r, self.name, self.log = r, name, log

    def on_timer(self) -> None:
        self.log.append((self.name, trio.current_time()))


async def test_one_reactor_per_run_and_its_task_ends_when_idle() -> None:
    r = reactor()
    assert reactor() is r
    a, b = udp_pair()
    got: list[list[tuple[bytes, tuple[str, int]]]] = []
    done = trio.Event()

    def callback(items: list[tuple[bytes, tuple[str, int]]]) -> None:
        got.append(items)
        done.set()

    with a, b:
        r.subscribe(b, callback)
        with pytest.raises(RuntimeError, match="already subscribed"):
            r.subscribe(b, callback)
        for i in range(3):
            a.sendto(b"x%d" % i, b.getsockname())
        with trio.fail_after(5):
            await done.wait()
        datagrams = [d for batch in got for d, _ in batch]
        assert datagrams[:1] == [b"x0"]
        while len(datagrams) < 3:  # the rest may come in a later round
            done = trio.Event()
            with trio.fail_after(5):
                await done.wait()
            datagrams = [d for batch in got for d, _ in batch]
        assert datagrams == [b"x0", b"x1", b"x2"]
        assert got[0][0][1] == a.getsockname()
        r.unsubscribe(b)
        assert len(r) == 0
        await trio.testing.wait_all_tasks_blocked()
        assert not any(t.name == "iceagent-reactor" for t in _system_tasks())


def _system_tasks() -> list[trio.lowlevel.Task]:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    out = []
    for nursery in root.child_nurseries:
        out.extend(nursery.child_tasks)
    return out


async def test_a_raising_callback_is_dropped_and_others_keep_working(caplog: pytest.LogCaptureFixture) -> None:
    r = reactor()
    a, bad = udp_pair()
    other, good = udp_pair()
    seen = trio.Event()

    def boom(items: object) -> None:
        raise ValueError("bug")

    with a, bad, other, good:
        r.subscribe(bad, boom)
        r.subscribe(good, lambda items: seen.set())
        a.sendto(b"1", bad.getsockname())
        a.sendto(b"2", good.getsockname())
        with trio.fail_after(5):
            await seen.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert "the receive callback raised" in caplog.text
        assert len(r) == 1  # `bad` is no longer watched
        r.unsubscribe(good)


async def test_timers_fire_in_order_move_and_cancel(autojump_clock: trio.testing.MockClock) -> None:
    r = reactor()
    log: list[tuple[str, float]] = []
    x, y, z = Clock(r, "x", log), Clock(r, "y", log), Clock(r, "z", log)
    start = trio.current_time()
    r.set_timer(x, start + 3)
    r.set_timer(y, start + 1)
    r.set_timer(z, start + 2)
    r.set_timer(z, start + 5)  # later: the old entry re-arms for 5
    r.set_timer(x, start + 0.5)  # earlier: a new entry
    r.set_timer(y, math.inf)  # cancelled
    await trio.sleep(10)
    assert [(n, t - start) for n, t in log] == [("x", 0.5), ("z", 5.0)]
    assert len(r) == 0


async def test_a_timer_set_from_its_own_callback_fires_again(autojump_clock: trio.testing.MockClock) -> None:
    r = reactor()
    times: list[float] = []

    class Ticker:
        def on_timer(self) -> None:
            times.append(trio.current_time())
            if len(times) < 3:
                r.set_timer(self, trio.current_time())  # due at once: the next round, no busy loop

    start = trio.current_time()
    r.set_timer(Ticker(), start + 1)
    await trio.sleep(2)
    assert [t - start for t in times] == [1.0, 1.0, 1.0]


async def test_a_raising_timer_client_is_logged_not_fatal(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    r = reactor()
    log: list[tuple[str, float]] = []

    class Bad:
        def on_timer(self) -> None:
            raise RuntimeError("bug")

    r.set_timer(Bad(), trio.current_time() + 1)
    r.set_timer(Clock(r, "ok", log), trio.current_time() + 2)
    await trio.sleep(3)
    assert "raised" in caplog.text and [n for n, _ in log] == ["ok"]


async def test_many_moves_keep_the_heap_bounded(autojump_clock: trio.testing.MockClock) -> None:
    r = reactor()
    log: list[tuple[str, float]] = []
    clients = [Clock(r, str(i), log) for i in range(10)]
    now = trio.current_time()
    for step in range(500):  # each move earlier leaves a stale entry behind
        for c in clients:
            r.set_timer(c, now + 1000 - step)
    assert len(r._heap) <= 2 * len(clients) + 64 + len(clients)
    for c in clients:
        r.set_timer(c, math.inf)
    assert len(r) == 0


async def test_without_epoll_sockets_keep_receive_loops_and_timers_still_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where there is no epoll (not Linux) host sockets do not subscribe: each gets a receive loop, and
    the reactor only keeps time. Simulated here by hiding epoll: two agents still connect and talk."""
    from agent_helpers import connect_both

    from iceagent import IceConfig, open_agent

    monkeypatch.setattr(reactor_module, "available", lambda: False)
    config = IceConfig(global_pacing=False)
    with trio.fail_after(10):
        async with (
            open_agent(controlling=True, host_addresses=["127.0.0.1"], config=config) as a,
            open_agent(controlling=False, host_addresses=["127.0.0.1"], config=config) as b,
        ):
            assert reactor()._ep is None  # this run's reactor has no epoll
            sa, sb = await connect_both(a, b)
            await sa.send(b"no epoll")
            assert await sb.receive() == b"no epoll"
            await a.state.wait_value(lambda s: s.value == "completed")
            assert any(t.name.startswith("receive-") for t in _session_tasks())


def _session_tasks() -> list[trio.lowlevel.Task]:
    out: list[trio.lowlevel.Task] = []

    def walk(task: trio.lowlevel.Task) -> None:
        out.append(task)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    walk(root)
    return out
