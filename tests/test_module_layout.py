"""Modules split along their seams keep every public name where it was imported from before (issue 13):
tests, plugins and users import them from the old paths and get the very same objects."""

from __future__ import annotations

import importlib

import pytest

#: module -> names that code outside it imports from there.
OLD_PATHS = {
    "iceagent.turn": ["TurnClient", "AllocationState", "TurnError", "StreamDeframer"],
    "iceagent.turn.client": ["TurnClient", "requests_in"],
    "iceagent.turn.allocation": ["Allocation", "open_allocation"],
    "iceagent.turn.transports": [
        "TurnConnection",
        "UdpTurnConnection",
        "StreamTurnConnection",
        "open_udp",
        "turn_transports",
    ],
    "iceagent.gatherers.base": ["CandidateTransport", "ConnectionTransport", "GatherContext", "Gatherer"],
    "iceagent_trace": ["Tracer", "TraceError", "load_trace", "render_html", "render_svg"],
    "iceagent_trace.render": ["TraceError", "analyse", "summarize", "load_trace", "render_html", "render_svg"],
}

#: name -> the module that defines it now (a private one where the split put it).
HOMES = {
    "TurnClient": "iceagent.turn.client",
    "Allocation": "iceagent.turn.allocation",
    "open_allocation": "iceagent.turn.allocation",
    "CandidateTransport": "iceagent.net.base",
    "ConnectionTransport": "iceagent.net.base",
    "analyse": "iceagent_trace._timeline",
    "summarize": "iceagent_trace._timeline",
}


@pytest.mark.parametrize("module", sorted(OLD_PATHS))
def test_names_import_from_their_old_paths(module: str) -> None:
    mod = importlib.import_module(module)
    for name in OLD_PATHS[module]:
        obj = getattr(mod, name)
        home = HOMES.get(name)
        if home is not None:
            assert obj is getattr(importlib.import_module(home), name), (module, name)
    for name in getattr(mod, "__all__", ()):
        assert hasattr(mod, name), (module, name)


def test_split_classes_keep_their_machinery_in_the_private_modules() -> None:
    from iceagent.turn._allocation_driver import _AllocationDriver
    from iceagent.turn._client_requests import _Exchanges
    from iceagent.turn.allocation import Allocation
    from iceagent.turn.client import TurnClient

    assert issubclass(TurnClient, _Exchanges) and "_on_error" in vars(_Exchanges)
    assert issubclass(Allocation, _AllocationDriver) and "_serve" in vars(_AllocationDriver)
    # what the driver inherits still resolves on the public class
    assert Allocation._serve is _AllocationDriver._serve and TurnClient._request is _Exchanges._request
