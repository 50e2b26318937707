"""Packaging metadata: every distribution in the repository declares its license as an SPDX expression
(PEP 639; setuptools drops the `{ text = ... }` table form after 2027-02-18) and ships the license text."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = [ROOT, ROOT / "plugins" / "iceagent-vnet", ROOT / "plugins" / "iceagent-trace"]


@pytest.mark.parametrize("project", PROJECTS, ids=["iceagent", "iceagent-vnet", "iceagent-trace"])
def test_license_is_spdx_and_its_file_is_shipped(project: Path) -> None:
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "MIT"
    files = meta["project"]["license-files"]
    assert files == ["LICENSE"]
    text = (project / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the iceagent authors" in text
    # license-files and an SPDX license need setuptools 77 (PEP 639 support)
    (setuptools,) = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools>=")]
    assert int(setuptools.removeprefix("setuptools>=").split(".")[0]) >= 77
