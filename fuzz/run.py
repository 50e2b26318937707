"""The atheris driver: `python -m fuzz.run TARGET [options] [libFuzzer flags]`, or `all` for every target.

    python -m fuzz.run stun -max_total_time=600      # one target for 10 minutes
    python -m fuzz.run all -max_total_time=12        # every target in turn (CI), each in its own process

Seeds are `tests/corpus/TARGET/` (without its `pending-*` inputs, known findings not fixed yet); new
inputs go to `WORK/corpus`, crashes to `WORK/` (WORK: `--work`, default `$TMPDIR/iceagent-fuzz/TARGET`).
An input that raises anything but the decoder's documented error is a crash; so is one where a step
takes more than `--budget-ms` of CPU (`$FUZZ_BUDGET_MS`; default 5 ms) without the fuzzer's coverage
instrumentation (a step over budget under the fuzzer is timed again in an uninstrumented worker,
`fuzz.timing`).
Exit status 0 when nothing was found.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"
#: Packages whose code coverage guides the fuzzer (dnslib: the mDNS parser is dnslib's).
INSTRUMENTED = ["iceagent", "dnslib"]
_DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)")


def _arguments(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="a target name (see fuzz/targets.py), or 'all'")
    parser.add_argument(
        "--budget-ms",
        type=float,
        default=float(os.environ["FUZZ_BUDGET_MS"]) if os.environ.get("FUZZ_BUDGET_MS") else None,
        help="CPU time one step of an input may take uninstrumented, in ms (default 5)",
    )
    parser.add_argument("--work", type=Path, help="where the grown corpus and crashes go (with all: WORK/TARGET)")
    parser.add_argument("--skip-check", action="append", default=[], help="switch off a known finding's check")
    return parser.parse_known_args(argv)


def _work_dir(args: argparse.Namespace, target: str) -> Path:
    work: Path = args.work or Path(tempfile.gettempdir()) / "iceagent-fuzz" / target
    work.mkdir(parents=True, exist_ok=True)
    return work


def _seeds(target: str, work: Path) -> Path:
    """A copy of the target's seed corpus without the `pending-*` inputs (they would stop the run at once)."""
    seeds = work / "seeds"
    shutil.rmtree(seeds, ignore_errors=True)
    seeds.mkdir()
    source = CORPUS / target
    if source.is_dir():
        for path in source.iterdir():
            if path.is_file() and not path.name.startswith("pending-"):
                shutil.copyfile(path, seeds / path.name)
    return seeds


def fuzz_one(target: str, args: argparse.Namespace, libfuzzer: list[str]) -> None:
    """Run one target under atheris in this process (atheris ends the process when done)."""
    import atheris  # type: ignore[import-untyped]

    with atheris.instrument_imports(include=INSTRUMENTED):
        from fuzz import targets, turn_server
        from fuzz.support import Budget, SlowInput
        from fuzz.timing import Clock

    if target not in targets.TARGETS:
        raise SystemExit(f"unknown target {target!r}; targets: {', '.join(targets.TARGETS)}")
    for check in args.skip_check:
        turn_server.CHECKS[check] = False
    function = targets.TARGETS[target]
    budget = Budget(args.budget_ms or targets.BUDGET_MS[target])
    clock = Clock(target, args.skip_check)

    runs = 0

    def test_one_input(data: bytes) -> None:
        # The cyclic garbage collector runs between inputs, not inside one: a full collection over the
        # fuzzer's heap is not the input's cost (and would make a step slow at random).
        nonlocal runs
        runs += 1
        if runs % 256 == 0:
            gc.collect()
        gc.disable()
        try:
            function(data, budget)
        except SlowInput as slow:
            # Instrumented code is 3 to 40 times slower: time the input again without instrumentation.
            plain = clock.worst_step(data)
            if plain > budget.limit:
                raise SlowInput(f"{slow}; uninstrumented its slowest step takes {plain * 1000:.1f} ms") from None
        finally:
            gc.enable()

    work = _work_dir(args, target)
    corpus = work / "corpus"
    corpus.mkdir(exist_ok=True)
    flags = {flag.split("=")[0] for flag in libfuzzer}
    defaults = {
        "-max_len": f"-max_len={targets.MAX_LEN[target]}",
        "-timeout": "-timeout=10",
        "-artifact_prefix": f"-artifact_prefix={work}/",
        "-print_final_stats": "-print_final_stats=1",
    }
    extra = [value for flag, value in defaults.items() if flag not in flags]
    has_corpus = any(not a.startswith("-") for a in libfuzzer)
    dirs = [] if has_corpus else [str(corpus), str(_seeds(target, work))]
    atheris.Setup([sys.argv[0], *extra, *libfuzzer, *dirs], test_one_input)
    gc.collect()
    gc.freeze()  # what exists now (modules, atheris' tables) is never garbage: keep it out of collections
    atheris.Fuzz()


def fuzz_all(args: argparse.Namespace, libfuzzer: list[str], names: Sequence[str]) -> int:
    """Each target in its own process, one after the other; a summary line each, the log of any finding."""
    failed = []
    for name in names:
        work = args.work / name if args.work else _work_dir(args, name)
        work.mkdir(parents=True, exist_ok=True)
        log = work / "run.log"
        command = [sys.executable, "-m", "fuzz.run", name, "--work", str(work)]
        command += [f"--budget-ms={args.budget_ms}"] if args.budget_ms else []
        command += [f"--skip-check={c}" for c in args.skip_check] + libfuzzer
        start = time.monotonic()
        with log.open("w") as out:
            status = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        text = log.read_text(errors="replace")
        done = _DONE.search(text)
        stats = (
            f"{done[1]} runs, cov {done[2]}, ft {done[3]}, corpus {done[4]}" if done else "no final stats"
        )
        print(f"fuzz {name}: {'ok' if status == 0 else f'FINDING (exit {status})'}: {stats}, "
              f"{time.monotonic() - start:.0f} s", flush=True)
        if status != 0:
            failed.append(name)
            print("\n".join(text.splitlines()[-60:]), flush=True)
            print(f"(whole log: {log}; the input is in {work}/)", flush=True)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args, libfuzzer = _arguments(sys.argv[1:] if argv is None else argv)
    if args.target == "all":
        from fuzz.targets import TARGETS

        return fuzz_all(args, libfuzzer, list(TARGETS))
    fuzz_one(args.target, args, libfuzzer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
