"""`iceagent serve`: run the embedded servers in the foreground until Ctrl-C (RFC 8489, RFC 5780, RFC 8656)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import trio

from ..errors import IceServerError
from ..net.os import OSNetwork
from ..stun.server import open_stun_server
from ..turn.server import DEFAULT_REALM, open_turn_server
from ..turn.server.types import DEFAULT_RELAY_BANDWIDTH, TurnServerConfig
from ..uri import format_host_port, parse_host_port
from . import UsageError, add_command

__all__ = ["PASSWORD_ENV", "register"]

PASSWORD_ENV = "ICEAGENT_TURN_PASSWORD"
"""The environment variable holding the password of `--user NAME` (a password is not for the command line)."""


def register(subparsers: Any) -> None:
    """Add `iceagent serve`."""
    p = add_command(
        subparsers,
        "serve",
        run,
        help="run the embedded STUN and TURN servers in the foreground",
        description=(
            "Run the embedded STUN server (RFC 8489; RFC 5780 NAT discovery with --alt) and/or the embedded "
            "TURN server (RFC 8656, long-term credentials, UDP relays) until Ctrl-C. It prints one line per "
            "address it listens on. The TURN server answers STUN Binding requests too."
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
    p.add_argument("--tcp", action="store_true", help="serve STUN and TURN over TCP too, on the same addresses")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object with every listening address (then serve) instead of text lines")
    p.add_argument(
        "--turn",
        action="append",
        metavar="ADDRESS",
        help="IP[:PORT] to run the TURN server on (port 3478 by default, 0 = any free port); repeatable",
    )
    p.add_argument(
        "--user",
        action="append",
        metavar="NAME",
        help=f"a TURN user (long-term credentials, RFC 8489 9.2) whose password is in ${PASSWORD_ENV}; "
        "NAME:PASSWORD works but shows the password to other local users (a warning says so); repeatable",
    )
    p.add_argument(
        "--users-file",
        type=Path,
        metavar="PATH",
        help="TURN users, one NAME:PASSWORD a line (blank lines and # comments ignored)",
    )
    p.add_argument(
        "--auth-secret-file",
        type=Path,
        metavar="PATH",
        help="shared secrets of ephemeral TURN credentials (TURN REST API, coturn's static-auth-secret), one a "
        "line; every line is accepted, so a new secret can be added before the old one is removed",
    )
    p.add_argument(
        "--allow-loopback-peers",
        action="store_true",
        help="let TURN relay to loopback peers (127.0.0.0/8, ::1): for tests on one host only (CVE-2020-26262)",
    )
    p.add_argument(
        "--relay-bandwidth",
        type=float,
        metavar="BYTES_PER_S",
        default=DEFAULT_RELAY_BANDWIDTH,
        help=f"relayed bytes per second per TURN allocation, both ways (default {DEFAULT_RELAY_BANDWIDTH}; 0 = none)",
    )
    p.add_argument("--realm", default=DEFAULT_REALM, help=f"the TURN realm (default {DEFAULT_REALM!r})")
    p.add_argument(
        "--relay",
        action="append",
        metavar="IP",
        help="IP to bind TURN relays on, one per address family (default: the --turn IPs)",
    )
    p.add_argument(
        "--deny-peer",
        action="append",
        metavar="CIDR",
        help="refuse TURN permissions to peers in this network with 403 (e.g. 10.0.0.0/8); repeatable",
    )


def run(args: argparse.Namespace) -> int:
    """Run `iceagent serve`; exits 0 on Ctrl-C."""
    if not args.stun and not args.turn:
        raise UsageError("nothing to serve: give --stun ADDRESS (e.g. --stun 127.0.0.1:3478) and/or --turn ADDRESS")
    try:
        addresses = [parse_host_port(text, 3478) for text in args.stun or ()]
        turn_addresses = [parse_host_port(text, 3478) for text in args.turn or ()]
    except IceServerError as e:
        raise UsageError(str(e)) from None
    if args.alt is not None and len(addresses) != 1:
        raise UsageError("--alt needs exactly one --stun address")
    if args.alt_port is not None and (args.alt is None or not 0 <= args.alt_port <= 65535):
        raise UsageError("--alt-port needs --alt and a port from 0 to 65535")
    users = _users(args.user or (), args.users_file)
    secrets = _secrets(args.auth_secret_file)
    if turn_addresses and not users and not secrets:
        raise UsageError("--turn needs at least one --user NAME, --users-file PATH or --auth-secret-file PATH")
    if not turn_addresses and (users or secrets or args.relay or args.deny_peer or args.allow_loopback_peers):
        raise UsageError("--user, --users-file, --auth-secret-file, --relay, --deny-peer and --allow-loopback-peers "
                         "need --turn ADDRESS")
    if args.relay_bandwidth < 0:
        raise UsageError(f"--relay-bandwidth must be 0 (no limit) or more, not {args.relay_bandwidth}")
    try:
        trio.run(_serve, args, addresses, turn_addresses, users, secrets)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


def _users(texts: Any, path: Path | None) -> dict[str, str]:
    """The TURN users of --users-file and --user (NAME with the password in the environment, or NAME:PASSWORD)."""
    users: dict[str, str] = {}
    if path is not None:
        for number, line in enumerate(_read_lines(path, "--users-file"), 1):
            name, colon, password = line.partition(":")
            if not colon or not name or not password:
                raise UsageError(f"--users-file {path} line {number}: expected NAME:PASSWORD, both non-empty")
            users[name] = password
    for text in texts:
        name, colon, password = text.partition(":")
        if colon:
            print(
                f"iceagent serve: warning: the password of --user {name} is on the command line, where other local "
                f"users can read it (ps); put it in ${PASSWORD_ENV} (with --user {name}) or in --users-file",
                file=sys.stderr,
            )
        else:
            password = os.environ.get(PASSWORD_ENV, "")
            if not password:
                raise UsageError(f"--user {text!r} has no password: set ${PASSWORD_ENV}, or use --users-file PATH")
        if not name or not password:
            raise UsageError(f"--user {text!r} must be NAME (password in ${PASSWORD_ENV}) or NAME:PASSWORD")
        users[name] = password
    return users


def _secrets(path: Path | None) -> list[bytes]:
    """The shared secrets of --auth-secret-file, one a line (as coturn's static-auth-secret: the bytes as typed)."""
    return [] if path is None else [line.encode() for line in _read_lines(path, "--auth-secret-file")]


def _read_lines(path: Path, option: str) -> list[str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{option} {path}: cannot read it: {e}") from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise UsageError(f"{option} {path} has no entries")
    return lines


async def _serve(
    args: argparse.Namespace,
    addresses: list[tuple[str, int]],
    turn_addresses: list[tuple[str, int]],
    users: dict[str, str],
    secrets: list[bytes],
) -> None:
    network = OSNetwork()
    listening: dict[str, Any] = {}
    try:
        async with contextlib.AsyncExitStack() as stack:
            if addresses:
                server = await stack.enter_async_context(
                    open_stun_server(network, addresses, alternate=args.alt, alternate_port=args.alt_port, tcp=args.tcp)
                )
                listening["stun"] = {
                    "udp": [format_host_port(a) for a in server.udp_addresses],
                    "tcp": [format_host_port(a) for a in server.tcp_addresses],
                    "rfc5780_other": None if server.other_address is None else format_host_port(server.other_address),
                }
            if turn_addresses:
                config = TurnServerConfig(
                    denied_peers=tuple(args.deny_peer or ()),
                    allow_loopback_peers=args.allow_loopback_peers,
                    relay_bandwidth=args.relay_bandwidth or None,
                )
                turn = await stack.enter_async_context(
                    open_turn_server(
                        network,
                        turn_addresses,
                        users=users,
                        realm=args.realm,
                        relay_address=args.relay,
                        tcp=args.tcp,
                        config=config,
                        auth_secrets=secrets,
                    )
                )
                if addresses:  # relays never send to this host's STUN server either
                    turn.state.policy.add_own_addresses(server.udp_addresses)
                listening["turn"] = {
                    "udp": [format_host_port(a) for a in turn.addresses],
                    "tcp": [format_host_port(a) for a in turn.tcp_addresses],
                    "realm": turn.realm,
                    "users": sorted(users),
                    "auth_secrets": len(secrets),
                    "relay": [turn.relay_addresses[v] for v in sorted(turn.relay_addresses)],
                }
            if args.json:
                print(json.dumps(listening), flush=True)
            else:
                _print_text(listening)
            print("serving; press Ctrl-C to stop", flush=True, file=sys.stderr if args.json else sys.stdout)
            await trio.sleep_forever()
    except ValueError as e:  # a bad --alt, --relay or --deny-peer, found when a server checks its options
        raise UsageError(str(e)) from None


def _print_text(listening: dict[str, Any]) -> None:
    """One line per listening address, as `iceagent serve` prints without --json."""
    stun = listening.get("stun")
    if stun is not None:
        for address in stun["udp"]:
            print(f"STUN udp {address}")
        for address in stun["tcp"]:
            print(f"STUN tcp {address}")
        if stun["rfc5780_other"] is not None:
            print(f"RFC 5780 primary {stun['udp'][0]} other {stun['rfc5780_other']}")
    turn = listening.get("turn")
    if turn is not None:
        for address in turn["udp"]:
            print(f"TURN udp {address}")
        for address in turn["tcp"]:
            print(f"TURN tcp {address}")
        print(f"TURN realm {turn['realm']} users {' '.join(turn['users'])} relay {' '.join(turn['relay'])}")
        if turn["auth_secrets"]:
            print(f"TURN ephemeral credentials with {turn['auth_secrets']} shared secret(s)")
