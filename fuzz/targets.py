"""The fuzz targets: one plain function per decoder, `target(data, budget=None)`.

Each target feeds `data` to one decoder and lets through only that decoder's documented error; any
other exception escapes and is a crash. On what decodes it checks invariants (round trips, agreement
of fast and generic paths, bounded buffers) and raises `Finding` when one fails. With a `Budget` (the
fuzz driver gives one, the tests do not), a step that takes more CPU than the budget raises
`SlowInput`. Security defaults in DESIGN.md: "every decoder raises only its documented error, in
bounded time per input".
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from typing import Any

import attrs

from iceagent.cli.signal_blob import BlobError, SignalBlob
from iceagent.errors import CandidateParseError, IceServerError
from iceagent.ice.candidate import Candidate
from iceagent.ice.checks import read_check, read_fields
from iceagent.ice.tcp_framing import MAX_FRAME, Deframer, FramingError, encode_frame
from iceagent.mdns import wire
from iceagent.stun import Attr, Message, StunDecodeError, _fastdecode, looks_like_stun
from iceagent.stun import message as stun_message
from iceagent.turn.framing import (
    ChannelDataError,
    StreamDeframer,
    decode_channel_data,
    encode_channel_data,
    is_channel_data,
)
from iceagent.turn.server.types import split_stream
from iceagent.uri import IceServer, format_host_port, parse_host_port, parse_uri

from .mux_loop import mux_loop
from .mux_routes import mux_routes
from .support import Budget, Finding, expect, timed
from .turn_server import turn_server

__all__ = ["BUDGET_MS", "MAX_LEN", "MDNS_ERRORS", "TARGETS", "Finding", "Target"]

Target = Callable[[bytes, "Budget | None"], None]

#: The documented error of the mDNS packet parser (`wire.parse_packet`).
MDNS_ERRORS: tuple[type[BaseException], ...] = (wire.MdnsWireError,)

_SECURITY = frozenset({Attr.MESSAGE_INTEGRITY, Attr.MESSAGE_INTEGRITY_SHA256, Attr.FINGERPRINT})
_KEYS: tuple[bytes | str, ...] = (b"", "VOkJxbRl1RmTxUk/WvJxBt", b"\x00" * 16)
_VALUE_ERRORS = (ValueError, IndexError, KeyError, OverflowError, OSError, struct.error)


def _text(data: bytes) -> str:
    """Fuzz bytes as text, losslessly (bytes that are not UTF-8 become lone surrogates)."""
    return data.decode("utf-8", "surrogateescape")


def _chunks(data: bytes) -> tuple[int, bytes]:
    """(read size, stream): the first byte picks how a stream target cuts the rest into reads."""
    return (data[0] % 61 + 1, data[1:]) if data else (1, b"")


# ---- STUN (RFC 8489) ----


def stun(data: bytes, budget: Budget | None = None) -> None:
    """`Message.decode` raises only StunDecodeError; on what decodes, integrity, fingerprint and `get` of
    every attribute work, the compiled per-layout decoder agrees with the generic one, and a re-encoding
    decodes to the same attributes (RFC 8489 5, 14)."""
    with timed(budget, "Message.decode"):
        try:
            msg = Message.decode(data)
        except StunDecodeError:
            return
    with timed(budget, "reading the decoded message"):
        expect(looks_like_stun(data), "decoded a message that looks_like_stun refuses")
        for key in _KEYS:
            msg.verify_integrity(key)
        msg.verify_fingerprint()
        for attr in Attr:
            msg.get(attr)
            msg.get_all(attr)
            _ = attr in msg
        for t, _ in msg.attributes:
            msg.get(t)
        _ = msg.unknown_required
        repr(msg)
    with timed(budget, "checking the compiled decoder"):
        _check_shape(data, msg)
    with timed(budget, "re-encoding"):
        _check_reencode(msg)


def _check_shape(data: bytes, msg: Message) -> None:
    """The decoder compiled for this layout gives the generic decoder's attributes, for this message and
    for one with the same headers and other values (RFC 8489 14; iceagent/stun/_fastdecode.py)."""
    tid = msg.transaction_id
    generic, security, _ = stun_message._decode_attributes(data, tid)
    expect(generic == msg.attributes, "the generic decoder and Message.decode disagree")
    expect(read_check(msg) == read_fields(generic), "read_check disagrees with a walk of the attributes")
    decode_layout = _fastdecode.compile_decoder(data, security)
    if decode_layout is None:
        return
    holder = _Fields()
    expect(decode_layout(data, tid, holder) == generic, "the compiled decoder disagrees with the generic one")
    _check_fields(holder, data, generic)
    variant = bytearray(data)
    pos = 20
    for _, n in _fastdecode.layout(data):
        for i in range(pos + 4, pos + 4 + n):
            variant[i] ^= 0x5A
        pos += 4 + n + (-n & 3)
    other = bytes(variant)
    holder = _Fields()
    try:
        fast = decode_layout(other, tid, holder)
    except _VALUE_ERRORS:
        fast = None
    try:
        slow: list[Any] | None = stun_message._decode_attributes(other, tid)[0]
    except StunDecodeError:
        slow = None
    if fast is not None:
        expect(fast == slow, f"on {other.hex()} the compiled decoder gives {fast!r}, the generic one {slow!r}")
        _check_fields(holder, other, fast)


class _Fields:
    """Where a compiled decoder puts a Binding request's check fields (`Message._fields`)."""

    _fields: tuple[Any, ...] | None = None


def _check_fields(holder: _Fields, data: bytes, attributes: list[Any]) -> None:
    """A compiled Binding-request decoder fills the fields `read_fields` finds in its attributes (RFC 8445
    7.3); other decoders fill none."""
    if data[:2] != b"\x00\x01":
        expect(holder._fields is None, "a compiled decoder filled check fields of a message that is no check")
        return
    expect(holder._fields == read_fields(attributes), f"compiled check fields {holder._fields!r} on {data.hex()}")


def _check_reencode(msg: Message) -> None:
    """Encoding the decoded attributes (signed and fingerprinted) decodes to the same attributes. Values
    the decoder accepts but RFC 8489 forbids sending (an ERROR-CODE class outside 3..6) may be refused
    with ValueError, as `encode` documents."""
    plain = [(t, v) for t, v in msg.attributes if t not in _SECURITY]
    try:
        wire_bytes = Message(msg.method, msg.message_class, msg.transaction_id, plain).encode(
            integrity_key=b"key", integrity="both", fingerprint=True
        )
    except ValueError:
        return
    again = Message.decode(wire_bytes)
    expect(again.method == msg.method and again.message_class == msg.message_class, "method or class changed")
    expect([(t, v) for t, v in again.attributes if t not in _SECURITY] == plain, "attributes changed on re-encode")
    expect(again.verify_integrity(b"key") and again.verify_fingerprint(), "re-encoded message fails its own checks")


# ---- TURN over TCP/TLS: ChannelData and the stream framing (RFC 8656 12.5) ----


def _drain(deframer: StreamDeframer, out: list[bytes]) -> None:
    while (frame := deframer.next_frame()) is not None:
        out.append(frame)


def turn_framing(data: bytes, budget: Budget | None = None) -> None:
    """`StreamDeframer` never raises, cuts the same frames whatever the reads, accounts for every byte;
    `decode_channel_data` raises only ChannelDataError and accepts every ChannelData frame the deframer
    cuts (RFC 8656 12.4, 12.5)."""
    size, stream = _chunks(data)
    with timed(budget, "StreamDeframer over the whole stream"):
        whole = StreamDeframer()
        whole.feed(stream)
        frames: list[bytes] = []
        _drain(whole, frames)
    with timed(budget, f"StreamDeframer in {size}-byte reads"):
        chunked = StreamDeframer()
        pieces: list[bytes] = []
        for i in range(0, len(stream), size):
            chunked.feed(memoryview(stream)[i : i + size])
            _drain(chunked, pieces)
    expect(pieces == frames, "the frames depend on how the stream was read")
    expect(
        (chunked.discarded, chunked.buffered) == (whole.discarded, whole.buffered), "skipped bytes depend on reads"
    )
    consumed = whole.discarded + whole.buffered
    for frame in frames:
        if frame[0] < 0x40:
            expect(looks_like_stun(frame), f"a STUN frame with a bad header: {frame[:20].hex()}")
            consumed += len(frame)
        else:
            try:
                channel, payload = decode_channel_data(frame)
            except ChannelDataError as e:
                raise Finding(f"the deframer cut a ChannelData frame decode_channel_data refuses: {e}") from e
            expect(encode_channel_data(channel, payload) == frame, "ChannelData does not re-encode to its frame")
            consumed += 4 + ((len(payload) + 3) & ~3)
    expect(consumed == len(stream), f"{len(stream)} bytes in, {consumed} accounted for")
    with timed(budget, "decode_channel_data"):
        is_channel_data(stream)
        try:
            decode_channel_data(stream)
        except ChannelDataError:
            pass


def turn_split_stream(data: bytes, budget: Budget | None = None) -> None:
    """The TURN server's `split_stream` raises only ValueError, cuts the same frames whatever the reads,
    and every ChannelData frame it cuts decodes (RFC 8656 12.5)."""
    size, stream = _chunks(data)
    with timed(budget, "split_stream over the whole stream"):
        whole = bytearray(stream)
        try:
            frames: list[bytes] | None = split_stream(whole)
        except ValueError:
            frames = None
    with timed(budget, f"split_stream in {size}-byte reads"):
        buffer = bytearray()
        pieces: list[bytes] | None = []
        for i in range(0, len(stream), size):
            buffer += stream[i : i + size]
            try:
                pieces += split_stream(buffer)  # type: ignore[operator]
            except ValueError:
                pieces = None
                break
    expect((frames is None) == (pieces is None), "whether the stream is refused depends on how it was read")
    if frames is None or pieces is None:
        return
    expect(frames == pieces and whole == buffer, "the frames depend on how the stream was read")
    for frame in frames:
        if frame[0] >= 0x40:
            try:
                decode_channel_data(frame)
            except ChannelDataError as e:
                raise Finding(f"split_stream cut a ChannelData frame that does not decode: {e}") from e
        else:
            expect(len(frame) >= 20, f"split_stream cut a STUN frame of {len(frame)} bytes")


# ---- ICE-TCP (RFC 4571, RFC 6544) ----


def rfc4571(data: bytes, budget: Budget | None = None) -> None:
    """`Deframer` raises only FramingError, cuts the same frames whatever the reads (up to a bad LENGTH),
    re-encodes to the bytes it consumed, and buffers at most one frame plus a read (RFC 4571 2)."""
    size, stream = _chunks(data)
    max_frame = MAX_FRAME if not stream or stream[0] & 0x80 else stream[0] * 8
    stream = stream[1:]

    def run(step: int) -> tuple[list[bytes], bool, int]:
        deframer = Deframer(max_frame)
        frames: list[bytes] = []
        try:
            for i in range(0, len(stream), step):
                frames += deframer.feed_frames(stream[i : i + step])
                expect(deframer.buffered < 2 + max_frame, "the deframer holds more than one frame")
                expect(len(deframer._buffer) <= 2 + max_frame + step, "the deframer buffers more than frame + read")
        except FramingError:
            return frames, True, deframer.buffered
        try:
            deframer.end()
        except FramingError:
            expect(deframer.buffered > 0, "end() refused a stream that ended on a frame boundary")
        else:
            expect(deframer.buffered == 0, "end() accepted a stream that ended inside a frame")
        expect(deframer.frames == len(frames), "the frame counter is wrong")
        return frames, False, deframer.buffered

    with timed(budget, "Deframer over the whole stream"):
        frames, failed, buffered = run(max(1, len(stream)))
    with timed(budget, f"Deframer in {size}-byte reads"):
        pieces, failed_chunked, _ = run(size)
    expect(failed_chunked == failed, "whether the stream is refused depends on how it was read")
    # A bad LENGTH ends the connection; packets that came in the same read before it are not returned.
    same = pieces[: len(frames)] == frames if failed else pieces == frames
    expect(same, "the frames depend on how the stream was read")
    consumed = b"".join(encode_frame(f, max_frame) for f in frames)
    expect(stream.startswith(consumed), "the frames do not re-encode to the stream")
    if not failed:
        expect(len(consumed) + buffered == len(stream), "bytes lost between frames")


# ---- ICE candidates (RFC 8839 5.1) ----


def candidate(data: bytes, budget: Budget | None = None) -> None:
    """`Candidate.from_sdp` raises only CandidateParseError; what parses survives `to_sdp` and back, both
    as written and in canonical form (RFC 8839 5.1)."""
    line = _text(data)
    with timed(budget, "Candidate.from_sdp"):
        try:
            c = Candidate.from_sdp(line)
        except CandidateParseError:
            return
    with timed(budget, "the round trip"):
        sdp = c.to_sdp()
        again = Candidate.from_sdp(sdp)
        expect(again == c and hash(again) == hash(c), f"from_sdp(to_sdp(c)) != c for {sdp!r}")
        expect(again.to_sdp() == sdp, f"to_sdp is not stable: {sdp!r} -> {again.to_sdp()!r}")
        expect(Candidate.from_sdp("a=" + sdp) == c, "the a= prefix changes the candidate")
        canonical = attrs.evolve(c).to_sdp()
        expect(Candidate.from_sdp(canonical) == c, f"the canonical form {canonical!r} parses differently")
        _ = (c.addr, c.related_addr, c.ip, c.family, c.is_mdns, c.type_preference, c.local_preference)


# ---- mDNS (RFC 6762) ----


def mdns(data: bytes, budget: Budget | None = None) -> None:
    """The mDNS packet parser (`iceagent.mdns.wire.parse_packet`) raises only MDNS_ERRORS, reads each offset
    of the packet at most once (label reads + pointer follows <= its length, RFC 1035 4.1.4), and returns at
    most MAX_RECORDS questions and records, names case-folded (RFC 6762 16, 18)."""
    work = wire.ParseWork()
    with timed(budget, "mdns.wire.parse_packet"):
        try:
            message = wire.parse_packet(data, work=work)
        except MDNS_ERRORS:
            message = None
    expect(work.steps <= len(data), f"{work.steps} label reads and pointer follows for {len(data)} bytes")
    if message is None:
        return
    expect(len(message.questions) <= wire.MAX_RECORDS, f"{len(message.questions)} questions kept")
    expect(len(message.records) <= wire.MAX_RECORDS, f"{len(message.records)} records kept")
    for name in [q.name for q in message.questions] + [r.name for r in message.records]:
        expect(name == wire.normalize_name(name) and 0 < len(name) <= wire.MAX_NAME, f"name {name!r} not normalized")


# ---- the offer/answer blob ----

_NOW = 1_700_000_000.0


def signal_blob(data: bytes, budget: Budget | None = None) -> None:
    """`SignalBlob.decode` raises only BlobError; what decodes re-encodes to the same blob. An odd first
    byte makes the rest the JSON inside a well-formed blob (so the fuzzer reaches the fields), an even one
    makes it the pasted text."""
    if data and data[0] & 1:
        packed = base64.urlsafe_b64encode(zlib.compress(data[1:])).rstrip(b"=").decode()
        text = "ice1." + packed
    else:
        text = _text(data[1:])
    with timed(budget, "SignalBlob.decode"):
        try:
            SignalBlob.decode(text, expect="offer", now=_NOW)
        except BlobError:
            pass
        try:
            blob = SignalBlob.decode(text, max_age=None)
        except BlobError:
            return
    with timed(budget, "the round trip"):
        again = SignalBlob.decode(blob.encode(), max_age=None)
        expect(again == attrs.evolve(blob, created=float(int(blob.created))), "the blob changed on re-encoding")


# ---- STUN and TURN URIs (RFC 7064, RFC 7065) ----


def uri(data: bytes, budget: Budget | None = None) -> None:
    """`parse_uri`, `parse_host_port` and `IceServer` raise only IceServerError; what parses prints back
    to text that parses the same (RFC 7064 3.1, RFC 7065 3.1, RFC 3986 3.2.2)."""
    text = _text(data)
    with timed(budget, "parse_uri"):
        try:
            parsed = parse_uri(text)
        except IceServerError:
            pass
        else:
            expect(parse_uri(str(parsed)) == parsed, f"{text!r} -> {parsed} parses differently")
        try:
            IceServer(urls=[text], username="user", credential="secret")
        except IceServerError:
            pass
    with timed(budget, "parse_host_port"):
        try:
            address = parse_host_port(text, 3478)
        except IceServerError:
            return
        expect(parse_host_port(format_host_port(address), 1) == address, f"{text!r} -> {address} does not round trip")


#: name -> target function.
TARGETS: dict[str, Target] = {
    "stun": stun,
    "turn_framing": turn_framing,
    "turn_split_stream": turn_split_stream,
    "rfc4571": rfc4571,
    "candidate": candidate,
    "mdns": mdns,
    "signal_blob": signal_blob,
    "uri": uri,
    "turn_server": turn_server,
    "mux_routes": mux_routes,
    "mux_loop": mux_loop,
}

#: CPU budget of one step, in ms, timed without the fuzzer's instrumentation (fuzz.timing). A
#: well-formed 9000-byte mDNS response (80 A and 80 NSEC records, RFC 6762 17) takes dnslib 2.3 ms.
BUDGET_MS: dict[str, float] = dict.fromkeys(TARGETS, 5.0)

#: name -> the largest input the fuzzer makes (-max_len): room for the longest hostile input of each format.
MAX_LEN: dict[str, int] = {
    "stun": 4096,
    "turn_framing": 4096,
    "turn_split_stream": 4096,
    "rfc4571": 4096,
    "candidate": 6000,  # past the 4300-digit limit of int()
    "mdns": wire.MAX_MESSAGE,
    "signal_blob": 8192,
    "uri": 6000,
    "turn_server": 4096,
    "mux_routes": 4096,
    "mux_loop": 4096,
}
