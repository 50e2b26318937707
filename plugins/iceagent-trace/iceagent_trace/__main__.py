"""`python -m iceagent_trace render trace.jsonl -o timeline.html`: draw a trace as a sequence diagram."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .render import TraceError, load_trace, render_html, render_svg, summarize


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m iceagent_trace", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="write a self-contained HTML page (or SVG) of a trace")
    render.add_argument("trace", type=Path, help="a JSON-lines trace written by iceagent_trace.Tracer")
    render.add_argument("-o", "--output", type=Path, help="output file (.html or .svg); default: TRACE.html")
    render.add_argument("--title", help="page title (default: the trace's file name)")
    render.add_argument("--max-rows", type=int, default=5000, help="cut the diagram after this many rows")
    summary = commands.add_parser("summary", help="print each agent's pairs and what became of them")
    summary.add_argument("trace", type=Path)
    args = parser.parse_args(argv)
    try:
        records = load_trace(args.trace)
    except TraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command == "summary":
        for (pid, agent), info in summarize(records).items():
            final = str(info.get("final") or info["state"]).upper()
            print(f"agent {agent} (pid {pid}): {final}, selected {info['selected']}")
            for p in sorted(info["pairs"].values(), key=lambda p: -(p.priority or 0)):
                print(f"  {p.state:<12} {p.label}  requests={p.requests} responses={p.responses}")
        return 0
    output: Path = args.output or args.trace.with_suffix(".html")
    if output.suffix == ".svg":
        text = '<?xml version="1.0" encoding="utf-8"?>\n' + render_svg(records, max_rows=args.max_rows)
    else:
        text = render_html(records, title=args.title or f"iceagent trace: {args.trace.name}", max_rows=args.max_rows)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output} ({len(records)} events)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
