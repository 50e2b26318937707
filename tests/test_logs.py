"""The rate limit on iceagent.* loggers: a flood of one message becomes a burst and a count."""

from __future__ import annotations

import logging

import pytest

from iceagent.logs import RateLimit, get_logger


def _record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("iceagent.test", level, __file__, 1, msg, ("x",), None)


def test_burst_then_suppressed_then_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("iceagent.logs.time.monotonic", lambda: now[0])
    limit = RateLimit(burst=3, period=1.0)
    passed = [limit.filter(_record("bad packet from %s")) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert limit.filter(_record("another template %s"))  # counted per template
    assert limit.filter(_record("bad packet from %s", logging.ERROR))  # errors always pass
    now[0] += 1.5
    rec = _record("bad packet from %s")
    assert limit.filter(rec)
    assert rec.getMessage() == "bad packet from x (and 7 more like it in the last 1 s)"


def test_iceagent_loggers_carry_the_limit() -> None:
    logger = get_logger("iceagent.agent")
    assert any(isinstance(f, RateLimit) for f in logger.filters)
    assert get_logger("iceagent.agent").filters.count(logger.filters[0]) == 1
