"""What the first agent of a process loads: only what its options use.

Opening a default pair (no TURN server, `port_mapping=False`, tracing off) must not import the TURN client,
the UPnP client (http.client, urllib.request, xml) or the installed plugins' packages beyond their entry
points: bench/mux.py counts that memory against every agent. Asserted on module sets in a fresh interpreter,
not on sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_OPEN_PAIR = """
import contextlib, json, sys
import trio
from iceagent import IceConfig, open_agent, open_mux

async def main(use_mux):
    config = IceConfig(global_pacing=False)
    async with open_mux(host_addresses=["127.0.0.1"]) if use_mux else contextlib.nullcontext() as mux:
        async with open_agent(controlling=True, host_addresses=["127.0.0.1"], config=config) as a, open_agent(
            controlling=False, host_addresses=["127.0.0.1"], config=config, mux=mux
        ) as b:
            for x, y in ((a, b), (b, a)):
                x.set_remote_parameters(y.local_parameters)
                async for c in y.gather():
                    x.add_remote_candidate(c)
                x.add_remote_candidate(None)
            with trio.fail_after(10):
                await a.connect()
                await b.connect()
    print(json.dumps(sorted(sys.modules)))

trio.run(main, sys.argv[1] == "mux")
"""

#: Modules (and their submodules) that a default agent has no use for.
_NOT_LOADED = (
    "http.client",
    "urllib.request",
    "xml",
    "iceagent.turn.client",
    "iceagent.turn.allocation",
    "iceagent.portmap.client",
    "iceagent.portmap.upnp",
    "iceagent_vnet.scenario",
    "iceagent_vnet.network",
    "iceagent_trace.tracer",
    "iceagent_trace.render",
)


def _modules_after_a_pair(mode: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "ICEAGENT_TRACE"}  # tracing off, as by default
    proc = subprocess.run(
        [sys.executable, "-c", _OPEN_PAIR, mode], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    modules: list[str] = json.loads(proc.stdout.splitlines()[-1])
    return modules


def _loaded(modules: list[str], name: str) -> list[str]:
    return [m for m in modules if m == name or m.startswith(name + ".")]


@pytest.mark.parametrize("mode", ["own-sockets", "mux"])
def test_a_default_pair_loads_neither_turn_nor_upnp_nor_plugin_packages(mode: str) -> None:
    modules = _modules_after_a_pair(mode)
    loaded = {name: _loaded(modules, name) for name in _NOT_LOADED}
    assert not any(loaded.values()), {k: v for k, v in loaded.items() if v}
    # the built-in plugins are still registered (the gatherers' and TURN transports' hook modules), and the
    # installed ones found through their entry points
    assert "iceagent.gatherers.relay" in modules
    assert "iceagent.turn.transports" in modules
    assert "iceagent_vnet.plugin" in modules and "iceagent_trace.plugin" in modules


def test_importing_the_turn_package_loads_no_client() -> None:
    code = "import sys, iceagent.turn; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout)
    assert "iceagent.turn" in modules
    assert not _loaded(modules, "iceagent.turn.client") and not _loaded(modules, "iceagent.turn.allocation")
