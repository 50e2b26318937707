"""The iceagent plugin: registers the "vnet" network factory (`iceagent_networks` hook).

This module is the entry point, loaded by every process that opens an agent: it imports the virtual
network only when the hook is called (`iceagent demo`, `iceagent_networks()`), not when it is loaded.
"""

from __future__ import annotations

import logging
from typing import Any

from iceagent.hookspecs import hookimpl


@hookimpl
def iceagent_networks() -> dict[str, Any]:
    """{"vnet": vnet}: two hosts behind RFC 4787 NATs and a STUN/TURN server host on a virtual internet. A
    package that cannot be imported (a broken install, a version skew with iceagent) is logged and gives no
    network, as a plugin that fails to load is skipped (iceagent/plugins.py): the hook call goes on for the
    other plugins."""
    try:
        from .scenario import vnet
    except ImportError:
        logging.getLogger("iceagent.plugins").exception("iceagent-vnet cannot load its virtual network; skipped")
        return {}

    return {"vnet": vnet}
