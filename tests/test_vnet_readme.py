"""The examples in plugins/iceagent-vnet/README.md run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).parent.parent / "plugins" / "iceagent-vnet" / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_scenario_example(capsys: pytest.CaptureFixture[str]) -> None:
    exec(python_blocks()[0], {})
    out = capsys.readouterr().out
    assert "eim-apdf" in out and "apdm-apdf" in out and "rtt 80 ms" in out


async def test_topology_example(autojump_clock: object, capsys: pytest.CaptureFixture[str]) -> None:
    code = python_blocks()[1]
    assert "trio.run(main" in code
    namespace: dict[str, Any] = {}
    exec(code.replace("trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))", ""), namespace)
    await namespace["main"]()
    out = capsys.readouterr().out
    assert "('192.168.1.2', 5000)" in out and "203.0.113.1" in out
    assert "192.168.7.2 192.168.1.3" in out
