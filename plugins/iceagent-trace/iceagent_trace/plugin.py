"""The entry point (group "iceagent", name "trace"): tracing switched on by the ICEAGENT_TRACE variable.

With ICEAGENT_TRACE unset (or empty) the entry point is an object with no hooks, so installing the
package changes nothing. With ICEAGENT_TRACE=path every agent of the process is traced to `path`
(appended to, so several processes may share one file; `{pid}` in the path is replaced by the
process id). The variable is read when a PluginManager loads the entry points. Off, the entry point
loads nothing beyond this module (the tracer is imported when a path is set).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the tracer (and json, html) load only when tracing is on
    from .tracer import Tracer

__all__ = ["ENV_VAR", "Disabled", "from_env"]

#: The environment variable naming the trace file.
ENV_VAR = "ICEAGENT_TRACE"

_tracers: dict[str, Tracer] = {}


class Disabled:
    """What the entry point loads when tracing is off: a plugin without hooks."""

    def __repr__(self) -> str:
        return f"<iceagent_trace: off ({ENV_VAR} is not set)>"


def from_env() -> Tracer | Disabled:
    """The process's Tracer for $ICEAGENT_TRACE (one per path), or a Disabled placeholder."""
    path = os.environ.get(ENV_VAR, "").strip()
    if not path:
        return Disabled()
    path = path.replace("{pid}", str(os.getpid()))
    tracer = _tracers.get(path)
    if tracer is None:
        from .tracer import Tracer

        tracer = _tracers[path] = Tracer(path, append=True)
    return tracer


def __getattr__(name: str) -> Any:
    # `plugin` is computed on each access, so every PluginManager sees the current environment
    if name == "plugin":
        return from_env()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
