"""ChannelData messages and the framing of TURN traffic on a byte stream (RFC 8656 12.5, 12.6; RFC 7983).

Over UDP every datagram is one STUN message or one ChannelData message. Over TCP and TLS both are
sent back to back on the stream: a STUN message carries its length in its header, a ChannelData
message carries the length of its data, padded to a multiple of 4 bytes on the stream (RFC 8656 12.5).
`StreamDeframer` cuts such a stream back into messages, whatever the reads look like.
"""

from __future__ import annotations

import struct

from ..errors import IceError

__all__ = [
    "CHANNEL_DATA_MAX",
    "CHANNEL_MAX",
    "CHANNEL_MIN",
    "ChannelDataError",
    "StreamDeframer",
    "decode_channel_data",
    "encode_channel_data",
    "is_channel_data",
]

CHANNEL_MIN = 0x4000
"""Lowest channel number a client may bind (RFC 8656 12)."""
CHANNEL_MAX = 0x4FFF
"""Highest channel number a client may bind (RFC 8656 12)."""
CHANNEL_DATA_MAX = 0xFFFF
"""The most bytes of application data one ChannelData message carries: its Length field has 16 bits (RFC 8656
12.4). Over UDP the datagram's own limit is lower (65507 bytes of payload over IPv4): the socket refuses more."""

_HEADER = struct.Struct("!HH")
_PAD = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")
_COOKIE = b"\x21\x12\xa4\x42"


class ChannelDataError(IceError, ValueError):
    """Bytes that are not a well-formed ChannelData message (RFC 8656 12.4)."""


def is_channel_data(data: bytes) -> bool:
    """True when the first byte is 64..79, the range of ChannelData (RFC 7983 7, RFC 8656 12)."""
    return len(data) >= 4 and 0x40 <= data[0] <= 0x4F


def encode_channel_data(channel: int, data: bytes, *, pad: bool = False) -> bytes:
    """A ChannelData message (RFC 8656 12.4); `pad=True` pads it to 4 bytes, as TCP and TLS need (12.5)."""
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise ChannelDataError(f"channel number {channel:#06x} is outside 0x4000-0x4FFF (RFC 8656 12)")
    n = len(data)
    if n > CHANNEL_DATA_MAX:
        raise ChannelDataError(f"ChannelData carries at most {CHANNEL_DATA_MAX} bytes, not {n} (RFC 8656 12.4)")
    if pad:
        return _HEADER.pack(channel, n) + data + _PAD[n & 3]
    return _HEADER.pack(channel, n) + data


def decode_channel_data(frame: bytes) -> tuple[int, bytes]:
    """(channel number, application data) of a ChannelData message; padding after the data is ignored
    (RFC 8656 12.4, 12.6). Raises ChannelDataError when `frame` is not one."""
    if len(frame) < 4:
        raise ChannelDataError(f"{len(frame)} bytes is shorter than the 4-byte ChannelData header")
    channel, n = _HEADER.unpack_from(frame)
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise ChannelDataError(f"channel number {channel:#06x} is outside 0x4000-0x4FFF (RFC 8656 12)")
    if len(frame) < 4 + n:
        raise ChannelDataError(f"ChannelData length field {n} overruns the {len(frame) - 4} bytes after the header")
    return channel, frame[4 : 4 + n]


class StreamDeframer:
    """Cuts a TCP/TLS byte stream into STUN and ChannelData messages (RFC 8656 12.5, RFC 8489 6.2.2).

    `feed` the bytes as they arrive, then call `next_frame` until it returns None. A frame split over
    several reads is held until it is complete; several frames in one read come out one by one.
    ChannelData frames come out with their stream padding removed. Bytes that cannot start a frame
    (the top two bits are 10 or 11, or a STUN header without the magic cookie) are skipped one at a
    time until a frame starts again, and counted in `discarded`.
    """

    __slots__ = ("_buffer", "discarded")

    def __init__(self) -> None:
        self._buffer = bytearray()
        #: Bytes skipped because no frame could start there.
        self.discarded = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the stream."""
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Bytes received but not returned yet (an incomplete frame)."""
        return len(self._buffer)

    def next_frame(self) -> bytes | None:
        """The next complete message, or None until more bytes arrive."""
        buf = self._buffer
        while len(buf) >= 4:
            first = buf[0]
            if first < 0x40:
                # STUN: 20-byte header, the length field counts the attributes (RFC 8489 5).
                if len(buf) < 8:
                    return None
                n = buf[2] << 8 | buf[3]
                if buf[4:8] != _COOKIE or n & 3:
                    self._skip()
                    continue
                total = 20 + n
                if len(buf) < total:
                    return None
                frame = bytes(buf[:total])
                del buf[:total]
                return frame
            if first <= 0x4F:
                n = buf[2] << 8 | buf[3]
                total = 4 + ((n + 3) & ~3)
                if len(buf) < total:
                    return None
                frame = bytes(buf[: 4 + n])
                del buf[:total]
                return frame
            self._skip()
        return None

    def _skip(self) -> None:
        del self._buffer[:1]
        self.discarded += 1
