"""Sans-IO UPnP-IGD (UPnP Device Architecture 1.1, WANIPConnection:1/2): the SSDP search, the device
description, and the SOAP calls AddPortMapping, GetExternalIPAddress and DeletePortMapping.

Everything a device sends is hostile: answers are bounded in size (the caller reads at most
`MAX_DOCUMENT` bytes), scanned linearly without an XML parser (no entity expansion, no DTD), and a
LOCATION or control URL is followed only to the gateway itself (its IP literal, no name, no redirect).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import attrs

from .errors import PortMapDecodeError, PortMapRefused

__all__ = [
    "MAX_DOCUMENT",
    "SSDP_PORT",
    "HttpResponse",
    "Service",
    "decode_http",
    "encode_msearch",
    "encode_soap",
    "find_service",
    "http_length",
    "parse_location",
    "soap_field",
    "soap_result",
]

SSDP_PORT = 1900
#: The largest SSDP answer, description or SOAP response read (bytes).
MAX_DOCUMENT = 65536
MAX_SSDP = 2048
IGD = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
#: The connection services that map ports, best first.
SERVICES = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
#: UPnP errors of AddPortMapping worth another try (WANIPConnection:2 2.4.16).
CONFLICT = 718
ONLY_PERMANENT_LEASES = 725


@attrs.frozen
class Service:
    """A port-mapping service of the gateway: its type and where to POST its SOAP actions."""

    service_type: str
    host: str
    port: int
    path: str


@attrs.frozen
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def encode_msearch(gateway: str, mx: int = 1) -> bytes:
    """An SSDP M-SEARCH for an Internet Gateway Device, sent by unicast to the gateway's port 1900 (UDA 1.1
    1.3.2: a unicast search is answered at once, MX is ignored)."""
    host = f"[{gateway}]" if ":" in gateway else gateway
    return (
        f'M-SEARCH * HTTP/1.1\r\nHOST: {host}:{SSDP_PORT}\r\nMAN: "ssdp:discover"\r\nMX: {mx}\r\nST: {IGD}\r\n\r\n'
    ).encode()


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines[:64]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def parse_location(data: bytes, gateway: str) -> tuple[str, int, str]:
    """The (host, port, path) of the device description an SSDP answer points to, only if that is an
    `http://` URL on the gateway's own address (no other host: the answer could come from anyone)."""
    if len(data) > MAX_SSDP:
        raise PortMapDecodeError(f"SSDP answer of {len(data)} bytes (at most {MAX_SSDP})")
    lines = data.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.") or lines[0].split(" ")[1:2] != ["200"]:
        raise PortMapDecodeError(f"SSDP answer is not 200 OK: {lines[0][:60]!r}")
    location = _headers(lines[1:]).get("location")
    if not location:
        raise PortMapDecodeError("SSDP answer without LOCATION")
    return _url_on(location, gateway)


def _url_on(url: str, gateway: str, base: tuple[str, int] | None = None) -> tuple[str, int, str]:
    """Split `url` (absolute, or a path relative to `base`); PortMapDecodeError unless it is on `gateway`."""
    if base is not None and url.startswith("/"):
        return base[0], base[1], url
    try:
        parts = urlsplit(url)
        port = parts.port or 80
        host = parts.hostname or ""
        same = parts.scheme == "http" and ipaddress.ip_address(host) == ipaddress.ip_address(gateway)
    except ValueError:
        same = False
    if not same:
        raise PortMapDecodeError(f"UPnP URL {url[:80]!r} is not http:// on the gateway {gateway}")
    path = parts.path or "/"
    return host, port, path + (f"?{parts.query}" if parts.query else "")


def _between(text: str, start: int, end: int, tag: str) -> tuple[str, int] | None:
    """The text of the first <tag>...</tag> in text[start:end] and where it ends (plain tags, no prefix)."""
    opening = text.find(f"<{tag}>", start, end)
    if opening < 0:
        return None
    value_at = opening + len(tag) + 2
    closing = text.find(f"</{tag}>", value_at, end)
    if closing < 0:
        return None
    return text[value_at:closing].strip(), closing


def find_service(document: bytes, gateway: str, base: tuple[str, int]) -> Service:
    """The best port-mapping service in a device description (UDA 1.1 2.3), its control URL resolved on
    the gateway (a relative path against `base`, the description's host and port; URLBase is ignored)."""
    if len(document) > MAX_DOCUMENT:
        raise PortMapDecodeError(f"UPnP description of {len(document)} bytes (at most {MAX_DOCUMENT})")
    text = document.decode("utf-8", errors="replace")
    found: dict[str, str] = {}
    position = 0
    while (start := text.find("<service>", position)) >= 0:
        end = text.find("</service>", start)
        if end < 0:
            break
        kind = _between(text, start, end, "serviceType")
        control = _between(text, start, end, "controlURL")
        if kind is not None and control is not None and kind[0] in SERVICES:
            found.setdefault(kind[0], control[0])
        position = end
    for service_type in SERVICES:
        if service_type in found:
            url = found[service_type]
            if not url.startswith(("/", "http://")):
                url = "/" + url
            host, port, path = _url_on(url, gateway, base)
            return Service(service_type, host, port, path)
    raise PortMapDecodeError("the gateway's UPnP description has no WANIPConnection or WANPPPConnection service")


def _escape(text: str) -> str:
    """`text` as XML character data (XML 1.0 2.4: `&` and `<` escaped, `>` too as xml.sax.saxutils does;
    not imported from there: xml.sax.saxutils loads urllib.request and http.client with it)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def encode_soap(service: Service, action: str, arguments: dict[str, str | int]) -> bytes:
    """The HTTP/1.1 POST of one SOAP action (UDA 1.1 3.1.1), `Connection: close`."""
    args = "".join(f"<{name}>{_escape(str(value))}</{name}>" for name, value in arguments.items())
    body = (
        '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>'
        f'<u:{action} xmlns:u="{service.service_type}">{args}</u:{action}></s:Body></s:Envelope>\r\n'
    ).encode()
    host = f"[{service.host}]" if ":" in service.host else service.host
    head = (
        f"POST {service.path} HTTP/1.1\r\nHOST: {host}:{service.port}\r\n"
        f'CONTENT-TYPE: text/xml; charset="utf-8"\r\nCONTENT-LENGTH: {len(body)}\r\n'
        f'SOAPACTION: "{service.service_type}#{action}"\r\nCONNECTION: close\r\n\r\n'
    )
    return head.encode() + body


def encode_get(host: str, port: int, path: str) -> bytes:
    """The HTTP/1.1 GET of the device description, `Connection: close`."""
    name = f"[{host}]" if ":" in host else host
    return f"GET {path} HTTP/1.1\r\nHOST: {name}:{port}\r\nCONNECTION: close\r\n\r\n".encode()


def http_length(data: bytes) -> int | None:
    """The total length of the response in `data` by its Content-Length, once its headers are all in (a
    device may keep the connection open despite `Connection: close`); None while they are not, or when
    there is no Content-Length (the response then ends when the connection does)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    length = _headers(data[:end].decode("latin-1").split("\r\n")[1:]).get("content-length", "")
    return end + 4 + int(length) if length.isdigit() and len(length) < 10 else None


def decode_http(data: bytes) -> HttpResponse:
    """An HTTP/1.x response read to the end of the connection (at most MAX_DOCUMENT bytes): status,
    headers, body (cut at Content-Length; chunked bodies are decoded)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise PortMapDecodeError("HTTP response without the end of its headers")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
        raise PortMapDecodeError(f"not an HTTP response: {lines[0][:60]!r}")
    headers = _headers(lines[1:])
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    elif headers.get("content-length", "").isdigit():
        body = body[: int(headers["content-length"])]
    return HttpResponse(int(status_line[1]), headers, body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    position = 0
    while True:
        eol = data.find(b"\r\n", position)
        if eol < 0:
            raise PortMapDecodeError("truncated chunked HTTP body")
        try:
            size = int(data[position:eol].split(b";")[0], 16)
        except ValueError:
            raise PortMapDecodeError("malformed chunk size in an HTTP body") from None
        if size < 0:  # int() takes a sign: "-6" would move back to this very line, for ever
            raise PortMapDecodeError("negative chunk size in an HTTP body")
        if size == 0:
            return bytes(out)
        start = eol + 2
        if start + size > len(data):
            raise PortMapDecodeError("truncated chunked HTTP body")
        out += data[start : start + size]
        position = start + size + 2


def soap_field(body: bytes, name: str) -> str | None:
    """The text of an output argument (<name>...</name>, with or without a namespace prefix on it)."""
    text = body.decode("utf-8", errors="replace")
    found = _between(text, 0, len(text), name)
    return None if found is None else found[0]


def soap_result(response: HttpResponse, action: str) -> HttpResponse:
    """The response of a SOAP action, or `PortMapRefused` with the UPnP errorCode (UDA 1.1 3.2.2)."""
    if response.status == 200:
        return response
    code = soap_field(response.body, "errorCode")
    description = soap_field(response.body, "errorDescription") or ""
    if code is not None and code.isdigit():
        raise PortMapRefused("UPnP", int(code), action, description[:100])
    raise PortMapRefused("UPnP", response.status, action, f"HTTP status {response.status}")
