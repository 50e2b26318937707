"""`python -m iceagent`: the Trio REPL, driven as a subprocess through stdin (agents on 127.0.0.1 only)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent


async def _repl(script: str, *argv: str) -> tuple[int, str, str]:
    with trio.fail_after(60):
        proc = await trio.run_process(
            [sys.executable, "-m", "iceagent", *argv],
            stdin=script.encode(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


async def test_pair_show_and_data() -> None:
    script = "\n".join(
        [
            "a, b = await pair()",
            "sa = await a.connect()",
            "sb = await b.connect()",
            "await sa.send(b'hello over ice')",
            "await sb.receive()",
            "a.state.value.value, b.state.value.value",
            "show(a)",
            "await close(a, b)",
            "a.state.value.value",
            "exit()",
        ]
    )
    status, out, err = await _repl(script + "\n")
    assert status == 0, err
    assert err.startswith("iceagent 0.1.0 Trio REPL"), err
    for name in ("pair()", "show(", "stun(", "close(", "turn_server()"):
        assert name in err, name  # the banner says what is available
    assert "b'hello over ice'" in out
    assert "('completed', 'completed')" in out
    assert "agent a: completed, controlling, generation 0" in out
    assert re.search(r"\* +│ host udp 127\.0\.0\.1:\d+ +│ host udp 127\.0\.0\.1:\d+ +│ succeeded +│ yes", out), out
    assert re.search(r"^selected: candidate:\S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ host <-> ", out, re.M), out
    assert "'closed'" in out
    assert "\x1b" not in out and "Traceback" not in err


async def test_top_level_async_statements_and_errors() -> None:
    script = "\n".join(
        [
            "x = await agent()",
            "[c.type async for c in x.gather()]",
            "async with trio.open_nursery() as n:",
            "    n.start_soon(trio.sleep, 0)",
            "",
            "1/0",
            "await trio.sleep('x')",
            "await agent(host_addresses=['0.0.0.0'])",
            "r = await stun()",
            "r.mapped[0], r.local[0]",
            "s = await stun_server()",
            "(await stun(s)).server == s.address",
            "iceagent.__version__, IceState.COMPLETED",
            "",  # Ctrl-D (end of input) quits too; the open agent and server are closed
        ]
    )
    status, out, err = await _repl(script)
    assert status == 0, err
    assert "['host']" in out
    assert "ZeroDivisionError: division by zero" in err
    assert "TypeError" in err  # trio.sleep('x'), shown and survived
    assert "ValueError: the REPL helpers gather on 127.0.0.1 only" in err
    assert "('127.0.0.1', '127.0.0.1')" in out
    assert re.search(r"^(>>> )*STUN server on 127\.0\.0\.1:\d+$", out, re.M), out
    assert "True" in out
    assert "('0.1.0', <IceState.COMPLETED: 'completed'>)" in out
    # tracebacks start at the user's code, not in the console's machinery
    assert err.count('Traceback (most recent call last):\n  File "<console>", line 1, in <module>\n') == 3, err


async def test_relay_pair_through_embedded_turn() -> None:
    script = "\n".join(
        [
            "t = await turn_server()",
            "servers = [IceServer(t.uris(), username='alice', credential='secret')]",
            "a, b = await pair(ice_servers=servers, ice_transport_policy='relay')",
            "a.selected_pair.local.type, a.selected_pair.remote.type",
            "exit()",
        ]
    )
    status, out, err = await _repl(script + "\n")
    assert status == 0, err
    assert "('relay', 'relay')" in out, out + err


async def test_ctrl_c_cancels_the_running_statement() -> None:
    with trio.fail_after(60):
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "iceagent"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            output = b""

            async def wait_for(marker: bytes) -> None:
                nonlocal output
                while marker not in output:
                    chunk = await proc.stdout.receive_some()  # type: ignore[union-attr]
                    assert chunk, output
                    output += chunk

            await proc.stdin.send_all(b"print('sleeping', flush=True); await trio.sleep(600)\n")
            await wait_for(b"sleeping")
            await trio.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            await proc.stdin.send_all(b"print('after the sleep', flush=True)\n")
            await wait_for(b"after the sleep")
            await proc.stdin.send_all(b"print('looping', flush=True)\nwhile True: pass\n\n")
            await wait_for(b"looping")
            await trio.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            await proc.stdin.send_all(b"print('after the loop', flush=True)\n")
            await wait_for(b"after the loop")
            await trio.sleep(0.3)
            proc.send_signal(signal.SIGINT)  # at the prompt: says so, keeps running
            await trio.sleep(0.3)
            await proc.stdin.send_all(b"exit(3)\n")
            assert await proc.wait() == 3
            err = b""
            while chunk := await proc.stderr.receive_some():
                err += chunk
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert len(re.findall(rb"^KeyboardInterrupt$", err, re.M)) == 2, err
    assert b"KeyboardInterrupt (Ctrl-D or exit() quits)" in err


async def test_iceagent_repl_command_and_verbose() -> None:
    with trio.fail_after(60):
        proc = await trio.run_process(
            [sys.executable, "-m", "iceagent.cli", "-v", "repl"],
            stdin=b"a, b = await pair()\nprint(a.name, b.name)\n",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "a b" in out
    assert "INFO iceagent.agent: a: gathered candidate:" in err
    assert re.search(r"INFO iceagent\.agent: a: selected pair candidate:.* 127\.0\.0\.1 ", err), err
