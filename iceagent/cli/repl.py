"""`python -m iceagent` (and `iceagent repl`): an interactive Python console running on Trio.

Code is compiled with `ast.PyCF_ALLOW_TOP_LEVEL_AWAIT`, so `await`, `async with` and `async for` work
at the prompt. Trio runs in the main thread; the console reads input in a worker thread and hands each
statement to Trio (`trio.from_thread`). A nursery owned by the console keeps what the helpers open
(agents, embedded servers) alive between statements until `close(...)` or the end of the session.
Ctrl-C cancels the running statement; Ctrl-D or `exit()` leaves and closes everything.

Helpers gather on 127.0.0.1 only: for other addresses, use `iceagent.open_agent()` yourself.
"""

from __future__ import annotations

import argparse
import ast
import code
import contextlib
import inspect
import logging
import signal
import sys
import traceback
import types
from collections.abc import Callable
from typing import Any

import trio
from rich.console import Console

import iceagent

from ..agent import Agent, IceStream, open_agent
from ..config import IceConfig
from ..ice.candidate import Candidate
from ..net.os import OSNetwork
from ..states import IceState
from ..stun.client import BindingResult, stun_binding
from ..stun.server import StunServer, open_stun_server
from ..turn.server import TurnServer, TurnServerConfig, open_turn_server
from ..uri import format_host_port, parse_host_port
from .display import print_pairs

__all__ = ["BANNER", "IceConsole", "main", "register"]

LOOPBACK = "127.0.0.1"

BANNER = f"""iceagent {iceagent.__version__} Trio REPL (Python {sys.version.split()[0]}): use `await` directly.
Preloaded: iceagent, trio, open_agent, IceServer, IceConfig, IceState, Candidate.
Helpers (agents and servers live until close() or exit; gathering is on {LOOPBACK} only):
  a, b = await pair()          two agents on {LOOPBACK}, signaled and connected (a controlling)
  x = await agent()            one open agent (not signaled); await connect(a, x) signals and connects
  sa = await a.connect()       the IceStream: await sa.send(b"hi"); await sb.receive()
  show(a, ...)                 state and candidate-pair matrix of agents
  await stun("HOST:PORT")      one STUN Binding request (no argument: an embedded server on {LOOPBACK})
  s = await stun_server()      an embedded STUN server on {LOOPBACK} (s.address)
  t = await turn_server()      an embedded TURN server on {LOOPBACK}, user alice:secret (t.uris())
  await pair(ice_servers=[IceServer(t.uris(), username="alice", credential="secret")],
             ice_transport_policy="relay")                      relay-only agents through it
  await close(a, b)            close agents or servers
Ctrl-C cancels the running statement; Ctrl-D or exit() quits."""


class _Session:
    """What the helpers share: the background nursery and how to close what they opened."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.closers: dict[int, tuple[trio.Event, trio.Event]] = {}
        self.pairs = 0

    async def hold(self, open_cm: Callable[[], Any], what: str) -> Any:
        """Enter `open_cm()` in a background task and return its value; it stays open until close()."""

        async def holder(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            close, closed = trio.Event(), trio.Event()
            started = False
            try:
                async with open_cm() as value:
                    self.closers[id(value)] = (close, closed)
                    task_status.started(value)
                    started = True
                    try:
                        await close.wait()
                    finally:
                        self.closers.pop(id(value), None)
            except Exception as e:
                if not started:
                    raise
                print(f"\n{what} stopped with an error: {type(e).__name__}: {e}", file=sys.stderr)
            finally:
                closed.set()

        return await self.nursery.start(holder)

    async def close(self, *objects: object) -> None:
        for obj in objects:
            entry = self.closers.get(id(obj))
            if entry is None:
                raise ValueError(f"{obj!r} was not opened by a REPL helper (or is closed already)")
            close, closed = entry
            close.set()
            await closed.wait()


def _console() -> Console:
    """rich on a terminal; otherwise plain text wide enough for the pair matrix (no escape codes)."""
    return Console() if sys.stdout.isatty() else Console(width=200, no_color=True)


def _signal(src: Agent, dst: Agent) -> Any:
    async def run() -> None:
        dst.set_remote_parameters(src.local_parameters)
        async for cand in src.gather():
            dst.add_remote_candidate(Candidate.from_sdp(cand.to_sdp()))
        dst.add_remote_candidate(None)

    return run


def make_helpers(session: _Session) -> dict[str, Any]:
    """The helper functions bound to a session (the REPL's namespace gets these)."""
    network = OSNetwork()

    async def agent(controlling: bool = True, name: str | None = None, **kwargs: Any) -> Agent:
        """Open an agent on 127.0.0.1 that stays open in the background until close(agent)."""
        if kwargs.get("host_addresses") not in (None, [LOOPBACK], (LOOPBACK,), LOOPBACK):
            raise ValueError(f"the REPL helpers gather on {LOOPBACK} only; use open_agent() yourself for others")
        kwargs["host_addresses"] = [LOOPBACK]
        kwargs.setdefault("config", IceConfig(global_pacing=False))
        value: Agent = await session.hold(
            lambda: open_agent(controlling=controlling, name=name, **kwargs), f"agent {name or ''}".strip()
        )
        return value

    async def connect(a: Agent, b: Agent) -> tuple[IceStream, IceStream]:
        """Signal a <-> b (parameters, candidates, end-of-candidates) and connect both; returns their streams."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_signal(a, b))
            nursery.start_soon(_signal(b, a))
        streams: dict[int, IceStream] = {}

        async def conn(i: int, ag: Agent) -> None:
            streams[i] = await ag.connect()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn, 0, a)
            nursery.start_soon(conn, 1, b)
        return streams[0], streams[1]

    async def pair(**kwargs: Any) -> tuple[Agent, Agent]:
        """Two agents on 127.0.0.1 (a controlling, b controlled), signaled, connected and (within 2 s) nominated."""
        session.pairs += 1
        n = "" if session.pairs == 1 else str(session.pairs)
        a = await agent(True, f"a{n}", **kwargs)
        try:
            b = await agent(False, f"b{n}", **kwargs)
        except BaseException:
            await session.close(a)
            raise
        try:
            await connect(a, b)
            with trio.move_on_after(2):  # let nomination conclude, so show() has the nominated pair
                await a.state.wait_value(IceState.COMPLETED)
                await b.state.wait_value(IceState.COMPLETED)
        except BaseException:
            with trio.CancelScope(shield=True):
                await session.close(a, b)
            raise
        return a, b

    def show(*agents: Agent) -> None:
        """Print each agent's state and candidate-pair matrix (* marks the selected pair)."""
        if not agents:
            raise TypeError("show(agent, ...) needs at least one agent")
        for ag in agents:
            stats = ag.stats()
            role = "controlling" if stats["controlling"] else "controlled"
            title = f"agent {ag.name}: {stats['state']}, {role}, generation {stats['generation']}"
            print_pairs(stats, title=title, console=_console())
            sel = ag.selected_pair
            if sel is not None:
                rtt = "-" if sel.rtt is None else f"{sel.rtt * 1000:.2f} ms"
                nominated = ", nominated" if sel.nominated else ""
                print(f"selected: {sel.local.to_sdp()} <-> {sel.remote.to_sdp()} (rtt {rtt}{nominated})")
        sys.stdout.flush()

    async def stun(server: str | tuple[str, int] | StunServer | None = None, **kwargs: Any) -> BindingResult:
        """One STUN Binding request to HOST:PORT (or a server object); none: an embedded one on 127.0.0.1."""
        if server is None:
            kwargs.setdefault("local_address", LOOPBACK)
            async with open_stun_server(network, [f"{LOOPBACK}:0"]) as embedded:
                return await stun_binding(network, embedded.address, **kwargs)
        if isinstance(server, (StunServer, TurnServer)):
            address = server.address
        elif isinstance(server, str):
            address = parse_host_port(server.removeprefix("stun:"), 3478)
        else:
            address = server
        if address[0] == LOOPBACK:
            kwargs.setdefault("local_address", LOOPBACK)
        return await stun_binding(network, address, **kwargs)

    async def stun_server(**kwargs: Any) -> StunServer:
        """Start an embedded STUN server on 127.0.0.1 (a free port) until close(server)."""
        server: StunServer = await session.hold(
            lambda: open_stun_server(network, [f"{LOOPBACK}:0"], **kwargs), "STUN server"
        )
        print(f"STUN server on {format_host_port(server.address)}")
        return server

    async def turn_server(user: str = "alice", password: str = "secret", **kwargs: Any) -> TurnServer:
        """Start an embedded TURN server on 127.0.0.1 (a free port) with one user until close(server). Its peers
        are on this host too, so it relays to loopback peers unless a `config` says otherwise."""
        kwargs.setdefault("config", TurnServerConfig(allow_loopback_peers=True))
        server: TurnServer = await session.hold(
            lambda: open_turn_server(network, [f"{LOOPBACK}:0"], users={user: password}, **kwargs), "TURN server"
        )
        print(f"TURN server on {format_host_port(server.address)}, user {user}:{password}, uris {server.uris()}")
        return server

    async def close(*objects: object) -> None:
        """Close agents and servers opened by the helpers."""
        await session.close(*objects)

    return {
        "agent": agent,
        "connect": connect,
        "pair": pair,
        "show": show,
        "stun": stun,
        "stun_server": stun_server,
        "turn_server": turn_server,
        "close": close,
    }


class IceConsole(code.InteractiveConsole):
    """An InteractiveConsole whose statements run in Trio's thread, awaits allowed at top level."""

    def __init__(self, namespace: dict[str, Any], token: trio.lowlevel.TrioToken) -> None:
        super().__init__(locals=namespace)
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        self.token = token
        self.mode = "idle"  # "sync" or "async" while a statement runs in Trio's thread
        self.scope: trio.CancelScope | None = None
        self.interrupted = False

    # -- running a statement (called in the console's thread) --

    def runcode(self, code: types.CodeType) -> None:
        """Run one compiled statement in Trio's thread and print its traceback if it raised."""
        func = types.FunctionType(code, self.locals)
        if inspect.iscoroutinefunction(func):
            error = trio.from_thread.run(self._run_async, func, trio_token=self.token)
        else:
            error = trio.from_thread.run_sync(self._run_sync, func, trio_token=self.token)
        sys.stdout.flush()
        if error is None:
            return
        if isinstance(error, SystemExit):
            raise error
        self._show_error(error)

    def _run_sync(self, func: Callable[[], object]) -> BaseException | None:
        self.mode = "sync"
        try:
            func()
        except BaseException as e:
            return e
        finally:
            self.mode = "idle"
        return None

    async def _run_async(self, func: Callable[[], Any]) -> BaseException | None:
        self.interrupted = False
        with trio.CancelScope() as scope:
            self.scope, self.mode = scope, "async"
            try:
                await func()
            except trio.Cancelled:
                raise  # ours: the scope catches it
            except BaseException as e:
                return e
            finally:
                self.scope, self.mode = None, "idle"
        if scope.cancelled_caught and self.interrupted:
            return KeyboardInterrupt()
        return None

    def _show_error(self, error: BaseException) -> None:
        if isinstance(error, KeyboardInterrupt):
            self.write("KeyboardInterrupt\n")
            return
        tb = error.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next  # leave out this module's frames: show the user's code only
        sys.last_type, sys.last_value, sys.last_traceback = type(error), error, tb
        self.write("".join(traceback.format_exception(type(error), error, tb)))

    # -- Ctrl-C (SIGINT arrives in Trio's thread, the main one) --

    def on_sigint(self, signum: int, frame: types.FrameType | None) -> None:
        """Interrupt the running statement; at the prompt, just say so."""
        if self.mode == "sync":
            raise KeyboardInterrupt
        if self.mode == "async":
            self.interrupted = True
            self.token.run_sync_soon(self._cancel)
            return
        sys.stderr.write("\nKeyboardInterrupt (Ctrl-D or exit() quits)\n")
        sys.stderr.flush()

    def _cancel(self) -> None:
        if self.scope is not None:
            self.scope.cancel()


def _namespace(session: _Session) -> dict[str, Any]:
    ns: dict[str, Any] = {
        "__name__": "__console__",
        "__doc__": None,
        "iceagent": iceagent,
        "trio": trio,
        "open_agent": iceagent.open_agent,
        "IceServer": iceagent.IceServer,
        "IceConfig": iceagent.IceConfig,
        "IceState": iceagent.IceState,
        "Candidate": iceagent.Candidate,
    }
    ns.update(make_helpers(session))
    return ns


async def run_repl(banner: str = BANNER) -> int:
    """Run the console until Ctrl-D or exit(); returns the exit status."""
    status = 0
    async with trio.open_nursery() as nursery:
        session = _Session(nursery)
        console = IceConsole(_namespace(session), trio.lowlevel.current_trio_token())
        previous = signal.signal(signal.SIGINT, console.on_sigint)
        try:
            await trio.to_thread.run_sync(console.interact, banner, "")
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            if not isinstance(e.code, int) and e.code is not None:
                print(e.code, file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, previous)
            nursery.cancel_scope.cancel()  # closes every agent and server the helpers opened
    return status


def main(argv: list[str] | None = None) -> int:
    """`python -m iceagent [-v]`: run the REPL."""
    parser = argparse.ArgumentParser(prog="python -m iceagent", description="An interactive Trio REPL for iceagent.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more on stderr (-vv: debug)")
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return start()


def start() -> int:
    """Run the REPL (logging is the caller's business)."""
    if sys.stdin.isatty():
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    return trio.run(run_repl)


def register(subparsers: Any) -> None:
    """Add `iceagent repl` (the same console as `python -m iceagent`)."""
    from . import add_command

    add_command(
        subparsers,
        "repl",
        lambda args: start(),
        help="an interactive Trio REPL with iceagent loaded (as python -m iceagent)",
        description=BANNER,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
