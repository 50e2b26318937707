"""Roaming on real sockets (issue 16 item 2): two namespaces on one veth LAN, A at 10.99.0.1 and B at
10.99.0.2, both with auto_restart; A's address moves to 10.99.0.11 (`ip addr del`, then `ip addr add`)
mid-stream. The agent hears it from rtnetlink and restarts at once; without that, the data stopped
until consent failed (31.6 s measured in the issue). Root only; everything is removed afterwards.

The gap is measured on the real clock by the receiving peer (tests/roam_peer.py); it is printed,
recorded and held to the issue's target of 2 s (measured 0.03-0.1 s here, so a loaded machine has a
margin of 20; the old behaviour waited 30 s of consent_timeout).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from netns import require_root

pytestmark = [pytest.mark.netns, pytest.mark.slow]

PEER = str(Path(__file__).with_name("roam_peer.py"))
OLD, NEW, ADDR_B = "10.99.0.1", "10.99.0.11", "10.99.0.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def lan() -> Iterator[dict[str, str]]:
    """Two namespaces on one veth LAN (A 10.99.0.1, B 10.99.0.2, IPv4 only); removed afterwards."""
    require_root()
    tag = f"{os.getpid() % 100000}"
    names = {"ns_a": f"iroam-a-{tag}", "ns_b": f"iroam-b-{tag}", "dev_a": f"iroa{tag}", "dev_b": f"irob{tag}"}
    try:
        _ip("netns", "add", names["ns_a"])
        _ip("netns", "add", names["ns_b"])
        _ip("link", "add", names["dev_a"], "netns", names["ns_a"], "type", "veth", "peer", "name", names["dev_b"],
            "netns", names["ns_b"])
        for side, address in (("a", OLD), ("b", ADDR_B)):
            ns, dev = names[f"ns_{side}"], names[f"dev_{side}"]
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
                           capture_output=True, check=False)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        yield names
    finally:
        for ns in (names["ns_a"], names["ns_b"]):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert names["ns_a"] not in left and names["ns_b"] not in left


class Peer:
    """tests/roam_peer.py in a namespace; signaling events are relayed to the other peer, the rest queued."""

    def __init__(self, process: trio.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.events: list[dict[str, Any]] = []
        self.changed = trio.Event()

    async def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all((json.dumps(command) + "\n").encode())

    async def pump(self, other: Peer) -> None:
        assert self.process.stdout is not None
        buffer = b""
        while True:
            chunk = await self.process.stdout.receive_some(65536)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                event = json.loads(line)
                if event["event"] == "local":
                    await other.send(cmd="remote", ufrag=event["ufrag"], pwd=event["pwd"])
                elif event["event"] == "candidate":
                    await other.send(cmd="candidate", sdp=event["sdp"])
                else:
                    self.events.append(event)
                    self.changed.set()
                    self.changed = trio.Event()

    async def wait_for(self, kind: str, test: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
        while True:
            for event in self.events:
                if event["event"] == kind and test(event):
                    self.events.remove(event)
                    return event
            await self.changed.wait()


async def start(nursery: trio.Nursery, ns: str, dev: str, name: str, controlling: bool, log: Path) -> Peer:
    argv = ["ip", "netns", "exec", ns, sys.executable, PEER, "--controlling" if controlling else "--controlled",
            "--interface", dev, "--name", name]
    with open(log, "wb") as stderr:  # noqa: ASYNC230 (a local file, opened once before the process starts)
        run = functools.partial(trio.run_process, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                check=False)
        process = await nursery.start(run)
    return Peer(process, name)


async def test_address_moves_in_a_namespace_data_resumes(
    lan: dict[str, str], tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            a = await start(nursery, lan["ns_a"], lan["dev_a"], "A", True, tmp_path / "a.log")
            b = await start(nursery, lan["ns_b"], lan["dev_b"], "B", False, tmp_path / "b.log")
            try:
                nursery.start_soon(a.pump, b)
                nursery.start_soon(b.pump, a)
                await a.wait_for("connected")
                await b.wait_for("connected")
                await trio.sleep(1.0)  # data flowing both ways
                await a.send(cmd="mark")
                await b.send(cmd="mark")
                await trio.to_thread.run_sync(_ip, "-n", lan["ns_a"], "addr", "del", f"{OLD}/24", "dev", lan["dev_a"])
                await trio.to_thread.run_sync(_ip, "-n", lan["ns_a"], "addr", "add", f"{NEW}/24", "dev", lan["dev_a"])
                seen = await a.wait_for("network", lambda e: ["removed", OLD] in e["changes"])
                assert seen["changes"] == [["removed", OLD]] or ["added", NEW] in seen["changes"]
                await trio.sleep(4.0)
                await a.send(cmd="report")
                await b.send(cmd="report")
                at_a, at_b = await a.wait_for("report"), await b.wait_for("report")
            finally:
                with trio.move_on_after(5) as cleanup:
                    cleanup.shield = True
                    for peer in (a, b):
                        if peer.process.returncode is None:
                            peer.process.terminate()  # by its PID (ip netns exec execs the peer)
                    for peer in (a, b):
                        await peer.process.wait()
                        for pipe in (peer.process.stdin, peer.process.stdout):
                            if pipe is not None:
                                await pipe.aclose()
    print(f"roaming gap in the namespace lab: A->B {at_b['gap']:.3f} s, B->A {at_a['gap']:.3f} s; "
          f"A generation {at_a['generation']}")
    record_property("gap_a_to_b_s", at_b["gap"])
    record_property("gap_b_to_a_s", at_a["gap"])
    assert at_a["generation"] == 1 and at_b["generation"] == 1  # one restart each, no consent failure first
    assert at_a["after"] > 0 and at_b["after"] > 0
    assert at_b["gap"] < 2.0 and at_a["gap"] < 2.0  # the target; consent would have taken 30 s
