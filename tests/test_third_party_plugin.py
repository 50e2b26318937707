"""A third-party plugin, installed as a distribution with an "iceagent" entry point, sees its hooks called.

The "installation" is what pip leaves behind: a module and a `*.dist-info` directory (METADATA and
entry_points.txt) in a directory on sys.path. The agent runs in a subprocess with that directory on
PYTHONPATH and the default plugin manager, exactly as an application that installed the plugin would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

THROWAWAY = '''
"""A throwaway observer plugin: append every hook call to $THROWAWAY_OUT as a JSON line."""
import json
import os

import pluggy

hookimpl = pluggy.HookimplMarker("iceagent")


def _log(hook, agent, **fields):
    with open(os.environ["THROWAWAY_OUT"], "a") as f:
        f.write(json.dumps({"hook": hook, "agent": agent.name, **fields}) + "\\n")


@hookimpl
def iceagent_candidate_gathered(agent, candidate):
    _log("candidate_gathered", agent, candidate=candidate.to_sdp())


@hookimpl
def iceagent_pair_state_changed(agent, pair, new):
    _log("pair_state_changed", agent, new=new.value)


@hookimpl
def iceagent_state_changed(agent, new):
    _log("state_changed", agent, new=new.value)


@hookimpl
def iceagent_selected_pair_changed(agent, pair):
    _log("selected_pair_changed", agent, local=pair and pair.local.to_sdp())


@hookimpl
def iceagent_check(agent, direction, kind):
    _log("check", agent, direction=direction, kind=kind)
'''

AGENTS = """
import trio
from iceagent import Candidate, IceConfig, open_agent
from iceagent.plugins import get_plugin_manager

pm = get_plugin_manager()
print("PLUGINS", sorted(name for name, _ in pm.list_name_plugin()))


async def signal(src, dst):
    dst.set_remote_parameters(src.local_parameters)
    async for cand in src.gather():
        dst.add_remote_candidate(Candidate.from_sdp(cand.to_sdp()))
    dst.add_remote_candidate(None)


async def main():
    config = IceConfig(global_pacing=False)
    with trio.fail_after(10):
        async with open_agent(controlling=True, host_addresses=["127.0.0.1"], config=config, name="one") as a, \\
                   open_agent(controlling=False, host_addresses=["127.0.0.1"], config=config, name="two") as b:
            await signal(a, b)
            await signal(b, a)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(b.connect)
                await a.connect()


trio.run(main)
"""


def _install(site: Path, dist: str, module: str, source: str) -> None:
    """Lay out what `pip install` of a one-module distribution with an "iceagent" entry point leaves."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[iceagent]\n{dist} = {module}\n")
    (info / "RECORD").write_text("")


def _run(site: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "THROWAWAY_OUT": str(out), "PYTHONPATH": str(site)}
    env.pop("ICEAGENT_TRACE", None)
    return subprocess.run([sys.executable, "-c", AGENTS], env=env, capture_output=True, text=True, timeout=60)


def test_an_installed_plugin_is_loaded_and_its_observer_hooks_fire(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "throwaway", "throwaway_mod", THROWAWAY)
    out = tmp_path / "calls.jsonl"
    proc = _run(site, out)
    assert proc.returncode == 0, proc.stderr
    assert "'throwaway'" in proc.stdout  # loaded through the entry point group, under its entry point name
    calls = [json.loads(line) for line in out.read_text().splitlines()]
    seen = {(c["agent"], c["hook"]) for c in calls}
    for agent in ("one", "two"):
        for hook in ("candidate_gathered", "pair_state_changed", "state_changed", "selected_pair_changed", "check"):
            assert (agent, hook) in seen, (agent, hook)
    states = [c["new"] for c in calls if c["hook"] == "state_changed" and c["agent"] == "one"]
    assert states[:2] == ["checking", "connected"] and states[-1] == "closed"
    assert any(c["hook"] == "candidate_gathered" and "127.0.0.1" in c["candidate"] for c in calls)
    checks = {(c["direction"], c["kind"]) for c in calls if c["hook"] == "check"}
    assert {("send", "request"), ("receive", "request"), ("send", "success"), ("receive", "success")} <= checks


def test_a_broken_plugin_does_not_stop_the_others(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "throwaway", "throwaway_mod", THROWAWAY)
    _install(site, "aaa-broken", "aaa_broken_mod", "raise RuntimeError('this plugin is broken')\n")
    _install(site, "zzz-broken", "zzz_broken_mod", "raise RuntimeError('this plugin is broken too')\n")
    out = tmp_path / "calls.jsonl"
    proc = _run(site, out)
    assert proc.returncode == 0, proc.stderr
    assert "'throwaway'" in proc.stdout
    assert "this plugin is broken" in proc.stderr  # logged, with the entry point named
    assert "aaa-broken" in proc.stderr
    assert out.exists() and '"state_changed"' in out.read_text()
