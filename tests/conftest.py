import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import leakcheck


def pytest_configure(config: pytest.Config) -> None:
    # every test fails when it leaves descriptors, child processes or Trio tasks behind (leakcheck.py)
    config.pluginmanager.register(leakcheck, "leakcheck")
