"""Nothing of an agent runs outside its own nursery (DESIGN.md "Concurrency: the nursery tree").

The session task keeps the timers and serves the first UDP socket, each further socket has a receive
task, all in the agent's nursery, so observer hooks and session code run in the agent's tasks: Ctrl-C
reaches a hung hook, contextvars set around `open_agent` are seen there, a bug ends only that agent's
`async with`, and nothing of a closed agent is left (task, socket or timer).
"""

from __future__ import annotations

import contextvars
import gc
import signal as signal_module
import subprocess
import sys
from typing import Any

import pytest
import trio
import trio.testing
from agent_helpers import break_controlling_receive, connect_both, leaves, plugin_manager_with, signal
from leakcheck import open_fds

from iceagent import Candidate, IceConfig, IceState, open_agent
from iceagent.hookspecs import hookimpl
from iceagent.ice.pair import PairState

LO = ["127.0.0.1"]
FAST = IceConfig(global_pacing=False)


def _tasks() -> list[trio.lowlevel.Task]:
    """Every task of this run, the system nursery's included."""
    out: list[trio.lowlevel.Task] = []

    def walk(task: trio.lowlevel.Task) -> None:
        out.append(task)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    walk(root)
    return out


# ---- Ctrl-C ----

HUNG_HOOK_PROGRAM = """
import sys

import trio

from iceagent import Candidate, IceConfig, open_agent
from iceagent.hookspecs import hookimpl
from iceagent.plugins import create_plugin_manager


class Hangs:
    @hookimpl
    def iceagent_pair_state_changed(self, agent, pair, old, new):
        if new.value == "succeeded":
            print("hanging", flush=True)
            while True:  # a hook stuck in Python code: only KeyboardInterrupt gets it out
                pass


async def main():
    pm = create_plugin_manager(load_entrypoints=False)
    pm.register(Hangs())
    config = IceConfig(global_pacing=False)
    async with (
        open_agent(controlling=True, host_addresses=["127.0.0.1"], config=config, plugin_manager=pm) as a,
        open_agent(controlling=False, host_addresses=["127.0.0.1"], config=config) as b,
    ):
        for src, dst in ((a, b), (b, a)):
            dst.set_remote_parameters(src.local_parameters)
            async for cand in src.gather():
                dst.add_remote_candidate(Candidate.from_sdp(cand.to_sdp()))
            dst.add_remote_candidate(None)
        await trio.sleep_forever()


trio.run(main)
"""


@pytest.mark.slow
async def test_ctrl_c_stops_a_program_whose_observer_hook_hangs(tmp_path: Any) -> None:
    """A real SIGINT ends a program stuck in an observer hook with KeyboardInterrupt: the hook runs in
    one of the agent's tasks, which Trio does not protect from KeyboardInterrupt (a system task is)."""
    script = tmp_path / "hung_hook.py"
    script.write_text(HUNG_HOOK_PROGRAM)
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        with trio.fail_after(30):
            seen = b""
            while b"hanging\n" not in seen:
                chunk = await proc.stdout.receive_some()
                assert chunk, "the program ended before its hook ran"
                seen += chunk
        proc.send_signal(signal_module.SIGINT)
        stderr = b""
        with trio.fail_after(15):  # the old reactor ran hooks KI-protected: the program never ended
            while chunk := await proc.stderr.receive_some():
                stderr += chunk
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()  # only the process this test started, by its pid
            with trio.CancelScope(shield=True):
                await proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                await pipe.aclose()
    assert proc.returncode != 0
    assert b"KeyboardInterrupt" in stderr, stderr.decode(errors="replace")


# ---- contextvars ----

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


class RecordsContext:
    """Records, for each pair state change, the task it ran in and the contextvar it saw there."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, PairState, str | None]] = []
        self.failed = trio.Event()

    @hookimpl
    def iceagent_pair_state_changed(self, agent: Any, pair: Any, old: Any, new: PairState) -> None:
        self.calls.append((trio.lowlevel.current_task().name, new, request_id.get(None)))
        if new is PairState.FAILED:
            self.failed.set()


async def test_a_contextvar_set_around_open_agent_is_seen_by_hooks_on_receive_and_on_timers() -> None:
    """A response arriving (in the session task, which serves the socket: SUCCEEDED) and a check timing out
    (a retransmission timer: FAILED) both call the hook with the contextvar the application set around `open_agent`."""
    rec = RecordsContext()
    config = IceConfig(global_pacing=False, rto=0.02, rc=2, rm=2)
    with trio.fail_after(10):
        silent = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)  # never answers
        with silent:
            await silent.bind(("127.0.0.1", 0))
            port = silent.getsockname()[1]
            async with open_agent(controlling=False, host_addresses=LO, config=config) as b:
                token = request_id.set("req-42")
                try:
                    async with open_agent(
                        controlling=True, host_addresses=LO, config=config, plugin_manager=plugin_manager_with(rec)
                    ) as a:
                        # first a check that times out (FAILED on a retransmission timer) ...
                        a.set_remote_parameters(b.local_parameters)
                        a.add_remote_candidate(
                            Candidate.from_sdp(f"candidate:9 1 udp 2130706431 127.0.0.1 {port} typ host")
                        )
                        await rec.failed.wait()
                        # ... then one that is answered (SUCCEEDED on receiving the response)
                        await signal(a, b)
                        await signal(b, a)
                        await a.connect()
                finally:
                    request_id.reset(token)
    succeeded = [call for call in rec.calls if call[1] is PairState.SUCCEEDED]
    assert succeeded and succeeded[0][0].startswith("session-"), rec.calls
    assert any(call[1] is PairState.FAILED for call in rec.calls), rec.calls
    assert {value for _task, _new, value in rec.calls} == {"req-42"}, rec.calls


# ---- a bug ends its own agent ----


async def test_a_bug_in_the_sessions_receive_path_ends_only_that_agents_async_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A session method raising on a received check ends the agent that received it with that very
    exception, from the task that read it (the session task, serving its socket); the other agent is
    untouched."""
    bug = break_controlling_receive(monkeypatch)
    with trio.fail_after(10):
        async with open_agent(controlling=False, host_addresses=LO, config=FAST) as b:
            with pytest.raises(BaseException) as info:  # which one: checked below
                async with open_agent(controlling=True, host_addresses=LO, config=FAST) as a:
                    await signal(a, b)
                    await trio.sleep_forever()  # b checks a: a's handling raises
            assert leaves(info.value) == [bug]
            assert any(frame.name == "_drive" for frame in _traceback(bug))
            assert b.state.value is not IceState.CLOSED  # the other agent is untouched


def _traceback(exc: BaseException) -> list[Any]:
    import traceback

    return list(traceback.extract_tb(exc.__traceback__))


class HookBug(BaseException):
    """Not an Exception: escapes the observer hooks' `except Exception` guard."""


class RaisesOnSuccess:
    @hookimpl
    def iceagent_pair_state_changed(self, agent: Any, pair: Any, old: Any, new: PairState) -> None:
        if new is PairState.SUCCEEDED:
            raise HookBug("observer bug")


async def test_an_exception_escaping_a_hooks_guard_ends_only_that_agent() -> None:
    """A BaseException from an observer hook (past its `except Exception`) ends that agent's `async with`
    with it, like any task's exception; it no longer ends the whole run as a TrioInternalError, as it
    did from the run-wide reactor's system task."""
    with trio.fail_after(10):
        async with open_agent(controlling=False, host_addresses=LO, config=FAST) as b:
            with pytest.raises(BaseException) as info:
                async with open_agent(
                    controlling=True, host_addresses=LO, config=FAST,
                    plugin_manager=plugin_manager_with(RaisesOnSuccess()),
                ) as a:
                    await connect_both(a, b)
                    await trio.sleep_forever()
            assert [type(e) for e in leaves(info.value)] == [HookBug]
            assert b.state.value is not IceState.CLOSED
            assert any(task.name.startswith(f"session-{b.name}") for task in _tasks())  # b still runs


# ---- nothing of a closed agent remains ----


async def test_after_the_async_with_no_task_socket_or_timer_of_the_agent_remains() -> None:
    """While another agent keeps running, a closed agent leaves no task, no descriptor and nothing that
    keeps its session alive (the old reactor's timer heap held closed sessions until it went idle)."""
    with trio.fail_after(10):
        async with open_agent(controlling=False, host_addresses=LO, config=FAST) as b:
            await trio.testing.wait_all_tasks_blocked()
            tasks_before = {id(task) for task in _tasks()}
            fds_before = open_fds()
            async with open_agent(controlling=True, host_addresses=LO, config=FAST) as a:
                await connect_both(a, b)
                await a.state.wait_value(lambda s: s is IceState.COMPLETED)
                name = a.name
                assert f"session-{name}-0" in {t.name for t in _tasks()}
                assert _sessions() == 2
            del a
            await trio.testing.wait_all_tasks_blocked()
            assert b.state.value is not IceState.CLOSED
            assert [t.name for t in _tasks() if id(t) not in tasks_before] == []
            assert set(open_fds().items()) - set(fds_before.items()) == set()
            assert _sessions() == 1  # b's


def _sessions() -> int:
    """SessionRunners alive in the process (after a full collection)."""
    from iceagent.agent._runner import SessionRunner

    gc.collect()
    return sum(isinstance(obj, SessionRunner) for obj in gc.get_objects())


# ---- the task tree of an agent ----


def _agent_tree(*agents: Any) -> list[tuple[list[str], int]]:
    """For each agent, the nursery of its `async with`: the names of its tasks, sorted, and how many
    nurseries those tasks opened in turn. (The interface watcher's reader, one task per run shared by
    every agent, lives in one of them: not counted.)"""
    out = []
    for agent in agents:
        tasks = [t for t in agent._nursery.child_tasks if t.name != "iceagent-interface-watcher"]
        out.append((sorted(t.name for t in tasks), sum(len(t.child_nurseries) for t in tasks)))
    return out


async def test_an_idle_agent_is_one_task_in_the_nursery_of_its_async_with() -> None:
    """A connected, idle agent in the default set-up (one host UDP socket) is one task, its session task,
    in the nursery `open_agent` opened; a generation opens no nursery of its own (before: a session
    nursery and a receive task more per agent). A further socket brings a receive task of its own."""
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST, name="one") as a, open_agent(
            controlling=False, host_addresses=[*LO, "127.0.0.2"], config=FAST, name="two"
        ) as b:
            sa, sb = await connect_both(a, b)
            await a.state.wait_value(IceState.COMPLETED)
            await b.state.wait_value(IceState.COMPLETED)
            await sa.send(b"data")
            assert await sb.receive() == b"data"
            await trio.testing.wait_all_tasks_blocked()
            assert _agent_tree(a, b) == [(["session-one-0"], 0), (["receive-two", "session-two-0"], 0)]


async def test_a_restart_leaves_one_task_and_the_new_socket() -> None:
    """After an ICE restart (RFC 8445 9) whose old generation closes at the new nomination, each agent is
    again one task, the new generation's session task, and the old generation's socket is closed."""
    config = IceConfig(global_pacing=False, restart_linger=0)
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=config, name="one") as a, open_agent(
            controlling=False, host_addresses=LO, config=config, name="two"
        ) as b:
            await connect_both(a, b)
            await a.state.wait_value(IceState.COMPLETED)
            await b.state.wait_value(IceState.COMPLETED)
            fds = open_fds()
            await a.restart()
            await signal(a, b)
            await signal(b, a)
            await a.generation.wait_value(1)
            for agent in (a, b):
                while len(agent._runners) > 1 or agent._current.nominated is None:  # noqa: ASYNC110 - no event
                    await trio.sleep(0.005)  # until the new generation nominated (and so closed the old one)
            await trio.testing.wait_all_tasks_blocked()
            assert _agent_tree(a, b) == [(["session-one-1"], 0), (["session-two-1"], 0)]
            assert len(open_fds()) == len(fds)
            stream = await a.connect()
            await stream.send(b"on the new pair")
            assert await (await b.connect()).receive() == b"on the new pair"


async def test_the_sessions_exception_ends_the_async_with_as_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the session's code raises out of `async with open_agent()` as itself, not wrapped in an
    exception group (the generation's nursery wrapped it once more, past what `open_agent` unwraps)."""
    from iceagent.ice.session import IceSession

    bug = ZeroDivisionError("bug in the session")

    real = IceSession.handle_stun

    def broken(self: IceSession, *args: object, **kwargs: object) -> object:
        if self.controlling:
            raise bug
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    with trio.fail_after(10):
        async with open_agent(controlling=False, host_addresses=LO, config=FAST) as b:
            with pytest.raises(ZeroDivisionError) as info:
                async with open_agent(controlling=True, host_addresses=LO, config=FAST) as a:
                    monkeypatch.setattr(IceSession, "handle_stun", broken)
                    await signal(a, b)
                    await trio.sleep_forever()  # b checks a: a's handling raises
            assert info.value is bug


async def test_a_generations_sockets_close_after_its_last_task_ended() -> None:
    """GenerationTasks (agent/_tasks.py) ends a generation like a nursery would: `cancel()` cancels every
    task, starts no more, and `done` (closing the generation's sockets) runs once, after the last task,
    here one whose cleanup still needs a moment, has ended."""
    from iceagent.agent._tasks import GenerationTasks

    events: list[str] = []

    async def task(name: str, cleanup: bool) -> None:
        try:
            await trio.sleep_forever()
        finally:
            if cleanup:
                with trio.CancelScope(shield=True):
                    await trio.sleep(0.01)  # a cleanup that uses the sockets (a TURN or port-mapping delete)
            events.append(f"{name} ended")

    async with trio.open_nursery() as nursery:
        tasks = GenerationTasks(nursery, lambda: events.append("done"))
        tasks.enter()  # the session task
        tasks.start_soon(task, "quick", False, name="quick")
        tasks.start_soon(task, "slow", True, name="slow")
        await trio.testing.wait_all_tasks_blocked()
        tasks.cancel()
        tasks.start_soon(task, "late", False, name="late")  # after cancel: not started
        tasks.leave()  # the session task ends first
        assert events == []
    assert events == ["quick ended", "slow ended", "done"]
    tasks.cancel()
    assert events == ["quick ended", "slow ended", "done"]
