"""The errors of port mapping (PCP RFC 6887, NAT-PMP RFC 6886, UPnP-IGD): each says what the gateway did."""

from __future__ import annotations

from ..errors import IceError

__all__ = ["PortMapDecodeError", "PortMapError", "PortMapRefused", "PortMapTimeout", "UnsupportedVersion"]


class PortMapError(IceError):
    """A port mapping could not be made, kept or deleted (the message names the gateway and the protocol)."""


class PortMapDecodeError(PortMapError, ValueError):
    """A datagram or document from the gateway is not a well-formed answer to what was asked: it is ignored
    (RFC 6887 8.3, RFC 6886 3.1: silently dropped), never trusted."""


class PortMapRefused(PortMapError):
    """The gateway answered with an error result code: `protocol`, `code` and its RFC name are kept."""

    def __init__(self, protocol: str, code: int, name: str, detail: str = "") -> None:
        self.protocol = protocol
        self.code = code
        self.name = name
        super().__init__(f"{protocol} gateway refused the mapping: {name} ({code}){': ' + detail if detail else ''}")


class UnsupportedVersion(PortMapRefused):
    """The server speaks an older protocol version (RFC 6887 9): `version` is the one it named (0 = NAT-PMP)."""

    def __init__(self, protocol: str, version: int) -> None:
        self.version = version
        super().__init__(protocol, 1, "UNSUPP_VERSION", f"the server speaks version {version}")


class PortMapTimeout(PortMapError):
    """The gateway did not answer within the retransmission schedule or the gatherer's timeout."""
