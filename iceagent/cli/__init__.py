"""The `iceagent` command line: one argparse subcommand per job, each in its own module of this package.

To add a command, write `register(subparsers)` in an `iceagent/cli/<name>.py` module (use `add_command`
to create its parser with a `run(args) -> int` function) and list the module in `COMMANDS`. A command
raises `UsageError` for bad input (exit 2, argparse style) and lets `IceError`/`OSError` out for
failures (exit 1, one line on stderr); `main` turns both into a message, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from .._groups import sole_exception
from ..errors import IceError

__all__ = ["COMMANDS", "UsageError", "add_command", "build_parser", "main"]

COMMANDS: list[str] = [
    "iceagent.cli.demo",  # iceagent demo
    "iceagent.cli.gather",  # iceagent gather
    "iceagent.cli.peer",  # iceagent offer, iceagent answer
    "iceagent.cli.stun",  # iceagent stun
    "iceagent.cli.nat",  # iceagent nat
    "iceagent.cli.serve",  # iceagent serve
    "iceagent.cli.repl",  # iceagent repl (the console of python -m iceagent)
]
"""Modules that each define `register(subparsers)`, in the order `iceagent --help` lists them."""

Run = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad command-line input: printed after the command's usage line, exit status 2."""


def add_command(subparsers: Any, name: str, run: Run, **kwargs: Any) -> argparse.ArgumentParser:
    """Add a subcommand whose `run(args) -> int` `main` calls (for `register` functions)."""
    sub: argparse.ArgumentParser = subparsers.add_parser(name, **kwargs)
    sub.set_defaults(run=run, subparser=sub)
    # -v after the command too (`iceagent offer -v`); SUPPRESS keeps a top-level -v when it is not given
    sub.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="log more (-vv: debug)")
    return sub


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand of `COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="iceagent",
        description="An ICE agent (RFC 8445) on Trio, with an embedded STUN server and tools.",
    )
    parser.add_argument("--version", action="version", version=f"iceagent {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more on stderr (-vv: debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `iceagent` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help and --version (0), or argparse's usage error (2)
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    run: Run | None = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    subparser: argparse.ArgumentParser = args.subparser
    try:
        return run(args)
    except BaseException as e:
        error = _unwrap(e)
        if isinstance(error, UsageError):
            subparser.print_usage(sys.stderr)
            print(f"{subparser.prog}: error: {error}", file=sys.stderr)
            return 2
        if isinstance(error, (IceError, OSError)):
            print(f"{subparser.prog}: error: {_one_line(error)}", file=sys.stderr)
            return 1
        if isinstance(error, KeyboardInterrupt):
            print(f"{subparser.prog}: interrupted", file=sys.stderr)
            return 130
        raise


def _unwrap(error: BaseException) -> BaseException:
    """The error inside a Trio nursery's ExceptionGroup, when there is just one."""
    return sole_exception(error) or error


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror if error.filename is None else f"{error.strerror}: {error.filename}"
    return " ".join(text.split())
