"""STUN and TURN server URIs (RFC 7064, RFC 7065) and the `IceServer` entry that carries them."""

from __future__ import annotations

import ipaddress
import ssl
import string
from collections.abc import Iterable
from typing import Literal

import attrs

from .errors import IceServerError

__all__ = ["IceServer", "IceServerError", "IceUri", "format_host_port", "parse_host_port", "parse_uri"]

Scheme = Literal["stun", "stuns", "turn", "turns"]

_SCHEMES: tuple[Scheme, ...] = ("stun", "stuns", "turn", "turns")
_DEFAULT_PORT = {"stun": 3478, "turn": 3478, "stuns": 5349, "turns": 5349}
_TRANSPORTS = ("udp", "tcp")
_REG_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "-._~")


@attrs.frozen
class IceUri:
    """One parsed `stun:`/`stuns:` (RFC 7064 3.1) or `turn:`/`turns:` (RFC 7065 3.1) URI.

    `transport` is the transport under the (D)TLS layer, "udp" or "tcp"; `secure` says whether
    (D)TLS runs on top of it (the `s` schemes). `protocol` combines the two.
    """

    scheme: Scheme
    host: str  # an IP literal (IPv6 without brackets) or a DNS name, lower case
    port: int
    transport: Literal["udp", "tcp"]
    secure: bool

    @property
    def is_turn(self) -> bool:
        """True for `turn:` and `turns:` (RFC 7065), False for `stun:` and `stuns:` (RFC 7064)."""
        return self.scheme in ("turn", "turns")

    @property
    def protocol(self) -> Literal["udp", "tcp", "tls", "dtls"]:
        """What to open towards the server: "udp", "tcp", "tls" (over TCP) or "dtls" (over UDP, RFC 7350)."""
        if not self.secure:
            return self.transport
        return "tls" if self.transport == "tcp" else "dtls"

    @property
    def address(self) -> tuple[str, int]:
        """The server's (host, port); host may still be a name to resolve (RFC 7064 3.2)."""
        return self.host, self.port

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{self.scheme}:{host}:{self.port}"
        if self.is_turn:
            text += f"?transport={self.transport}"
        return text


def parse_uri(uri: str) -> IceUri:
    """Parse a `stun:`, `stuns:` (RFC 7064 3.1), `turn:` or `turns:` (RFC 7065 3.1) URI.

    Raises `IceServerError` (a `ValueError`) naming what is wrong.
    """
    if not isinstance(uri, str):
        raise IceServerError(f"a STUN/TURN URI must be a string, not {type(uri).__name__}: {uri!r}")
    text = uri.strip()
    scheme_text, colon, rest = text.partition(":")
    if not colon or not scheme_text:
        raise IceServerError(f"missing scheme in {uri!r} (expected stun:, stuns:, turn:, turns:, e.g. 'stun:{text}')")
    scheme = scheme_text.lower()
    if scheme not in _SCHEMES:
        raise IceServerError(f"unknown scheme {scheme_text!r} in {uri!r} (expected stun:, stuns:, turn:, turns:)")
    if rest.startswith("//"):
        raise IceServerError(
            f"'//' is not allowed in {scheme}: URIs ({_rfc(scheme)}): write '{scheme}:{rest[2:]}', not {uri!r}"
        )
    if "#" in rest:
        raise IceServerError(f"a fragment ('#...') is not allowed in {uri!r} ({_rfc(scheme)})")
    rest, question, query = rest.partition("?")
    if "@" in rest:
        raise IceServerError(
            f"userinfo ('user@') is not allowed in {uri!r} ({_rfc(scheme)}): "
            "pass username= and credential= to IceServer instead"
        )
    host, port_text = _split_host_port(rest, uri)
    port = _DEFAULT_PORT[scheme] if port_text is None else _parse_port(port_text, uri)
    secure = scheme in ("stuns", "turns")
    transport: Literal["udp", "tcp"] = "tcp" if scheme == "stuns" else "udp"
    if scheme == "turns":
        transport = "tcp"  # TLS over TCP unless ?transport=udp asks for DTLS (RFC 7065 3.1, RFC 7350)
    if question:
        transport = _parse_query(scheme, query, uri, transport)
    return IceUri(scheme=scheme, host=host, port=port, transport=transport, secure=secure)


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """Parse `HOST[:PORT]` as on a command line: `127.0.0.1:3478`, `[::1]:3478`, `[::1]`, `::1`, `name`.

    A bare IPv6 address (more than one ':' and no brackets) is all host; use brackets to give a port.
    Port 0 is allowed (pick a free port). Raises `IceServerError` naming what is wrong.
    """
    if not isinstance(text, str):
        raise IceServerError(f"an address must be a string, not {type(text).__name__}: {text!r}")
    rest = text.strip()
    if rest.startswith("["):
        host, port_text = _split_host_port(rest, text)
    elif rest.count(":") > 1:
        host, port_text = _ipv6(rest, text), None
    else:
        host, port_text = _split_host_port(rest, text)
    if port_text is None:
        return host, default_port
    if port_text == "0":
        return host, 0
    return host, _parse_port(port_text, text)


def format_host_port(address: tuple[str, int]) -> str:
    """`host:port`, with an IPv6 host in brackets (`[::1]:3478`), as RFC 3986 3.2.2 writes it."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _rfc(scheme: str) -> str:
    return "RFC 7065" if scheme.startswith("turn") else "RFC 7064"


def _split_host_port(rest: str, uri: str) -> tuple[str, str | None]:
    """Split `host[:port]` where host is an IP-literal, IPv4address or reg-name (RFC 3986 3.2.2)."""
    if not rest:
        raise IceServerError(f"missing host in {uri!r} (expected e.g. 'stun:127.0.0.1:3478')")
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise IceServerError(f"unterminated IPv6 literal in {uri!r}: missing ']'")
        literal, after = rest[1:end], rest[end + 1 :]
        if after and not after.startswith(":"):
            raise IceServerError(f"unexpected {after!r} after the IPv6 literal in {uri!r} (expected ':port')")
        return _ipv6(literal, uri), (after[1:] if after else None)
    if rest.count(":") > 1:
        raise IceServerError(f"an IPv6 address must be in brackets in {uri!r}, e.g. 'stun:[::1]:3478'")
    host, colon, port_text = rest.partition(":")
    return _host(host, uri), (port_text if colon else None)


def _ipv6(literal: str, uri: str) -> str:
    if not literal:
        raise IceServerError(f"empty IPv6 literal '[]' in {uri!r}")
    if "%" in literal:
        raise IceServerError(f"IPv6 zone identifiers are not supported in {uri!r}")
    try:
        return str(ipaddress.IPv6Address(literal))
    except ValueError:
        raise IceServerError(f"invalid IPv6 address {literal!r} in {uri!r}") from None


def _host(host: str, uri: str) -> str:
    if not host:
        raise IceServerError(f"missing host in {uri!r} (expected e.g. 'stun:127.0.0.1:3478')")
    if all(c.isdigit() or c == "." for c in host) and host.isascii():
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise IceServerError(f"invalid IPv4 address {host!r} in {uri!r}") from None
    bad = sorted({c for c in host if c not in _REG_NAME_CHARS})
    if bad:
        raise IceServerError(f"invalid character(s) {''.join(bad)!r} in host {host!r} of {uri!r}")
    return host.lower()


def _parse_port(text: str, uri: str) -> int:
    if not text:
        raise IceServerError(f"empty port after ':' in {uri!r} (leave out the ':' to use the default port)")
    if not (text.isascii() and text.isdigit()):
        raise IceServerError(f"bad port {text!r} in {uri!r}: expected a number from 1 to 65535")
    digits = text.lstrip("0") or "0"
    # The length first: int() refuses more than 4300 digits with a plain ValueError.
    if len(digits) > 5 or not 1 <= int(digits) <= 65535:
        shown = digits if len(digits) <= 12 else digits[:12] + "..."
        raise IceServerError(f"port {shown} out of range in {uri!r}: expected 1 to 65535")
    return int(digits)


def _parse_query(scheme: str, query: str, uri: str, default: Literal["udp", "tcp"]) -> Literal["udp", "tcp"]:
    """`?transport=udp|tcp` on turn:/turns: only (RFC 7065 3.1); stun: URIs take no query (RFC 7064 3.1)."""
    key, equals, value = query.partition("=")
    if scheme in ("stun", "stuns"):
        if key.lower() == "transport":
            raise IceServerError(f"?transport= is not allowed on {scheme}: URIs (RFC 7064) in {uri!r}")
        raise IceServerError(f"a query ('?{query}') is not allowed on {scheme}: URIs (RFC 7064) in {uri!r}")
    if key.lower() != "transport" or not equals:
        raise IceServerError(f"unknown URI parameter '?{query}' in {uri!r} (only ?transport=udp|tcp, RFC 7065)")
    transport = value.lower()
    if not transport:
        raise IceServerError(f"empty ?transport= in {uri!r} (expected udp or tcp, RFC 7065)")
    if "&" in transport or ";" in transport:
        raise IceServerError(f"only one URI parameter, ?transport=, is allowed in {uri!r} (RFC 7065)")
    if transport not in _TRANSPORTS:
        raise IceServerError(f"unsupported transport {value!r} in {uri!r} (expected udp or tcp, RFC 7065)")
    return "udp" if transport == "udp" else "tcp"


def _to_urls(urls: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(urls, str):
        return (urls,)
    if isinstance(urls, (bytes, bytearray)):
        raise IceServerError(f"IceServer urls must be strings, not bytes: {urls!r}")
    try:
        return tuple(urls)
    except TypeError:
        raise IceServerError(f"IceServer urls must be a string or a list of strings, not {urls!r}") from None


def _redact(value: str | None) -> str:
    return "None" if value is None else "'***'"


@attrs.frozen
class IceServer:
    """A STUN or TURN server the agent may use: its URLs and, for TURN, long-term credentials (RFC 8656 9.2).

    Every URL is parsed at construction (RFC 7064, RFC 7065); a `turn:`/`turns:` URL needs `username`
    and `credential`. `ssl_context` is for `turns:`/`stuns:`; None means `ssl.create_default_context()`.
    """

    urls: tuple[str, ...] = attrs.field(converter=_to_urls)
    username: str | None = None
    credential: str | None = attrs.field(default=None, repr=_redact)
    ssl_context: ssl.SSLContext | None = None

    def __attrs_post_init__(self) -> None:
        if not self.urls:
            raise IceServerError("IceServer needs at least one URL, e.g. IceServer(urls=['stun:127.0.0.1:3478'])")
        for name in ("username", "credential"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise IceServerError(f"IceServer {name} must be a string, not {type(value).__name__}")
        if self.ssl_context is not None and not isinstance(self.ssl_context, ssl.SSLContext):
            raise IceServerError(
                f"IceServer ssl_context must be an ssl.SSLContext, not {type(self.ssl_context).__name__}"
            )
        for url, uri in zip(self.urls, self.uris, strict=True):
            if uri.is_turn and (self.username is None or self.credential is None):
                missing = " and ".join(
                    n for n, v in (("username=", self.username), ("credential=", self.credential)) if v is None
                )
                raise IceServerError(
                    f"{uri.scheme}: URL {url!r} needs {missing} (TURN long-term credentials, RFC 8656 9.2)"
                )

    @property
    def uris(self) -> tuple[IceUri, ...]:
        """The parsed URLs, in order (RFC 7064, RFC 7065)."""
        return tuple(parse_uri(url) for url in self.urls)
