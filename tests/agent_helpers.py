"""Helpers for agent tests: signalling (hand parameters and candidates from one agent to the other), a
plugin manager with one plugin, the leaves of an exception group, and a bug injected in the session."""

from __future__ import annotations

import sys

import pluggy
import pytest
import trio

from iceagent import Agent, Candidate, IceStream
from iceagent.plugins import create_plugin_manager

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


async def signal(src: Agent, dst: Agent, *, end: bool = True) -> None:
    """Give `dst` everything `src` has to offer: parameters, candidates (via SDP), end-of-candidates."""
    dst.set_remote_parameters(src.local_parameters)
    async for cand in src.gather():
        dst.add_remote_candidate(Candidate.from_sdp(cand.to_sdp()))
    if end:
        dst.add_remote_candidate(None)


async def connect_both(a: Agent, b: Agent) -> tuple[IceStream, IceStream]:
    """Signal both ways and connect both agents concurrently."""
    await signal(a, b)
    await signal(b, a)
    streams: dict[str, IceStream] = {}

    async def conn(key: str, agent: Agent) -> None:
        streams[key] = await agent.connect()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn, "a", a)
        nursery.start_soon(conn, "b", b)
    return streams["a"], streams["b"]


def plugin_manager_with(plugin: object) -> pluggy.PluginManager:
    """A plugin manager with the built-ins and `plugin` (no entry points)."""
    pm = create_plugin_manager(load_entrypoints=False)
    pm.register(plugin)
    return pm


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc`, exception groups flattened."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def break_controlling_receive(monkeypatch: pytest.MonkeyPatch) -> ZeroDivisionError:
    """A bug in the session's receive path: `IceSession.handle_stun` raises (the returned exception) in the
    controlling agent from now on; the controlled one is untouched."""
    from iceagent.ice.session import IceSession

    real = IceSession.handle_stun
    bug = ZeroDivisionError("bug in the session")

    def broken(self: IceSession, *args: object, **kwargs: object) -> object:
        if self.controlling:
            raise bug
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(IceSession, "handle_stun", broken)
    return bug
