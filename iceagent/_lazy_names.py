"""Public names a package imports on first use (PEP 562): the `__getattr__` and `__dir__` every lazy package
shares (`iceagent.turn`, and the iceagent-vnet and iceagent-trace plugins), so that the first agent of a
process loads only what its options use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any


def lazy_names(
    namespace: MutableMapping[str, Any], lazy: Mapping[str, str], submodules: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for the package whose `globals()` is `namespace`: a name in `lazy` imports the
    submodule defining it and is kept in the package; a name in `submodules` (those it used to import at once)
    is that submodule."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        """Import the submodule defining `name` on first access and keep the name here (PEP 562)."""
        if name in submodules:
            return importlib.import_module(f".{name}", package)
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        """The module's own names, the lazy public ones and the submodules (PEP 562)."""
        return sorted({*namespace, *namespace.get("__all__", ()), *submodules})

    return __getattr__, __dir__
