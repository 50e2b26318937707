"""A tiny broadcast signal: tasks wait for "something changed", producers notify all of them."""

from __future__ import annotations

import trio


class Notifier:
    """Wake every waiting task; a notify with nobody waiting is a no-op (waiters re-check state)."""

    def __init__(self) -> None:
        self._lot = trio.lowlevel.ParkingLot()

    async def wait(self) -> None:
        await self._lot.park()

    def notify(self) -> None:
        self._lot.unpark_all()
