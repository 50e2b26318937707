"""Builds the pluggy PluginManager: the built-in plugins plus third-party ones from entry points.

The entry points are found as importlib.metadata finds them (the installed distributions on sys.path,
the first of each name), but read straight from the `*.dist-info`/`*.egg-info` directories when sys.path
holds only directories and the standard path finder looks for distributions: importlib.metadata loads
about 0.7 MB of modules (email, csv, zipfile) and caches every directory listing of sys.path, which every
process that opens an agent would keep. Anything else (a zip, an egg, another finder, a name or a line
it would read differently) is left to importlib.metadata.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterator

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
    for name, value, load in _entry_points("iceagent"):
        if pm.has_plugin(name) or pm.is_blocked(name):
            continue  # the first distribution with a name wins, as in pluggy
        try:
            pm.register(load(), name=name)
        except Exception:  # a broken third-party plugin must not break the agent or the other plugins
            log.exception("iceagent plugin %r (%s) failed to load; skipped", name, value)


_EntryPoint = tuple[str, str, Callable[[], object]]
"""An entry point's name, its value ("module:attr") and what loads the object it names."""


def _entry_points(group: str) -> list[_EntryPoint]:
    """The entry points of `group` that `importlib.metadata.entry_points(group=group)` lists, in its order."""
    found = _scan_entry_points(group)
    if found is not None:
        return found
    import importlib.metadata

    return [(ep.name, ep.value, ep.load) for ep in importlib.metadata.entry_points(group=group)]


class _Unusual(Exception):
    """What the scan met is read right only by importlib.metadata (see `_scan_entry_points`)."""


_METADATA = (".dist-info", ".egg-info")
#: importlib.metadata's EntryPoint.pattern: "module", "module:attr.attr", either with "[extras]".
_REFERENCE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


def _scan_entry_points(group: str) -> list[_EntryPoint] | None:
    """The entry points of `group` read from the metadata directories on sys.path without importlib.metadata,
    or None when the environment holds what only importlib.metadata reads right: a finder other than the
    standard path finder that finds distributions, a zip file or an egg on sys.path, a metadata directory
    whose name it would take from its METADATA file, an entry_points.txt it would reject.

    Same rules (Python 3.10 to 3.13): sys.path in order, each directory's metadata directories in listing
    order, the first of each normalized distribution name only, the group's `name = value` lines."""
    import importlib.machinery

    finders = [f for f in sys.meta_path if getattr(f, "find_distributions", None) is not None]
    if finders != [importlib.machinery.PathFinder]:
        return None
    seen: set[str] = set()
    found: list[_EntryPoint] = []
    try:
        for entry in list(sys.path):
            for name, path in _metadata_dirs(entry):
                if name not in seen:
                    seen.add(name)
                    found.extend(_group(path, group))
    except _Unusual:
        return None
    return found


def _metadata_dirs(entry: object) -> Iterator[tuple[str, str]]:
    """(normalized distribution name, path) of each metadata directory in the sys.path entry `entry`."""
    if not isinstance(entry, str) or os.path.basename(entry).lower().endswith(".egg"):
        raise _Unusual
    root = entry or "."
    try:
        children = os.listdir(root)
    except OSError:
        if os.path.isfile(root):
            raise _Unusual from None  # a zip: importlib.metadata looks inside
        return  # missing or unreadable: nothing there for importlib.metadata either
    for child in children:
        if child.lower().endswith(_METADATA):
            stem, ext = os.path.splitext(child)
            name = stem.partition("-")[0]
            if ext not in _METADATA or not name:
                raise _Unusual  # importlib.metadata would take the name from METADATA
            yield re.sub(r"[-_.]+", "-", name).lower().replace("-", "_"), os.path.join(root, child)


def _group(path: str, group: str) -> Iterator[_EntryPoint]:
    """The entry points of `group` in `path`/entry_points.txt (none without the file)."""
    try:
        with open(os.path.join(path, "entry_points.txt"), encoding="utf-8") as f:
            text = f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return  # what importlib.metadata's read_text takes for "no such file"
    except (OSError, ValueError):
        raise _Unusual from None
    section = None
    for line in map(str.strip, text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
        elif section is not None:
            name, sep, value = line.partition("=")
            if not sep:
                raise _Unusual  # importlib.metadata fails on it: let it say how
            if section == group:
                value = value.strip()
                yield name.strip(), value, functools.partial(_load, value)


def _load(value: str) -> object:
    """The object an entry point's value names, as importlib.metadata's EntryPoint.load finds it."""
    match = _REFERENCE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not an entry point reference (module or module:attr)")
    obj: object = importlib.import_module(match["module"])
    for attr in filter(None, (match["attr"] or "").split(".")):
        obj = getattr(obj, attr)
    return obj


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide PluginManager used by agents that are not given one."""
    return create_plugin_manager()
