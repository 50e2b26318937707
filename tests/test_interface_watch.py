"""The interface watcher (iceagent.net.watch): one source per Network however many subscribe, what
changed found by diffing snapshots, a reader task that moves between followers' nurseries, iterators
that read themselves when nobody else does. A fake source under MockClock: counted, never timed."""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing

from iceagent.net import Interface, InterfaceChange, NetworkWrapper
from iceagent.net.watch import InterfaceWatcher, PollSource, diff_interfaces


class FakeHost:
    """Interfaces a test edits, and a wake-up source that counts how often it was opened."""

    def __init__(self) -> None:
        self.interfaces: list[Interface] = [Interface("eth0", ("10.0.0.1",))]
        self.opened = 0
        self.closed = 0
        self._event = trio.Event()

    def snapshot(self) -> Sequence[Interface]:
        return list(self.interfaces)

    def open_source(self) -> FakeHost:
        self.opened += 1
        return self

    def change(self, *interfaces: Interface) -> None:
        self.interfaces = list(interfaces)
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()

    def close(self) -> None:
        self.closed += 1


def test_diff_names_removed_then_added_addresses_with_their_interface() -> None:
    old = [Interface("eth0", ("10.0.0.1", "fd00::1")), Interface("wlan0", ("10.1.0.5",))]
    new = [Interface("eth0", ("fd00::1",)), Interface("wlan0", ("10.1.0.5", "10.1.0.6"))]
    assert diff_interfaces(old, new) == [
        InterfaceChange("removed", "10.0.0.1", old[0]),
        InterfaceChange("added", "10.1.0.6", new[1]),
    ]
    assert diff_interfaces(new, new) == []


async def test_followers_share_one_source_and_the_reader_moves_to_the_next_nursery() -> None:
    host = FakeHost()
    watcher = InterfaceWatcher(host.snapshot, host.open_source)
    seen: dict[str, list[list[tuple[str, str]]]] = {"x": [], "y": []}

    def recorder(name: str):  # type: ignore[no-untyped-def]
        return lambda changes: seen[name].append([(c.kind, c.address) for c in changes])

    async with trio.open_nursery() as outer:
        x_done = trio.Event()

        async def agent_x(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            async with trio.open_nursery() as nursery:
                sub = watcher.subscribe()
                sub.follow(recorder("x"), nursery)
                task_status.started()
                await x_done.wait()
                sub.close()
                nursery.cancel_scope.cancel()  # the reader task lived here

        await outer.start(agent_x)
        y = watcher.subscribe()
        y.follow(recorder("y"), outer)
        await trio.testing.wait_all_tasks_blocked()
        host.change(Interface("eth0", ("10.0.0.2",)))
        await trio.testing.wait_all_tasks_blocked()
        assert seen["x"] == seen["y"] == [[("removed", "10.0.0.1"), ("added", "10.0.0.2")]]
        assert watcher.snapshots == 1  # one snapshot for both subscribers
        x_done.set()
        await trio.testing.wait_all_tasks_blocked()
        host.change(Interface("eth0", ("10.0.0.3",)))
        await trio.testing.wait_all_tasks_blocked()
        assert seen["y"][-1] == [("removed", "10.0.0.2"), ("added", "10.0.0.3")]  # read from y's nursery now
        assert len(seen["x"]) == 1
        assert host.opened == 1 and host.closed == 0
        y.close()
        assert host.closed == 1 and not watcher.watching
        await trio.testing.wait_all_tasks_blocked()
        assert outer.child_tasks == frozenset()  # the reader task ended with the last subscriber


async def test_iterators_read_themselves_and_miss_nothing_between_reads() -> None:
    host = FakeHost()
    watcher = InterfaceWatcher(host.snapshot, host.open_source)
    got: list[tuple[str, str]] = []
    async with watcher.subscribe() as changes, trio.open_nursery() as nursery:

        async def read() -> None:
            async for change in changes:
                got.append((change.kind, change.address))

        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        host.change(Interface("eth0", ("10.0.0.1", "10.0.0.9")))
        await trio.testing.wait_all_tasks_blocked()
        assert got == [("added", "10.0.0.9")]
        nursery.cancel_scope.cancel()
    assert host.closed == 1
    assert not watcher.watching


async def test_a_wrapper_forwards_to_the_inner_networks_watcher() -> None:
    from iceagent_vnet import vnet

    scenario = vnet()
    wrapped = NetworkWrapper(scenario.network_a)
    async with wrapped.watch_interfaces() as one, scenario.network_a.watch_interfaces() as two:
        assert one.watcher is two.watcher and one.watcher.subscribers == 2
    assert not one.watcher.watching


def test_poll_interval_is_bounded() -> None:
    assert PollSource(0.0).interval == 0.1
    assert PollSource(3600).interval == 60.0


async def test_os_agents_share_one_netlink_socket_closed_with_the_last() -> None:
    """Agents on OSNetwork (each open_agent makes its own) share the Trio run's one watcher: one rtnetlink
    socket on Linux, however many agents; it closes with the last agent."""
    import socket
    import sys

    from iceagent import open_agent
    from iceagent.net import os as os_network
    from iceagent.net.watch import NetlinkSource

    with trio.fail_after(10):
        async with (
            open_agent(host_addresses=["127.0.0.1"], name="w1") as one,
            open_agent(host_addresses=["127.0.0.1"], name="w2") as two,
            open_agent(host_addresses=["127.0.0.1"], name="w3"),
        ):
            assert one.network is not two.network
            watcher = os_network._OS_WATCHER.get()
            assert watcher.subscribers == 3 and watcher.watching
            source = watcher._source
            if sys.platform.startswith("linux"):
                assert isinstance(source, NetlinkSource)
                assert source._sock.family == socket.AF_NETLINK
        assert watcher.subscribers == 0 and not watcher.watching
        if isinstance(source, NetlinkSource):
            assert source._sock.fileno() == -1


async def test_a_network_without_watch_interfaces_still_works(autojump_clock: object) -> None:
    """A Network written before watch_interfaces existed: the agent opens, connects and closes as before."""
    from agent_helpers import connect_both
    from iceagent_vnet import vnet

    from iceagent import open_agent

    class OldNetwork:
        def __init__(self, inner: object) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> object:
            if name == "watch_interfaces":
                raise AttributeError(name)
            return getattr(self._inner, name)

    scenario = vnet(same_lan=True)
    async with (
        open_agent(network=OldNetwork(scenario.network_a), auto_restart=True) as a,  # type: ignore[arg-type]
        open_agent(network=OldNetwork(scenario.network_b), controlling=False) as b,  # type: ignore[arg-type]
    ):
        sa, sb = await connect_both(a, b)
        await sa.send(b"hello")
        assert await sb.receive() == b"hello"
        assert scenario.network_a._watcher is None
