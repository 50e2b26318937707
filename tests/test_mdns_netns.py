"""mDNS on real sockets against aioice, inside two network namespaces joined by a veth link (root only).

The test builds the namespaces and the veth pair with multicast on and a 224.0.0.0/4 route on it, runs
one process per side (tests/mdns_peers.py under `ip netns exec`), and removes everything afterwards,
even on failure. Multicast never touches the host's own interfaces. Real clock, bounded by fail_after.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

pytestmark = [pytest.mark.netns, pytest.mark.interop]

PEERS = str(Path(__file__).with_name("mdns_peers.py"))
ADDR_A, ADDR_B = "10.251.0.1", "10.251.0.2"
UUID_LOCAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.local$")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def lan() -> Iterator[tuple[str, str]]:
    """Two namespaces on one veth "LAN" (10.251.0.1 and .2), multicast routed over it; removed afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for network namespaces")
    tag = f"{os.getpid() % 100000}"
    ns_a, ns_b = f"imdns-a-{tag}", f"imdns-b-{tag}"
    dev_a, dev_b = f"imda{tag}", f"imdb{tag}"
    try:
        _ip("netns", "add", ns_a)
        _ip("netns", "add", ns_b)
        _ip("link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b)
        for ns, dev, address in ((ns_a, dev_a, ADDR_A), (ns_b, dev_b, ADDR_B)):
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
                           capture_output=True, check=False)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "multicast", "on", "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
        yield ns_a, ns_b
    finally:
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert ns_a not in left and ns_b not in left


class Proc:
    """A process in a namespace, talking JSON lines."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""

    async def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all((json.dumps(command) + "\n").encode())

    async def next_event(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some(65536)
            if not chunk:
                raise AssertionError("the process ended early (see its log)")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        event: dict[str, Any] = json.loads(line)
        return event

    async def expect(self, name: str) -> dict[str, Any]:
        while True:
            event = await self.next_event()
            if event["event"] == name:
                return event
            assert event["event"] not in ("failed",), event


@asynccontextmanager
async def run_in(ns: str, tmp_path: Path, label: str, *args: str) -> AsyncIterator[Proc]:
    """Start `tests/mdns_peers.py args` inside `ns`; closes its stdin and ends it (by PID) on the way out."""
    log = open(tmp_path / f"{label}.log", "wb")  # noqa: ASYNC230 - a log file for the child
    process = await trio.lowlevel.open_process(
        ["ip", "netns", "exec", ns, sys.executable, PEERS, *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
    )
    try:
        yield Proc(process)
    finally:
        with trio.CancelScope(shield=True):
            if process.stdin is not None:
                await process.stdin.aclose()
            with trio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        log.close()


def _log(tmp_path: Path, label: str) -> str:
    return (tmp_path / f"{label}.log").read_text(errors="replace")[-3000:]


async def _connect(a: Proc, b: Proc) -> tuple[dict[str, Any], dict[str, Any]]:
    """Signal both ways, connect both; returns each side's `local` event."""
    local_a, local_b = await a.expect("local"), await b.expect("local")
    for src, dst in ((local_a, b), (local_b, a)):
        await dst.send(cmd="remote", ufrag=src["ufrag"], pwd=src["pwd"])
        for sdp in src["candidates"]:
            await dst.send(cmd="candidate", sdp=sdp)
        await dst.send(cmd="candidate", sdp=None)
    await a.send(cmd="connect")
    await b.send(cmd="connect")
    return local_a, local_b


async def test_aioice_resolves_and_connects_to_iceagent_with_mdns(lan: tuple[str, str], tmp_path: Path) -> None:
    """iceagent (mdns=True, controlling) offers only `<uuid4>.local` host candidates; aioice resolves the
    name with aioice.mdns (multicast over the veth link) and the two connect over it."""
    ns_a, ns_b = lan
    with trio.fail_after(60):
        async with (
            run_in(ns_a, tmp_path, "iceagent", "iceagent-agent", "--address", ADDR_A, "--controlling",
                   "--mdns") as ice,
            run_in(ns_b, tmp_path, "aioice", "aioice-agent", "--address", ADDR_B) as aio,
        ):
            local_ice, _ = await _connect(ice, aio)
            (host,) = local_ice["candidates"]
            assert UUID_LOCAL.match(host.split()[4]) and ADDR_A not in host, host
            connected = await aio.expect("connected")
            assert connected["pair"] is not None, _log(tmp_path, "aioice")
            assert connected["pair"][1].split()[4] == host.split()[4]  # aioice keeps the name (draft 3.3.1)
            mine = await ice.expect("connected")
            assert mine["pair"][0] == host and mine["pair"][1].split()[4] == ADDR_B
            assert (await ice.expect("echo"))["data"] == "ping"


async def test_iceagent_resolves_aioice_names_and_aioice_resolves_iceagent_names(
    lan: tuple[str, str], tmp_path: Path
) -> None:
    """Each resolver against the other's responder: aioice.mdns publishes, iceagent's resolver asks (its
    answer has no question and the cache-flush bit); iceagent's responder publishes, aioice asks."""
    ns_a, ns_b = lan
    name = "3d3f1c6e-0f7b-4e2a-9d55-7c1b2f0a9e41.local"
    with trio.fail_after(60):
        async with run_in(ns_b, tmp_path, "aioice-publish", "aioice-publish", "--address", ADDR_B,
                          "--name", name) as publisher:
            await publisher.expect("published")
            async with run_in(ns_a, tmp_path, "iceagent-resolve", "iceagent-resolve", "--address", ADDR_A,
                              "--name", name.upper()) as resolver:
                assert (await resolver.expect("resolved"))["address"] == ADDR_B, _log(tmp_path, "iceagent-resolve")
            async with run_in(ns_a, tmp_path, "iceagent-resolve2", "iceagent-resolve", "--address", ADDR_A,
                              "--name", "0" * 8 + "-0000-4000-8000-" + "0" * 12 + ".local", "--timeout",
                              "1.5") as resolver:
                assert (await resolver.expect("resolved"))["address"] is None
        async with run_in(ns_a, tmp_path, "iceagent-publish", "iceagent-publish", "--address", ADDR_A) as pub:
            published = (await pub.expect("published"))["name"]
            assert UUID_LOCAL.match(published)
            async with run_in(ns_b, tmp_path, "aioice-resolve", "aioice-resolve", "--name", published) as aio:
                assert (await aio.expect("resolved"))["address"] == ADDR_A, _log(tmp_path, "aioice-resolve")


async def test_iceagent_pair_with_mdns_on_both_sides(lan: tuple[str, str], tmp_path: Path) -> None:
    """Two iceagent processes with mdns=True, one per namespace: each resolves the other's name over the
    kernel's multicast, and no host address appears in what either hands out."""
    ns_a, ns_b = lan
    with trio.fail_after(60):
        async with (
            run_in(ns_a, tmp_path, "ice-a", "iceagent-agent", "--address", ADDR_A, "--controlling", "--mdns") as a,
            run_in(ns_b, tmp_path, "ice-b", "iceagent-agent", "--address", ADDR_B, "--mdns") as b,
        ):
            local_a, local_b = await _connect(a, b)
            for local, address in ((local_a, ADDR_A), (local_b, ADDR_B)):
                assert all(address not in sdp for sdp in local["candidates"])
            conn_a = await a.expect("connected")
            assert conn_a["pair"][1].split()[4] == ADDR_B
            assert (await a.expect("echo"))["data"] == "ping"
            stats = await a.expect("stats")
            assert stats["mdns"]["resolved"] == 1, stats


async def test_several_responders_share_port_5353_in_one_namespace(lan: tuple[str, str], tmp_path: Path) -> None:
    """Two iceagent responders and aioice's bind 5353 with SO_REUSEADDR/SO_REUSEPORT in one namespace;
    from the other namespace each name resolves, answered by its owner."""
    ns_a, ns_b = lan
    aioice_name = "5b9e2f10-8c3d-4f6a-b1e2-9d8c7b6a5f40.local"
    with trio.fail_after(60):
        async with (
            run_in(ns_a, tmp_path, "pub1", "iceagent-publish", "--address", ADDR_A) as pub1,
            run_in(ns_a, tmp_path, "pub2", "iceagent-publish", "--address", ADDR_A) as pub2,
            run_in(ns_a, tmp_path, "pub3", "aioice-publish", "--address", ADDR_A, "--name", aioice_name) as pub3,
        ):
            names = [(await pub1.expect("published"))["name"], (await pub2.expect("published"))["name"]]
            await pub3.expect("published")
            assert names[0] != names[1]
            for i, name in enumerate([*names, aioice_name]):
                async with run_in(ns_b, tmp_path, f"resolve{i}", "iceagent-resolve", "--address", ADDR_B,
                                  "--name", name) as resolver:
                    assert (await resolver.expect("resolved"))["address"] == ADDR_A, _log(tmp_path, f"resolve{i}")
