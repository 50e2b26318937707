"""Timing a suspect input without the fuzzer's coverage instrumentation.

Instrumented Python runs 3 to 40 times slower than plain Python, and not evenly (a tight byte loop
suffers most), so a step over budget under the fuzzer is only a suspect. `Clock` sends it to a worker
process (`python -m fuzz.timing TARGET`) that imported the same code without instrumentation; there the
slowest step of the input is timed (the least of three runs) and compared with the budget.
"""

from __future__ import annotations

import struct
import subprocess
import sys

from .support import Budget

__all__ = ["Clock"]

_LENGTH = struct.Struct("!I")


class Clock:
    """The worker that times inputs of one target uninstrumented; started on first use."""

    def __init__(self, target: str, skip_checks: list[str]) -> None:
        self._command = [sys.executable, "-m", "fuzz.timing", target, *skip_checks]
        self._worker: subprocess.Popen[bytes] | None = None

    def worst_step(self, data: bytes) -> float:
        """Seconds of CPU of the slowest step of `data`, uninstrumented (least of three runs)."""
        if self._worker is None:
            self._worker = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        worker = self._worker
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(_LENGTH.pack(len(data)) + data)
        worker.stdin.flush()
        line = worker.stdout.readline()
        if not line:
            raise RuntimeError(f"the timing worker {self._command} ended")
        return float(line)


def _serve(target: str, skip_checks: list[str]) -> None:
    from . import targets, turn_server

    for check in skip_checks:
        turn_server.CHECKS[check] = False
    function = targets.TARGETS[target]
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while header := stdin.read(_LENGTH.size):
        data = stdin.read(_LENGTH.unpack(header)[0])
        best = float("inf")
        for _ in range(3):
            budget = Budget(float("inf"))
            function(data, budget)
            best = min(best, budget.worst)
        stdout.write(f"{best!r}\n".encode())
        stdout.flush()


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2:])
