"""The iceagent plugin: registers the "vnet" network factory (`iceagent_networks` hook)."""

from __future__ import annotations

from typing import Any

from iceagent.hookspecs import hookimpl

from .scenario import vnet


@hookimpl
def iceagent_networks() -> dict[str, Any]:
    """{"vnet": vnet}: two hosts behind RFC 4787 NATs and a STUN/TURN server host on a virtual internet."""
    return {"vnet": vnet}
