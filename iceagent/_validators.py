"""attrs validators shared by the option classes of the embedded servers (`ServerLimits`, `TurnServerConfig`):
the message names the class and field, so a bad option says where it went wrong."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["at_least_one", "positive"]


def positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be positive, not {value!r}")


def at_least_one(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 1:
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must be at least 1, not {value!r}")
