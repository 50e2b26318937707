"""The suite's leak checks (tests/leakcheck.py) fail what leaks and pass what does not.

A pytest subprocess runs a file of small tests under the suite's own pytest options (pyproject.toml:
filterwarnings, trio_mode) and the leakcheck plugin; each leaking test must fail, each clean one pass.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio
import trio.testing
from leakcheck import open_fds

from iceagent.net.os import OSNetwork

pytest_plugins = ["pytester"]

TESTS = Path(__file__).parent
ROOT = TESTS.parent

INNER = """
import select
import socket
import subprocess

import trio
import trio.lowlevel

kept = []


def test_clean_sync():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))


async def test_clean_trio():
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as s:
        await s.bind(("127.0.0.1", 0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 0)


def test_leaks_a_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    kept.append(s)


def test_leaks_an_epoll_to_the_collector():
    ep = select.epoll()
    cycle = [ep]
    cycle.append(cycle)  # freed only by the garbage collector, and an epoll never warns


def test_drops_an_unclosed_socket():
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # ResourceWarning in __del__: unraisable


def test_drops_an_unclosed_socket_in_a_cycle():
    cycle = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM)]
    cycle.append(cycle)  # warns only when collected: in this test, not a later one


def test_warns_resource_warning():
    import warnings

    warnings.warn("an unclosed thing", ResourceWarning)


def test_leaves_a_child_process():
    # cat ends by itself when this pytest process exits (its stdin closes)
    kept.append(subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL))


async def stray():
    await trio.sleep_forever()


async def test_leaves_a_system_task():
    trio.lowlevel.spawn_system_task(stray, name="stray-system-task")

"""

CLEAN = ["test_clean_sync", "test_clean_trio"]
#: Each leaking test of INNER and (a regular expression of) what its report must say.
LEAKY = {
    "test_leaks_a_socket": r"file descriptors left open:\n  fd \d+ -> socket:\[\d+\] \(udp 127.0.0.1:\d+\)",
    "test_leaks_an_epoll_to_the_collector": (
        r"closed only by the garbage collector.*\n  fd \d+ -> anon_inode:\[eventpoll\]"
    ),
    "test_drops_an_unclosed_socket": r"ResourceWarning: unclosed <socket.socket",
    "test_drops_an_unclosed_socket_in_a_cycle": (
        r"ResourceWarning: unclosed <socket.socket.*\nfile descriptors closed only by the garbage collector"
    ),
    "test_warns_resource_warning": r"ResourceWarning: an unclosed thing",
    "test_leaves_a_child_process": r"child processes left running:\n  pid \d+ \[\w.*\] cat",
    "test_leaves_a_system_task": (
        r"Trio tasks left after the test:\n  task 'stray-system-task' waiting at"
        r" .*test_inner.py:\d+ in stray\b"
    ),
}


@pytest.mark.slow
def test_the_leak_checks_fail_leaking_tests_and_pass_clean_ones(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest('pytest_plugins = ["leakcheck"]\n')
    pytester.makepyfile(test_inner=INNER)
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    # the suite's own options (pyproject.toml: trio_mode, filterwarnings), so the real configuration is tested
    options = ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(pytester.path), "-p", "no:cacheprovider"]
    result = pytester.runpytest_subprocess(*options, "-rA", "--tb=short", "test_inner.py", timeout=120)
    out = result.stdout.str()
    outcomes: dict[str, set[str]] = {}
    for line in result.stdout.lines:
        m = re.match(r"(PASSED|FAILED|ERROR) test_inner\.py::(\w+)", line)
        if m:
            outcomes.setdefault(m.group(2), set()).add(m.group(1))
    for name in CLEAN:
        assert outcomes.get(name) == {"PASSED"}, (name, out)
    reports = _reports(out)
    for name, message in LEAKY.items():
        assert outcomes.get(name, set()) & {"FAILED", "ERROR"}, (name, out)
        assert re.search(message, reports.get(name, "")), (name, message, out)
    assert set(outcomes) == set(CLEAN) | set(LEAKY), out


def _reports(out: str) -> dict[str, str]:
    """Test name -> the text of its failure and error reports ("____ test_x ____" sections)."""
    parts = re.split(r"\n_{3,} (?:ERROR at \w+ of )?(\w+) _{3,}\n", out)
    reports: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        reports[name] = reports.get(name, "") + body
    return reports


# ---- leaks the checks found in the library ----


async def test_a_udp_bind_cancelled_at_its_checkpoint_closes_the_socket() -> None:
    """OSNetwork.bind_udp cancelled (an agent closed while gathering) leaves no socket to the collector."""
    before = set(open_fds())
    with trio.CancelScope() as scope:
        scope.cancel()
        await OSNetwork().bind_udp("127.0.0.1")
    assert scope.cancelled_caught
    assert set(open_fds()) == before

