"""The command line sits on top (DESIGN.md "Layout"): only iceagent/cli/ and __main__.py import it."""

from __future__ import annotations

import ast
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
