"""A trace laid out for drawing, and summarised per agent: lanes, rows in time order, message arrows matched by
transaction id, and what became of each candidate pair. Pure data: `render.py` turns it into SVG/HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]

GAP_SECONDS = 0.5  # a pause longer than this gets its own marker row


@dataclass(eq=False)
class Lane:
    """One traced agent."""

    key: tuple[Any, str]
    index: int
    title: str
    roles: list[str] = field(default_factory=list)
    x: float = 0.0


@dataclass
class Row:
    """One drawn event (or a pause marker when `record` is None)."""

    lane: Lane | None
    time: float
    record: Record | None
    gap: float = 0.0


@dataclass
class Arrow:
    """A STUN message from one lane to another (`recv` None: nobody traced received it)."""

    send: int | None
    recv: int | None
    src: Lane | None
    dst: Lane | None
    record: Record
    received: Record | None = None  # the receiver's record of a matched message


@dataclass
class PairSummary:
    """What became of one candidate pair of one agent."""

    label: str
    priority: int | None = None
    state: str = "?"  # no pair event seen (a valid pair built from another pair's check)
    valid: bool = False
    nominated: bool = False
    requests: int = 0
    retransmits: int = 0
    responses: int = 0
    errors: list[int] = field(default_factory=list)
    rtt: float | None = None
    asymmetric: bool = False  # a response came from another address than the request went to


@dataclass
class Timeline:
    """A trace laid out for drawing."""

    lanes: list[Lane]
    rows: list[Row]
    arrows: list[Arrow]
    clock: str  # "trio" or "wall"
    start: float
    virtual_peer: bool = False


def _lane_key(record: Record) -> tuple[Any, str]:
    return (record.get("pid"), str(record["agent"]))


def _time_basis(records: list[Record]) -> str:
    pids = {r.get("pid") for r in records}
    if len(pids) <= 1 and all(isinstance(r.get("t"), (int, float)) for r in records):
        return "trio"
    return "wall"


def _drawn(record: Record) -> bool:
    event = record["event"]
    if event in ("check", "state", "selected", "candidate"):
        return True
    return event == "pair" and record.get("new") in ("succeeded", "failed")


def _message_class(kind: str) -> str:
    return "response" if kind in ("success", "error") else kind


def analyse(records: list[Record], *, max_rows: int = 5000) -> Timeline:
    """Lay a trace out: lanes in order of appearance, rows in time order, arrows matched by transaction."""
    clock = _time_basis(records)
    tkey = "t" if clock == "trio" else "wall"
    ordered = sorted(enumerate(records), key=lambda ir: (float(ir[1].get(tkey) or 0.0), ir[0]))
    pids = {r.get("pid") for r in records}
    lanes: dict[tuple[Any, str], Lane] = {}
    for _, r in ordered:
        key = _lane_key(r)
        lane = lanes.get(key)
        if lane is None:
            title = f"agent {r['agent']}" + (f" (pid {r.get('pid')})" if len(pids) > 1 else "")
            lane = lanes[key] = Lane(key, len(lanes), title)
        role = r.get("controlling")
        if r["event"] in ("agent", "state") and isinstance(role, bool):
            name = "controlling" if role else "controlled"
            if not lane.roles or lane.roles[-1] != name:
                lane.roles.append(name)
    start = float(ordered[0][1].get(tkey) or 0.0) if ordered else 0.0
    rows: list[Row] = []
    generation: dict[Lane, Any] = {}
    last_time: float | None = None
    for _, r in ordered:
        if not _drawn(r):
            continue
        if len(rows) >= max_rows:
            break
        lane = lanes[_lane_key(r)]
        time = float(r.get(tkey) or 0.0)
        if last_time is not None and time - last_time > GAP_SECONDS:
            rows.append(Row(None, time, None, gap=time - last_time))
        last_time = time
        gen = r.get("generation")
        if lane in generation and gen is not None and gen != generation[lane]:
            rows.append(Row(lane, time, {"event": "generation", "agent": r["agent"], "generation": gen}))
        if gen is not None:
            generation[lane] = gen
        rows.append(Row(lane, time, r))
    # addresses -> the lane that owns them (to aim arrows nobody received)
    owner: dict[str, Lane] = {}
    for row in rows:
        rec = row.record
        if rec is None or row.lane is None:
            continue
        if rec["event"] == "check":
            owner.setdefault(str(rec.get("local")), row.lane)
        elif rec["event"] == "candidate":
            owner.setdefault(str(rec.get("address")), row.lane)
    # match each received message with the send of the same transaction on another lane
    sends: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(rows):
        rec = row.record
        if rec is not None and rec["event"] == "check" and rec.get("direction") == "send":
            sends.setdefault((str(rec.get("tid")), _message_class(str(rec.get("kind")))), []).append(i)
    used: set[int] = set()
    arrows: list[Arrow] = []
    for i, row in enumerate(rows):
        rec = row.record
        if rec is None or rec["event"] != "check" or rec.get("direction") != "receive":
            continue
        candidates = [
            j
            for j in sends.get((str(rec.get("tid")), _message_class(str(rec.get("kind")))), [])
            if j not in used and rows[j].lane is not row.lane
        ]
        before = [j for j in candidates if j <= i]
        match = before[-1] if before else (candidates[0] if candidates else None)
        if match is not None:
            used.add(match)
            sent = rows[match].record
            assert sent is not None
            arrows.append(Arrow(match, i, rows[match].lane, row.lane, sent, rec))
        else:
            arrows.append(Arrow(None, i, owner.get(str(rec.get("remote"))), row.lane, rec))
    for indexes in sends.values():
        for j in indexes:
            if j not in used:
                rec = rows[j].record
                assert rec is not None
                arrows.append(Arrow(j, None, rows[j].lane, owner.get(str(rec.get("remote"))), rec))
    lane_list = list(lanes.values())
    virtual = len(lane_list) == 1 and any(a.send is None or a.recv is None for a in arrows)
    return Timeline(lane_list, rows, arrows, clock, start, virtual_peer=virtual)


def summarize(records: list[Record]) -> dict[tuple[Any, str], dict[str, Any]]:
    """Per agent: its pairs (by priority, with what became of each), final state and selected pair."""
    out: dict[tuple[Any, str], dict[str, Any]] = {}
    for r in records:
        info = out.setdefault(
            _lane_key(r),
            {"pairs": {}, "state": "new", "selected": None, "nominated": False, "states": [], "candidates": []},
        )
        pairs: dict[str, PairSummary] = info["pairs"]
        event = r["event"]
        if event == "state":
            if r.get("new") != "closed" or info["state"] == "new":
                info["final"] = r.get("new")  # the last state before CLOSED says how it went
            info["state"] = r.get("new")
            info["states"].append((r.get("t"), r.get("wall"), r.get("new")))
        elif event == "selected":
            info["selected"] = r.get("pair")
            info["nominated"] = bool(r.get("nominated"))
            if r.get("pair") is not None:
                p = pairs.setdefault(str(r["pair"]), PairSummary(str(r["pair"])))
                p.valid = True
                p.nominated = p.nominated or bool(r.get("nominated"))
                if p.state == "?":
                    p.state = "valid"
        elif event == "candidate":
            info["candidates"].append(r.get("candidate"))
        elif event == "pair":
            p = pairs.setdefault(str(r.get("pair")), PairSummary(str(r.get("pair"))))
            p.state = str(r.get("new"))
            if r.get("priority") is not None:
                p.priority = int(r["priority"])
            p.valid = p.valid or bool(r.get("valid"))
            p.nominated = p.nominated or bool(r.get("nominated"))
        elif event == "check" and r.get("pair"):
            p = pairs.setdefault(str(r["pair"]), PairSummary(str(r["pair"])))
            nominating: set[Any] = info.setdefault("nominating", set())
            sent_to: dict[Any, Any] = info.setdefault("sent_to", {})
            if r.get("direction") == "send" and r.get("kind") == "request":
                p.requests += 1
                p.retransmits += bool(r.get("retransmit"))
                sent_to[r.get("tid")] = r.get("remote")
                if r.get("use_candidate"):
                    nominating.add(r.get("tid"))
            elif r.get("direction") == "receive" and r.get("kind") == "request" and r.get("use_candidate"):
                p.nominated = True  # the controlled side: the peer nominated this pair (RFC 8445 7.3.1.5)
            elif r.get("direction") == "receive" and r.get("kind") == "success":
                p.responses += 1
                if sent_to.get(r.get("tid"), r.get("remote")) != r.get("remote"):
                    p.asymmetric = True
                if r.get("tid") in nominating:
                    p.nominated = True  # the controlling side: its USE-CANDIDATE check succeeded
                if r.get("rtt") is not None:
                    p.rtt = float(r["rtt"])
            elif r.get("direction") == "receive" and r.get("kind") == "error":
                p.responses += 1
                if r.get("error") is not None:
                    p.errors.append(int(r["error"]))
    return out


def _fate(p: PairSummary, selected: str | None, final: str = "") -> str:
    """Why this pair is (or is not) the one the agent used, in a few words."""
    if p.label == selected:
        return "selected" + (" (nominated)" if p.nominated else "")
    if p.state == "failed":
        if p.errors:
            return f"failed: error {', '.join(map(str, sorted(set(p.errors))))}"
        if p.asymmetric:
            return "failed: the answer came from another address (the peer's NAT maps per destination)"
        if p.requests and not p.responses:
            return f"failed: no response to {p.requests} request(s)"
        return "failed"
    if p.valid:
        return "valid, not selected"
    if p.state == "succeeded":
        return "check succeeded; the valid pair built from its mapped address is listed apart"
    if p.state == "in-progress":
        return "still checking when the agent failed" if final == "failed" else "still checking at the end"
    if p.requests == 0:
        return "never checked (a better pair won first)"
    return p.state

