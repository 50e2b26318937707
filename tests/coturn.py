"""coturn for tests and benchmarks: `turnserver` in the foreground on 127.0.0.1, nothing written outside a temp dir.

`start_coturn(directory)` picks free ports, makes a TLS certificate for 127.0.0.1 with `trustme`,
starts `turnserver -n ...` (no configuration file) with the long-term credential mechanism (user
alice:secret in realm example.org, loopback peers allowed), waits until it answers a STUN Binding
request over UDP and accepts TCP and TLS connections, and returns a `Coturn`; `stop()` ends the
process by its PID. The pytest fixtures `coturn_server` (one server per test module) and
`coturn_factory` (servers with extra flags, per test) wrap it; test modules import them:
`from coturn import coturn_server  # noqa: F401`. `relay_only_agents` opens two relay-only agents.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme

from iceagent import Agent, IceConfig, IceServer, open_agent

HOST = "127.0.0.1"
USER, PASSWORD, REALM = "alice", "secret", "example.org"
TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"


def coturn_available() -> bool:
    return os.path.exists(TURNSERVER) and os.access(TURNSERVER, os.X_OK)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _free_port(host: str = HOST) -> int:
    """A port free for both UDP and TCP on `host` (coturn listens on both)."""
    for _ in range(100):
        tcp = socket.socket(_family(host), socket.SOCK_STREAM)
        udp = socket.socket(_family(host), socket.SOCK_DGRAM)
        try:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind((host, port))
            except OSError:
                continue
            return int(port)
        finally:
            tcp.close()
            udp.close()
    raise RuntimeError(f"no free port on {host}")


def _binding_answered(port: int, host: str = HOST) -> bool:
    """Send one STUN Binding request (RFC 8489) and wait briefly for any answer."""
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    with socket.socket(_family(host), socket.SOCK_DGRAM) as s:
        s.settimeout(0.1)
        s.sendto(request, (host, port))
        try:
            data, _ = s.recvfrom(2048)
        except OSError:
            return False
        return data[8:20] == request[8:20]


def _tcp_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Coturn:
    """A running coturn: its ports, its CA (for `turns:`), its log; `stop()` ends it by PID."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        port: int,
        tls_port: int,
        ca: trustme.CA,
        directory: Path,
        host: str = HOST,
    ) -> None:
        self.proc = proc
        self.host = host
        self.port = port
        self.tls_port = tls_port
        self.ca = ca
        self.directory = directory
        self.ca_path = directory / "ca.pem"
        self.log_path = directory / "turnserver.log"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def uri(self, protocol: str = "udp") -> str:
        """turn:...?transport=udp|tcp, or turns:... for "tls" (an IPv6 host in brackets, RFC 7065)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if protocol == "tls":
            return f"turns:{host}:{self.tls_port}?transport=tcp"
        return f"turn:{host}:{self.port}?transport={protocol}"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's test CA (coturn speaks TLS 1.2 at most)."""
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """End the process by its PID (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_coturn(
    directory: Path,
    extra_args: Sequence[str] = (),
    *,
    user: str = f"{USER}:{PASSWORD}",
    realm: str = REALM,
    port: int | None = None,
    tls_port: int | None = None,
    ready_timeout: float = 10.0,
    host: str = HOST,
) -> Coturn:
    """Start coturn on `host` (127.0.0.1, or ::1 for IPv6 relays) with free ports, files only in
    `directory`; return once it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    for extra in cert.cert_chain_pems[1:]:
        with open(cert_path, "ab") as f:
            f.write(extra.bytes())
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    port = port or _free_port(host)
    tls_port = tls_port or _free_port(host)
    min_port = random.randrange(10000, 30000, 200)
    argv = [
        TURNSERVER,
        "-n",
        f"--listening-ip={host}",
        f"--relay-ip={host}",
        f"--listening-port={port}",
        f"--tls-listening-port={tls_port}",
        f"--min-port={min_port}",
        f"--max-port={min_port + 199}",
        "--lt-cred-mech",
        f"--user={user}",
        f"--realm={realm}",
        "--allow-loopback-peers",
        "--no-cli",
        "--no-rfc5780",
        "--log-file=stdout",
        "--simple-log",
        f"--pidfile={directory / 'turnserver.pid'}",
        f"--userdb={directory / 'turndb'}",
        f"--cert={cert_path}",
        f"--pkey={key_path}",
        *extra_args,
    ]
    log = open(directory / "turnserver.log", "wb")
    try:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=directory)
    finally:
        log.close()
    server = Coturn(proc, port, tls_port, ca, directory, host)
    deadline = time.monotonic() + ready_timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"turnserver exited with {proc.returncode}:\n{server.log()[-3000:]}")
        if _binding_answered(port, host) and _tcp_open(port, host) and _tcp_open(tls_port, host):
            return server
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"turnserver did not answer within {ready_timeout} s:\n{server.log()[-3000:]}")
        time.sleep(0.05)


@asynccontextmanager
async def relay_only_agents(
    servers: list[IceServer], host: str = HOST, **options: object
) -> AsyncIterator[tuple[Agent, Agent]]:
    """Two agents on `host` (controlling, controlled) with the relay-only policy through `servers`, global pacing
    off, not yet signalled."""
    config = IceConfig(global_pacing=False)
    common: dict[str, object] = {"host_addresses": [host], "ice_servers": servers, "config": config, **options}
    async with (
        open_agent(controlling=True, ice_transport_policy="relay", **common) as a,  # type: ignore[arg-type]
        open_agent(controlling=False, ice_transport_policy="relay", **common) as b,  # type: ignore[arg-type]
    ):
        yield a, b


def _require_coturn() -> None:
    if not coturn_available():
        pytest.skip("coturn's turnserver is not installed (apt-get install coturn)")


@pytest.fixture(scope="module")
def coturn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """One coturn for the test module (user alice:secret, realm example.org)."""
    _require_coturn()
    server = start_coturn(tmp_path_factory.mktemp("coturn"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def coturn_factory(tmp_path: Path) -> Iterator[Callable[..., Coturn]]:
    """Start coturns with extra flags for one test: `coturn_factory(["--channel-lifetime=20"], user=...)`."""
    _require_coturn()
    servers: list[Coturn] = []

    def start(extra_args: Sequence[str] = (), **kwargs: object) -> Coturn:
        server = start_coturn(tmp_path / f"coturn{len(servers)}", extra_args, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
