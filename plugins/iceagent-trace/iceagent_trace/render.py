"""Render a trace as a sequence diagram: one lane per agent, time going down, an arrow per STUN message.

Rows are events in time order (not a linear time scale: checks come in bursts), with the time since
the first event in the left column and a gap marker where nothing happened for a while. A message
sent by one traced agent and received by another is drawn from the sender's row to the receiver's
row; one that nobody received ends in a cross (lost, or filtered by a NAT). State changes, gathered
candidates, succeeded/failed pairs and the selected pair are marked on their agent's lane. Below the
diagram, a table per agent lists its pairs by priority and says what became of each one.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._timeline import Lane, PairSummary, Record, Timeline, _fate
from ._timeline import analyse as analyse
from ._timeline import summarize as summarize

__all__ = ["TraceError", "load_trace", "render_html", "render_svg"]

ROW = 20  # px per row
GUTTER = 96  # time column
SIDE = 200  # the least room for marker text outside the outer lanes (grows with the longest marker)
LANE_GAP = 640  # between lanes
TOP = 70  # lane headers
CHAR = 6.7  # px per character of 11 px monospace (for sizing boxes)

STATE_COLORS = {
    "new": "#888888",
    "checking": "#d98c00",
    "connected": "#2e8b57",
    "completed": "#006400",
    "disconnected": "#b8860b",
    "failed": "#c0392b",
    "closed": "#666666",
}
KIND_COLORS = {"request": "#1f5fbf", "success": "#2e8b57", "error": "#c0392b", "indication": "#888888"}
MARKER_COLORS = {**KIND_COLORS, "nominate": "#7a4cc2"}  # a USE-CANDIDATE request


class TraceError(ValueError):
    """The trace file is not a JSON-lines iceagent trace."""


def load_trace(source: str | os.PathLike[str] | Iterable[str]) -> list[Record]:
    """Read a JSON-lines trace (a path, or an iterable of lines); blank lines are skipped."""
    if isinstance(source, (str, os.PathLike)):
        name = str(source)
        try:
            lines: Iterable[str] = Path(source).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise TraceError(f"cannot read {name}: {exc.strerror or exc}") from exc
    else:
        name, lines = "<trace>", source
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{name}:{i}: not JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or "event" not in record or "agent" not in record:
            raise TraceError(f"{name}:{i}: not an iceagent trace record (no 'event'/'agent')")
        records.append(record)
    return records


# ---- drawing ----


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt_time(seconds: float) -> str:
    if abs(seconds) < 1:
        return f"+{seconds * 1000:.1f} ms"
    return f"+{seconds:.3f} s"


def _check_label(rec: Record) -> str:
    kind = rec.get("kind")
    if kind == "request":
        label = str(rec.get("pair") or f"{rec.get('local')} -> {rec.get('remote')}")
        if rec.get("use_candidate"):
            label += "  USE-CANDIDATE"
        if rec.get("retransmit"):
            label += "  (retransmit)"
        return label
    if kind == "success":
        rtt = rec.get("rtt")
        return "success" + (
            f"  rtt {float(rtt) * 1000:.1f} ms" if rtt is not None and rec.get("direction") == "receive" else ""
        )
    if kind == "error":
        return f"error {rec.get('error')}"
    return str(kind)


def _tooltip(rec: Record) -> str:
    keys = ("agent", "event", "direction", "kind", "tid", "pair", "local", "remote", "role", "generation", "t")
    return "\n".join(f"{k}: {rec[k]}" for k in keys if rec.get(k) not in (None, False, ""))


def _marker(rec: Record) -> tuple[str, str]:
    """(text, colour) of a lane marker."""
    event = rec["event"]
    if event == "state":
        new = str(rec.get("new"))
        return new.upper(), STATE_COLORS.get(new, "#333333")
    if event == "selected":
        if rec.get("pair") is None:
            return "no selected pair", "#c0392b"
        return f"selected {rec['pair']}" + (" (nominated)" if rec.get("nominated") else ""), "#7a4cc2"
    if event == "candidate":
        return f"gathered {rec.get('type')} {rec.get('address')}", "#666666"
    if event == "pair":
        new = str(rec.get("new"))
        flags = "".join(f" {f}" for f in ("valid", "nominated") if rec.get(f))
        return f"{new}{flags}: {rec.get('pair')}", "#2e8b57" if new == "succeeded" else "#c0392b"
    if event == "generation":
        return f"ICE restart: generation {rec.get('generation')}", "#d98c00"
    return event, "#333333"


def render_svg(records: list[Record], *, max_rows: int = 5000) -> str:
    """The sequence diagram of a trace as a standalone SVG document."""
    tl = analyse(records, max_rows=max_rows)
    lanes = list(tl.lanes)
    peer: Lane | None = None
    if tl.virtual_peer:
        peer = Lane((None, "?"), len(lanes), "peer (not in this trace)")
        lanes.append(peer)
    longest = max((len(_marker(r.record)[0]) for r in tl.rows if r.record and r.record["event"] != "check"), default=0)
    side = max(SIDE, longest * CHAR + 40)
    for lane in lanes:
        lane.x = GUTTER + side + lane.index * LANE_GAP
    width = GUTTER + 2 * side + max(len(lanes) - 1, 0) * LANE_GAP
    height = TOP + (len(tl.rows) + 2) * ROW

    def y(i: int) -> float:
        return TOP + (i + 1) * ROW

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="ui-monospace, Menlo, Consolas, monospace" font-size="11">',
        "<defs>",
        *(
            f'<marker id="arrow-{kind}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" markerHeight="9" '
            f'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>'
            for kind, color in MARKER_COLORS.items()
        ),
        "</defs>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    # lanes: header boxes and lifelines
    for lane in lanes:
        role = " / ".join(lane.roles) if lane.roles else ("" if lane is peer else "role unknown")
        w = max(len(lane.title), len(role)) * CHAR + 24
        dash = ' stroke-dasharray="4 4"' if lane is peer else ""
        out.append(
            f'<line x1="{lane.x}" y1="{TOP - 8}" x2="{lane.x}" y2="{height - 8}" stroke="#bbbbbb" '
            f'stroke-width="2"{dash}/>'
        )
        out.append(
            f'<rect x="{lane.x - w / 2:.1f}" y="8" width="{w:.1f}" height="46" rx="6" fill="#f3f5fa" stroke="#4a5a7a"/>'
        )
        out.append(
            f'<text x="{lane.x}" y="28" text-anchor="middle" font-weight="bold" font-size="13">'
            f"{_esc(lane.title)}</text>"
        )
        out.append(f'<text x="{lane.x}" y="45" text-anchor="middle" fill="#4a5a7a">{_esc(role)}</text>')
    # rows: time column, pauses and lane markers
    left = lanes[0] if lanes else None
    for i, row in enumerate(tl.rows):
        yy = y(i)
        if row.record is None:
            out.append(
                f'<line x1="{GUTTER}" y1="{yy - 4}" x2="{width - 8}" y2="{yy - 4}" stroke="#dddddd" '
                f'stroke-dasharray="6 4"/>'
            )
            out.append(f'<text x="{GUTTER + 8}" y="{yy}" fill="#999999">... {row.gap:.3g} s later ...</text>')
            continue
        out.append(f'<text x="8" y="{yy}" fill="#777777">{_esc(_fmt_time(row.time - tl.start))}</text>')
        rec = row.record
        if rec["event"] == "check" or row.lane is None:
            continue
        text, color = _marker(rec)
        x = row.lane.x
        outward = -1 if row.lane is left and len(lanes) > 1 else 1
        anchor = "end" if outward < 0 else "start"
        out.append(f"<g><title>{_esc(_tooltip(rec))}</title>")
        if rec["event"] == "state":
            w = len(text) * CHAR + 12
            bx = x - w - 8 if outward < 0 else x + 8
            out.append(f'<circle cx="{x}" cy="{yy - 4}" r="5" fill="{color}"/>')
            out.append(f'<rect x="{bx:.1f}" y="{yy - 13}" width="{w:.1f}" height="16" rx="8" fill="{color}"/>')
            out.append(
                f'<text x="{bx + w / 2:.1f}" y="{yy - 1}" text-anchor="middle" fill="#ffffff" '
                f'font-weight="bold">{_esc(text)}</text>'
            )
        else:
            weight = ' font-weight="bold"' if rec["event"] == "selected" else ""
            out.append(f'<circle cx="{x}" cy="{yy - 4}" r="3" fill="{color}"/>')
            out.append(
                f'<text x="{x + 8 * outward}" y="{yy}" text-anchor="{anchor}" fill="{color}"{weight}>'
                f"{_esc(text)}</text>"
            )
        out.append("</g>")
    # arrows
    for arrow in tl.arrows:
        rec = arrow.record
        kind = str(rec.get("kind"))
        marker_kind = kind if kind in KIND_COLORS else "indication"
        if rec.get("use_candidate") and kind == "request":
            marker_kind = "nominate"
        color = MARKER_COLORS[marker_kind]
        dashed = ""
        lost = False
        if arrow.send is not None and arrow.recv is not None:
            assert arrow.src is not None and arrow.dst is not None
            x1, y1, x2, y2 = arrow.src.x, y(arrow.send) - 4, arrow.dst.x, y(arrow.recv) - 4
        elif arrow.send is not None:  # sent, never seen again
            assert arrow.src is not None
            target = peer or arrow.dst or next((ln for ln in lanes if ln is not arrow.src), None)
            x1 = arrow.src.x
            y1 = y2 = y(arrow.send) - 4
            if target is peer and peer is not None:
                x2 = peer.x
                dashed = ' stroke-dasharray="5 3"'
            else:
                direction = 1 if target is None or target.x > x1 else -1
                x2 = x1 + direction * LANE_GAP * 0.45
                lost = True
        else:  # received from someone not traced (or whose send is missing)
            assert arrow.recv is not None and arrow.dst is not None
            source = peer or arrow.src or next((ln for ln in lanes if ln is not arrow.dst), None)
            x2 = arrow.dst.x
            y1 = y2 = y(arrow.recv) - 4
            if source is not None:
                x1 = source.x if source is peer else (x2 + (source.x - x2) * 0.45)
            else:
                x1 = x2 + LANE_GAP * 0.45
            dashed = ' stroke-dasharray="5 3"'
        width_attr = "2.2" if rec.get("use_candidate") else "1.3"
        end = "" if lost else f' marker-end="url(#arrow-{marker_kind})"'
        label = _check_label(arrow.received if kind == "success" and arrow.received else rec)
        tip = _tooltip(rec) + (f"\n--- received\n{_tooltip(arrow.received)}" if arrow.received else "")
        out.append(f"<g><title>{_esc(tip)}</title>")
        if lost:
            label += "  (lost)"
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2 - 5
        w = len(label) * CHAR + 8
        if w > abs(x2 - x1) - 16:  # wider than the arrow: start it next to the sender's lane
            mx = x1 + (w / 2 + 8) * (1 if x2 >= x1 else -1)
        out.append(
            f'<rect x="{mx - w / 2:.1f}" y="{my - 9:.1f}" width="{w:.1f}" height="12" fill="#ffffff" '
            f'fill-opacity="0.85"/>'
        )
        out.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
            f'stroke-width="{width_attr}"{dashed}{end}/>'
        )
        if lost:
            out.append(
                f'<path d="M{x2 - 5:.1f},{y2 - 5:.1f} L{x2 + 5:.1f},{y2 + 5:.1f} M{x2 - 5:.1f},{y2 + 5:.1f} '
                f'L{x2 + 5:.1f},{y2 - 5:.1f}" stroke="{color}" stroke-width="2"/>'
            )
        out.append(f'<text x="{mx:.1f}" y="{my:.1f}" text-anchor="middle" fill="{color}">{_esc(label)}</text>')
        out.append("</g>")
    if len(tl.rows) >= max_rows:
        out.append(f'<text x="8" y="{height - 6}" fill="#c0392b">trace cut at {max_rows} rows</text>')
    out.append("</svg>")
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
.meta { color: #666; margin-top: 0; }
.diagram { overflow-x: auto; border: 1px solid #ddd; margin: 1em 0; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f5fa; }
td.num { text-align: right; }
tr.selected td { background: #efe8fb; font-weight: bold; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; }
.legend span { margin-right: 1.2em; }
"""


def _summary_html(records: list[Record], tl: Timeline) -> str:
    summaries = summarize(records)
    out: list[str] = []
    for lane in tl.lanes:
        info = summaries.get(lane.key)
        if info is None:
            continue
        pairs: list[PairSummary] = sorted(info["pairs"].values(), key=lambda p: -(p.priority or 0))
        selected = info["selected"]
        role = " / ".join(lane.roles) or "role unknown"
        out.append(f"<h2>{_esc(lane.title)} <small>({_esc(role)})</small></h2>")
        connected = next((s for s in info["states"] if s[2] in ("connected", "completed")), None)
        final = str(info.get("final") or info["state"])
        facts = [f"final state <b>{_esc(final.upper())}</b>" + (" (then closed)" if info["state"] == "closed" else "")]
        if connected is not None:
            t = connected[0] if tl.clock == "trio" else connected[1]
            if isinstance(t, (int, float)):
                facts.append(f"connected at {_esc(_fmt_time(float(t) - tl.start))}")
        facts.append(f"{len(info['candidates'])} local candidate(s), {len(pairs)} pair(s)")
        if selected:
            nominated = info["nominated"] or (selected in info["pairs"] and info["pairs"][selected].nominated)
            facts.append(f"selected <code>{_esc(selected)}</code>" + (" (nominated)" if nominated else ""))
        out.append(f"<p>{'; '.join(facts)}.</p>")
        if not pairs:
            continue
        out.append(
            "<table><tr><th>pair</th><th>priority</th><th>state</th><th>requests</th>"
            "<th>retransmits</th><th>responses</th><th>rtt</th><th>what became of it</th></tr>"
        )
        for p in pairs:
            cls = ' class="selected"' if p.label == selected else ""
            rtt = "" if p.rtt is None else f"{p.rtt * 1000:.1f} ms"
            out.append(
                f'<tr{cls}><td><code>{_esc(p.label)}</code></td><td class="num">{_esc(p.priority or "")}</td>'
                f"<td>{_esc(p.state)}{' valid' if p.valid and p.state != 'valid' else ''}"
                f"{' nominated' if p.nominated else ''}</td>"
                f'<td class="num">{p.requests}</td><td class="num">{p.retransmits}</td>'
                f'<td class="num">{p.responses}</td><td class="num">{rtt}</td>'
                f"<td>{_esc(_fate(p, selected, final))}</td></tr>"
            )
        out.append("</table>")
    return "\n".join(out)


def render_html(records: list[Record], *, title: str = "iceagent trace", max_rows: int = 5000) -> str:
    """A self-contained HTML page (no scripts, no external files): the diagram and per-agent pair tables."""
    tl = analyse(records, max_rows=max_rows)
    checks = sum(1 for r in records if r["event"] == "check")
    clock = (
        "Trio clock (trio.current_time())" if tl.clock == "trio" else "wall clock (several processes, or no Trio time)"
    )
    legend = "".join(
        f'<span style="color:{c}">&#9472;&#9654; {k}</span>'
        for k, c in (*KIND_COLORS.items(), ("USE-CANDIDATE request", "#7a4cc2"))
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8"/>',
            f"<title>{_esc(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>{_esc(title)}</h1>",
            f'<p class="meta">{len(records)} events ({checks} STUN check messages) from {len(tl.lanes)} agent(s); '
            f"times from the {_esc(clock)}, relative to the first event. Hover an arrow or marker for details. "
            f"A cross marks a message nobody in the trace received.</p>",
            f'<p class="legend">{legend}</p>',
            f'<div class="diagram">{render_svg(records, max_rows=max_rows)}</div>',
            _summary_html(records, tl),
            "</body>",
            "</html>",
            "",
        ]
    )
