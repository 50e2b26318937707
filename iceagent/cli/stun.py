"""`iceagent stun`: send one Binding request and print the mapped address (RFC 8489 7.2, RFC 5780)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
from typing import Any, Literal

import trio

from ..errors import IceServerError
from ..net.base import Address, Network
from ..net.os import OSNetwork
from ..stun.client import BindingResult, stun_binding
from ..stun.server import open_stun_server
from ..uri import format_host_port, parse_host_port, parse_uri
from . import UsageError, add_command
from .options import positive_seconds

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add `iceagent stun` (see module docstring)."""
    p = add_command(
        subparsers,
        "stun",
        run,
        help="ask a STUN server for this host's mapped address",
        description=(
            "Send a STUN Binding request (RFC 8489) and print the mapped address, the round-trip time and "
            "the server's SOFTWARE. With --embedded, start the embedded STUN server on 127.0.0.1 in this "
            "process and ask it."
        ),
    )
    p.add_argument(
        "server",
        nargs="?",
        metavar="SERVER",
        help="HOST[:PORT] (IPv6 as [::1]:3478) or a stun:/turn: URI; the port defaults to 3478",
    )
    p.add_argument("--embedded", action="store_true", help="query an embedded server started on 127.0.0.1")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--local", metavar="ADDRESS", help="local IP[:PORT] to send from (default: any, by family)")
    p.add_argument("--tcp", action="store_true", help="STUN over TCP instead of UDP")
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="SECONDS",
        help="give up after this long (default: the RFC 8489 schedule, 39.5 s with the default --rto)",
    )
    p.add_argument(
        "--rto", type=positive_seconds, default=0.5, metavar="SECONDS", help="initial retransmission timeout (0.5)"
    )
    p.add_argument("--change-ip", action="store_true", help="CHANGE-REQUEST: answer from the other IP (RFC 5780)")
    p.add_argument("--change-port", action="store_true", help="CHANGE-REQUEST: answer from the other port (RFC 5780)")


_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # scheme://...: a URI, even if not one of ours


def _server_target(text: str, tcp: bool) -> tuple[Address, Literal["udp", "tcp"]]:
    """HOST[:PORT] or a stun:/turn: URI (RFC 7064, RFC 7065) -> address and transport."""
    try:
        if _URI.match(text) or text.lower().startswith(("stun:", "stuns:", "turn:", "turns:")):
            uri = parse_uri(text)
            if uri.secure:
                raise UsageError(f"{uri.scheme}: (TLS) is not supported by 'iceagent stun'; use stun: or turn:")
            return uri.address, "tcp" if tcp else uri.transport
        return parse_host_port(text, 3478), "tcp" if tcp else "udp"
    except IceServerError as e:
        raise UsageError(str(e)) from None


def _local_address(text: str | None, server: Address, server_name: str) -> Address | None:
    if text is None:
        return None
    try:
        host, port = parse_host_port(text, 0)
        version = ipaddress.ip_address(host).version
    except (IceServerError, ValueError) as e:
        raise UsageError(f"--local must be an IP address, optionally with :PORT: {e}") from None
    try:
        server_version = ipaddress.ip_address(server[0]).version
    except ValueError:
        server_version = version  # a name: resolved later
    if version != server_version:
        raise UsageError(f"--local {text} is IPv{version} but {server_name} is IPv{server_version}")
    return host, port


def run(args: argparse.Namespace) -> int:
    """Run `iceagent stun`."""
    if args.embedded == (args.server is not None):
        raise UsageError("give either SERVER or --embedded")
    server: Address | None = None
    transport: Literal["udp", "tcp"] = "tcp" if args.tcp else "udp"
    if args.server is not None:
        server, transport = _server_target(args.server, args.tcp)
    if args.change_ip or args.change_port:
        if transport == "tcp":
            raise UsageError("--change-ip/--change-port need UDP (RFC 5780 6.1)")
    if server is None:
        local = _local_address(args.local, ("127.0.0.1", 0), "the embedded server (127.0.0.1)")
    else:
        local = _local_address(args.local, server, f"the server {format_host_port(server)}")
    result = trio.run(_query, args, server, transport, local)
    _print_result(result, args.json)
    return 0


async def _query(
    args: argparse.Namespace, server: Address | None, transport: Literal["udp", "tcp"], local: Address | None
) -> BindingResult:
    network = OSNetwork()
    if server is not None:
        return await _binding(network, args, server, transport, local)
    async with open_stun_server(network, ["127.0.0.1:0"], tcp=transport == "tcp") as embedded:
        return await _binding(network, args, embedded.address, transport, local)


async def _binding(
    network: Network,
    args: argparse.Namespace,
    server: Address,
    transport: Literal["udp", "tcp"],
    local: Address | None,
) -> BindingResult:
    options: dict[str, Any] = {
        "rto": args.rto,
        "timeout": args.timeout,
        "change_ip": args.change_ip,
        "change_port": args.change_port,
        "transport": transport,
    }
    if transport == "tcp" or local is None:
        return await stun_binding(network, server, local_address=local[0] if local else None, **options)
    sock = await network.bind_udp(local[0], local[1])
    try:
        return await stun_binding(sock, server, **options)
    finally:
        sock.close()


def _json_address(address: Address | None) -> dict[str, Any] | None:
    return None if address is None else {"address": address[0], "port": address[1]}


def _print_result(result: BindingResult, as_json: bool) -> None:
    if as_json:
        doc = {
            "mapped": _json_address(result.mapped),
            "rtt_ms": round(result.rtt * 1000, 3),
            "software": result.software,
            "server": _json_address(result.server),
            "local": _json_address(result.local),
            "transport": result.transport,
            "attempts": result.attempts,
            "response_origin": _json_address(result.response_origin),
            "other_address": _json_address(result.other_address),
        }
        print(json.dumps(doc))
        return
    lines = [
        ("mapped address", format_host_port(result.mapped)),
        (
            "rtt",
            f"{result.rtt * 1000:.2f} ms" + (f" ({result.attempts} attempts)" if result.attempts > 1 else ""),
        ),
        ("server", f"{format_host_port(result.server)} over {result.transport.upper()}"),
        ("software", result.software if result.software is not None else "(none)"),
        ("local address", format_host_port(result.local)),
    ]
    if result.response_origin is not None:
        lines.append(("response origin", format_host_port(result.response_origin)))
    if result.other_address is not None:
        lines.append(("other address", format_host_port(result.other_address)))
    for name, value in lines:
        print(f"{name + ':':<17}{value}")
    sys.stdout.flush()
