"""`iceagent gather`: gather local candidates once and print them as SDP lines, with timings per type.

stdout gets SDP attribute lines (`a=ice-ufrag`, `a=ice-pwd`, one `a=candidate` per candidate as found,
`a=end-of-candidates`); stderr gets the timing summary and gatherer errors, so stdout can be piped.
With `--json`, stdout gets one JSON object with all of it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import trio

from ..config import IceConfig
from ..errors import IceError
from ..logs import get_logger
from ..plugins import get_plugin_manager
from . import add_command
from .options import add_agent_arguments, agent_options, cli_errors, open_cli_agent, positive_seconds

__all__ = ["register"]

log = get_logger("iceagent.cli")

_TYPES = ("host", "srflx", "prflx", "relay")


def register(subparsers: Any) -> None:
    """Add `iceagent gather`."""
    p = add_command(
        subparsers,
        "gather",
        run,
        help="gather local candidates and print them as SDP lines, with timings",
        description=(
            "Open an ICE agent, gather its candidates (host; server-reflexive with --stun; relay with --turn) "
            "and print them as SDP attribute lines (RFC 8839) on stdout as they are found, then how long "
            "each candidate type took and any gatherer errors on stderr. Without --address or --interface, "
            "every interface is used."
        ),
    )
    add_agent_arguments(p)
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="stop gathering after this long, whatever is still pending (IceConfig.gather_timeout, 10)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of SDP lines")


def run(args: argparse.Namespace) -> int:
    """Run `iceagent gather`."""
    options = agent_options(args)
    with cli_errors():
        summary = trio.run(_gather, args, options)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    if not summary["candidates"]:
        errors = [f"{kind}: {e}" for kind, g in summary["gatherers"].items() for e in g["errors"]]
        raise IceError("no candidates gathered" + (f" ({'; '.join(errors)})" if errors else ""))
    return 0


async def _gather(args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    config = IceConfig(gather_timeout=args.timeout)
    get_plugin_manager()  # load the plugins first: their import time is not gathering time
    start = trio.current_time()
    candidates: list[dict[str, Any]] = []
    async with open_cli_agent(args, options, config=config, name="gather") as agent:
        params = agent.local_parameters
        if not args.json:
            print("\n".join(params.to_sdp()), flush=True)  # a=ice-ufrag, a=ice-pwd (a=ice-lite, a=ice-pacing)
        async for candidate in agent.gather():
            ms = (trio.current_time() - start) * 1000
            sdp = candidate.to_sdp()
            candidates.append({"sdp": sdp, "type": candidate.type, "ms": round(ms, 3)})
            if not args.json:
                print(f"a={sdp}", flush=True)
        complete_ms = (trio.current_time() - start) * 1000
        stats = agent.stats()
        for kind, gatherer in stats["gatherers"].items():
            log.debug(
                "gatherer %s: %s, %d candidates, errors %s",
                kind,
                gatherer["state"],
                gatherer["candidates"],
                gatherer["errors"],
            )
    if not args.json:
        print("a=end-of-candidates", flush=True)
    types: dict[str, dict[str, Any]] = {}
    for kind in _TYPES:
        times = [c["ms"] for c in candidates if c["type"] == kind]
        if times:
            types[kind] = {"count": len(times), "first_ms": min(times), "last_ms": max(times)}
    return {
        "ufrag": params.ufrag,
        "pwd": params.pwd,
        "candidates": candidates,
        "end_of_candidates": True,
        "types": types,
        "complete_ms": round(complete_ms, 3),
        "gathering_state": stats["gathering_state"],
        "gatherers": stats["gatherers"],
    }


def _print_summary(summary: dict[str, Any]) -> None:
    err = sys.stderr
    for kind in _TYPES:
        t = summary["types"].get(kind)
        if t is None:
            continue
        plural = "" if t["count"] == 1 else "s"
        if t["count"] == 1:
            when = f"in {t['first_ms']:.1f} ms"
        else:
            when = f"first in {t['first_ms']:.1f} ms, last in {t['last_ms']:.1f} ms"
        print(f"{kind + ':':<7}{t['count']} candidate{plural}, {when}", file=err)
    for kind, g in summary["gatherers"].items():
        if kind not in summary["types"] and not g["errors"] and not g["candidates"]:
            print(f"{kind + ':':<7}no candidates", file=err)
        for error in g["errors"]:
            print(f"{kind + ':':<7}error: {error}", file=err)
    print(f"gathering complete in {summary['complete_ms']:.1f} ms", file=err, flush=True)
