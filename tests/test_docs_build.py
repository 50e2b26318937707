"""The docs site builds with `mkdocs build --strict` (no broken links, no API reference warnings)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # about 5 s of CPU
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2.0, not a problem of ours
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (site / "index.html").exists()
    reference = (site / "reference" / "index.html").read_text()
    for name in ("iceagent.open_agent", "iceagent.IceConfig.ta", "iceagent.stun.Message", "iceagent.net.base.Network",
                 "iceagent.gatherers.base.GatherContext", "iceagent.hookspecs.iceagent_check"):
        assert f'id="{name}"' in reference, f"{name} is missing from the API reference"
    assert "nat-matrix.svg" in (site / "concepts" / "index.html").read_text()


def test_every_page_is_in_the_nav() -> None:
    """A page left out of the nav is built but nobody finds it: list every docs/*.md in mkdocs.yml."""
    config = (ROOT / "mkdocs.yml").read_text()
    nav = set(re.findall(r"^\s+- (?:[^:\n]+: )?([\w./-]+\.md)\s*$", config, re.M))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    missing = sorted(pages - nav)
    assert not missing, f"add these pages to the nav in mkdocs.yml: {missing}"
    assert not nav - pages, f"the nav names pages that do not exist: {sorted(nav - pages)}"
