"""`iceagent gather`, run as a real process; every run gathers on 127.0.0.1 only."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from iceagent import Candidate
from iceagent.cli import main
from iceagent.net.os import OSNetwork
from iceagent.stun.server import open_stun_server
from iceagent.turn.server import TurnServer, open_turn_server

NET = OSNetwork()
ROOT = Path(__file__).resolve().parent.parent
LO = ["--address", "127.0.0.1"]


async def _iceagent(*argv: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(30):
        return await trio.run_process(
            [sys.executable, "-m", "iceagent.cli", *argv],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )


@asynccontextmanager
async def _turn() -> AsyncIterator[TurnServer]:
    async with open_turn_server(NET, ["127.0.0.1:0"], users={"alice": "secret"}) as server:
        yield server


async def test_host_candidates_as_sdp() -> None:
    proc = await _iceagent("gather", *LO)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert re.fullmatch(r"a=ice-ufrag:[A-Za-z0-9+/]{4,}", lines[0]), lines
    assert re.fullmatch(r"a=ice-pwd:[A-Za-z0-9+/]{22,}", lines[1]), lines
    assert lines[-1] == "a=end-of-candidates"
    candidates = [Candidate.from_sdp(line) for line in lines[2:-1]]
    assert [(c.type, c.address) for c in candidates] == [("host", "127.0.0.1")]
    assert re.search(r"^host:  1 candidate, in \d+\.\d ms$", err, re.M), err
    assert re.search(r"^gathering complete in \d+\.\d ms$", err, re.M), err
    assert "\x1b" not in out + err


async def test_json_with_stun_and_turn() -> None:
    async with open_stun_server(NET, ["127.0.0.1:0"]) as stun, _turn() as turn:
        proc = await _iceagent(
            "gather", *LO, "--json",
            "--stun", f"127.0.0.1:{stun.address[1]}",
            "--turn", turn.uris()[0], "--username", "alice", "--credential", "secret",
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    types = sorted(c["type"] for c in doc["candidates"])
    # srflx equals the host candidate on loopback (no NAT), so it is not repeated
    assert types == ["host", "relay"], doc
    for c in doc["candidates"]:
        assert Candidate.from_sdp(c["sdp"]).type == c["type"] and c["ms"] >= 0
    assert set(doc["types"]) == {"host", "relay"}
    assert doc["types"]["relay"]["count"] == 1
    assert doc["types"]["relay"]["first_ms"] <= doc["complete_ms"]
    assert doc["gathering_state"] == "complete" and doc["end_of_candidates"] is True
    assert doc["gatherers"]["srflx"]["errors"] == [] and doc["gatherers"]["relay"]["errors"] == []
    assert re.fullmatch(r"[A-Za-z0-9+/]{4,}", doc["ufrag"])


async def test_relay_only() -> None:
    async with _turn() as turn:
        host, port = turn.address
        proc = await _iceagent(
            "gather", *LO, "--relay-only", "--turn", f"{host}:{port}", "--username", "alice", "--credential", "secret"
        )
    assert proc.returncode == 0, proc.stderr
    candidates = [Candidate.from_sdp(line) for line in proc.stdout.decode().splitlines() if "candidate:" in line]
    assert [c.type for c in candidates] == ["relay"]
    assert candidates[0].related_address == "0.0.0.0"  # no local address leaks under relay-only
    assert "host:  no candidates" in proc.stderr.decode()


async def test_gatherer_error_is_reported() -> None:
    async with _turn() as turn:
        proc = await _iceagent("gather", *LO, "--turn", turn.uris()[0], "--username", "alice", "--credential", "wrong")
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "typ host" in out and "typ relay" not in out
    assert re.search(r"^relay: error: .*rejected the credentials of user 'alice'", err, re.M), err
    assert "Traceback" not in err


async def test_no_candidates_exit_1() -> None:
    async with _turn() as turn:
        proc = await _iceagent(
            "gather", *LO, "--relay-only", "--turn", turn.uris()[0], "--username", "alice", "--credential", "wrong"
        )
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert err.splitlines()[-1].startswith("iceagent gather: error: no candidates gathered (relay: "), err


async def test_interface_loopback() -> None:
    loopback = [i for i in NET.interfaces() if i.loopback]
    if not loopback:
        pytest.skip("no loopback interface")
    proc = await _iceagent("gather", "--interface", loopback[0].name, "--json")
    assert proc.returncode == 0, proc.stderr
    addresses = {Candidate.from_sdp(c["sdp"]).address for c in json.loads(proc.stdout)["candidates"]}
    assert "127.0.0.1" in addresses
    assert all(a in ("127.0.0.1", "::1") for a in addresses), addresses


async def test_verbose_logs_info_and_debug() -> None:
    quiet = await _iceagent("gather", *LO)
    assert b"INFO" not in quiet.stderr
    info = await _iceagent("gather", *LO, "-v")
    assert re.search(rb"^INFO iceagent\.agent: gather: gathered candidate:", info.stderr, re.M), info.stderr
    assert b"DEBUG" not in info.stderr
    debug = await _iceagent("-vv", "gather", *LO)
    assert b"DEBUG " in debug.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--address", "nope"], "--address 'nope' is not an IP address"),
        (["--interface", "no-such-if0"], "--interface no-such-if0: no such interface"),
        (["--relay-only"], "--relay-only needs a TURN server"),
        (["--turn", "turn:127.0.0.1"], "--turn needs --username and --credential"),
        (["--username", "u"], "--username and --credential go with --turn"),
        (["--stun", "http://x"], "unknown scheme 'http'"),
        (["--stun", "turn:127.0.0.1"], "a turn: URL goes with --turn"),
        (["--turn", "stun:127.0.0.1"], "a stun: URL goes with --stun"),
        (["--stun", "127.0.0.1:99999"], "port 99999 out of range"),
        (["--timeout", "0"], "argument --timeout"),
    ],
)
def test_bad_input_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gather", *argv]) == 2
    out, err = capsys.readouterr()
    assert message in err, err
    assert "usage: iceagent gather" in err and "Traceback" not in err
    assert out == ""


def test_not_implemented_option_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import iceagent.cli.options

    def fake_open_agent(**kwargs: Any) -> Any:
        raise NotImplementedError("tcp=True (ICE-TCP candidates) is not available yet")

    monkeypatch.setattr(iceagent.cli.options, "open_agent", fake_open_agent)
    assert main(["gather", *LO, "--tcp"]) == 1
    out, err = capsys.readouterr()
    assert err == "iceagent gather: error: not available yet: tcp=True (ICE-TCP candidates) is not available yet\n"
    assert out == ""


async def test_server_options_port_range_and_public_ip() -> None:
    """`--port-range` binds inside the range; `--public-ip LOCAL=PUBLIC` adds the 1:1 NAT address as a srflx
    candidate (only gathered here: nothing is sent to it)."""
    proc = await _iceagent("gather", *LO, "--port-range", "47300-47310", "--public-ip", "127.0.0.1=203.0.113.7")
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    candidates = [Candidate.from_sdp(line) for line in out.splitlines() if line.startswith("a=candidate:")]
    (host,) = [c for c in candidates if c.type == "host"]
    (srflx,) = [c for c in candidates if c.type == "srflx"]
    assert 47300 <= host.port <= 47310
    assert (srflx.address, srflx.port, srflx.related_address) == ("203.0.113.7", host.port, "127.0.0.1")
    proc = await _iceagent("gather", *LO, "--public-ip", "127.0.0.1=203.0.113.7", "--public-ip-mode", "host")
    candidates = [Candidate.from_sdp(line) for line in proc.stdout.decode().splitlines() if line.startswith("a=cand")]
    assert [(c.type, c.address) for c in candidates] == [("host", "203.0.113.7")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port-range", "5000"], "expected LO-HI"),
        (["--port-range", "6000-5000"], "1 <= LO <= HI <= 65535"),
        (["--port", "0"], "a port is 1..65535"),
        (["--public-ip", "203.0.113.7"], "expected LOCAL=PUBLIC"),
        (["--port", "4000", "--port-range", "5000-5010"], "choose one"),
    ],
)
def test_server_option_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gather", *LO, *argv]) == 2
    assert message in capsys.readouterr().err
