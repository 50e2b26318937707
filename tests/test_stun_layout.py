"""The layout of the STUN codec (DESIGN.md "Layout"): message.py keeps the codec and its public names; the
fast paths are private modules with one job each, below message.py in the import order."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import iceagent.stun
from iceagent.stun import message

STUN_DIR = Path(iceagent.stun.__file__).parent
PRIVATE = ("_crypto", "_fastdecode", "_random")


def _imported_modules(path: Path) -> set[str]:
    """The modules a file imports, relative ones spelled from iceagent.stun (".message" -> "message")."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ("." * node.level + (node.module or "")).removeprefix("iceagent.stun.").lstrip(".")
            names.add(base)
            names.update(f"{base}.{alias.name}".lstrip(".") for alias in node.names)
    return names


@pytest.mark.parametrize("name", PRIVATE)
def test_private_fast_paths_do_not_import_the_codec(name: str) -> None:
    path = STUN_DIR / f"{name}.py"
    imported = _imported_modules(path)
    assert "message" not in imported and "iceagent.stun.message" not in imported, imported
    assert len(path.read_text().splitlines()) < 600


def test_codec_module_stays_under_600_lines() -> None:
    assert len((STUN_DIR / "message.py").read_text().splitlines()) < 600


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("iceagent.stun", ["Message", "Method", "MessageClass", "Attr", "StunDecodeError", "long_term_key"]),
        ("iceagent.stun.message", message.__all__),
    ],
)
def test_public_names_stay_where_they_are_documented(module: str, names: list[str]) -> None:
    mod = importlib.import_module(module)
    for name in names:
        assert getattr(mod, name) is not None, name
    for name in ("seal", "encode_attributes", "random_bytes"):  # public in iceagent.stun.message
        assert name in message.__all__


def test_public_random_bytes_is_the_pooled_one() -> None:
    from iceagent.stun import _random

    assert message.random_bytes is _random.random_bytes
