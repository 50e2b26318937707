"""iceagent-trace: trace every ICE check, response and state change, and draw it as a sequence diagram.

- `Tracer(path)`: an observer plugin writing JSON lines; register it on a PluginManager.
- The "trace" entry point turns it on for every agent when ICEAGENT_TRACE=path is set.
- `render_html(records)` / `python -m iceagent_trace render trace.jsonl -o timeline.html`:
  a self-contained HTML page with an inline SVG timeline of the agents' checks.

The names load their modules on first use (PEP 562): the entry point (`iceagent_trace.plugin`) is
loaded by every process that opens an agent, tracing on or off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from iceagent._lazy_names import lazy_names

if TYPE_CHECKING:
    from .render import TraceError, load_trace, render_html, render_svg
    from .tracer import Tracer, pair_label

__version__ = "0.1.0"

#: Each public name and the submodule that defines it, imported on first access (PEP 562).
_LAZY = {
    "TraceError": "render",
    "load_trace": "render",
    "render_html": "render",
    "render_svg": "render",
    "Tracer": "tracer",
    "pair_label": "tracer",
}
#: The submodules the package imported when it loaded everything at once: still reachable as attributes.
_SUBMODULES = ("render", "tracer")

__all__ = ["TraceError", "Tracer", "__version__", "load_trace", "pair_label", "render_html", "render_svg"]

if not TYPE_CHECKING:  # mypy sees the imports above, so a misspelt name stays an error for it
    __getattr__, __dir__ = lazy_names(globals(), _LAZY, _SUBMODULES)
