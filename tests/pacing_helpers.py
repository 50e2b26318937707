"""Counting the slots taken from the process-wide pacer (RFC 8445 14.2) in tests."""

from __future__ import annotations

import pytest

from iceagent.agent._pacer import GlobalPacer


class Reservations:
    """Counts `GlobalPacer.reserve` calls (one per new transaction that waits for a slot) while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        reserve = GlobalPacer.reserve

        def counting(pacer: GlobalPacer, now: float) -> float:
            self.count += 1
            return reserve(pacer, now)

        monkeypatch.setattr(GlobalPacer, "reserve", counting)
