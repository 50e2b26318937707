"""docs/cli.md documents every `iceagent` command and every one of its options; shared options agree."""

from __future__ import annotations

import argparse
from pathlib import Path

from iceagent.cli import build_parser

DOC = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_command_and_option_is_documented() -> None:
    missing = []
    for name, parser in _commands().items():
        if f"iceagent {name}" not in DOC:
            missing.append(f"iceagent {name}")
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option not in ("--help", "--verbose") and f"`{option}" not in DOC:
                    missing.append(f"iceagent {name} {option}")
            if not action.option_strings and action.dest not in ("help",) and f"`{action.metavar}`" not in DOC:
                missing.append(f"iceagent {name} {action.metavar}")
    assert not missing, f"add these to docs/cli.md: {missing}"


def test_gathering_commands_share_the_agent_options() -> None:
    commands = _commands()
    shared = (
        "--stun",
        "--turn",
        "--username",
        "--credential",
        "--relay-only",
        "--address",
        "--interface",
        "--mdns",
        "--tcp",
        "--timeout",
        "--json",
    )
    for name in ("gather", "offer", "answer"):
        options = {o for a in commands[name]._actions for o in a.option_strings}
        assert set(shared) <= options, (name, set(shared) - options)
    for name, parser in commands.items():
        options = {o for a in parser._actions for o in a.option_strings}
        assert "-v" in options, name  # `iceagent COMMAND -v` works everywhere
    assert "without either, every interface is used" in DOC.lower().replace("**", "")
