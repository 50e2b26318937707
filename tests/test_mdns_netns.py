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


ROUTED_A, ROUTER_A, ROUTER_C, ROUTED_C = "10.253.0.1", "10.253.0.254", "10.254.0.254", "10.254.0.1"
# A legacy unicast query (RFC 6762 6.7) for argv[1], sent to argv[2]:5353; prints the answering address
# or "silent" after 2 s (real clock, bounded).
LEGACY_QUERY = """
import socket, struct, sys
name, to = sys.argv[1], sys.argv[2]
query = struct.pack("!6H", 0x1234, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\\0" + struct.pack("!HH", 1, 1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(2.0)
sock.sendto(query, (to, 5353))
try:
    print(sock.recvfrom(9000)[1][0])
except TimeoutError:
    print("silent")
"""


@pytest.fixture
def routed() -> Iterator[tuple[str, str, str]]:
    """Namespaces a (10.253.0.1/24), r (a router: .254 on both subnets) and c (10.254.0.1/24); removed after."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for network namespaces")
    tag = f"{os.getpid() % 100000}"
    ns_a, ns_r, ns_c = f"imdns-ra-{tag}", f"imdns-rr-{tag}", f"imdns-rc-{tag}"
    try:
        for ns in (ns_a, ns_r, ns_c):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        links = ((ns_a, f"imra{tag}", ROUTED_A, ns_r, f"imrr{tag}", ROUTER_A),
                 (ns_c, f"imrc{tag}", ROUTED_C, ns_r, f"imrs{tag}", ROUTER_C))
        for ns, dev, address, peer_ns, peer_dev, peer_address in links:
            _ip("link", "add", dev, "netns", ns, "type", "veth", "peer", "name", peer_dev, "netns", peer_ns)
            for where, device, ip in ((ns, dev, address), (peer_ns, peer_dev, peer_address)):
                _ip("-n", where, "addr", "add", f"{ip}/24", "dev", device)
                _ip("-n", where, "link", "set", device, "multicast", "on", "up")
            _ip("-n", ns, "route", "add", "default", "via", peer_address)
        _ip("-n", ns_a, "route", "add", "224.0.0.0/4", "dev", f"imra{tag}")
        subprocess.run(["ip", "netns", "exec", ns_r, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
        yield ns_a, ns_r, ns_c
    finally:
        for ns in (ns_a, ns_r, ns_c):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert all(ns not in left for ns in (ns_a, ns_r, ns_c))


async def _legacy_query(ns: str, name: str) -> str:
    result = await trio.run_process(["ip", "netns", "exec", ns, sys.executable, "-c", LEGACY_QUERY, name, ROUTED_A],
                                    capture_stdout=True, check=True)
    return result.stdout.decode().strip()


async def test_a_host_beyond_a_router_gets_no_answer(routed: tuple[str, str, str], tmp_path: Path) -> None:
    """RFC 6762 11, 5.5 on the kernel's sockets: the responder answers a unicast query from its link (the
    router's address there) and not the same query routed from the next subnet."""
    ns_a, ns_r, ns_c = routed
    with trio.fail_after(30):
        async with run_in(ns_a, tmp_path, "publish", "iceagent-publish", "--address", ROUTED_A) as publisher:
            name = (await publisher.expect("published"))["name"]
            assert await _legacy_query(ns_r, name) == ROUTED_A  # on the link: answered
            assert await _legacy_query(ns_c, name) == "silent"  # beyond the router: the address stays hidden
