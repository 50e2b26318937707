"""Replay the fuzz corpus through the fuzz targets, without atheris and without a time budget.

`tests/corpus/TARGET/` holds `seed-*` inputs (real messages, lines, packets; `python -m fuzz.seeds`),
`regression-*` inputs (findings of the fuzzer, fixed) and `pending-*` inputs (findings whose fix lands
with another part of issue 12; listed in PENDING below). Each target lets through only its decoder's
documented error and checks its invariants (fuzz/targets.py); anything else fails the test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.targets import TARGETS  # noqa: E402

CORPUS = ROOT / "tests" / "corpus"

#: Known findings not fixed on this branch: file -> (kind, who fixes it and what it is). A "raises" input
#: is a strict xfail: once the fix is merged it passes, so the xfail fails: rename the file to
#: `regression-*` and drop its line here. A "slow" input (over the fuzzer's CPU budget; tests never time)
#: replays like any other here and is kept out of the fuzzer's seeds (fuzz/run.py) until renamed.
PENDING: dict[str, tuple[str, str]] = {}


def _inputs() -> list[object]:
    cases: list[object] = []
    for folder in sorted(CORPUS.iterdir()):
        for path in sorted(folder.iterdir()):
            key = f"{folder.name}/{path.name}"
            marks = []
            kind, reason = PENDING.get(key, ("raises", "pending finding"))
            if path.name.startswith("pending-") and kind == "raises":
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            cases.append(pytest.param(folder.name, path, id=key, marks=marks))
    return cases


@pytest.mark.parametrize(("target", "path"), _inputs())
def test_corpus_input(target: str, path: Path) -> None:
    TARGETS[target](path.read_bytes(), None)


def test_every_target_has_seeds_and_every_folder_a_target() -> None:
    folders = {p.name for p in CORPUS.iterdir() if p.is_dir()}
    assert folders == set(TARGETS)
    for name in TARGETS:
        assert any(p.name.startswith("seed-") for p in (CORPUS / name).iterdir()), name


def test_pending_inputs_are_listed_with_a_reason() -> None:
    pending = {f"{p.parent.name}/{p.name}" for p in CORPUS.glob("*/pending-*")}
    assert pending == set(PENDING)
