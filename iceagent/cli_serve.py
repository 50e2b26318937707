"""`iceagent serve`: run the embedded servers in the foreground until Ctrl-C (RFC 8489, RFC 5780)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import trio

from .cli import UsageError, add_command
from .errors import IceServerError
from .net.os import OSNetwork
from .stun.server import open_stun_server
from .uri import format_host_port, parse_host_port

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add `iceagent serve`."""
    p = add_command(
        subparsers,
        "serve",
        run,
        help="run the embedded STUN server in the foreground",
        description=(
            "Run the embedded STUN server (RFC 8489; RFC 5780 NAT discovery with --alt) until Ctrl-C. "
            "It prints one line per address it listens on."
        ),
    )
    p.add_argument(
        "--stun",
        action="append",
        metavar="ADDRESS",
        help="IP[:PORT] to answer STUN on (port 3478 by default, 0 = any free port); repeatable",
    )
    p.add_argument("--alt", metavar="IP", help="alternate IP for RFC 5780 (CHANGE-REQUEST, OTHER-ADDRESS)")
    p.add_argument(
        "--alt-port",
        type=int,
        metavar="PORT",
        help="alternate port for RFC 5780 (default: the STUN port + 1)",
    )
    p.add_argument("--tcp", action="store_true", help="answer STUN over TCP too, on the same addresses")


def run(args: argparse.Namespace) -> int:
    """Run `iceagent serve`; exits 0 on Ctrl-C."""
    if not args.stun:
        raise UsageError("nothing to serve: give --stun ADDRESS (e.g. --stun 127.0.0.1:3478)")
    try:
        addresses = [parse_host_port(text, 3478) for text in args.stun]
    except IceServerError as e:
        raise UsageError(str(e)) from None
    if args.alt is not None and len(addresses) != 1:
        raise UsageError("--alt needs exactly one --stun address")
    if args.alt_port is not None and (args.alt is None or not 0 <= args.alt_port <= 65535):
        raise UsageError("--alt-port needs --alt and a port from 0 to 65535")
    try:
        trio.run(_serve, args, addresses)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


async def _serve(args: argparse.Namespace, addresses: list[tuple[str, int]]) -> None:
    try:
        server_cm = open_stun_server(
            OSNetwork(), addresses, alternate=args.alt, alternate_port=args.alt_port, tcp=args.tcp
        )
        async with server_cm as server:
            for address in server.udp_addresses:
                print(f"STUN udp {format_host_port(address)}")
            for address in server.tcp_addresses:
                print(f"STUN tcp {format_host_port(address)}")
            if server.other_address is not None:
                primary, other = format_host_port(server.address), format_host_port(server.other_address)
                print(f"RFC 5780 primary {primary} other {other}")
            print("serving; press Ctrl-C to stop", flush=True)
            await trio.sleep_forever()
    except ValueError as e:  # a bad --alt and the like, found when the server checks its options
        raise UsageError(str(e)) from None
