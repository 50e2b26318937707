"""Leak checks for the test suite (a pytest plugin registered by tests/conftest.py).

A test fails when it leaves behind what it opened:

* file descriptors: the set of open descriptors (/proc/self/fd) after the test (and its fixtures)
  differs from the set before it; the message names what each one points to (for a socket, its
  protocol and local address from /proc/net);
* child processes: a child of this process (/proc/self/task/*/children) that outlives the test;
* Trio tasks: in a pytest-trio test, a task still alive once the test and its Trio fixtures have
  finished, i.e. a system task nobody will end (Trio's own tasks and the vnet plugin's scheduler
  excepted, see ALLOWED_SYSTEM_TASKS). Nothing of an agent runs as a system task (DESIGN.md
  "Concurrency"), so any other task still alive then is a leak;
* `ResourceWarning` (an unclosed socket, file, subprocess or async generator) is an error: the
  pyproject filterwarnings make it one, and make an unraisable exception (a warning raised in
  `__del__`) fail the test too. A descriptor still open after the test is first given to the garbage
  collector, so an unclosed object in a reference cycle warns in the test that leaked it.
"""

from __future__ import annotations

import functools
import gc
import glob
import ipaddress
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

#: System tasks that may outlive a test, by name, and why.
ALLOWED_SYSTEM_TASKS = {
    # Trio's own: runs callbacks from other threads and signal handlers until the run ends.
    "<TrioToken.run_sync_soon task>": "Trio's own",
    # The simulated network's event driver belongs to the whole simulated run, not to an agent
    # (DESIGN.md "Concurrency"); it holds no resources and ends with the run.
    "iceagent_vnet.scheduler": "the vnet plugin's simulated network",
}
_TRIO_DIR = os.path.dirname(trio.__file__)


class Snapshot:
    """What the process holds at one moment: open descriptors (with their targets) and child pids."""

    def __init__(self) -> None:
        self.fds = open_fds()
        self.children = child_pids()


def open_fds() -> dict[int, str]:
    """Every open descriptor of this process and what it points to (os.readlink of /proc/self/fd/N)."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:  # the descriptor listdir itself used, closed since
            continue
    return out


def child_pids() -> set[int]:
    """The pids of this process's children (running or zombie), from every thread's children list."""
    pids: set[int] = set()
    for path in glob.glob("/proc/self/task/*/children"):
        try:
            pids.update(int(pid) for pid in Path(path).read_text().split())
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return pids


def _socket_inodes() -> dict[str, str]:
    """Socket inode -> 'proto local-address' for this process's network namespace (/proc/self/net)."""
    out = {}
    for proto in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6", "unix"):
        try:
            lines = Path(f"/proc/self/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if proto == "unix":
                if len(fields) >= 7:
                    out[fields[6]] = f"unix {fields[7] if len(fields) > 7 else '(unnamed)'}"
            elif len(fields) >= 10:
                out[fields[9]] = f"{proto} {_hex_address(fields[1])}"
    return out


def _hex_address(text: str) -> str:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return f"{'.'.join(str(b) for b in raw[::-1])}:{int(port, 16)}"
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]  # each 32-bit word is in host order
    packed = b"".join(words)
    return f"[{ipaddress.IPv6Address(packed)}]:{int(port, 16)}"


def describe_fds(fds: dict[int, str]) -> list[str]:
    """One line per descriptor: number, target, and for a socket its protocol and local address."""
    sockets = _socket_inodes() if any(t.startswith("socket:[") for t in fds.values()) else {}
    lines = []
    for fd, target in sorted(fds.items()):
        extra = sockets.get(target[len("socket:[") : -1], "") if target.startswith("socket:[") else ""
        lines.append(f"fd {fd} -> {target}" + (f" ({extra})" if extra else ""))
    return lines


def _describe_child(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        state = next(
            line.split(":", 1)[1].strip()
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("State:")
        )
    except (OSError, StopIteration):
        return f"pid {pid} (gone)"
    return f"pid {pid} [{state}] {cmdline.strip() or '(no command line)'}"


def problems_since(before: Snapshot) -> list[str]:
    """What the process holds now that it did not hold at `before`: descriptors and child processes.

    A garbage collection runs first when something is left, so an unclosed object kept alive only by
    a reference cycle is finalized now, in this test (its ResourceWarning is reported here), and a
    descriptor that only the collector closed (no ResourceWarning: e.g. an epoll object) still counts.
    """
    new_fds = _new_fds(before.fds)
    new_children = child_pids() - before.children
    if not new_fds and not new_children:
        return []
    problems = collect_garbage()
    left_fds = _new_fds(before.fds)
    if left_fds:
        problems.append("file descriptors left open:\n  " + "\n  ".join(describe_fds(left_fds)))
    collected = {fd: t for fd, t in new_fds.items() if fd not in left_fds}
    if collected:
        problems.append(
            "file descriptors closed only by the garbage collector (never closed explicitly):\n  "
            + "\n  ".join(describe_fds(collected))
        )
    children = child_pids() - before.children
    if children:
        problems.append("child processes left running:\n  " + "\n  ".join(_describe_child(p) for p in sorted(children)))
    return problems


def collect_garbage() -> list[str]:
    """Run the garbage collector; return what finalizers raised meanwhile (ResourceWarnings of unclosed
    objects, errors under the suite's filterwarnings), one line each.

    They are caught here rather than left to pytest's unraisable-exception hook, which would report
    them in the next test when this one fails its teardown.
    """
    caught: list[str] = []

    def hook(unraisable: Any) -> None:
        what = unraisable.err_msg or "Exception ignored in"
        caught.append(f"{what}: {unraisable.object!r}: {unraisable.exc_type.__name__}: {unraisable.exc_value}")

    previous = sys.unraisablehook
    sys.unraisablehook = hook
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous
    return caught


def _new_fds(before: dict[int, str]) -> dict[int, str]:
    # a number reused for another object counts as new (the old one was closed, this one leaked)
    return {fd: target for fd, target in open_fds().items() if before.get(fd) != target}


# ---- Trio tasks ----


def _task_location(task: trio.lowlevel.Task) -> str:
    """Where the task waits: its innermost frame outside Trio itself."""
    frames = [(f, n) for f, n in task.iter_await_frames() if not f.f_code.co_filename.startswith(_TRIO_DIR)]
    if not frames:
        return ""
    frame, lineno = frames[-1]
    return f" waiting at {frame.f_code.co_filename}:{lineno} in {frame.f_code.co_name}"


async def stray_tasks() -> list[str]:
    """Tasks of this run that are neither the calling (main) task nor allowed system tasks.

    Called by the main task once the test and its fixtures are done, so every nursery a test or
    fixture opened has closed: what remains lives in Trio's system nursery. Waits first until every
    task is blocked, so a task that is merely finishing ends.
    """
    await trio.testing.wait_all_tasks_blocked()
    me = trio.lowlevel.current_task()
    root = trio.lowlevel.current_root_task()
    assert root is not None
    return [
        f"task {task.name!r}{_task_location(task)}"
        for task in _walk(root)
        if task is not root and task is not me and task.name not in ALLOWED_SYSTEM_TASKS
    ]


def _walk(task: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
    yield task
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            yield from _walk(child)


def checked_run(run: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a pytest-trio runner (trio.run) so the run's main function ends with the task check."""

    @functools.wraps(run)
    def run_checked(async_fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        async def main() -> Any:
            result = await async_fn(*args)
            stray = await stray_tasks()
            if stray:
                pytest.fail("Trio tasks left after the test:\n  " + "\n  ".join(stray), pytrace=False)
            return result

        return run(main, **kwargs)

    run_checked.leakcheck = True  # type: ignore[attr-defined]
    return run_checked


# ---- the plugin ----


@pytest.hookimpl(trylast=True)  # after pytest-trio has marked the async tests (trio_mode)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Make every pytest-trio test run under `checked_run` (its closest trio marker names the runner)."""
    for item in items:
        marker = item.get_closest_marker("trio")
        if marker is None:
            continue
        run = marker.kwargs.get("run", trio.run)
        if not getattr(run, "leakcheck", False):
            item.add_marker(pytest.mark.trio(run=checked_run(run)), append=False)


@pytest.fixture(autouse=True)
def leak_check() -> Iterator[None]:
    """Fail a test that leaves descriptors or child processes behind (Trio tasks: `checked_run`)."""
    before = Snapshot()
    yield
    problems = problems_since(before)
    if problems:
        pytest.fail("the test leaked:\n" + "\n".join(problems), pytrace=False)
