"""What the fuzz targets share: the documented-error contract, a per-step CPU budget, and a reader that
turns fuzz bytes into choices.

Plain Python: the test suite replays the corpus through the same code without atheris.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

__all__ = ["Budget", "Finding", "Reader", "SlowInput", "expect"]


class Finding(AssertionError):
    """An invariant of a decoder does not hold for this input (a round trip differs, a table grew, ...)."""


class SlowInput(Finding):
    """One step of an input took more CPU than the budget: hostile input must cost bounded time."""


class Budget:
    """CPU time allowed per step (a decode; one message of a stateful target), measured on this thread
    (`time.thread_time`: time spent off the CPU does not count). Used by the fuzz driver only; the
    tests run the targets without one and never look at the time."""

    def __init__(self, limit_ms: float) -> None:
        self.limit = limit_ms / 1000.0
        #: The slowest step of the current input, in seconds.
        self.worst = 0.0

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        start = time.thread_time()
        yield
        spent = time.thread_time() - start
        self.worst = max(self.worst, spent)
        if spent > self.limit:
            raise SlowInput(f"{what} took {spent * 1000:.1f} ms of CPU, over the {self.limit * 1000:g} ms budget")


@contextmanager
def timed(budget: Budget | None, what: str) -> Iterator[None]:
    """`budget.step(what)`, or nothing when there is no budget (the tests)."""
    if budget is None:
        yield
    else:
        with budget.step(what):
            yield


def expect(condition: bool, message: str) -> None:
    """Raise Finding with `message` unless `condition` holds (asserts survive `python -O`)."""
    if not condition:
        raise Finding(message)


class Reader:
    """Deterministic choices read from the fuzz input, front to back; zeros once it is used up.

    A plain-Python stand-in for atheris.FuzzedDataProvider, so an input found by the fuzzer replays
    byte for byte in the test suite, where atheris is not installed.
    """

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        """The next `n` bytes (fewer at the end)."""
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk

    def uint(self, size: int) -> int:
        """A big-endian unsigned integer of `size` bytes (missing bytes read as 0)."""
        return int.from_bytes(self.take(size).ljust(size, b"\x00"), "big")

    def u8(self) -> int:
        return self.uint(1)

    def u16(self) -> int:
        return self.uint(2)

    def u32(self) -> int:
        return self.uint(4)

    def flag(self) -> bool:
        return bool(self.u8() & 1)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.u8() % len(options)]

    def pick_or(self, options: Sequence[T], other: Callable[[], T]) -> T:
        """One of `options`, or `other()` (which reads on) for the index just past them."""
        i = self.u8() % (len(options) + 1)
        return other() if i == len(options) else options[i]

    def blob(self, max_len: int = 255) -> bytes:
        """A length byte (modulo `max_len + 1`), then that many bytes."""
        return self.take(self.u8() % (max_len + 1))

    def text(self, max_len: int = 64) -> str:
        """A short string, possibly not ASCII (invalid UTF-8 is replaced)."""
        return self.blob(max_len).decode("utf-8", "replace")
