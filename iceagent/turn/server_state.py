"""Deprecated path: the sans-IO TURN server core moved to `iceagent.turn.server.state`.

Kept for one release because docs named it (docs/turn-server.md); import from the new path.
"""

from .server.state import *  # noqa: F403
from .server.state import __all__ as __all__
