"""Builds the pluggy PluginManager: the built-in plugins plus third-party ones from entry points."""

from __future__ import annotations

import functools
import logging

import pluggy

from . import hookspecs

log = logging.getLogger("iceagent.plugins")

#: Modules registered as built-in plugins, in order (the host gatherer first).
BUILTIN_PLUGINS = ("iceagent.gatherers.host", "iceagent.gatherers.srflx")


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
        try:
            pm.load_setuptools_entrypoints("iceagent")
        except Exception:  # a broken third-party plugin must not break the agent
            log.exception("loading iceagent plugins from entry points failed")
    return pm


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide PluginManager used by agents that are not given one."""
    return create_plugin_manager()
