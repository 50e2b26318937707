"""`iceagent nat`: classify this host's NAT against an RFC 5780 STUN server (RFC 5780 4, RFC 4787)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from typing import Any

import trio

from ..errors import IceServerError
from ..net.base import Address
from ..net.os import OSNetwork
from ..stun.nat_discovery import NatDiscoveryResult, discover_nat
from ..uri import format_host_port, parse_host_port, parse_uri
from . import UsageError, add_command
from .options import positive_seconds

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add `iceagent nat` (see module docstring)."""
    p = add_command(
        subparsers,
        "nat",
        run,
        help="classify the NAT between this host and an RFC 5780 STUN server",
        description=(
            "Find the mapping and filtering behaviour (RFC 4787) of the NAT between this host and a STUN "
            "server with two addresses (RFC 5780: it must report OTHER-ADDRESS and honour CHANGE-REQUEST, "
            "like 'iceagent serve --stun IP --alt IP2' or coturn with two --listening-ip addresses), and say what it "
            "means for direct connections. Optionally test hairpinning and measure the mapping lifetime."
        ),
    )
    p.add_argument(
        "--stun",
        required=True,
        metavar="HOST:PORT",
        help="the STUN server's primary address (IPv6 as [::1]:3478) or a stun: URI; the port defaults to 3478",
    )
    p.add_argument("--local", metavar="IP", help="local IP to send from (default: any, by family)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--hairpin", action="store_true", help="also test hairpinning (RFC 5780 4.5)")
    p.add_argument(
        "--lifetime",
        action="store_true",
        help="also measure how long an idle mapping lives (RFC 5780 4.6); takes up to --lifetime-max seconds",
    )
    p.add_argument(
        "--lifetime-max",
        type=positive_seconds,
        default=60.0,
        metavar="SECONDS",
        help="longest idle time probed by --lifetime (60)",
    )
    p.add_argument(
        "--lifetime-probes",
        type=int,
        default=12,
        metavar="N",
        help="idle times probed at once, evenly up to --lifetime-max (12: a 5 s resolution by default)",
    )
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=3.0,
        metavar="SECONDS",
        help="how long each test waits for an answer; a filtering test without one counts as filtered (3)",
    )
    p.add_argument(
        "--rto", type=positive_seconds, default=0.5, metavar="SECONDS", help="initial retransmission timeout (0.5)"
    )


def _server(text: str) -> Address:
    """HOST[:PORT] or a stun:/turn: URI (RFC 7064, RFC 7065) -> address; RFC 5780 needs UDP."""
    try:
        if text.lower().startswith(("stun:", "stuns:", "turn:", "turns:")):
            uri = parse_uri(text)
            if uri.secure or uri.transport != "udp":
                raise UsageError(f"{text!r}: NAT discovery needs STUN over UDP (RFC 5780 6.1), not TLS or TCP")
            return uri.address
        return parse_host_port(text, 3478)
    except IceServerError as e:
        raise UsageError(f"--stun: {e}") from None


def _local(text: str | None, server: Address) -> str | None:
    if text is None:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise UsageError(f"--local must be an IP address, not {text!r}") from None
    try:
        server_version = ipaddress.ip_address(server[0]).version
    except ValueError:
        server_version = ip.version  # a name: resolved later
    if ip.version != server_version:
        raise UsageError(f"--local {text} is IPv{ip.version} but the server {format_host_port(server)} is not")
    return str(ip)


def run(args: argparse.Namespace) -> int:
    """Run `iceagent nat`."""
    server = _server(args.stun)
    local = _local(args.local, server)
    if args.lifetime_probes < 1:
        raise UsageError("--lifetime-probes must be at least 1")
    result = trio.run(_discover, args, server, local)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(_text(result, args))
    sys.stdout.flush()
    return 0


async def _discover(args: argparse.Namespace, server: Address, local: str | None) -> NatDiscoveryResult:
    return await discover_nat(
        OSNetwork(),
        server,
        local_address=local,
        hairpinning=args.hairpin,
        lifetime=args.lifetime,
        lifetime_max=args.lifetime_max,
        lifetime_probes=args.lifetime_probes,
        rto=args.rto,
        timeout=args.timeout,
    )


def _text(result: NatDiscoveryResult, args: argparse.Namespace) -> str:
    mapped = format_host_port(result.mapped)
    local = format_host_port(result.local)
    if result.behind_nat:
        preserved = "port preserved" if result.port_preserved else "port changed"
        nat = f"yes: {local} is mapped to {mapped} ({preserved})"
    else:
        nat = f"no: the server sees {mapped}, this host's own address"
    mapping = f"{result.mapping.value} ({result.mapping.abbreviation}, RFC 4787 4.1)"
    if not result.behind_nat:
        mapping = "none (no NAT)"
    lines = [
        ("NAT", nat),
        ("mapping", mapping),
        ("filtering", f"{result.filtering.value} ({result.filtering.abbreviation}, RFC 4787 5)"),
        ("type", f"{result.classic_name} ({result.nat_type})" if result.behind_nat else result.classic_name),
    ]
    if args.hairpin:
        hairpin = {True: "yes", False: "no", None: "undecided (see notes)"}[result.hairpinning]
        lines.append(("hairpinning", hairpin if result.behind_nat else "not applicable (no NAT)"))
    if args.lifetime:
        lifetime = result.mapping_lifetime
        lines.append(("mapping lifetime", lifetime.describe() if lifetime else "not applicable (no NAT)"))
    software = f" ({result.software})" if result.software else ""
    server = format_host_port(result.server)
    lines.append(("server", f"{server}, other address {format_host_port(result.other_address)}{software}"))
    lines.append(("took", f"{result.elapsed:.2f} s"))
    out = [f"{name + ':':<18}{value}" for name, value in lines]
    out.append("")
    out.append(f"direct connectivity: {result.direct_connectivity}")
    out.extend(f"note: {note}" for note in result.notes if result.behind_nat)
    return "\n".join(out)
