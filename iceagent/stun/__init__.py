"""Sans-IO STUN (RFC 8489): the message codec, attributes and client transactions."""

from .attributes import MAGIC_COOKIE, Attr, PasswordAlgorithm
from .message import (
    Message,
    MessageClass,
    Method,
    StunDecodeError,
    long_term_key,
    looks_like_stun,
    userhash,
)

__all__ = [
    "MAGIC_COOKIE",
    "Attr",
    "Message",
    "MessageClass",
    "Method",
    "PasswordAlgorithm",
    "StunDecodeError",
    "long_term_key",
    "looks_like_stun",
    "userhash",
]
