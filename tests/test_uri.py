"""STUN/TURN URI parsing (RFC 7064, RFC 7065) and IceServer validation."""

from __future__ import annotations

import re
import ssl

import pytest

import iceagent
from iceagent.errors import IceError, IceServerError
from iceagent.uri import IceServer, IceUri, format_host_port, parse_host_port, parse_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stun:127.0.0.1", IceUri("stun", "127.0.0.1", 3478, "udp", False)),
        ("stun:127.0.0.1:3479", IceUri("stun", "127.0.0.1", 3479, "udp", False)),
        ("stuns:127.0.0.1", IceUri("stuns", "127.0.0.1", 5349, "tcp", True)),
        ("turn:127.0.0.1", IceUri("turn", "127.0.0.1", 3478, "udp", False)),
        ("turns:127.0.0.1", IceUri("turns", "127.0.0.1", 5349, "tcp", True)),
        ("turn:127.0.0.1:3478?transport=udp", IceUri("turn", "127.0.0.1", 3478, "udp", False)),
        ("turn:127.0.0.1:3478?transport=tcp", IceUri("turn", "127.0.0.1", 3478, "tcp", False)),
        ("turns:127.0.0.1:5349?transport=tcp", IceUri("turns", "127.0.0.1", 5349, "tcp", True)),
        ("turns:127.0.0.1?transport=udp", IceUri("turns", "127.0.0.1", 5349, "udp", True)),
        ("stun:[::1]:3478", IceUri("stun", "::1", 3478, "udp", False)),
        ("stun:[::1]", IceUri("stun", "::1", 3478, "udp", False)),
        ("turn:[2001:DB8:0:0::1]:1234?transport=tcp", IceUri("turn", "2001:db8::1", 1234, "tcp", False)),
        ("STUN:Stun.Example.ORG", IceUri("stun", "stun.example.org", 3478, "udp", False)),
        ("Turns:example.org?Transport=TCP", IceUri("turns", "example.org", 5349, "tcp", True)),
        ("stun:stun_1.example-2.org:65535", IceUri("stun", "stun_1.example-2.org", 65535, "udp", False)),
        ("  stun:127.0.0.1  ", IceUri("stun", "127.0.0.1", 3478, "udp", False)),
    ],
)
def test_parse_valid(text: str, expected: IceUri) -> None:
    assert parse_uri(text) == expected


@pytest.mark.parametrize(
    ("text", "protocol"),
    [
        ("stun:h", "udp"),
        ("stuns:h", "tls"),
        ("turn:h", "udp"),
        ("turn:h?transport=tcp", "tcp"),
        ("turns:h", "tls"),
        ("turns:h?transport=udp", "dtls"),
    ],
)
def test_protocol(text: str, protocol: str) -> None:
    assert parse_uri(text).protocol == protocol


def test_properties_and_str() -> None:
    uri = parse_uri("turn:[::1]:3478")
    assert uri.is_turn and not parse_uri("stun:h").is_turn
    assert uri.address == ("::1", 3478)
    assert str(uri) == "turn:[::1]:3478?transport=udp"
    assert str(parse_uri("STUN:127.0.0.1")) == "stun:127.0.0.1:3478"
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("http://x", "unknown scheme 'http' in 'http://x' (expected stun:, stuns:, turn:, turns:)"),
        ("127.0.0.1", "missing scheme"),
        (":3478", "missing scheme"),
        ("stun://127.0.0.1", "'//' is not allowed in stun: URIs (RFC 7064)"),
        ("turn://127.0.0.1", "'//' is not allowed in turn: URIs (RFC 7065)"),
        ("stun:127.0.0.1?transport=udp", "?transport= is not allowed on stun: URIs (RFC 7064)"),
        ("stuns:127.0.0.1?transport=tcp", "?transport= is not allowed on stuns: URIs (RFC 7064)"),
        ("stun:127.0.0.1?foo=bar", "query ('?foo=bar') is not allowed on stun: URIs"),
        ("turn:127.0.0.1?transport=sctp", "unsupported transport 'sctp'"),
        ("turn:127.0.0.1?transport=", "empty ?transport="),
        ("turn:127.0.0.1?transport", "unknown URI parameter"),
        ("turn:127.0.0.1?foo=udp", "unknown URI parameter '?foo=udp'"),
        ("turn:127.0.0.1?transport=udp&x=1", "only one URI parameter"),
        ("turn:alice@127.0.0.1", "userinfo ('user@') is not allowed"),
        ("stun:", "missing host"),
        ("stun::3478", "missing host"),
        ("stun:127.0.0.1:", "empty port"),
        ("stun:127.0.0.1:abc", "bad port 'abc'"),
        ("stun:127.0.0.1:-1", "bad port '-1'"),
        ("stun:127.0.0.1:0", "port 0 out of range"),
        ("stun:127.0.0.1:65536", "port 65536 out of range"),
        ("stun:127.0.0.1:٣٤٧٨", "bad port"),
        ("stun:::1", "IPv6 address must be in brackets"),
        ("stun:[::1", "unterminated IPv6 literal"),
        ("stun:[::1]x", "unexpected 'x' after the IPv6 literal"),
        ("stun:[]", "empty IPv6 literal"),
        ("stun:[fe80::1%eth0]", "zone identifiers are not supported"),
        ("stun:[127.0.0.1]", "invalid IPv6 address '127.0.0.1'"),
        ("stun:[::g]", "invalid IPv6 address"),
        ("stun:300.1.1.1", "invalid IPv4 address '300.1.1.1'"),
        ("stun:1.2.3", "invalid IPv4 address"),
        ("stun:exa mple.org", "invalid character(s) ' '"),
        ("stun:exa%20mple.org", "invalid character(s) '%'"),
        ("stun:h#frag", "fragment"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    with pytest.raises(IceServerError) as info:
        parse_uri(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, IceError)


def test_parse_not_a_string() -> None:
    with pytest.raises(IceServerError, match="must be a string"):
        parse_uri(b"stun:h")  # type: ignore[arg-type]


def test_ice_server_contract_form() -> None:
    server = iceagent.IceServer(
        urls=["turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349?transport=tcp"],
        username="alice",
        credential="secret",
        ssl_context=None,
    )
    assert server.urls == ("turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349?transport=tcp")
    assert [u.protocol for u in server.uris] == ["udp", "tls"]
    assert "secret" not in repr(server)
    assert iceagent.IceServer is IceServer


def test_ice_server_single_string_and_equality() -> None:
    a = IceServer(urls="stun:127.0.0.1:3478")
    b = IceServer(urls=["stun:127.0.0.1:3478"])
    assert a.urls == ("stun:127.0.0.1:3478",)
    assert a == b and hash(a) == hash(b)
    assert a.uris == (IceUri("stun", "127.0.0.1", 3478, "udp", False),)


def test_ice_server_ssl_context() -> None:
    ctx = ssl.create_default_context()
    server = IceServer(urls=("stuns:127.0.0.1",), ssl_context=ctx)
    assert server.ssl_context is ctx


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"urls": []}, "at least one URL"),
        ({"urls": "http://x"}, "unknown scheme 'http'"),
        ({"urls": ["stun:h", "stun://h"]}, "'//' is not allowed"),
        ({"urls": ["turn:127.0.0.1"]}, "turn: URL 'turn:127.0.0.1' needs username= and credential="),
        ({"urls": ["turns:h"], "username": "alice"}, "turns: URL 'turns:h' needs credential="),
        ({"urls": ["turn:h"], "credential": "s"}, "needs username= (TURN long-term credentials"),
        ({"urls": ["stun:h"], "username": 5}, "username must be a string"),
        ({"urls": ["stun:h"], "ssl_context": "yes"}, "ssl_context must be an ssl.SSLContext"),
        ({"urls": 5}, "must be a string or a list of strings"),
        ({"urls": b"stun:h"}, "not bytes"),
        ({"urls": [5]}, "must be a string, not int"),
    ],
)
def test_ice_server_errors(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(IceServerError) as info:
        IceServer(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_ice_server_frozen() -> None:
    server = IceServer(urls="stun:h")
    with pytest.raises(AttributeError):
        server.username = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 3478)),
        ("127.0.0.1:5000", ("127.0.0.1", 5000)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:5000", ("::1", 5000)),
        ("[::1]", ("::1", 3478)),
        ("::1", ("::1", 3478)),
        ("Stun.Example.org:1", ("stun.example.org", 1)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, 3478) == expected
    assert parse_host_port(format_host_port(expected), 1) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "missing host"),
        (":80", "missing host"),
        ("127.0.0.1:", "empty port"),
        ("127.0.0.1:x", "bad port 'x'"),
        ("127.0.0.1:65536", "out of range"),
        ("[::1", "unterminated"),
        ("::g", "invalid IPv6 address"),
        ("a b", "invalid character"),
    ],
)
def test_parse_host_port_errors(text: str, fragment: str) -> None:
    with pytest.raises(IceServerError, match=re.escape(fragment)):
        parse_host_port(text, 3478)


def test_format_host_port() -> None:
    assert format_host_port(("::1", 3478)) == "[::1]:3478"
    assert format_host_port(("127.0.0.1", 3478)) == "127.0.0.1:3478"
