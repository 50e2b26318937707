"""The packet that travels through the virtual network: a UDP datagram or a TCP segment."""

from __future__ import annotations

from .addresses import UDP_HEADER, Address, ip_header_size

DEFAULT_HOP_LIMIT = 64
"""Initial TTL / hop limit (RFC 791, RFC 8200); a routing loop drops the packet with reason "ttl"."""

# TCP segment kinds (a simplified TCP, RFC 9293: no windows, loss is modelled as delay).
SYN = "syn"
SYNACK = "synack"
RST = "rst"
DATA = "data"
FIN = "fin"
CLOSE = "close"
ACK = "ack"


class Packet:
    """One IP packet: protocol, source and destination transport addresses, payload.

    Packets are never changed once sent: a NAT builds a translated copy, so duplicates can share one.
    TCP segments also carry `kind` (SYN, SYNACK, RST, DATA, FIN, CLOSE, ACK) and `seq`.
    """

    __slots__ = ("dst", "hops", "kind", "payload", "proto", "seq", "src")

    def __init__(
        self,
        proto: str,
        src: Address,
        dst: Address,
        payload: bytes,
        *,
        hops: int = DEFAULT_HOP_LIMIT,
        kind: str = "",
        seq: int = 0,
    ) -> None:
        self.proto = proto
        self.src = src
        self.dst = dst
        self.payload = payload
        self.hops = hops
        self.kind = kind
        self.seq = seq

    @property
    def size(self) -> int:
        """Bytes on the wire: IP + UDP headers + payload (TCP segments are sized like UDP ones)."""
        return len(self.payload) + UDP_HEADER + ip_header_size(self.dst[0])

    def forwarded(self, *, src: Address | None = None, dst: Address | None = None) -> Packet:
        """A copy one hop further (hop limit decremented), with source and/or destination rewritten."""
        return Packet(
            self.proto,
            self.src if src is None else src,
            self.dst if dst is None else dst,
            self.payload,
            hops=self.hops - 1,
            kind=self.kind,
            seq=self.seq,
        )

    def __repr__(self) -> str:
        extra = f" {self.kind}#{self.seq}" if self.proto == "tcp" else ""
        return f"<Packet {self.proto}{extra} {self.src} -> {self.dst} {len(self.payload)}B>"
