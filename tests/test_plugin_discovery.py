"""Entry point discovery without importlib.metadata (iceagent/plugins.py `_scan_entry_points`).

The scan must list what `importlib.metadata.entry_points(group=...)` lists, in its order, for the layouts
it accepts (directories of `*.dist-info` / `*.egg-info` on sys.path), and hand everything else back to
importlib.metadata (return None). Each layout is checked against importlib.metadata itself.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import zipfile
from pathlib import Path

import pytest

from iceagent.plugins import _entry_points, _load, _scan_entry_points

GROUPS = ("iceagent", "other", "console_scripts")


def _dist(site: Path, dirname: str, entry_points: str | None) -> None:
    info = site / dirname
    info.mkdir(parents=True)
    name = dirname.partition("-")[0].rpartition(".")[0] if "-" not in dirname else dirname.partition("-")[0]
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points)


def _stdlib(group: str) -> list[tuple[str, str]]:
    return [(ep.name, ep.value) for ep in importlib.metadata.entry_points(group=group)]


def _scanned(group: str) -> list[tuple[str, str]] | None:
    found = _scan_entry_points(group)
    return None if found is None else [(name, value) for name, value, _ in found]


def test_the_environment_the_tests_run_in_is_scanned_as_importlib_metadata_reads_it() -> None:
    for group in (*GROUPS, "pytest11"):
        assert _scanned(group) == _stdlib(group), group


@pytest.fixture
def sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Three directories on sys.path (the last one as "", the current directory), nothing else."""
    one, two, cwd = tmp_path / "one", tmp_path / "two", tmp_path / "cwd"
    for site in (one, two, cwd):
        site.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "path", [str(one), str(tmp_path / "missing"), str(two), ""])
    return [one, two, cwd]


def test_the_first_distribution_of_a_name_wins_and_lines_parse_as_importlib_metadata_parses_them(
    sites: list[Path],
) -> None:
    one, two, cwd = sites
    _dist(
        one,
        "alpha-1.0.dist-info",
        "# a comment\n\n[iceagent]\n  a = alpha_mod:plugin.inner [extra]  \nb=alpha_b\n"
        "[console_scripts]\nalpha = alpha_mod:main\n[other]\nx = y = z\n",
    )
    _dist(one, "Beta_Pkg-2.0.dist-info", "[iceagent]\nbeta = beta_mod\n")
    _dist(one, "gamma-1.0.dist-info", None)  # no entry_points.txt
    (one / "delta-1.0.dist-info").write_text("a file, not a directory")  # shadows the delta below, lists nothing
    _dist(one, "epsilon.egg-info", "[iceagent]\nepsilon = epsilon_mod\n")
    (one / "not_metadata").mkdir()
    _dist(two, "alpha-9.0.dist-info", "[iceagent]\nshadowed = alpha_new\n")
    _dist(two, "beta.pkg-3.0.dist-info", "[iceagent]\nshadowed = beta_new\n")  # normalizes to beta_pkg
    _dist(two, "delta-2.0.dist-info", "[iceagent]\nshadowed = delta_new\n")
    _dist(two, "zeta-1.0.dist-info", "[iceagent]\na = zeta_mod\n")  # a repeated name: pluggy's to refuse
    _dist(cwd, "eta-1.0.dist-info", "[iceagent]\neta = eta_mod\n[]\nempty = section\n")
    for group in (*GROUPS, ""):
        assert _scanned(group) == _stdlib(group), group
    # (in listing order: not sorted) the shadowed ones are not there, the repeated name is
    assert sorted(_stdlib("iceagent")) == [
        ("a", "alpha_mod:plugin.inner [extra]"),
        ("a", "zeta_mod"),
        ("b", "alpha_b"),
        ("beta", "beta_mod"),
        ("epsilon", "epsilon_mod"),
        ("eta", "eta_mod"),
    ]


@pytest.mark.parametrize(
    "layout",
    ["zip on sys.path", "upper-case suffix", "no name", "line without =", "egg on sys.path", "another finder"],
)
def test_what_the_scan_does_not_read_is_left_to_importlib_metadata(
    layout: str, sites: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    one = sites[0]
    _dist(one, "alpha-1.0.dist-info", "[iceagent]\nalpha = alpha_mod\n")
    if layout == "zip on sys.path":
        archive = one.parent / "plugins.zip"
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("zipped-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: zipped\nVersion: 1.0\n")
            z.writestr("zipped-1.0.dist-info/entry_points.txt", "[iceagent]\nzipped = zipped_mod\n")
        sys.path.append(str(archive))
    elif layout == "upper-case suffix":
        _dist(one, "Omega-1.0.DIST-INFO", "[iceagent]\nomega = omega_mod\n")
    elif layout == "no name":
        _dist(one, "-1.0.dist-info", "[iceagent]\nnameless = nameless_mod\n")
    elif layout == "line without =":
        _dist(one, "broken-1.0.dist-info", "[other]\nno equals sign here\n")
    elif layout == "egg on sys.path":
        egg = one.parent / "old-1.0.egg"
        _dist(egg, "EGG-INFO", "[iceagent]\nold = old_mod\n")
        sys.path.append(str(egg))
    else:

        class Finder:
            @staticmethod
            def find_distributions(context: object) -> list[object]:
                return []

        monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder()])
    assert _scan_entry_points("iceagent") is None
    if layout == "line without =":  # importlib.metadata's own error, as before the scan existed
        with pytest.raises(Exception) as stdlib:
            _stdlib("iceagent")
        with pytest.raises(stdlib.type):
            _entry_points("iceagent")
        return
    assert [(name, value) for name, value, _ in _entry_points("iceagent")] == _stdlib("iceagent")
    if layout == "zip on sys.path":
        assert ("zipped", "zipped_mod") in _stdlib("iceagent")
        # importlib.metadata keeps the zip open in its path cache (FastPath): close it, the leak check counts files
        cached = importlib.metadata.FastPath(str(archive))  # type: ignore[attr-defined]
        getattr(cached.joinpath, "__self__", cached).root.close()
        importlib.metadata.FastPath.__new__.cache_clear()  # type: ignore[attr-defined]


def test_an_entry_point_value_loads_as_importlib_metadata_loads_it() -> None:
    assert _load("os.path:join") is os.path.join
    assert _load("os.path") is os.path
    assert _load("os.path:join [extra]") is os.path.join
    assert _load("os:path.join") is os.path.join
    with pytest.raises(ValueError, match="not an entry point reference"):
        _load("not a reference!")
    with pytest.raises(ModuleNotFoundError):
        _load("no_such_module_anywhere:thing")
