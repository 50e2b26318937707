"""`python -m iceagent.cli`: the `iceagent` command line, as the console script runs it."""

import sys

from iceagent.cli import main

if __name__ == "__main__":
    sys.exit(main())
