"""Channels and relayed data of the embedded TURN server, sans-IO: which ChannelBind is a 400 (RFC 8656
11.2, 12), and how a peer's datagram is framed for the client (RFC 8656 11.3, 12.6)."""

from __future__ import annotations

from ...stun.attributes import Attr
from ...stun.message import Message, MessageClass, Method
from ...uri import format_host_port as format_peer
from ..framing import CHANNEL_MAX, CHANNEL_MIN  # RFC 8656 12: at most 4096 channels (and cooldowns) per allocation
from .types import Address, Allocation

__all__ = ["channel_conflict", "frame_for_client"]

_RECENT = (
    "; for 5 minutes after a binding expires neither its number nor its peer can be bound to anything else "
    "(RFC 8656 12)"
)


def channel_conflict(allocation: Allocation, number: int, peer: Address, now: float, cooldown: float) -> str | None:
    """The reason of the 400 a ChannelBind of `number` to `peer` gets, or None when it may bind or refresh:
    the number is out of range, bound to another peer, or the peer to another number, now or in the
    cooldown after such a binding expired (RFC 8656 11.2, 12)."""
    if not CHANNEL_MIN <= number <= CHANNEL_MAX:
        return f"Bad Request: channel number {number:#06x} is outside 0x4000-0x4FFF (RFC 8656 12)"
    bound = allocation.channels.get(number)
    if bound is not None and bound[0] != peer:
        if bound[1] > now:
            return f"Bad Request: channel {number:#06x} is bound to another peer {format_peer(bound[0])}"
        if now < bound[1] + cooldown:
            return f"Bad Request: channel {number:#06x} was bound to {format_peer(bound[0])}{_RECENT}"
    other = allocation.channel_by_peer.get(peer)
    if other is not None and other != number:
        expiry = allocation.channels[other][1]
        if expiry > now:
            return f"Bad Request: peer {format_peer(peer)} is bound to another channel {other:#06x}"
        if now < expiry + cooldown:
            return f"Bad Request: peer {format_peer(peer)} was bound to channel {other:#06x}{_RECENT}"
    cooling = allocation.cooldown.get(number)
    if cooling is not None and cooling[1] > now and cooling[0] != peer:
        return f"Bad Request: channel {number:#06x} was bound to {format_peer(cooling[0])}{_RECENT}"
    cooled = allocation.cooldown.of_peer(peer)
    if cooled is not None and cooled[1] > now and cooled[0] != number:
        return f"Bad Request: peer {format_peer(peer)} was bound to channel {cooled[0]:#06x}{_RECENT}"
    return None


def frame_for_client(allocation: Allocation, peer: Address, data: bytes, now: float) -> bytes | None:
    """ChannelData if a channel is bound to `peer` (padded to 4 bytes over TCP/TLS, RFC 8656 12.5), else a
    Data indication (RFC 8656 11.3); None when `data` does not fit."""
    number = allocation.channel_by_peer.get(peer)
    if number is not None and allocation.channels[number][1] > now:
        n = len(data)
        if n > 0xFFFF:
            return None
        frame = number.to_bytes(2, "big") + n.to_bytes(2, "big") + data
        if allocation.five_tuple.transport != "udp":
            frame += b"\x00" * (-n & 3)
        return frame
    indication = Message(Method.DATA, MessageClass.INDICATION, None, [(Attr.XOR_PEER_ADDRESS, peer), (Attr.DATA, data)])
    try:
        return indication.encode()
    except ValueError:
        return None
