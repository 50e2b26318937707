"""The Tracer: an observer plugin that writes one JSON object per line for every agent event.

Every record has `event`, `agent` (the agent's name), `pid`, `t` (`trio.current_time()`, null
outside Trio) and `wall` (`time.time()`). The events:

- `agent`: the first time an agent is seen: `controlling`.
- `candidate`: a local candidate was gathered: `candidate` (SDP), `type`, `address`.
- `pair`: a pair changed state: `pair` (label), `old`, `new`, `priority`, `valid`, `nominated`.
- `state`: the agent's IceState changed: `old`, `new`, `controlling`.
- `selected`: the pair the stream sends on changed: `pair` (label or null), `rtt`, `nominated`.
- `check`: a STUN check message was sent or received: `direction` ("send"/"receive"), `kind`
  ("request"/"success"/"error"/"indication"), `tid` (hex), `pair`, `local`, `remote`,
  `use_candidate`, `role`, `error` (the error code), `retransmit` (a request sent again), `rtt`
  (on a received success: the checked pair's round-trip time in seconds).

Pair labels read `host 10.0.0.1:5000 -> srflx 203.0.113.7:6000` (`tcp` is added for TCP pairs).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import trio

from iceagent.hookspecs import hookimpl
from iceagent.stun import Attr

__all__ = ["Tracer", "pair_label"]


def _value(x: Any) -> Any:
    """Enums as their value, everything else as is."""
    return getattr(x, "value", x)


def _endpoint(candidate: Any) -> str:
    address = str(candidate.address)
    if ":" in address:
        address = f"[{address}]"
    tcp = " tcp" if getattr(candidate, "transport", "udp") == "tcp" else ""
    return f"{candidate.type}{tcp} {address}:{candidate.port}"


def pair_label(pair: Any) -> str:
    """A short readable name for a candidate pair: `host 10.0.0.1:5000 -> srflx 203.0.113.7:6000`."""
    return f"{_endpoint(pair.local)} -> {_endpoint(pair.remote)}"


def _address(addr: Any) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _now() -> float | None:
    try:
        return trio.current_time()
    except RuntimeError:  # outside a Trio run
        return None


class Tracer:
    """Writes a JSON-lines trace of every agent event to `target` (a path or an open text file).

    Register it on a PluginManager before opening agents:

        pm = create_plugin_manager(load_entrypoints=False)
        with Tracer("trace.jsonl") as tracer:
            pm.register(tracer)
            async with open_agent(plugin_manager=pm) as agent: ...

    A path is opened line-buffered, truncated unless `append=True`; `close()` closes it (a file
    object passed in is left open).
    """

    def __init__(self, target: str | os.PathLike[str] | IO[str], *, append: bool = False) -> None:
        self._owns: bool
        self._file: IO[str]
        if isinstance(target, (str, os.PathLike)):
            self.path: Path | None = Path(target)
            self._file = open(self.path, "a" if append else "w", buffering=1, encoding="utf-8")
            self._owns = True
        else:
            self.path = None
            self._file = target
            self._owns = False
        self._seen: set[int] = set()
        self._requests: dict[tuple[int, bytes], Any] = {}  # (agent, tid) -> the pair of a request we sent
        self._pid = os.getpid()
        self.records = 0

    # ---- lifetime ----

    def close(self) -> None:
        """Flush, and close the file if the tracer opened it."""
        if self._file.closed:
            return
        self._file.flush()
        if self._owns:
            self._file.close()

    def __enter__(self) -> Tracer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- writing ----

    def _write(self, agent: Any, event: str, **fields: Any) -> None:
        if self._file.closed:
            return
        if id(agent) not in self._seen:
            self._seen.add(id(agent))
            self._emit(agent, "agent", controlling=getattr(agent, "controlling", None))
        self._emit(agent, event, **fields)

    def _emit(self, agent: Any, event: str, **fields: Any) -> None:
        generation = getattr(agent, "generation", None)
        record = {
            "event": event,
            "agent": str(getattr(agent, "name", "?")),
            "pid": self._pid,
            "t": _now(),
            "wall": time.time(),
            "generation": getattr(generation, "value", generation),
            **fields,
        }
        self._file.write(json.dumps(record, default=str) + "\n")
        self.records += 1

    # ---- the observer hooks ----

    @hookimpl
    def iceagent_candidate_gathered(self, agent: Any, candidate: Any) -> None:
        """Record a gathered local candidate."""
        self._write(
            agent,
            "candidate",
            candidate=candidate.to_sdp(),
            type=candidate.type,
            address=_address((candidate.address, candidate.port)),
        )

    @hookimpl
    def iceagent_pair_state_changed(self, agent: Any, pair: Any, old: Any, new: Any) -> None:
        """Record a pair state change."""
        self._write(
            agent,
            "pair",
            pair=pair_label(pair),
            old=_value(old),
            new=_value(new),
            priority=getattr(pair, "priority", None),
            valid=getattr(pair, "valid", None),
            nominated=getattr(pair, "nominated", None),
        )

    @hookimpl
    def iceagent_state_changed(self, agent: Any, old: Any, new: Any) -> None:
        """Record an IceState change."""
        self._write(agent, "state", old=_value(old), new=_value(new), controlling=getattr(agent, "controlling", None))

    @hookimpl
    def iceagent_selected_pair_changed(self, agent: Any, pair: Any) -> None:
        """Record a change of the pair the stream sends on."""
        if pair is None:
            self._write(agent, "selected", pair=None, rtt=None, nominated=None)
        else:
            self._write(agent, "selected", pair=pair_label(pair), rtt=pair.rtt, nominated=pair.nominated)

    @hookimpl
    def iceagent_check(
        self,
        agent: Any,
        pair: Any,
        direction: str,
        kind: str,
        transaction_id: bytes,
        local: Any,
        remote: Any,
        message: Any,
    ) -> None:
        """Record one STUN check message (request, response or indication), sent or received."""
        retransmit = False
        rtt = None
        key = (id(agent), transaction_id)
        if direction == "send" and kind == "request":
            retransmit = key in self._requests
            if len(self._requests) > 100_000:  # long sessions: forget old transactions
                self._requests.clear()
            self._requests[key] = pair
        elif direction == "receive" and kind in ("success", "error"):
            pair = self._requests.get(key, pair)  # the pair that was checked, not the route's valid pair
            if kind == "success" and pair is not None:
                rtt = getattr(pair, "rtt", None)
        role = None
        if Attr.ICE_CONTROLLING in message:
            role = "controlling"
        elif Attr.ICE_CONTROLLED in message:
            role = "controlled"
        error = message.get(Attr.ERROR_CODE)
        self._write(
            agent,
            "check",
            direction=direction,
            kind=kind,
            tid=transaction_id.hex(),
            pair=None if pair is None else pair_label(pair),
            local=_address((local.address, local.port)),
            remote=_address(remote),
            use_candidate=Attr.USE_CANDIDATE in message,
            role=role,
            error=None if error is None else error[0],
            retransmit=retransmit,
            rtt=rtt,
        )
