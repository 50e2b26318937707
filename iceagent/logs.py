"""Logging for the `iceagent.*` loggers: each logger gets a rate limit so hostile input cannot flood logs."""

from __future__ import annotations

import logging
import time


class RateLimit(logging.Filter):
    """Let at most `burst` records of one message template per logger through each `period` seconds.

    ERROR and above always pass. The first record after a quiet period says how many were suppressed.
    """

    def __init__(self, burst: int = 20, period: float = 1.0) -> None:
        super().__init__()
        self.burst = burst
        self.period = period
        self._windows: dict[tuple[str, object], list[float]] = {}  # key -> [start, passed, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.period:
            suppressed = 0 if window is None else int(window[2])
            if len(self._windows) >= 1024:
                self._windows.clear()
            self._windows[key] = [now, 1, 0]
            if suppressed:
                record.msg = f"{record.msg} (and {suppressed} more like it in the last {self.period:g} s)"
            return True
        if window[1] < self.burst:
            window[1] += 1
            return True
        window[2] += 1
        return False


_RATE_LIMIT = RateLimit()


def get_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)` with the shared rate limit attached."""
    logger = logging.getLogger(name)
    if _RATE_LIMIT not in logger.filters:
        logger.addFilter(_RATE_LIMIT)
    return logger
