"""Builds the pluggy PluginManager: the built-in plugins plus third-party ones from entry points."""

from __future__ import annotations

import functools

import pluggy

from . import hookspecs
from .logs import get_logger

log = get_logger("iceagent.plugins")

#: Modules registered as built-in plugins, in order (the host gatherer first).
BUILTIN_PLUGINS = (
    "iceagent.gatherers.host",
    "iceagent.gatherers.srflx",
    "iceagent.gatherers.mdns",
    "iceagent.gatherers.relay",
    "iceagent.gatherers.tcp",
    "iceagent.gatherers.portmap",
    "iceagent.turn.transports",
)


def create_plugin_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A fresh PluginManager with the built-ins and (unless disabled) the "iceagent" entry points."""
    import importlib

    pm = pluggy.PluginManager("iceagent")
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a built-in not written yet
            if exc.name != name:
                raise
            continue
        pm.register(module, name=name)
    if load_entrypoints:
        _load_entrypoints(pm)
    return pm


def _load_entrypoints(pm: pluggy.PluginManager) -> None:
    """Register every "iceagent" entry point, one at a time: a broken plugin is logged and skipped."""
    import importlib.metadata

    for ep in importlib.metadata.entry_points(group="iceagent"):
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue  # the first distribution with a name wins, as in pluggy
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception:  # a broken third-party plugin must not break the agent or the other plugins
            log.exception("iceagent plugin %r (%s) failed to load; skipped", ep.name, ep.value)


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide PluginManager used by agents that are not given one."""
    return create_plugin_manager()
