"""The agent's light-weight primitives: LazyAsyncValue, Notifier, Wakeup, Inbox (iceagent.agent)."""

from __future__ import annotations

from contextlib import aclosing

import pytest
import trio
import trio.testing
from trio_util import AsyncValue

from iceagent.agent._lazy_value import LazyAsyncValue
from iceagent.agent._notify import Notifier, Wakeup
from iceagent.agent.stream import Inbox

# ---- LazyAsyncValue ----


def test_lazy_value_is_an_async_value_without_tables_until_used() -> None:
    v = LazyAsyncValue(1)
    assert isinstance(v, AsyncValue)
    v.value = 2
    assert v.value == 2
    assert "_level_results" not in vars(v)  # nobody waited: nothing built


async def test_lazy_value_wait_value_and_transition() -> None:
    v: LazyAsyncValue[int] = LazyAsyncValue(0)
    got: list[object] = []

    async def waiter() -> None:
        got.append(await v.wait_value(3))
        got.append(await v.wait_transition())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        v.value = 1
        v.value = 3
        await trio.testing.wait_all_tasks_blocked()
        v.value = 4
    assert got == [3, (4, 3)]
    assert "_level_results" in vars(v)


async def test_lazy_value_iterators_and_transform() -> None:
    v: LazyAsyncValue[int] = LazyAsyncValue(5)
    seen: list[int] = []
    with v.open_transform(lambda x: x * 10) as tenfold:
        assert tenfold.value == 50

        async def follow() -> None:
            async with aclosing(v.eventual_values(lambda x: x >= 5)) as values:
                async for value in values:
                    seen.append(value)
                    if value == 7:
                        return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.testing.wait_all_tasks_blocked()
            v.value = 7
        assert tenfold.value == 70
    assert seen == [5, 7]


def test_lazy_value_unknown_attribute_still_raises() -> None:
    with pytest.raises(AttributeError, match="nope"):
        _ = LazyAsyncValue(0).nope


# ---- Notifier and Wakeup ----


async def test_notifier_wakes_every_waiter_once() -> None:
    n = Notifier()
    woke: list[int] = []

    async def wait(i: int) -> None:
        await n.wait()
        woke.append(i)

    n.notify()  # nobody waiting: no-op
    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(wait, i)
        await trio.testing.wait_all_tasks_blocked()
        n.notify()
    assert sorted(woke) == [0, 1, 2]


async def test_notifier_wait_is_cancellable() -> None:
    n = Notifier()
    with trio.move_on_after(0.01) as scope:
        await n.wait()
    assert scope.cancelled_caught
    n.notify()  # the cancelled waiter is gone: nothing to reschedule


class _Scheduled(trio.abc.Instrument):
    """The tasks Trio schedules, in order (the order they are woken in; Trio may run a batch in either order)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        self.names.append(task.name)


async def test_notifier_one_waiter_takes_no_table_and_waiters_wake_in_order() -> None:
    """A Notifier's first waiter waits in a slot of its own (no dict, no partial while it waits: fewer
    objects for the collector); the others are woken after it, in the order they came, also when the first
    was cancelled before them."""
    n = Notifier()

    async def wait() -> None:
        await n.wait()

    async def woken(names: list[str]) -> list[str]:
        seen = _Scheduled()
        trio.lowlevel.add_instrument(seen)
        n.notify()
        trio.lowlevel.remove_instrument(seen)
        return [name for name in seen.names if name in names]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, name="w0")
        await trio.testing.wait_all_tasks_blocked()
        assert n._waiters is None  # one waiter: no table
        for name in ("w1", "w2"):
            nursery.start_soon(wait, name=name)
            await trio.testing.wait_all_tasks_blocked()
        assert await woken(["w0", "w1", "w2"]) == ["w0", "w1", "w2"]

    async with trio.open_nursery() as nursery:
        first = trio.CancelScope()

        async def cancelled() -> None:
            with first:
                await n.wait()

        nursery.start_soon(cancelled, name="c0")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(wait, name="w1")
        await trio.testing.wait_all_tasks_blocked()
        first.cancel()
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(wait, name="w2")  # after the cancelled first: behind the one already waiting
        await trio.testing.wait_all_tasks_blocked()
        assert await woken(["c0", "w1", "w2"]) == ["w1", "w2"]


async def test_wakeup_set_before_wait_returns_at_once_and_clears() -> None:
    w = Wakeup()
    w.set()
    assert w.is_set
    await w.wait()
    assert not w.is_set
    with trio.move_on_after(0.01) as scope:
        await w.wait()  # cleared: waits
    assert scope.cancelled_caught


async def test_wakeup_set_wakes_the_waiter_and_allows_one_waiter_only() -> None:
    w = Wakeup()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(w.wait)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="already waiting"):
            await w.wait()
        w.set()
    assert not w.is_set


# ---- Inbox ----


async def test_inbox_fifo_drop_newest_and_end_of_channel() -> None:
    box = Inbox(2)
    assert box.put(b"1") and box.put(b"2")
    assert not box.put(b"3")  # full: the newest is dropped
    assert await box.get() == b"1"
    assert box.get_nowait() == b"2"
    with pytest.raises(trio.WouldBlock):
        box.get_nowait()
    box.put(b"4")
    box.close()
    assert box.put(b"5")  # ignored once closed
    assert await box.get() == b"4"  # what is left is still delivered
    with pytest.raises(trio.EndOfChannel):
        await box.get()


async def test_inbox_get_waits_for_a_datagram_and_close() -> None:
    box = Inbox(4)
    got: list[bytes] = []

    async def reader() -> None:
        got.append(await box.get())
        with pytest.raises(trio.EndOfChannel):
            await box.get()
        got.append(b"end")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        box.put(b"x")
        await trio.testing.wait_all_tasks_blocked()
        box.close()
    assert got == [b"x", b"end"]


async def test_inbox_get_is_a_checkpoint_even_with_data_queued() -> None:
    box = Inbox(4)
    box.put(b"x")
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await box.get()
    assert box.get_nowait() == b"x"  # a cancelled get takes nothing


async def test_lazy_value_wait_value_returns_the_matching_value_even_if_it_moved_on() -> None:
    v: LazyAsyncValue[int] = LazyAsyncValue(0)
    got: list[int] = []

    async def waiter() -> None:
        got.append(await v.wait_value(lambda x: x > 1))
        got.append(await v.wait_value(7))  # already true when asked: returns at once

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        v.value = 1
        v.value = 5
        v.value = 7  # before the waiter runs: it still gets 5, then 7 is current
    assert got == [5, 7]
    assert "_level_results" not in vars(v)  # the light path built no tables


async def test_lazy_value_light_and_table_waiters_together_and_cancellation() -> None:
    v: LazyAsyncValue[str] = LazyAsyncValue("a")
    got: list[object] = []

    async def light() -> None:
        got.append(await v.wait_value("c"))

    async def edge() -> None:
        got.append(await v.wait_transition())

    with trio.move_on_after(0.01):
        await v.wait_value("never")  # cancelled: its entry is gone
    async with trio.open_nursery() as nursery:
        nursery.start_soon(light)
        nursery.start_soon(edge)
        await trio.testing.wait_all_tasks_blocked()
        v.value = "b"
        await trio.testing.wait_all_tasks_blocked()
        v.value = "c"
    assert got == [("b", "a"), "c"]
    assert v._waiters is None


async def test_lazy_value_held_for_uses_the_tables(autojump_clock: object) -> None:
    v: LazyAsyncValue[int] = LazyAsyncValue(0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: v.wait_value(1, held_for=1.0))
        await trio.testing.wait_all_tasks_blocked()
        v.value = 1
        start = trio.current_time()
    assert trio.current_time() - start >= 1.0


# ---- per-agent footprint and the data path's scheduling (issue 15) ----


def test_lazy_value_set_builds_no_instance_dict() -> None:
    """Setting the value of a LazyAsyncValue nobody waits on allocates nothing: reading `__dict__` (as the
    setter once did to look for AsyncValue's tables) makes CPython build a dict per instance."""
    import tracemalloc

    values = [LazyAsyncValue(0) for _ in range(1000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for v in values:
            v.value = 1
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1000 * 8  # was 64 bytes per value
    assert all(v.value == 1 for v in values)


def test_stream_and_udp_socket_carry_no_instance_dict() -> None:
    """IceStream and OSUdpSocket exist once per agent: __slots__, no per-instance dict."""
    import socket

    from iceagent.agent._route import RouteState
    from iceagent.agent.stream import IceStream
    from iceagent.net.os import OSUdpSocket

    stream = IceStream(RouteState("a"), Inbox(4))
    assert not hasattr(stream, "__dict__")
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        raw.bind(("127.0.0.1", 0))
        assert not hasattr(OSUdpSocket(raw), "__dict__")
    finally:
        raw.close()


class _CountingTransport:
    """try_send / send calls of IceStream on a route, and what reached the wire."""

    def __init__(self) -> None:
        self.try_sends = 0
        self.sends = 0
        self.wire: list[bytes] = []

    def try_send(self, data: bytes, remote: object) -> bool:
        self.try_sends += 1
        self.wire.append(data)
        return True

    async def send(self, data: bytes, remote: object) -> None:
        self.sends += 1
        self.wire.append(data)
        await trio.lowlevel.checkpoint()


class _CountingPair:
    """CandidatePair's sent-bytes counter: `count_sent`, or added to directly on the stream's fast paths."""

    def __init__(self) -> None:
        self._bytes_sent = 0

    def count_sent(self, size: int) -> None:
        self._bytes_sent += size


async def test_stream_schedules_a_full_round_every_schedule_every_sends_and_receives() -> None:
    """`IceStream.send` takes the synchronous path except on every SCHEDULE_EVERY-th call (a full
    checkpoint through the transport's awaiting send); `receive` likewise waits in Inbox.get (a full
    checkpoint) on every SCHEDULE_EVERY-th call even when a datagram is queued."""
    from iceagent.agent._route import RouteState
    from iceagent.agent.stream import IceStream

    every = IceStream.SCHEDULE_EVERY
    routes = RouteState("a")
    transport, pair = _CountingTransport(), _CountingPair()
    routes.route = (transport, ("127.0.0.1", 9), pair, transport.try_send, None)  # type: ignore[assignment]
    inbox = Inbox(10 * every)
    stream = IceStream(routes, inbox)
    for i in range(3 * every):
        await stream.send(bytes([i]))
    assert (transport.sends, transport.try_sends) == (3, 3 * every - 3)
    assert transport.wire == [bytes([i]) for i in range(3 * every)]
    assert pair._bytes_sent == 3 * every
    for i in range(3 * every):
        inbox.put(bytes([i]))
    got = [await stream.receive() for _ in range(3 * every)]
    assert got == [bytes([i]) for i in range(3 * every)]


async def test_inbox_put_many_keeps_order_drops_the_newest_and_wakes_once() -> None:
    """`Inbox.put_many` (a receive task's whole batch) behaves as `put` one by one: FIFO, the newest dropped
    once the limit is reached (and counted), nothing queued after close."""
    inbox = Inbox(4)
    assert inbox.put_many([]) == 0
    assert inbox.put_many([b"1", b"2", b"3"]) == 0
    assert inbox.put_many([b"4", b"5", b"6"]) == 2
    assert [inbox.get_nowait() for _ in range(4)] == [b"1", b"2", b"3", b"4"]
    assert inbox.put_many([b"7"]) == 0
    got: list[bytes] = []

    async def reader() -> None:
        got.append(await inbox.get())
        got.append(await inbox.get())

    async with trio.open_nursery() as nursery:
        assert inbox.get_nowait() == b"7"
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        inbox.put_many([b"8", b"9"])
    assert got == [b"8", b"9"]
    inbox.close()
    assert inbox.put_many([b"x"]) == 0
    with pytest.raises(trio.EndOfChannel):
        inbox.get_nowait()
