"""The embedded TURN server (RFC 8656): `open_turn_server`, `serve_turn`, `bind_turn_server` and their config.

`io.py` is the Trio side (listeners, relay sockets, the expiry timer; `binding.py` opens the sockets), `state.py`
the sans-IO protocol core (with `auth.py`, `policy.py`, `channels.py`, `timers.py`, `responses.py`), `types.py`
the values both share.
"""

from .io import *  # noqa: F403  (exactly what `iceagent.turn.server` exported as a module)
from .io import __all__ as __all__
