"""`iceagent demo`: two agents behind simulated NATs, embedded STUN/TURN, on the vnet (simulated time)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iceagent.cli", "demo", *args], capture_output=True, text=True,
                          timeout=120)


def test_default_demo_connects_and_prints_plain_text() -> None:
    proc = _demo()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "\x1b" not in out  # not a terminal: no escape codes
    assert "agent A (completed)" in out and "agent B (completed)" in out
    assert "selected pair" in out
    assert "1000/1000 datagrams" in out


@pytest.mark.parametrize(
    ("args", "types"),
    [
        (["--nat-a", "none", "--nat-b", "none"], {"host/host"}),
        (["--nat-a", "full-cone", "--nat-b", "port-restricted"], {"srflx/srflx", "srflx/prflx", "prflx/srflx"}),
        (["--nat-a", "symmetric", "--nat-b", "symmetric"], {"relay/relay", "relay/prflx", "prflx/relay"}),
        (["--relay-only"], {"relay/relay"}),
        (["--loss", "0.1", "--seed", "4"], None),
    ],
)
def test_demo_json(args: list[str], types: set[str] | None) -> None:
    proc = _demo("--json", "--count", "200", *args)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["clock"] == "simulated"
    if "--loss" in args:
        assert 100 < summary["datagrams_received"] < 200  # lost datagrams stay lost: UDP semantics
    else:
        assert summary["datagrams_received"] == 200
    if types is not None:
        assert summary["selected_pair"]["types"] in types
    if "--relay-only" in args:
        for agent in summary["agents"].values():
            assert all(" typ relay" in p["local"] for p in agent["pairs"])


def test_bad_nat_name_is_a_usage_error() -> None:
    proc = _demo("--nat-a", "bogus")
    assert proc.returncode == 2
    assert "bogus" in proc.stderr and "Traceback" not in proc.stderr
