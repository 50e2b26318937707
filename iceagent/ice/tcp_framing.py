"""RFC 4571 framing for ICE-TCP (RFC 6544 3): every packet on the stream is preceded by its 16-bit length.

Sans-IO: `encode_frame` builds one frame, `Deframer` cuts received bytes back into packets, whatever
way the stream split them (partial frames wait for more bytes, several frames in one read come out
one by one). There is no resynchronisation in RFC 4571: a bad length is fatal for the connection.
"""

from __future__ import annotations

__all__ = ["MAX_FRAME", "Deframer", "FramingError", "encode_frame"]

#: The largest packet a 16-bit LENGTH field can carry (RFC 4571 2).
MAX_FRAME = 65535


class FramingError(ValueError):
    """A frame over the limit, or a stream that ended inside a frame (RFC 4571 2)."""


def encode_frame(data: bytes | bytearray | memoryview, max_frame: int = MAX_FRAME) -> bytes:
    """One RFC 4571 frame: the 2-byte big-endian LENGTH, then the packet (RFC 4571 2)."""
    n = len(data)
    if n > max_frame:
        raise FramingError(f"a {n}-byte packet is over the {max_frame}-byte frame limit (RFC 4571 2)")
    return n.to_bytes(2, "big") + bytes(data)


class Deframer:
    """Cuts an RFC 4571 byte stream into packets (RFC 4571 2); `max_frame` below 65535 tightens the limit.

    `feed` the bytes as they arrive, then call `next_frame` until it returns None. A LENGTH over
    `max_frame` raises FramingError (the connection must be closed: the stream cannot resynchronise).
    At most one frame plus the last read is ever buffered.
    """

    __slots__ = ("_buffer", "_offset", "frames", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if not 0 <= max_frame <= MAX_FRAME:
            raise ValueError(f"max_frame must be 0..{MAX_FRAME}, not {max_frame}")
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._offset = 0
        #: Frames returned so far.
        self.frames = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes read from the stream."""
        if self._offset:
            del self._buffer[: self._offset]
            self._offset = 0
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Bytes received but not returned yet (the start of an incomplete frame)."""
        return len(self._buffer) - self._offset

    def next_frame(self) -> bytes | None:
        """The next complete packet, or None until more bytes arrive; FramingError for a LENGTH over the limit."""
        buf, start = self._buffer, self._offset
        if len(buf) - start < 2:
            return None
        n = buf[start] << 8 | buf[start + 1]
        if n > self.max_frame:
            raise FramingError(f"frame LENGTH {n} is over the {self.max_frame}-byte limit (RFC 4571 2)")
        end = start + 2 + n
        if len(buf) < end:
            return None
        frame = bytes(buf[start + 2 : end])
        if end == len(buf):
            buf.clear()
            self._offset = 0
        else:
            self._offset = end
        self.frames += 1
        return frame

    def feed_frames(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """`feed` then every complete packet."""
        self.feed(data)
        out = []
        while (frame := self.next_frame()) is not None:
            out.append(frame)
        return out

    def end(self) -> None:
        """The stream ended: FramingError if it stopped inside a frame (RFC 4571 2)."""
        if self.buffered:
            raise FramingError(f"the stream ended {self.buffered} bytes into an incomplete frame")
