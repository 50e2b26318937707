"""Which way imports run (DESIGN.md "Layout"): the command line on top (only iceagent/cli/ and __main__.py
import it), the sans-IO core below everything Trio, no import circle inside agent/, no reach into
another module's private names there, and no Trio system task anywhere in the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "iceagent" / "cli"
ALLOWED = {ROOT / "iceagent" / "__main__.py"}


def _module_name(path: Path) -> str:
    """`iceagent.agent.core` for iceagent/agent/core.py (plugins: from their own package root)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "plugins":
        parts = parts[2:]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved, names from `from X import name` included."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _sources() -> list[Path]:
    files = list((ROOT / "iceagent").rglob("*.py"))
    for plugin in (ROOT / "plugins").iterdir():
        files.extend(p for p in plugin.rglob("*.py") if "build" not in p.parts)
    return files


def test_nothing_below_the_cli_imports_it() -> None:
    offenders = {}
    for path in _sources():
        if CLI in path.parents or path in ALLOWED:
            continue
        cli = sorted(m for m in _imported(path) if m == "iceagent.cli" or m.startswith("iceagent.cli."))
        if cli:
            offenders[str(path.relative_to(ROOT))] = cli
    assert offenders == {}


def test_the_cli_modules_live_in_the_cli_package() -> None:
    old = ["cli.py", "repl.py", "display.py", "signal_blob.py", *(p.name for p in (ROOT / "iceagent").glob("cli_*.py"))]
    assert [name for name in old if (ROOT / "iceagent" / name).exists()] == []
    assert {p.stem for p in CLI.glob("*.py")} >= {"__init__", "__main__", "demo", "gather", "nat", "options", "peer",
                                                 "serve", "stun", "repl", "display", "signal_blob"}


AGENT = ROOT / "iceagent" / "agent"
#: The Trio side of the sans-IO packages (DESIGN.md: servers and drivers may use trio and net/).
TRIO_SIDE = {"stun/server.py", "stun/client.py", "stun/_serving.py", "stun/nat_discovery/probe.py"}


def test_agent_has_no_import_circle() -> None:
    """Type-only imports (under TYPE_CHECKING) count too: a circle there is still two modules that need
    each other's insides."""
    graph = {
        _module_name(p): {m for m in _imported(p) if m.startswith("iceagent.agent.") and m.count(".") == 2}
        for p in AGENT.glob("*.py")
    }
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for dep in sorted(graph.get(node, ())):
            if dep in path:
                cycles.append([*path[path.index(dep):], dep])
            elif dep in graph:
                visit(dep, [*path, dep])

    for module in graph:
        visit(module, [module])
    assert cycles == []


def test_the_sans_io_core_imports_no_trio_and_nothing_above_it() -> None:
    offenders = {}
    for package in ("ice", "stun"):
        for path in (ROOT / "iceagent" / package).rglob("*.py"):
            if str(path.relative_to(ROOT / "iceagent")) in TRIO_SIDE:
                continue
            bad = sorted(
                m for m in _imported(path)
                if m == "trio" or m.startswith(("trio.", "iceagent.net", "iceagent.agent", "iceagent.gatherers"))
            )
            if bad:
                offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}


#: The one documented exception: the stream's per-datagram paths add to a pair's byte counters directly (a call
#: per datagram less; ice/pair.py's CandidatePair docstring names them as the agent's to add to).
ALLOWED_FOREIGN = {"stream.py": {"_bytes_sent", "_bytes_received"}}


def test_agent_modules_reach_into_no_other_module_private_names() -> None:
    """`x._name` in an agent/ module is allowed only for names that module defines itself (and ALLOWED_FOREIGN)."""
    offenders = {}
    for path in AGENT.glob("*.py"):
        text = path.read_text()
        own = set(re.findall(r"(?:def |self\.|\")(_[a-z]\w*)", text))
        used = set(re.findall(r"\b(?!self\b)[a-z_]\w*\.(_[a-z]\w*)", text))
        foreign = sorted(used - own - ALLOWED_FOREIGN.get(path.name, set()))
        if foreign:
            offenders[path.name] = foreign
    assert offenders == {}


def test_nothing_in_the_package_runs_as_a_trio_system_task() -> None:
    users = [
        str(p.relative_to(ROOT)) for p in (ROOT / "iceagent").rglob("*.py") if "spawn_system_task" in p.read_text()
    ]
    assert users == []
