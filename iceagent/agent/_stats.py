"""The per-pair part of `agent.stats()` (DESIGN.md "Contract")."""

from __future__ import annotations

from typing import Any

from ..ice.session import IceSession

__all__ = ["pair_stats"]


def pair_stats(ice: IceSession) -> list[dict[str, Any]]:
    """One dict per pair: the check list, then valid pairs that are not on it. Such a pair was generated
    by another pair's check (RFC 8445 7.2.5.3.2, e.g. with a peer-reflexive local candidate): its
    check counters stay on that pair, named in "generated_by"."""
    out = []
    pairs = ice.pairs
    seen = {id(p) for p in pairs}
    for p in pairs + [p for p in ice.valid_pairs if id(p) not in seen]:
        entry: dict[str, Any] = {
            "local": p.local.to_sdp(),
            "remote": p.remote.to_sdp(),
            "state": p.state.value,
            "nominated": p.nominated,
            "requests_sent": p.requests_sent,
            "requests_received": p.requests_received,
            "responses_sent": p.responses_sent,
            "responses_received": p.responses_received,
            "rtt": p.rtt,
            "bytes_sent": p.bytes_sent,
            "bytes_received": p.bytes_received,
            "generated_by": None,
        }
        checked = ice.generating_pair(p)
        if checked is not p:
            entry["generated_by"] = {"local": checked.local.to_sdp(), "remote": checked.remote.to_sdp()}
        out.append(entry)
    return out
