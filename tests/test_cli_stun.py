"""`iceagent stun` and `iceagent serve`, run as real processes against servers on loopback."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from ipv6 import needs_ipv6

from iceagent.cli import main
from iceagent.net.os import OSNetwork
from iceagent.stun.client import stun_binding
from iceagent.stun.server import DEFAULT_SOFTWARE, open_stun_server

NET = OSNetwork()
ROOT = Path(__file__).resolve().parent.parent



async def _iceagent(*argv: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(30):
        return await trio.run_process(
            [sys.executable, "-m", "iceagent.cli", *argv],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )


def _text(proc: subprocess.CompletedProcess[bytes]) -> tuple[str, str]:
    return proc.stdout.decode(), proc.stderr.decode()


async def test_stun_against_server() -> None:
    async with open_stun_server(NET, ["127.0.0.1:0"]) as server:
        proc = await _iceagent("stun", f"127.0.0.1:{server.address[1]}")
    out, err = _text(proc)
    assert proc.returncode == 0, err
    assert re.search(r"^mapped address: +127\.0\.0\.1:\d+$", out, re.M), out
    assert re.search(r"^rtt: +\d+\.\d+ ms$", out, re.M), out
    assert "software:        (none)" in out  # a plain request over UDP gets no SOFTWARE (no amplification)
    assert err == ""


async def test_stun_json_uri_and_local() -> None:
    async with open_stun_server(NET, ["127.0.0.1:0"], tcp=True) as server:
        port = server.address[1]
        proc = await _iceagent("stun", "--json", "--local", "127.0.0.1", f"stun:127.0.0.1:{port}")
        tcp = await _iceagent("stun", "--json", "--tcp", f"127.0.0.1:{port}")
    assert proc.returncode == 0, _text(proc)
    doc = json.loads(proc.stdout)
    assert doc["mapped"] == doc["local"]
    assert doc["mapped"]["address"] == "127.0.0.1"
    assert doc["server"] == {"address": "127.0.0.1", "port": port}
    assert doc["software"] is None and doc["transport"] == "udp"
    assert isinstance(doc["rtt_ms"], float) and doc["attempts"] == 1
    assert tcp.returncode == 0, _text(tcp)
    assert json.loads(tcp.stdout)["transport"] == "tcp"
    assert json.loads(tcp.stdout)["software"] == DEFAULT_SOFTWARE  # over TCP the source is real


@needs_ipv6
async def test_stun_ipv6() -> None:
    async with open_stun_server(NET, ["[::1]:0"]) as server:
        proc = await _iceagent("stun", f"[::1]:{server.address[1]}")
    out, err = _text(proc)
    assert proc.returncode == 0, err
    assert re.search(r"^mapped address: +\[::1\]:\d+$", out, re.M), out


async def test_stun_embedded() -> None:
    proc = await _iceagent("stun", "--embedded", "--json")
    assert proc.returncode == 0, _text(proc)
    doc = json.loads(proc.stdout)
    assert doc["mapped"]["address"] == "127.0.0.1"
    assert doc["server"]["address"] == "127.0.0.1"


async def test_stun_rfc5780_options() -> None:
    async with open_stun_server(NET, ["127.0.0.1:0"], alternate="127.0.0.2") as server:
        proc = await _iceagent("stun", "--json", "--change-ip", "--change-port", f"127.0.0.1:{server.address[1]}")
    assert proc.returncode == 0, _text(proc)
    doc = json.loads(proc.stdout)
    other = server.other_address
    assert other is not None
    assert doc["response_origin"] == doc["other_address"] == {"address": other[0], "port": other[1]}


async def test_stun_timeout_exit_1() -> None:
    black_hole = await NET.bind_udp("127.0.0.1", 0)  # receives, never answers
    try:
        port = black_hole.local_address[1]
        proc = await _iceagent("stun", "--timeout", "0.3", "--rto", "0.1", f"127.0.0.1:{port}")
    finally:
        black_hole.close()
    out, err = _text(proc)
    assert proc.returncode == 1
    assert out == ""
    assert re.fullmatch(
        rf"iceagent stun: error: no STUN response from 127\.0\.0\.1:{port} after 2 attempts over 0\.3\d* s\n", err
    ), err


async def test_stun_error_response_exit_1() -> None:
    async with open_stun_server(NET, ["127.0.0.1:0"]) as server:  # no alternate: CHANGE-REQUEST gets 420
        proc = await _iceagent("stun", "--change-ip", f"127.0.0.1:{server.address[1]}")
    _, err = _text(proc)
    assert proc.returncode == 1
    assert "error 420 Unknown Attribute" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["stun", "127.0.0.1:abc"], "bad port 'abc'"),
        (["stun", "127.0.0.1:99999"], "port 99999 out of range"),
        (["stun", "http://x"], "unknown scheme 'http' in 'http://x' (expected stun:, stuns:, turn:, turns:)"),
        (["stun", "stun://127.0.0.1"], "'//' is not allowed"),
        (["stun", "stuns:127.0.0.1"], "stuns: (TLS) is not supported"),
        (["stun"], "give either SERVER or --embedded"),
        (["stun", "--embedded", "127.0.0.1"], "give either SERVER or --embedded"),
        (["stun", "--local", "::1", "127.0.0.1"], "--local ::1 is IPv6 but the server 127.0.0.1:3478 is IPv4"),
        (["stun", "--local", "nope", "127.0.0.1"], "--local must be an IP address"),
        (["stun", "--rto", "0", "127.0.0.1"], "argument --rto"),
        (["stun", "--timeout", "x", "127.0.0.1"], "argument --timeout"),
        (["stun", "--tcp", "--change-ip", "127.0.0.1"], "need UDP"),
        (["serve"], "nothing to serve"),
        (["serve", "--stun", "127.0.0.1:0", "--alt", "::1"], "same family"),
        (["serve", "--stun", "127.0.0.1:0", "--stun", "127.0.0.3:0", "--alt", "127.0.0.2"], "exactly one"),
        (["serve", "--stun", "localhost"], "must be an IP address"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert message in err, err
    assert "usage:" in err and "Traceback" not in err
    assert out == ""


async def test_bad_input_exit_2_as_a_process() -> None:
    proc = await _iceagent("stun", "127.0.0.1:abc")
    _, err = _text(proc)
    assert proc.returncode == 2
    assert err.endswith("iceagent stun: error: bad port 'abc' in '127.0.0.1:abc': expected a number from 1 to 65535\n")


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("iceagent ")
    assert main(["stun", "--help"]) == 0
    assert "--embedded" in capsys.readouterr().out
    assert main([]) == 2
    assert "stun" in capsys.readouterr().err


_SERVE = (
    # A process started in the background by a shell inherits SIGINT ignored; restore Python's default
    # handler so the test can press Ctrl-C whatever started pytest.
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from iceagent.cli import main; sys.exit(main(sys.argv[1:]))"
)


async def test_serve_until_ctrl_c() -> None:
    argv = [sys.executable, "-c", _SERVE, "serve", "--stun", "127.0.0.1:0", "--alt", "127.0.0.2", "--tcp"]
    with trio.fail_after(30):
        proc = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        try:
            assert proc.stdout is not None and proc.stderr is not None
            output = b""
            while b"serving" not in output:
                chunk = await proc.stdout.receive_some()
                assert chunk, f"serve exited early: {output!r} {await proc.stderr.receive_some()!r}"
                output += chunk
            lines = output.decode().splitlines()
            udp = [line.split()[2] for line in lines if line.startswith("STUN udp ")]
            tcp = [line.split()[2] for line in lines if line.startswith("STUN tcp ")]
            assert len(udp) == 4 and len(tcp) == 4, lines
            host, port = udp[0].rsplit(":", 1)
            result = await stun_binding(NET, (host, int(port)), change_ip=True)
            assert result.source[0] == "127.0.0.2"
            assert f"RFC 5780 primary {udp[0]} other " in output.decode()
            proc.send_signal(signal.SIGINT)
            assert await proc.wait() == 0
            assert b"stopped" in await proc.stderr.receive_some()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_serve_json_lists_every_address() -> None:
    argv = [sys.executable, "-c", _SERVE, "serve", "--stun", "127.0.0.1:0", "--turn", "127.0.0.1:0",
            "--user", "alice:secret", "--json"]
    with trio.fail_after(30):
        proc = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        try:
            assert proc.stdout is not None
            output = b""
            while not output.endswith(b"\n"):
                chunk = await proc.stdout.receive_some()
                assert chunk, "serve exited early"
                output += chunk
            info = json.loads(output)
            assert info["turn"]["users"] == ["alice"] and info["turn"]["realm"] == "iceagent"
            host, port = info["stun"]["udp"][0].rsplit(":", 1)
            result = await stun_binding(NET, (host, int(port)))
            assert result.mapped[0] == "127.0.0.1"
            host, port = info["turn"]["udp"][0].rsplit(":", 1)
            result = await stun_binding(NET, (host, int(port)))  # the TURN server answers Binding too
            assert result.mapped[0] == "127.0.0.1"
            proc.send_signal(signal.SIGINT)
            assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
