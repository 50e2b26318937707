"""Real Linux NATs for tests: network namespaces, veth links and nftables NAT rules, all removed afterwards.

`NetnsWorld(kind_a, kind_b, ...)` builds, under a unique prefix (`ia-nat-<hex>-...`), one NAT router
and one private host per kind given (sites a, b, c, d: 203.0.113.1-4 outside, 10.0.1-4.0/24 inside):

```
  priv-a (10.0.1.2) ── lan │ router-a │ wan (203.0.113.1) ──┐
                                                         br0 in pub: 203.0.113.254,
  priv-b (10.0.2.2) ── lan │ router-b │ wan (203.0.113.2) ──┘   198.51.100.1 and .2 (STUN, RFC 5780),
                                                                198.51.100.3 (TURN: coturn, on demand)
```

Every link is a veth pair created directly inside the namespaces (nothing appears in the root
namespace), every route and nftables rule lives inside them, and IP forwarding is switched on only
in the router namespaces (`sysctl -w` under `ip netns exec`). `start(ns, argv)` runs a process in a
namespace and remembers its PID; `close()` ends those processes by PID and deletes the namespaces,
which deletes their links. `open_worlds(tmp_path)` (for a fixture) calls `close()` whatever happens.
`start_coturn()` runs coturn in the public namespace (listening and relaying on 198.51.100.3, its files
in the world's log directory); `peer_argv(..., turn=True)` makes it a `turn:` server of an agent.

NAT kinds for the routers (see DESIGN.md "Field notes"):
- "cone": `masquerade` plus `iifname "wan" meta l4proto udp drop` in the input chain: endpoint-independent
  mapping, address-and-port-dependent filtering (RFC 4787 4.1, 5), a textbook port-restricted cone;
- "symmetric": `masquerade fully-random`: address-and-port-dependent mapping and filtering;
- "full-cone": DNAT of every inbound UDP packet to the private host plus SNAT: EIM and EIF.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else "python3"
ICEAGENT = str(VENV_BIN / "iceagent")

PUBLIC_GATEWAY = "203.0.113.254"
STUN_IP, STUN_ALT_IP, STUN_PORT = "198.51.100.1", "198.51.100.2", 3478
TURN_IP, TURN_PORT = "198.51.100.3", 3478  # coturn listens and relays here (relay-ip = its public address)
TURN_USER, TURN_PASSWORD, TURN_REALM = "alice", "secret", "example.org"
TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
SIDES = "abcd"  # up to four NATed sites per world
WAN = {side: f"203.0.113.{i + 1}" for i, side in enumerate(SIDES)}
LAN_ROUTER = {side: f"10.0.{i + 1}.1" for i, side in enumerate(SIDES)}
PRIVATE = {side: f"10.0.{i + 1}.2" for i, side in enumerate(SIDES)}

NAT_KINDS = ("cone", "symmetric", "full-cone")

# What each kind is in RFC 4787 terms (the ground truth `iceagent nat` must find), as its `nat_type` names it.
EXPECTED_TYPE = {"cone": "eim-apdf", "symmetric": "apdm-apdf", "full-cone": "eim-eif"}


def nft_ruleset(kind: str, side: str) -> str:
    """The nftables ruleset of router `side` ("a" or "b") for a NAT `kind` (inside its namespace only)."""
    wan, host = WAN[side], PRIVATE[side]
    drop_unsolicited = """
table inet ia_filter {
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "wan" meta l4proto udp drop
    }
}"""
    if kind == "cone":
        return f"""
table ip ia_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }}
}}{drop_unsolicited}
"""
    if kind == "symmetric":
        return f"""
table ip ia_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade fully-random
    }}
}}{drop_unsolicited}
"""
    if kind == "full-cone":
        return f"""
table ip ia_nat {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "wan" meta l4proto udp dnat to {host}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" snat to {wan}
    }}
}}
"""
    raise ValueError(f"unknown NAT kind {kind!r}; use one of {', '.join(NAT_KINDS)}")


def require_root() -> None:
    """Fail (not skip: CI runs as root) when namespaces cannot be made; say how to deselect."""
    if os.geteuid() != 0:
        pytest.fail(
            "the kernel-NAT tests need root (network namespaces, nftables); run them as root, or deselect them "
            "with -m 'not netns'",
            pytrace=False,
        )
    for tool in ("ip", "nft", "sysctl"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            pytest.fail(f"the kernel-NAT tests need {tool!r} (apt-get install iproute2 nftables procps)", pytrace=False)


class NetnsWorld:
    """Private hosts behind kernel NATs (one per kind given) and a public namespace with the STUN server's two IPs.

    `udp_timeout` sets nf_conntrack_udp_timeout in every router namespace (the idle UDP mapping lifetime).
    """

    def __init__(self, *kinds: str, logdir: Path, udp_timeout: int | None = None) -> None:
        if not 1 <= len(kinds) <= len(SIDES):
            raise ValueError(f"a world has 1 to {len(SIDES)} NAT sites, not {len(kinds)}")
        for kind in kinds:
            nft_ruleset(kind, "a")  # validate before creating anything
        self.prefix = f"ia-nat-{secrets.token_hex(3)}"
        self.logdir = logdir
        self.sides = SIDES[: len(kinds)]
        self.kinds = dict(zip(self.sides, kinds, strict=True))
        self.pub = f"{self.prefix}-pub"
        self.router = {side: f"{self.prefix}-r{side}" for side in self.sides}
        self.priv = {side: f"{self.prefix}-p{side}" for side in self.sides}
        self.namespaces: list[str] = []
        self.processes: list[Any] = []  # subprocess.Popen or trio.Process: both have .pid and .poll()
        self.udp_timeout = udp_timeout

    #: The routers' WAN addresses and the public namespace's address (a subclass may pick other ranges).
    wan: dict[str, str] = WAN
    public_gateway = PUBLIC_GATEWAY

    # --- building ---------------------------------------------------------------------------------------

    def ruleset(self, side: str) -> str:
        """The nftables ruleset of router `side` (its NAT kind's)."""
        return nft_ruleset(self.kinds[side], side)

    def start_services(self) -> None:
        """What `open_worlds` starts once the world is built: the STUN server."""
        self.start_stun_server()


    def ip(self, *args: str) -> None:
        _run(["ip", *args])

    def exec(self, ns: str, *argv: str, input: str | None = None) -> str:
        """Run a command inside namespace `ns` to completion; raises with its stderr on failure."""
        return _run(["ip", "netns", "exec", ns, *argv], input=input)

    def build(self) -> NetnsWorld:
        """Create the namespaces, links, addresses, routes and NAT rules (call `close()` even if this fails)."""
        for ns in (self.pub, *self.router.values(), *self.priv.values()):
            self.ip("netns", "add", ns)
            self.namespaces.append(ns)
            self.ip("-n", ns, "link", "set", "lo", "up")
        self.ip("-n", self.pub, "link", "add", "br0", "type", "bridge")
        self.ip("-n", self.pub, "addr", "add", f"{self.public_gateway}/24", "dev", "br0")
        self.ip("-n", self.pub, "addr", "add", f"{STUN_IP}/24", "dev", "br0")
        self.ip("-n", self.pub, "addr", "add", f"{STUN_ALT_IP}/24", "dev", "br0")
        self.ip("-n", self.pub, "addr", "add", f"{TURN_IP}/24", "dev", "br0")
        self.ip("-n", self.pub, "link", "set", "br0", "up")
        # The "internet" drops what it cannot route (the private 10.0.x.0/24 addresses) instead of failing the
        # send: coturn ends an allocation whose relay socket gets ENETUNREACH (it would, when an agent checks
        # a peer's host candidate through it). The sink: a default route into a veth pair inside the
        # namespace, without ARP, whose other end drops what it gets (not addressed to it, no forwarding).
        self.ip("-n", self.pub, "link", "add", "void", "type", "veth", "peer", "name", "void-peer")
        self.ip("-n", self.pub, "link", "set", "void", "arp", "off", "up")
        self.ip("-n", self.pub, "link", "set", "void-peer", "up")
        self.ip("-n", self.pub, "route", "add", "default", "dev", "void")
        for side in self.sides:
            router, priv = self.router[side], self.priv[side]
            # WAN: router "wan" <-> "w<side>" on pub's bridge (both ends created inside namespaces)
            self.ip("-n", router, "link", "add", "wan", "type", "veth", "peer", "name", f"w{side}", "netns", self.pub)
            self.ip("-n", self.pub, "link", "set", f"w{side}", "master", "br0", "up")
            self.ip("-n", router, "addr", "add", f"{self.wan[side]}/24", "dev", "wan")
            self.ip("-n", router, "link", "set", "wan", "up")
            self.ip("-n", router, "route", "add", "default", "via", self.public_gateway)
            # LAN: router "lan" <-> private host "eth0"
            self.ip("-n", router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", priv)
            self.ip("-n", router, "addr", "add", f"{LAN_ROUTER[side]}/24", "dev", "lan")
            self.ip("-n", router, "link", "set", "lan", "up")
            self.ip("-n", priv, "addr", "add", f"{PRIVATE[side]}/24", "dev", "eth0")
            self.ip("-n", priv, "link", "set", "eth0", "up")
            self.ip("-n", priv, "route", "add", "default", "via", LAN_ROUTER[side])
            self.exec(router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            if self.udp_timeout is not None:
                self.exec(router, "sysctl", "-q", "-w", f"net.netfilter.nf_conntrack_udp_timeout={self.udp_timeout}")
            self.exec(router, "nft", "-f", "-", input=self.ruleset(side))
        return self

    # --- processes ----------------------------------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        """Where the stderr of the process called `name` goes."""
        return self.logdir / f"{name}.stderr"

    def log(self, name: str) -> str:
        try:
            return self.log_path(name).read_text(errors="replace")
        except OSError:
            return ""

    def open_log(self, name: str) -> BinaryIO:
        """A new file for the stderr of the process called `name` (close it once the process started)."""
        return open(self.log_path(name), "wb")

    def start(
        self, ns: str, argv: Sequence[str], name: str, *, stdout: int = subprocess.PIPE, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `argv` inside `ns` (`ip netns exec` execs it, so the PID is the program's); ended by `close()`."""
        with open(self.log_path(name), "wb") as stderr:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=cwd
            )
        self.processes.append(proc)
        return proc

    def adopt(self, process: Any) -> None:
        """Have `close()` end this process too (a trio.Process started by a test), by PID."""
        self.processes.append(process)

    def start_stun_server(self, timeout: float = 15.0) -> subprocess.Popen[bytes]:
        """`iceagent serve` with RFC 5780 in the public namespace; returns once it says it is serving."""
        argv = [ICEAGENT, "serve", "--stun", f"{STUN_IP}:{STUN_PORT}", "--alt", STUN_ALT_IP]
        proc = self.start(self.pub, argv, "stun-server")
        try:
            wait_for_line(proc, "serving", timeout)
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n{self.log('stun-server')}") from None
        return proc

    def start_coturn(self, extra_args: Sequence[str] = (), timeout: float = 15.0) -> subprocess.Popen[bytes]:
        """coturn in the public namespace on TURN_IP:TURN_PORT, relaying from TURN_IP; returns once it answers.

        As tests/coturn.py runs it (foreground, no configuration file, long-term credentials), but bound to
        the namespace's public address, UDP only (no TLS/DTLS listeners, so no certificate), and with every
        file (log, pid file, user database) in this world's log directory. No `--allow-loopback-peers`:
        the peers are the NATs' public addresses. Ended by PID in `close()`.
        """
        if not (os.path.exists(TURNSERVER) and os.access(TURNSERVER, os.X_OK)):
            pytest.fail("the kernel-NAT TURN test needs coturn's turnserver (apt-get install coturn)", pytrace=False)
        directory = self.logdir / "coturn"
        directory.mkdir(exist_ok=True)
        argv = [
            TURNSERVER,
            "-n",
            f"--listening-ip={TURN_IP}",
            f"--relay-ip={TURN_IP}",
            f"--listening-port={TURN_PORT}",
            "--min-port=49152",
            "--max-port=65535",
            "--lt-cred-mech",
            f"--user={TURN_USER}:{TURN_PASSWORD}",
            f"--realm={TURN_REALM}",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--no-rfc5780",
            f"--log-file={directory / 'turnserver.log'}",
            "--simple-log",
            f"--pidfile={directory / 'turnserver.pid'}",
            f"--userdb={directory / 'turndb'}",
            *extra_args,
        ]
        proc = self.start(self.pub, argv, "coturn", stdout=subprocess.DEVNULL, cwd=directory)
        # Ready when it answers a Binding request, asked from inside the public namespace.
        probe = ["ip", "netns", "exec", self.pub, ICEAGENT, "stun", f"{TURN_IP}:{TURN_PORT}", "--local",
                 PUBLIC_GATEWAY, "--timeout", "1", "--rto", "0.1", "--json"]  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"turnserver exited with {proc.returncode}:\n{self.coturn_log()[-3000:]}")
            answered = subprocess.run(probe, capture_output=True, text=True, timeout=30)
            if answered.returncode == 0 and "Coturn" in answered.stdout:
                return proc
            if time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not answer within {timeout} s:\n{self.coturn_log()[-3000:]}")
            time.sleep(0.05)

    def coturn_log(self) -> str:
        """coturn's log (and what it wrote to stderr)."""
        try:
            text = (self.logdir / "coturn" / "turnserver.log").read_text(errors="replace")
        except OSError:
            text = ""
        return text + self.log("coturn")

    def peer_argv(
        self, side: str, *, controlling: bool, failed_timeout: float = 5.0, turn: bool = False
    ) -> list[str]:
        """The command line of tests/netns_peer.py for the private host on `side` (run it with `start`);
        with `turn`, coturn (see `start_coturn`) is a `turn:` server of the agent too."""
        relay = ["--turn", f"turn:{TURN_IP}:{TURN_PORT}?transport=udp", "--user", f"{TURN_USER}:{TURN_PASSWORD}"]
        return [
            PYTHON,
            str(ROOT / "tests" / "netns_peer.py"),
            "--controlling" if controlling else "--controlled",
            "--host",
            PRIVATE[side],
            "--stun",
            f"{STUN_IP}:{STUN_PORT}",
            "--name",
            side.upper(),
            "--failed-timeout",
            str(failed_timeout),
            *(relay if turn else []),
        ]

    def nat_argv(self, side: str, *extra: str) -> list[str]:
        """`ip netns exec PRIV iceagent nat ...` for the private host on `side`."""
        return ["ip", "netns", "exec", self.priv[side], ICEAGENT, "nat", "--stun", f"{STUN_IP}:{STUN_PORT}",
                "--local", PRIVATE[side], *extra]  # fmt: skip

    # --- tearing down -------------------------------------------------------------------------------------

    def stop_processes(self) -> None:
        """End every process this world started, by PID (SIGTERM, then SIGKILL after 3 s)."""
        for proc in self.processes:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            deadline = time.monotonic() + 3
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                while proc.poll() is None:
                    time.sleep(0.02)
            if isinstance(proc, subprocess.Popen):
                for pipe in (proc.stdin, proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()

    def close(self) -> list[str]:
        """Stop the processes, delete the namespaces (and with them every link); returns what failed."""
        problems: list[str] = []
        try:
            self.stop_processes()
        except Exception as e:  # keep going: the namespaces must go anyway
            problems.append(f"stopping processes: {e}")
        for ns in reversed(self.namespaces):
            result = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
            if result.returncode != 0:
                problems.append(f"ip netns del {ns}: {result.stderr.strip()}")
        self.namespaces.clear()
        return problems

    def leftovers(self) -> list[str]:
        """Namespaces with this world's prefix that still exist (should be none after `close()`)."""
        listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        return [line.split()[0] for line in listing.splitlines() if line.startswith(self.prefix)]


def _run(argv: list[str], input: str | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def wait_for_line(proc: subprocess.Popen[bytes], text: str, timeout: float) -> str:
    """Read `proc`'s stdout until a line containing `text`; RuntimeError if it exits or times out first."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buffer += chunk
            for line in buffer.decode(errors="replace").splitlines():
                if text in line:
                    return line
    raise RuntimeError(f"no line with {text!r} from {proc.args!r} within {timeout} s; its output: {buffer!r}")


@contextlib.contextmanager
def open_worlds(tmp_path: Path, world_class: type[NetnsWorld] = NetnsWorld) -> Iterator[Callable[..., NetnsWorld]]:
    """Build kernel-NAT worlds (`build("cone", "symmetric")`) and remove them all on exit, even on failure.

    For a test module's fixture: `with open_worlds(tmp_path) as build: yield build`. Fails the test when
    not root, and when something could not be removed.
    """
    require_root()
    worlds: list[NetnsWorld] = []

    def build(*kinds: str, udp_timeout: int | None = None) -> NetnsWorld:
        logdir = tmp_path / f"world{len(worlds)}"
        logdir.mkdir()
        world = world_class(*kinds, logdir=logdir, udp_timeout=udp_timeout)
        worlds.append(world)
        world.build()
        world.start_services()
        return world

    try:
        yield build
    finally:
        problems: list[str] = []
        for world in worlds:
            problems += world.close()
            problems += [f"namespace {ns} still exists" for ns in world.leftovers()]
        if problems:
            pytest.fail("kernel-NAT cleanup: " + "; ".join(problems), pytrace=False)
