"""iceagent-trace: trace every ICE check, response and state change, and draw it as a sequence diagram.

- `Tracer(path)`: an observer plugin writing JSON lines; register it on a PluginManager.
- The "trace" entry point turns it on for every agent when ICEAGENT_TRACE=path is set.
- `render_html(records)` / `python -m iceagent_trace render trace.jsonl -o timeline.html`:
  a self-contained HTML page with an inline SVG timeline of the agents' checks.
"""

from .render import TraceError, load_trace, render_html, render_svg
from .tracer import Tracer, pair_label

__version__ = "0.1.0"

__all__ = ["TraceError", "Tracer", "__version__", "load_trace", "pair_label", "render_html", "render_svg"]
