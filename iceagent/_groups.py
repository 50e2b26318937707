"""Exception groups from Trio nurseries, made friendly: a lone exception comes out as itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import trio


def sole_exception(error: BaseException) -> BaseException | None:
    """The one exception inside an ExceptionGroup, nested groups too, else None (no import: 3.10 has none)."""
    inner = getattr(error, "exceptions", None)
    if isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], BaseException):
        return sole_exception(inner[0]) or inner[0]
    return None


class _Server(Protocol):
    async def serve(self, *, task_status: Any = ...) -> None: ...

    def close(self) -> None: ...


@asynccontextmanager
async def serving(server: _Server) -> AsyncIterator[None]:
    """Run `server.serve` in a nursery for the body, then close the server; an exception from the body
    comes out as itself, not wrapped in an ExceptionGroup."""
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()
    except BaseException as e:
        sole = sole_exception(e)
        if sole is None:
            raise
        raise sole from None
    finally:
        server.close()
