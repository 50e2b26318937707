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


@pytest.mark.parametrize(("args", "kind"), [([], "relay"), (["--nat-b", "eim-apdf"], "srflx")])
def test_roam_demo_keeps_the_data_going(args: list[str], kind: str) -> None:
    """`demo --roam`: A moves to a new LAN behind a new NAT mid-transfer (on a relay pair by default, whose
    allocation socket is bound to the wildcard; on a srflx pair between cone NATs): one restart, and the
    data resumes both ways within 2 s of simulated time."""
    proc = _demo("--roam", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["before"]["address"] != summary["after"]["address"]
    assert summary["before"]["pair"].startswith(kind) and summary["after"]["pair"].startswith(kind)
    assert summary["generation"] == 1 and summary["state"] == "completed"
    assert summary["gap_a_to_b_s"] is not None and summary["gap_a_to_b_s"] < 2.0
    assert summary["gap_b_to_a_s"] is not None and summary["gap_b_to_a_s"] < 2.0


def test_roam_demo_prints_the_gap() -> None:
    proc = _demo("--roam")
    assert proc.returncode == 0, proc.stderr
    assert "A moved to 192.168.3.2 on a new LAN" in proc.stdout
    assert "gap in the data: A->B " in proc.stdout and "did not resume" not in proc.stdout
