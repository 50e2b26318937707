"""Agent options shared by the commands that gather (`gather`, `offer`, `answer`): one spelling everywhere.

`add_agent_arguments` adds `--stun/--turn/--username/--credential/--relay-only/--address/--interface/
--mdns/--tcp/--port-mapping/--renomination` and the server options `--port/--port-range/--public-ip/
--public-ip-mode/--lite`;
`agent_options` turns them into `open_agent()` keyword arguments (bad input raises `UsageError`);
`open_cli_agent` opens the agent (on a shared `open_mux()` port with `--port`); `cli_errors` turns what
the agent raises for an option it cannot serve yet into a one-line error.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

import attrs

from ..agent import Agent, open_agent
from ..config import IceConfig
from ..errors import IceError, IceServerError
from ..net.base import Network
from ..net.mux import open_mux
from ..net.os import OSNetwork
from ..uri import IceServer
from . import UsageError

__all__ = ["add_agent_arguments", "agent_options", "cli_errors", "open_cli_agent", "positive_seconds", "sole_error"]


def positive_seconds(text: str) -> float:
    """argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def port_range(text: str) -> tuple[int, int]:
    """argparse type: `LO-HI`, two ports with LO <= HI."""
    lo, sep, hi = text.partition("-")
    try:
        value = (int(lo), int(hi))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO-HI (e.g. 50000-50100), not {text!r}") from None
    if not sep or not 1 <= value[0] <= value[1] <= 65535:
        raise argparse.ArgumentTypeError(f"expected LO-HI with 1 <= LO <= HI <= 65535, not {text!r}")
    return value


def port(text: str) -> int:
    """argparse type: a port 1..65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, not {value}")
    return value


def add_agent_arguments(p: argparse.ArgumentParser) -> None:
    """Add the agent options (servers, policy, which local addresses, mDNS, ICE-TCP)."""
    g = p.add_argument_group("agent options")
    g.add_argument(
        "--stun",
        action="append",
        metavar="URL",
        help="STUN server for server-reflexive candidates: stun:HOST[:PORT] or HOST[:PORT]; repeatable",
    )
    g.add_argument(
        "--turn",
        action="append",
        metavar="URL",
        help="TURN server for relay candidates: turn:HOST[:PORT][?transport=udp|tcp], turns:... or "
        "HOST[:PORT]; repeatable; needs --username and --credential",
    )
    g.add_argument("--username", metavar="USER", help="TURN username (long-term credentials)")
    g.add_argument("--credential", metavar="PASSWORD", help="TURN password (long-term credentials)")
    g.add_argument(
        "--relay-only",
        action="store_true",
        help="gather and use relay candidates only (ice_transport_policy='relay'); needs --turn",
    )
    g.add_argument(
        "--address",
        action="append",
        metavar="IP",
        help="gather host candidates on this local IP only; repeatable (default: all interfaces)",
    )
    g.add_argument(
        "--interface",
        action="append",
        metavar="NAME",
        help="gather host candidates on this interface's addresses only (e.g. lo, eth0); repeatable",
    )
    g.add_argument("--mdns", action="store_true", help="hide host addresses behind <uuid>.local mDNS names")
    g.add_argument("--tcp", action="store_true", help="add ICE-TCP host candidates (RFC 6544)")
    g.add_argument(
        "--port-mapping",
        action="store_true",
        help="ask the default gateway for a public port (PCP, NAT-PMP, UPnP-IGD): a srflx candidate without STUN",
    )
    g.add_argument(
        "--renomination",
        action="store_true",
        help="announce a=ice-options:renomination: with a peer that does too, the pair may move later without a "
        "restart (draft-thatcher-ice-renomination)",
    )
    s = p.add_argument_group("server options")
    s.add_argument(
        "--port",
        type=port,
        metavar="PORT",
        help="host candidates on this one UDP port (and ICE-TCP with --tcp) shared through open_mux(), as a "
        "server listens; on --address IPs (default: every interface)",
    )
    s.add_argument(
        "--port-range",
        type=port_range,
        metavar="LO-HI",
        help="bind host UDP and ICE-TCP sockets only to ports in LO..HI (a firewall that opens a range)",
    )
    s.add_argument(
        "--public-ip",
        action="append",
        metavar="LOCAL=PUBLIC",
        help="1:1 NAT (cloud VMs with an elastic IP): this local IP is reachable as PUBLIC; repeatable",
    )
    s.add_argument(
        "--public-ip-mode",
        choices=["srflx", "host"],
        default="srflx",
        help="srflx: add the public address as a server-reflexive candidate (default); host: replace the host "
        "address with it",
    )
    s.add_argument(
        "--lite",
        action="store_true",
        help="ICE-lite (RFC 8445 2.5): host candidates only, answer checks, send none (for the answer side on a "
        "public address)",
    )


def _url(text: str, scheme: str) -> str:
    """`HOST[:PORT]` gets `scheme:` in front; a URL with a scheme is kept as is."""
    lower = text.strip().lower()
    if lower.startswith(("stun:", "stuns:", "turn:", "turns:")) or "://" in lower:
        return text.strip()
    return f"{scheme}:{text.strip()}"


def _ice_servers(args: argparse.Namespace) -> list[IceServer]:
    servers: list[IceServer] = []
    try:
        for text in args.stun or ():
            url = _url(text, "stun")
            if url.lower().startswith("turn"):
                raise UsageError(f"--stun {text}: a turn: URL goes with --turn")
            servers.append(IceServer(urls=[url]))
        turn = [_url(text, "turn") for text in args.turn or ()]
        for text, url in zip(args.turn or (), turn, strict=True):
            if not url.lower().startswith("turn"):
                raise UsageError(f"--turn {text}: a {url.partition(':')[0]}: URL goes with --stun")
        if turn:
            if args.username is None or args.credential is None:
                raise UsageError("--turn needs --username and --credential (TURN long-term credentials)")
            servers.append(IceServer(urls=turn, username=args.username, credential=args.credential))
        elif args.username is not None or args.credential is not None:
            raise UsageError("--username and --credential go with --turn")
    except IceServerError as e:
        raise UsageError(str(e)) from None
    return servers


def interface_addresses(network: Network, names: Sequence[str]) -> list[str]:
    """The usable IPs of the named interfaces (IPv6 link-local ones are skipped: they need a scope)."""
    interfaces = {iface.name: iface for iface in network.interfaces()}
    out: list[str] = []
    for name in names:
        iface = interfaces.get(name)
        if iface is None:
            known = ", ".join(sorted(interfaces)) or "none"
            raise UsageError(f"--interface {name}: no such interface (have: {known})")
        found = []
        for text in iface.addresses:
            ip = ipaddress.ip_address(text.split("%", 1)[0])
            if ip.is_unspecified or ip.is_multicast or (ip.version == 6 and ip.is_link_local):
                continue
            found.append(str(ip))
        if not found:
            raise UsageError(f"--interface {name}: it has no usable IP address")
        out.extend(found)
    return out


def agent_options(args: argparse.Namespace, network: Network | None = None) -> dict[str, Any]:
    """`open_agent()` keyword arguments from the agent options; `UsageError` for bad input."""
    servers = _ice_servers(args)
    addresses: list[str] | None = None
    if args.address or args.interface:
        addresses = []
        for text in args.address or ():
            try:
                addresses.append(str(ipaddress.ip_address(text)))
            except ValueError:
                raise UsageError(f"--address {text!r} is not an IP address") from None
        if args.interface:
            addresses.extend(interface_addresses(network or OSNetwork(), args.interface))
        addresses = list(dict.fromkeys(addresses))
    if args.relay_only and not any(u.is_turn for s in servers for u in s.uris):
        raise UsageError("--relay-only needs a TURN server: --turn URL --username USER --credential PASSWORD")
    options: dict[str, Any] = {
        "ice_servers": servers,
        "host_addresses": addresses,
        "ice_transport_policy": "relay" if args.relay_only else "all",
        "mdns": bool(args.mdns),
        "tcp": bool(args.tcp),
    }
    if getattr(args, "port_mapping", False):
        options["port_mapping"] = True
    if getattr(args, "port", None) is not None and getattr(args, "port_range", None) is not None:
        raise UsageError("--port shares one port; --port-range picks ports for sockets of the agent's own: choose one")
    if getattr(args, "port_range", None) is not None:
        options["port_range"] = args.port_range
    if getattr(args, "public_ip", None):
        public: dict[str, str] = {}
        for text in args.public_ip:
            local, sep, outside = text.partition("=")
            if not sep:
                raise UsageError(f"--public-ip {text!r}: expected LOCAL=PUBLIC, e.g. 10.0.0.5=203.0.113.7")
            public[local.strip()] = outside.strip()
        options["public_ips"] = public
        options["public_ip_mode"] = args.public_ip_mode
    if getattr(args, "lite", False):
        options["lite"] = True
    return options


@asynccontextmanager
async def open_cli_agent(args: argparse.Namespace, options: dict[str, Any], **kwargs: Any) -> AsyncIterator[Agent]:
    """`open_agent(**options, **kwargs)`, on a shared port (`open_mux()`, owned here) when `--port` was given."""
    async with AsyncExitStack() as stack:
        port_number = getattr(args, "port", None)
        if port_number is not None:
            addresses = options.get("host_addresses") or ["0.0.0.0"]
            mux = await stack.enter_async_context(open_mux(addresses, port_number, tcp=bool(options.get("tcp"))))
            options = {**options, "mux": mux}
        if getattr(args, "renomination", False):
            kwargs["config"] = attrs.evolve(kwargs.get("config") or IceConfig(), renomination=True)
        if options.get("lite"):
            kwargs["controlling"] = False  # a lite agent never controls; the full peer does (RFC 8445 6.1.1)
        yield await stack.enter_async_context(open_agent(**options, **kwargs))


def sole_error(error: BaseException) -> BaseException:
    """The error inside (nested) single-exception groups, else `error` itself."""
    inner = getattr(error, "exceptions", None)
    while isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], BaseException):
        error = inner[0]
        inner = getattr(error, "exceptions", None)
    return error


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn an option the agent cannot serve yet (NotImplementedError) into a one-line IceError (exit 1), and
    options it refuses together (ValueError) into a usage error (exit 2)."""
    try:
        yield
    except BaseException as e:
        error = sole_error(e)
        if isinstance(error, NotImplementedError):
            raise IceError(f"not available yet: {error}") from None
        if isinstance(error, ValueError) and not isinstance(error, IceError):
            raise UsageError(str(error)) from None  # options open_agent refuses together (exit 2)
        raise
