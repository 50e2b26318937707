"""`python -m iceagent`: the interactive Trio REPL with iceagent and helpers preloaded (see cli/repl.py)."""

import sys

from iceagent.cli.repl import main

if __name__ == "__main__":
    sys.exit(main())
