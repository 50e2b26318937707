"""Tokens and numbers quoted in parse errors, kept short whatever a hostile input holds."""

from __future__ import annotations


def clip(token: str, n: int = 40) -> str:
    """A token for an error message: a hostile line's 100 kB token is not echoed whole."""
    return repr(token) if len(token) <= n else repr(token[:n]) + f"... ({len(token)} characters)"


def int_text(value: int) -> str:
    """An int for an error message; a huge one by its size (str() refuses more than 4300 digits)."""
    return str(value) if value.bit_length() <= 64 else f"(a {value.bit_length()}-bit integer)"
