"""The copy-paste signaling blob of `iceagent offer` / `iceagent answer`: one line carrying one side's
ICE parameters and candidates.

Format (version 1): ``ice1.`` then base64url (no padding) of a zlib-compressed JSON object::

    {"r": "offer"|"answer", "u": ufrag, "p": pwd, "c": [candidate lines without "candidate:"],
     "e": end-of-candidates (bool), "t": creation time (Unix seconds), "o": the offer's ufrag (answers only),
     "pc": a=ice-pacing in ms (optional), "l": true for an ICE-lite agent (a=ice-lite; optional),
     "op": a=ice-options tokens (optional)}

A blob from an iceagent before "l" and "op" existed has neither and still parses (a full agent, no options).

The version is in the prefix, so a future format fails with a clear message, not a parse error. The
zlib checksum catches a damaged paste; whitespace (a terminal's line wrapping) is ignored. A blob older
than `max_age` (its server-reflexive and relay candidates may be gone) is refused as stale.

A blob comes from anyone who can paste: `decode` raises only `BlobError` (and its subclasses), whatever
the input. Numbers are checked before they are used: an integer of more than MAX_NUMBER_DIGITS digits
is refused while the JSON is read (Python would refuse 4300 with a ValueError of its own), the creation
time must lie within MAX_CREATED seconds of the epoch (a float() of 10**400 is an OverflowError), the
pacing and the credentials must be valid `IceParameters` (RFC 8839 5.4, 5.5) and every candidate line
must parse (`Candidate.from_sdp`: ports, priorities, components and generations in range).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
import zlib
from collections.abc import Iterable
from typing import Any, Literal

import attrs

from ..errors import CandidateParseError, IceError
from ..ice.candidate import Candidate, IceParameters, IceParametersError

__all__ = [
    "BLOB_VERSION",
    "DEFAULT_MAX_AGE",
    "BlobError",
    "BlobVersionError",
    "SignalBlob",
    "StaleBlobError",
]

BLOB_VERSION = 1
#: Seconds after which a blob is refused as stale (its candidates and TURN allocations may be gone).
DEFAULT_MAX_AGE = 600.0
MAX_BLOB_CHARS = 64 * 1024
MAX_JSON_BYTES = 256 * 1024
MAX_CANDIDATES = 256
#: Longest integer accepted in the JSON, in digits: every numeric field fits in 12.
MAX_NUMBER_DIGITS = 20
#: Latest creation time accepted, in Unix seconds (year 5138): anything later is not a clock reading.
MAX_CREATED = 10**11

Role = Literal["offer", "answer"]

_PREFIX = re.compile(r"ice(\d+)\.", re.IGNORECASE)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")  # RFC 8445 5.3: ufrag and pwd are ice-chars


class BlobError(IceError, ValueError):
    """A signaling blob that cannot be used: malformed, damaged, the wrong kind, stale or another version."""


class BlobVersionError(BlobError):
    """A blob in a format version this iceagent does not read."""


class StaleBlobError(BlobError):
    """A blob older than the accepted age (or dated far in the future: a clock is wrong)."""


def _role(value: str) -> Role:
    if value not in ("offer", "answer"):
        raise ValueError(f"role must be 'offer' or 'answer', not {value!r}")
    return "offer" if value == "offer" else "answer"


def _candidates(value: Iterable[Candidate]) -> tuple[Candidate, ...]:
    return tuple(value)


@attrs.frozen
class SignalBlob:
    """One side's parameters and candidates, as exchanged by copy-paste."""

    role: Role = attrs.field(converter=_role)
    parameters: IceParameters
    candidates: tuple[Candidate, ...] = attrs.field(converter=_candidates, default=())
    end_of_candidates: bool = True
    created: float = attrs.field(factory=time.time)  # Unix time
    offer_ufrag: str | None = None  # in an answer: the ufrag of the offer it answers

    def encode(self) -> str:
        """The one-line text form: ``ice1.<base64url>``."""
        doc: dict[str, Any] = {
            "r": self.role,
            "u": self.parameters.ufrag,
            "p": self.parameters.pwd,
            "c": [c.to_sdp().removeprefix("candidate:") for c in self.candidates],
            "e": self.end_of_candidates,
            "t": int(self.created),
        }
        if self.offer_ufrag is not None:
            doc["o"] = self.offer_ufrag
        if self.parameters.pacing is not None:
            doc["pc"] = self.parameters.pacing
        if self.parameters.lite:
            doc["l"] = True
        if self.parameters.options:
            doc["op"] = list(self.parameters.options)
        raw = json.dumps(doc, separators=(",", ":")).encode()
        packed = base64.urlsafe_b64encode(zlib.compress(raw, 9)).rstrip(b"=").decode("ascii")
        return f"ice{BLOB_VERSION}.{packed}"

    def age(self, now: float | None = None) -> float:
        """Seconds since the blob was made (negative if its clock is ahead of ours)."""
        return (time.time() if now is None else now) - self.created

    @classmethod
    def decode(
        cls,
        text: str,
        *,
        expect: Role | None = None,
        max_age: float | None = DEFAULT_MAX_AGE,
        now: float | None = None,
    ) -> SignalBlob:
        """Parse a blob; raises `BlobError` (or its subclasses) saying what is wrong and what to do.

        `expect` checks the role; `max_age` (None: no limit) refuses blobs older than that many seconds.
        """
        blob = _parse(text)
        if expect is not None and blob.role != expect:
            other = "iceagent answer" if blob.role == "offer" else "iceagent offer"
            raise BlobError(f"this is an {blob.role}, not an {expect}: paste it into '{other}'")
        if max_age is not None:
            age = blob.age(now)
            if age > max_age:
                raise StaleBlobError(
                    f"the {blob.role} is stale: made {_duration(age)} ago (the limit is {_duration(max_age)}); "
                    "its candidates may be gone: make a new one (or raise --max-age)"
                )
            if -age > max_age:
                raise StaleBlobError(
                    f"the {blob.role} is dated {_duration(-age)} in the future: is a clock wrong? "
                    "(raise --max-age to accept it)"
                )
        return blob


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def _parse(text: str) -> SignalBlob:
    if not isinstance(text, str):
        raise BlobError(f"a blob is a string, not {type(text).__name__}")
    compact = "".join(text.split()).strip("'\"")
    if not compact:
        raise BlobError("empty input: expected a line starting with 'ice1.'")
    if len(compact) > MAX_BLOB_CHARS:
        raise BlobError(f"too long for a blob ({len(compact)} characters; at most {MAX_BLOB_CHARS})")
    m = _PREFIX.match(compact)
    if m is None:
        lower = compact.lower()
        if lower.startswith(("a=", "candidate:", "v=0")):
            raise BlobError("this looks like SDP, not an iceagent blob (expected a line starting with 'ice1.')")
        raise BlobError(f"not an iceagent blob: expected a line starting with 'ice1.', got {_clip(compact)!r}")
    version = int(m.group(1))
    if version != BLOB_VERSION:
        raise BlobVersionError(
            f"this blob is format version {version}; this iceagent reads version {BLOB_VERSION} only: "
            "run the same iceagent version on both sides"
        )
    body = compact[m.end() :]
    try:
        if not _BASE64URL.fullmatch(body):
            raise binascii.Error("characters outside base64url")
        packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise BlobError("the blob is damaged (not base64url): copy the whole line again") from None
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, MAX_JSON_BYTES)
        if inflater.unconsumed_tail:
            raise BlobError("the blob unpacks to more than 256 KiB: not an iceagent blob")
        if not inflater.eof:
            raise BlobError("the blob is truncated: copy the whole line again")
        doc = json.loads(raw, parse_int=_parse_int)
    except (zlib.error, ValueError, RecursionError) as e:
        if isinstance(e, BlobError):
            raise
        raise BlobError("the blob is damaged (checksum or format): copy the whole line again") from None
    return _from_doc(doc)


def _parse_int(text: str) -> int:
    """json's integer hook: refuse a number too long to be a field before int() sees it."""
    if len(text.lstrip("-").lstrip("0")) > MAX_NUMBER_DIGITS:
        raise BlobError(
            f"the blob holds a {len(text)}-digit number (at most {MAX_NUMBER_DIGITS}): not an iceagent blob"
        )
    return int(text)


def _clip(text: str, n: int = 24) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _from_doc(doc: Any) -> SignalBlob:
    if not isinstance(doc, dict):
        raise BlobError("the blob's content is not an object")

    def field(key: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = doc.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BlobError(f"the blob has no valid {what}")
        return value

    role = field("r", str, "role")
    if role not in ("offer", "answer"):
        raise BlobError(f"the blob's role is {_clip(role)!r}, not 'offer' or 'answer'")
    ufrag = field("u", str, "ufrag")
    pwd = field("p", str, "pwd")
    # RFC 8445 5.3: ufrag at least 4, pwd at least 22 ice-chars, both at most 256.
    if not 4 <= len(ufrag) <= 256 or not _ICE_CHARS.fullmatch(ufrag):
        raise BlobError("the blob's ufrag is not 4 to 256 ice-chars (RFC 8445 5.3)")
    if not 22 <= len(pwd) <= 256 or not _ICE_CHARS.fullmatch(pwd):
        raise BlobError("the blob's pwd is not 22 to 256 ice-chars (RFC 8445 5.3)")
    lines = field("c", list, "candidate list")
    if len(lines) > MAX_CANDIDATES:
        raise BlobError(f"the blob has {len(lines)} candidates; at most {MAX_CANDIDATES}")
    candidates = []
    for i, line in enumerate(lines, 1):
        if not isinstance(line, str):
            raise BlobError(f"candidate {i} of the blob is not a string")
        try:
            candidates.append(Candidate.from_sdp(line))
        except CandidateParseError as e:
            raise BlobError(f"candidate {i} of the blob is malformed: {e}") from None
    end = field("e", bool, "end-of-candidates flag")
    created = field("t", (int, float), "creation time")
    if isinstance(created, bool) or not math.isfinite(created) or not 0 <= created <= MAX_CREATED:
        raise BlobError("the blob has no valid creation time")
    offer_ufrag = doc.get("o")
    if offer_ufrag is not None and not isinstance(offer_ufrag, str):
        raise BlobError("the blob's offer reference is not a string")
    pacing = doc.get("pc")
    lite = doc.get("l", False)
    if not isinstance(lite, bool):
        raise BlobError("the blob's ICE-lite flag is not true or false")
    options = doc.get("op", [])
    if not isinstance(options, list):
        raise BlobError("the blob's ICE options are not a list")
    try:
        parameters = IceParameters(ufrag=ufrag, pwd=pwd, pacing=pacing, lite=lite, options=options)
    except IceParametersError as e:
        raise BlobError(f"the blob's ICE parameters are invalid: {e}") from None
    return SignalBlob(
        role=role,
        parameters=parameters,
        candidates=tuple(candidates),
        end_of_candidates=end,
        created=float(created),
        offer_ufrag=offer_ufrag,
    )
