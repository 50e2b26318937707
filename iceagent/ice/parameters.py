"""One side's ICE parameters (RFC 8445 5.3) and their session-level SDP lines (RFC 8839 5.3-5.6).

Grammar (RFC 8839 5.3, 5.4, 5.5, 5.6)::

    ice-lite               = "ice-lite"
    ice-ufrag-att          = "ice-ufrag:" ufrag           ufrag    = 4*256ice-char
    ice-pwd-att            = "ice-pwd:" password          password = 22*256ice-char
    ice-pacing-att         = "ice-pacing:" pacing-value   pacing-value = 1*10DIGIT
    ice-options            = "ice-options:" ice-option-tag *(SP ice-option-tag)
    ice-option-tag         = 1*ice-char

`IceParameters.from_sdp` reads those lines (with or without `a=`, among any others, which it skips) and
raises `IceParametersSdpError` (an `IceParametersError`, so a `ValueError`) on a malformed one; the
values then go through the same checks as a hand-made `IceParameters`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import attrs

from ..errors import IceError
from ._text import clip, int_text

__all__ = [
    "MAX_ICE_OPTIONS",
    "MAX_PACING",
    "MIN_PACING",
    "RENOMINATION",
    "IceParameters",
    "IceParametersError",
    "IceParametersSdpError",
]

#: Bounds of `IceParameters.pacing` in ms. RFC 8839 5.5 allows 1*10DIGIT; below 1 ms there is no value
#: to signal, and above 1 s a check list of `max_pairs` (100) would need over 100 s to send its first
#: checks, longer than any failed timeout: a peer signalling more is refused rather than obeyed.
MIN_PACING, MAX_PACING = 1, 1000
#: What a received credential may hold: 1-256 visible ASCII characters, and no colon in a ufrag (it
#: would split USERNAME, RFC 8445 7.2.2). RFC 8839 5.4 asks senders for 4-256 (ufrag) and 22-256 (pwd)
#: ice-chars, which is what this agent generates; like pion and aioice, shorter or looser values that
#: hand-written signaling carries are accepted, since nothing in the checks depends on them.
_CREDENTIAL_CHARS = {"ufrag": re.compile(r"[!-9;-~]{1,256}"), "pwd": re.compile(r"[!-~]{1,256}")}
#: Most a=ice-options tokens kept, and the longest one: RFC 8839 5.6 sets no bound; the registered options
#: ("trickle", "ice2", "renomination", ...) are a handful of short words, and a peer's list is hostile input.
MAX_ICE_OPTIONS, MAX_ICE_OPTION_LENGTH = 32, 64
#: The ice-option both sides announce to use renomination (draft-thatcher-ice-renomination 3, as Chrome).
RENOMINATION = "renomination"
_ICE_OPTION = re.compile(rf"[A-Za-z0-9+/]{{1,{MAX_ICE_OPTION_LENGTH}}}")  # ice-option-tag = 1*ice-char
_DIGITS = re.compile(r"[0-9]{1,10}")  # pacing-value = 1*10DIGIT
#: The longest SDP line `from_sdp` looks at: a 256-character pwd plus its name, or the options at their bound.
_MAX_LINE = 16 + MAX_ICE_OPTIONS * (MAX_ICE_OPTION_LENGTH + 1)


class IceParametersError(IceError, ValueError):
    """ICE parameters that cannot work: an empty ufrag or pwd, one over 256 characters or with a space or
    a non-ASCII character, a colon in a ufrag, a pacing not an integer number of ms in
    MIN_PACING..MAX_PACING (RFC 8839 5.4-5.5), or an ice-options token that is not 1*ice-char (5.6)."""


class IceParametersSdpError(IceParametersError):
    """A session-level ICE line (a=ice-ufrag, a=ice-pwd, a=ice-lite, a=ice-options, a=ice-pacing) that does
    not follow RFC 8839 5.3-5.6, one repeated with another value, or a missing ufrag or pwd; the message names
    the line."""


def _credential(what: str) -> Any:
    pattern = _CREDENTIAL_CHARS[what]

    def check(_inst: object, _attribute: object, value: Any) -> None:
        if not isinstance(value, str):
            raise IceParametersError(f"ICE {what} must be a str, not {type(value).__name__}")
        if not pattern.fullmatch(value):
            colon = ", no ':'" if what == "ufrag" else ""
            raise IceParametersError(
                f"ICE {what} {clip(value)} is not 1 to 256 visible ASCII characters{colon} "
                "(RFC 8839 5.4, RFC 8445 5.3, 7.2.2)"
            )

    return check


def _pacing(_inst: object, _attribute: object, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise IceParametersError(f"ICE pacing must be an integer number of milliseconds, not {value!r}")
    if not MIN_PACING <= value <= MAX_PACING:
        raise IceParametersError(
            f"ICE pacing {int_text(value)} ms is out of range ({MIN_PACING}..{MAX_PACING} ms; RFC 8839 5.5, "
            "RFC 8445 14.2)"
        )


def _lite(_inst: object, _attribute: object, value: Any) -> None:
    if not isinstance(value, bool):
        raise IceParametersError(f"ICE lite must be True or False, not {type(value).__name__}")


def _options(value: Any) -> tuple[str, ...]:
    """ice-options tokens (RFC 8839 5.6) as a tuple: each 1*ice-char, at most MAX_ICE_OPTIONS of them."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise IceParametersError(
            f"ICE options are a sequence of tokens such as ('trickle',), not {type(value).__name__}"
        )
    tokens: list[str] = []
    for token in value:
        if not isinstance(token, str) or not _ICE_OPTION.fullmatch(token):
            shown = clip(token) if isinstance(token, str) else type(token).__name__
            raise IceParametersError(
                f"ICE option {shown} is not an ice-option-tag: 1 to {MAX_ICE_OPTION_LENGTH} ice-chars "
                "(letters, digits, '+', '/'; RFC 8839 5.6)"
            )
        if len(tokens) >= MAX_ICE_OPTIONS:
            raise IceParametersError(f"more than {MAX_ICE_OPTIONS} ICE options")
        tokens.append(token)
    return tuple(tokens)


@attrs.frozen
class IceParameters:
    """The ICE credentials of one side (RFC 8445 5.3), its optional `a=ice-pacing` in ms (RFC 8839 5.5),
    whether it is an ICE-lite agent (`a=ice-lite`, RFC 8445 2.5) and its `a=ice-options` tokens (RFC 8839 5.6).

    Checked when made, whatever they come from (signaling, SDP, the offer/answer blob): ufrag and pwd 1-256
    visible ASCII characters, no colon in a ufrag (the agent itself generates RFC 8839 5.4's 4-256 and
    22-256 ice-chars), pacing MIN_PACING..MAX_PACING ms, options ice-char tokens. A bad value raises
    IceParametersError (a ValueError)."""

    ufrag: str = attrs.field(validator=_credential("ufrag"))
    pwd: str = attrs.field(validator=_credential("pwd"))
    pacing: int | None = attrs.field(default=None, validator=_pacing)
    lite: bool = attrs.field(default=False, validator=_lite)
    options: tuple[str, ...] = attrs.field(default=(), converter=_options)

    def with_option(self, option: str) -> IceParameters:
        """These parameters announcing one more a=ice-options token (unchanged if they already do)."""
        return self if option in self.options else attrs.evolve(self, options=(*self.options, option))

    def to_sdp(self) -> list[str]:
        """The session-level SDP lines (RFC 8839 5.3-5.6): a=ice-ufrag, a=ice-pwd, then a=ice-lite,
        a=ice-options and a=ice-pacing when they apply."""
        lines = [f"a=ice-ufrag:{self.ufrag}", f"a=ice-pwd:{self.pwd}"]
        if self.lite:
            lines.append("a=ice-lite")
        if self.options:
            lines.append("a=ice-options:" + " ".join(self.options))
        if self.pacing is not None:
            lines.append(f"a=ice-pacing:{self.pacing}")
        return lines

    @classmethod
    def from_sdp(cls, lines: str | Iterable[str]) -> IceParameters:
        """Read a=ice-ufrag, a=ice-pwd, a=ice-lite, a=ice-options and a=ice-pacing (RFC 8839 5.3-5.6) from
        `lines` (a list, or one text with line breaks; `a=` optional; other lines ignored). Several
        a=ice-options lines add up, a line repeated with the same value (a BUNDLE offer's m-sections) counts
        once; one repeated with another value, or no ufrag or pwd, is an IceParametersSdpError."""
        if isinstance(lines, str):
            lines = lines.splitlines()
        found: dict[str, str] = {}
        options: list[str] = []
        for raw in lines:
            if not isinstance(raw, str):
                raise IceParametersSdpError(f"SDP lines are str, not {type(raw).__name__}")
            line = raw.strip()
            if line[:2].lower() == "a=":
                line = line[2:]
            name, colon, value = line.partition(":")
            name = name.strip().lower()
            if name not in _SDP_NAMES:
                continue
            if len(line) > _MAX_LINE:
                raise IceParametersSdpError(f"a=ice-{name[4:]} line of {len(line)} characters is too long")
            if name == "ice-options":
                options.extend(value.split())
                if not value.split() or len(options) > MAX_ICE_OPTIONS:
                    raise IceParametersSdpError(
                        f"a=ice-options needs 1 to {MAX_ICE_OPTIONS} tokens (RFC 8839 5.6), got {clip(line)}"
                    )
                continue
            if name in found and found[name] != value.strip():
                # a BUNDLE offer repeats the same ufrag/pwd in every m-section: only a different value is an error
                raise IceParametersSdpError(f"a={name} appears twice with different values")
            if name == "ice-lite":
                if colon:
                    raise IceParametersSdpError(f"a=ice-lite takes no value (RFC 8839 5.3), got {clip(line)}")
            elif not colon or not value.strip():
                raise IceParametersSdpError(f"a={name} needs a value (RFC 8839 5.4-5.5), got {clip(line)}")
            elif name == "ice-pacing" and not _DIGITS.fullmatch(value.strip()):
                raise IceParametersSdpError(f"a=ice-pacing takes 1 to 10 digits (RFC 8839 5.5), got {clip(line)}")
            found[name] = value.strip()
        for required in ("ice-ufrag", "ice-pwd"):
            if required not in found:
                raise IceParametersSdpError(f"no a={required} line (RFC 8839 5.4)")
        pacing = found.get("ice-pacing")
        try:
            return cls(
                ufrag=found["ice-ufrag"],
                pwd=found["ice-pwd"],
                pacing=None if pacing is None else int(pacing),
                lite="ice-lite" in found,
                options=tuple(dict.fromkeys(options)),
            )
        except IceParametersError as exc:
            raise IceParametersSdpError(str(exc)) from None


_SDP_NAMES = frozenset({"ice-ufrag", "ice-pwd", "ice-lite", "ice-options", "ice-pacing"})
