"""coturn's STUN clients against our embedded server: turnutils_stunclient and turnutils_natdiscovery (RFC 5780)."""

from __future__ import annotations

import re
import shutil

import pytest
import trio

from iceagent.net.os import OSNetwork
from iceagent.stun.server import StunServer, open_stun_server

pytestmark = [
    pytest.mark.interop,
    pytest.mark.coturn,
    pytest.mark.skipif(
        shutil.which("turnutils_natdiscovery") is None or shutil.which("turnutils_stunclient") is None,
        reason="coturn's turnutils are not installed (apt-get install coturn)",
    ),
]

NET = OSNetwork()
ALT = "127.0.0.2"


# The tools bind their own UDP ports with no option to choose them: turnutils_stunclient -f binds
# a second socket to (its first, kernel-chosen port) + 1 for the RESPONSE-PORT run (RFC 5780 7.5),
# and turnutils_natdiscovery closes its socket and binds the same port again between tests. On a
# busy host another process may hold that port: the tool prints this line and exits 255 before
# it sends anything. Only that failure of the tool's own bind is retried, a bounded number of times.
_TOOL_BIND_IN_USE = re.compile(r"Trying to bind fd \d+ to <127\.0\.0\.1:\d+>: errno=98\b")
TOOL_ATTEMPTS = 10


async def _run(*argv: str) -> str:
    """Run a coturn tool to completion (bound in time) and return its stdout; it must exit 0.

    A run that failed only because the tool's own bind found its port taken (EADDRINUSE) is
    started again, at most TOOL_ATTEMPTS times in all; any other failure fails at once.
    """
    attempts = 0
    while True:
        attempts += 1
        with trio.fail_after(30):
            proc = await trio.run_process(list(argv), capture_stdout=True, capture_stderr=True, check=False)
        out = proc.stdout.decode(errors="replace")
        err = proc.stderr.decode(errors="replace")
        if proc.returncode == 0 or attempts == TOOL_ATTEMPTS or not _TOOL_BIND_IN_USE.search(out):
            break
    assert proc.returncode == 0, f"{argv} exited {proc.returncode} (attempt {attempts}):\n{out}\n{err}"
    return out


def _addr(server: StunServer) -> tuple[str, str]:
    host, port = server.address
    return host, str(port)


async def test_stunclient_plain_server() -> None:
    async with open_stun_server(NET, ["127.0.0.1:0"]) as server:
        host, port = _addr(server)
        out = await _run("turnutils_stunclient", "-L", "127.0.0.1", "-p", port, host)
    assert re.search(r"UDP reflexive addr: 127\.0\.0\.1:\d+", out), out
    assert server.stats.requests >= 1 and server.stats.errors == 0


async def test_stunclient_rfc5780() -> None:
    async with open_stun_server(NET, ["127.0.0.1:0"], alternate=ALT) as server:
        host, port = _addr(server)
        out = await _run("turnutils_stunclient", "-f", "-L", "127.0.0.1", "-p", port, host)
    other = server.other_address
    assert other is not None
    assert re.search(r"UDP reflexive addr: 127\.0\.0\.1:\d+", out), out
    # a plain request to a server with an alternate gets RESPONSE-ORIGIN and OTHER-ADDRESS (RFC 5780 6.1)
    assert f"Response origin: : {host}:{port}" in out, out
    assert f"Other addr: : {other[0]}:{other[1]}" in out, out
    # with CHANGE-REQUEST it is answered from the other IP and port (RFC 5780 6.1)
    assert f"Response origin: : {other[0]}:{other[1]}" in out, out
    assert server.stats.errors == 0


async def test_natdiscovery_mapping() -> None:
    async with open_stun_server(NET, ["127.0.0.1:0"], alternate=ALT) as server:
        host, port = _addr(server)
        out = await _run("turnutils_natdiscovery", "-m", "-L", "127.0.0.1", "-p", port, host)
    assert "NAT with Endpoint Independent Mapping!" in out, out
    assert server.stats.requests >= 2 and server.stats.errors == 0  # test I, then test II to the alternate IP


@pytest.mark.parametrize("padding", [False, True])
async def test_natdiscovery_filtering(padding: bool) -> None:
    async with open_stun_server(NET, ["127.0.0.1:0"], alternate=ALT) as server:
        host, port = _addr(server)
        extra = ["-P"] if padding else []
        out = await _run("turnutils_natdiscovery", "-f", *extra, "-L", "127.0.0.1", "-p", port, host)
    assert "NAT with Endpoint Independent Filtering!" in out, out
    assert server.stats.errors == 0
