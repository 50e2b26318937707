"""The packages whose public names load on first use (PEP 562) still offer every name they did.

`iceagent.turn`, `iceagent_vnet` and `iceagent_trace` import their submodules when a name is first asked
for (tests/test_first_agent_imports.py says why): `from X import name`, `X.name`, `from X import *`,
`dir(X)` and the submodules as attributes must all work as when the package imported everything at once.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import types

import pytest

PACKAGES = ["iceagent.turn", "iceagent_vnet", "iceagent_trace"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves_to_its_submodules_object(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        origin = getattr(value, "__module__", None)
        if origin is not None and origin.startswith(package + "."):
            assert getattr(importlib.import_module(origin), name) is value
    assert set(module.__all__) <= set(dir(module))
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)  # the star import is what is tested
    assert set(module.__all__) <= set(namespace)


@pytest.mark.parametrize("package", PACKAGES)
def test_the_submodules_stay_attributes_and_unknown_names_raise(package: str) -> None:
    module = importlib.import_module(package)
    for sub in module._SUBMODULES:
        assert sub in dir(module)
        assert isinstance(getattr(module, sub), types.ModuleType)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = module.no_such_name


def test_names_used_across_the_repo_import() -> None:
    from iceagent_trace import Tracer, load_trace, render_html
    from iceagent_vnet import EIM, Host, Internet, Lan, Router, nat_preset, vnet

    from iceagent.turn import CHANNEL_DATA_MAX, AllocationState, TurnClient, TurnTimeout

    assert TurnClient.__name__ == "TurnClient" and isinstance(CHANNEL_DATA_MAX, int)
    assert AllocationState.__module__ == "iceagent.turn.events" and issubclass(TurnTimeout, Exception)
    assert callable(vnet) and callable(nat_preset) and EIM is not None
    assert all(isinstance(c, type) for c in (Host, Internet, Lan, Router, Tracer))
    assert callable(load_trace) and callable(render_html)


def test_the_vnet_submodules_imported_before_stay_attributes() -> None:
    """`import iceagent_vnet` used to load these (some indirectly): `iceagent_vnet.scheduler` etc. still work."""
    import iceagent_vnet

    for sub in ("packet", "portmap", "scheduler", "network", "scenario"):
        assert isinstance(getattr(iceagent_vnet, sub), types.ModuleType)


def test_a_vnet_package_that_cannot_import_gives_no_network_instead_of_breaking_the_hook(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As when the entry point itself failed to load (logged, skipped): the hook call goes on for the others."""
    from iceagent_vnet import plugin

    monkeypatch.setitem(sys.modules, "iceagent_vnet.scenario", None)  # a broken or version-skewed install
    with caplog.at_level("ERROR", logger="iceagent.plugins"):
        assert plugin.iceagent_networks() == {}
    assert "cannot load its virtual network" in caplog.text


def test_the_vnet_entry_point_gives_the_packages_vnet() -> None:
    import iceagent_vnet
    from iceagent_vnet import plugin

    assert plugin.iceagent_networks() == {"vnet": iceagent_vnet.vnet}


@pytest.mark.parametrize(
    ("entry_point", "heavy"),
    [("iceagent_vnet.plugin", "iceagent_vnet.scenario"), ("iceagent_trace.plugin", "iceagent_trace.tracer")],
)
def test_the_entry_point_modules_load_only_themselves(entry_point: str, heavy: str) -> None:
    """What a PluginManager does with an entry point (tracing off): import it, take its `plugin` if any."""
    code = f"import sys, {entry_point}; getattr({entry_point}, 'plugin', None); print({heavy!r} in sys.modules)"
    env = {**os.environ, "ICEAGENT_TRACE": ""}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
