"""Plain-text and rich renderings of an agent's candidate-pair matrix (for the CLI, demo and REPL)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _short(sdp: str) -> str:
    """`candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host ...` -> `host udp 10.0.0.1:5000`."""
    parts = sdp.split()
    if len(parts) < 8:
        return sdp
    host = parts[4]
    if ":" in host:
        host = f"[{host}]"
    return f"{parts[7]} {parts[2].lower()} {host}:{parts[5]}"


def pair_table(stats: dict[str, Any], title: str | None = None) -> Table:
    """A rich Table of every pair in `agent.stats()`: local, remote, state, nominated, RTT, counters."""
    selected = stats.get("selected_pair") or {}
    table = Table(title=title, title_justify="left")
    for col in ("", "local", "remote", "state", "nom", "rtt ms", "req tx", "resp rx", "bytes tx", "bytes rx"):
        table.add_column(col, justify="right" if col.endswith(("ms", "tx", "rx")) else "left")
    for p in stats["pairs"]:
        mark = "*" if p["local"] == selected.get("local") and p["remote"] == selected.get("remote") else ""
        rtt = "" if p["rtt"] is None else f"{p['rtt'] * 1000:.2f}"
        table.add_row(
            mark, _short(p["local"]), _short(p["remote"]), p["state"], "yes" if p["nominated"] else "",
            rtt, str(p["requests_sent"]), str(p["responses_received"]), str(p["bytes_sent"]),
            str(p["bytes_received"]),
        )
    return table


def print_pairs(stats: dict[str, Any], title: str | None = None, console: Console | None = None) -> None:
    """Print the pair matrix; plain text without escape codes (and wide enough) when not on a terminal."""
    if console is None:
        console = Console() if Console().is_terminal else Console(width=160, no_color=True, highlight=False)
    console.print(pair_table(stats, title))
