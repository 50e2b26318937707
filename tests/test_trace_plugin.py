"""The iceagent-trace plugin: a JSON-lines trace of two agents on loopback, and its HTML/SVG timeline."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import trio
from agent_helpers import connect_both
from iceagent_trace import Tracer, load_trace, render_html, render_svg
from iceagent_trace import plugin as trace_entry_point
from iceagent_trace.__main__ import main as trace_main
from iceagent_trace.render import TraceError, analyse, summarize

from iceagent import IceConfig, IceState, open_agent
from iceagent.plugins import create_plugin_manager
from iceagent.stun import Attr, Message, MessageClass, Method

SVG = "{http://www.w3.org/2000/svg}"
CONFIG = IceConfig(global_pacing=False)


async def _traced_pair(target: Any) -> None:
    """Two agents, "alice" (controlling) and "bob", connected on loopback with a Tracer watching."""
    pm = create_plugin_manager(load_entrypoints=False)
    with Tracer(target) as tracer:
        pm.register(tracer)
        with trio.fail_after(10):
            async with (
                open_agent(controlling=True, host_addresses=["127.0.0.1"], config=CONFIG, name="alice",
                           plugin_manager=pm) as a,
                open_agent(controlling=False, host_addresses=["127.0.0.1"], config=CONFIG, name="bob",
                           plugin_manager=pm) as b,
            ):
                stream_a, stream_b = await connect_both(a, b)
                await stream_a.send(b"traced")
                assert await stream_b.receive() == b"traced"
                await a.state.wait_value(IceState.COMPLETED)
                await b.state.wait_value(IceState.COMPLETED)


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "trace.jsonl"
    trio.run(_traced_pair, path)
    return path


def test_trace_has_every_kind_of_event(trace_file: Path) -> None:
    records = [json.loads(line) for line in trace_file.read_text().splitlines()]
    assert {r["agent"] for r in records} == {"alice", "bob"}
    for r in records:
        assert {"event", "agent", "pid", "t", "wall", "generation"} <= r.keys()
        assert isinstance(r["t"], float) and isinstance(r["wall"], float)
    by = {(r["agent"], r["event"]) for r in records}
    for agent in ("alice", "bob"):
        for event in ("agent", "candidate", "pair", "state", "selected", "check"):
            assert (agent, event) in by, (agent, event)
    roles = {r["agent"]: r["controlling"] for r in records if r["event"] == "agent"}
    assert roles == {"alice": True, "bob": False}
    states = {a: [r["new"] for r in records if r["event"] == "state" and r["agent"] == a] for a in roles}
    for seq in states.values():
        assert seq[:3] == ["checking", "connected", "completed"]
        assert seq[-1] == "closed"
    candidate = next(r for r in records if r["event"] == "candidate")
    assert candidate["candidate"].startswith("candidate:") and candidate["type"] == "host"
    assert candidate["address"].startswith("127.0.0.1:")
    selected = [r for r in records if r["event"] == "selected" and r["agent"] == "alice"]
    assert re.fullmatch(r"host 127\.0\.0\.1:\d+ -> host 127\.0\.0\.1:\d+", selected[-1]["pair"])


def test_every_check_and_response_is_traced_on_both_sides(trace_file: Path) -> None:
    checks = [r for r in load_trace(trace_file) if r["event"] == "check"]
    sent = {(r["tid"], r["kind"]): r for r in checks if r["direction"] == "send"}
    received = {(r["tid"], r["kind"]): r for r in checks if r["direction"] == "receive"}
    # loopback loses nothing: each request and each response is seen leaving one agent and reaching the other
    assert sent.keys() == received.keys()
    for key, out in sent.items():
        assert received[key]["agent"] != out["agent"]
        assert out["local"] == received[key]["remote"] and out["remote"] == received[key]["local"]
    requests = [r for r in sent.values() if r["kind"] == "request"]
    assert {r["agent"] for r in requests} == {"alice", "bob"}
    assert all((tid, "success") in sent for tid, kind in sent if kind == "request")  # every check answered
    assert {r["role"] for r in requests if r["agent"] == "alice"} == {"controlling"}
    assert {r["role"] for r in requests if r["agent"] == "bob"} == {"controlled"}
    nominations = [r for r in requests if r["use_candidate"]]
    assert nominations and {r["agent"] for r in nominations} == {"alice"}  # only the controlling side nominates
    successes = [r for r in received.values() if r["kind"] == "success"]
    assert all(r["pair"] and r["rtt"] is not None and r["rtt"] >= 0 for r in successes)


def test_render_html_is_well_formed_with_an_svg_sequence_diagram(trace_file: Path) -> None:
    records = load_trace(trace_file)
    page = render_html(records, title="two agents")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    root = ET.fromstring(page.split("\n", 1)[1])  # the page is well-formed XML after the doctype
    svg = root.find(f".//{SVG}svg")
    assert svg is not None
    texts = " ".join(t.text or "" for t in svg.iter(f"{SVG}text"))
    assert "agent alice" in texts and "agent bob" in texts
    assert "controlling" in texts and "controlled" in texts
    assert "CONNECTED" in texts and "COMPLETED" in texts and "USE-CANDIDATE" in texts
    # one arrow per message: every traced send was matched with its receipt
    tl = analyse(records)
    sends = sum(1 for r in records if r["event"] == "check" and r["direction"] == "send")
    assert len(tl.arrows) == sends
    assert all(a.send is not None and a.recv is not None for a in tl.arrows)
    lines = [ln for ln in svg.iter(f"{SVG}line") if ln.get("marker-end")]
    assert len(lines) == sends
    # below the diagram: the pair tables, the selected pair marked
    assert page.count("<table>") == 2 and 'class="selected"' in page and "selected (nominated)" in page


def test_cli_renders_html_and_svg(trace_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "timeline.html"
    assert trace_main(["render", str(trace_file), "-o", str(out)]) == 0
    assert "<svg" in out.read_text()
    svg = tmp_path / "timeline.svg"
    assert trace_main(["render", str(trace_file), "-o", str(svg)]) == 0
    assert ET.parse(svg).getroot().tag == f"{SVG}svg"
    assert trace_main(["summary", str(trace_file)]) == 0
    assert "agent alice" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event": "state", "agent": "a"}\nnot json\n')
    assert trace_main(["render", str(bad)]) == 1
    assert "bad.jsonl:2: not JSON" in capsys.readouterr().err


def test_python_dash_m_runs_the_renderer(trace_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.html"
    proc = subprocess.run(
        [sys.executable, "-m", "iceagent_trace", "render", str(trace_file), "-o", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and "wrote" in proc.stdout


# ---- the tracer and renderer on hand-made input ----


class FakeAgent:
    name = "solo"
    controlling = True


class Cand:
    def __init__(self, type: str, address: str, port: int) -> None:
        self.type, self.address, self.port, self.transport = type, address, port, "udp"


class Pair:
    def __init__(self) -> None:
        self.local, self.remote = Cand("host", "10.0.0.1", 5000), Cand("srflx", "2001:db8::7", 6000)
        self.rtt = 0.02


def test_tracer_marks_retransmissions_and_works_outside_trio() -> None:
    buf = io.StringIO()
    tracer = Tracer(buf)
    agent, pair = FakeAgent(), Pair()
    tid = bytes(range(12))
    request = Message(Method.BINDING, MessageClass.REQUEST, transaction_id=tid,
                      attributes=[(Attr.USE_CANDIDATE, None), (Attr.ICE_CONTROLLING, 1)])
    error = Message(Method.BINDING, MessageClass.ERROR, transaction_id=tid, attributes=[(Attr.ERROR_CODE, (487, "x"))])
    for _ in range(2):
        tracer.iceagent_check(agent=agent, pair=pair, direction="send", kind="request", transaction_id=tid,
                              local=pair.local, remote=("2001:db8::7", 6000), message=request)
    tracer.iceagent_check(agent=agent, pair=None, direction="receive", kind="error", transaction_id=tid,
                          local=pair.local, remote=("2001:db8::7", 6000), message=error)
    tracer.close()  # a file object passed in stays open
    records = load_trace(buf.getvalue().splitlines())
    assert [r["event"] for r in records] == ["agent", "check", "check", "check"]
    assert [r.get("retransmit") for r in records[1:]] == [False, True, False]
    assert records[1]["pair"] == "host 10.0.0.1:5000 -> srflx [2001:db8::7]:6000"
    assert records[1]["use_candidate"] and records[1]["role"] == "controlling"
    assert records[3]["pair"] == records[1]["pair"]  # a response is tied to the pair its request checked
    assert records[3]["error"] == 487 and records[0]["t"] is None
    # alone in its trace: the peer gets a "not in this trace" lane; a response nobody sent is dashed
    svg = render_svg(records)
    ET.fromstring(svg)
    assert "peer (not in this trace)" in svg and "(retransmit)" in svg and "error 487" in svg
    info = summarize(records)[(records[0]["pid"], "solo")]
    assert info["pairs"][records[1]["pair"]].requests == 2


def test_renderer_crosses_out_a_message_nobody_received() -> None:
    base = {"pid": 1, "wall": 0.0, "generation": 0}
    records = [
        {**base, "event": "agent", "agent": "a", "t": 0.0, "controlling": True},
        {**base, "event": "agent", "agent": "b", "t": 0.0, "controlling": False},
        {**base, "event": "candidate", "agent": "b", "t": 0.0, "address": "10.0.0.2:2", "type": "host"},
        {**base, "event": "check", "agent": "a", "t": 0.1, "direction": "send", "kind": "request", "tid": "01",
         "local": "10.0.0.1:1", "remote": "10.0.0.2:2", "pair": "host 10.0.0.1:1 -> host 10.0.0.2:2"},
        {**base, "event": "check", "agent": "a", "t": 2.0, "direction": "send", "kind": "request", "tid": "01",
         "local": "10.0.0.1:1", "remote": "10.0.0.2:2", "retransmit": True},
        {**base, "event": "check", "agent": "b", "t": 2.01, "direction": "receive", "kind": "request", "tid": "01",
         "local": "10.0.0.2:2", "remote": "10.0.0.1:1"},
        {**base, "event": "state", "agent": "a", "t": 3.0, "old": "checking", "new": "failed"},
    ]
    tl = analyse(records)
    assert [(a.send, a.recv) for a in tl.arrows if a.recv is None] == [(1, None)]  # the first send was lost
    lost = next(a for a in tl.arrows if a.recv is None)
    assert lost.dst is not None and lost.dst.title == "agent b"  # aimed at the lane that owns 10.0.0.2:2
    assert any(row.record is None and row.gap > 1 for row in tl.rows)  # the pause gets a marker row
    svg = render_svg(records)
    ET.fromstring(svg)
    assert "(lost)" in svg and "FAILED" in svg and "s later" in svg


def test_load_trace_rejects_other_json(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(TraceError, match=r"x\.jsonl:1: not an iceagent trace record"):
        load_trace(path)
    with pytest.raises(TraceError, match="cannot read"):
        load_trace(tmp_path / "missing.jsonl")


# ---- switched on by the environment, through the entry point ----


def test_entry_point_is_inert_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ICEAGENT_TRACE", raising=False)
    pm = create_plugin_manager()
    assert not isinstance(pm.get_plugin("trace"), Tracer)
    assert pm.hook.iceagent_check.get_hookimpls() == []  # no per-packet cost when tracing is off


async def test_checks_are_not_decoded_when_no_plugin_wants_them() -> None:
    pm = create_plugin_manager(load_entrypoints=False)
    async with open_agent(host_addresses=["127.0.0.1"], plugin_manager=pm) as agent:
        assert agent._runner()._check_hook is None


def test_environment_variable_traces_every_agent(tmp_path: Path) -> None:
    path = tmp_path / "env-{pid}.jsonl"
    code = (
        "import trio\n"
        "from iceagent import open_agent\n"
        "async def main():\n"
        "    async with open_agent(host_addresses=['127.0.0.1'], name='envtraced') as a:\n"
        "        async for _ in a.gather():\n"
        "            pass\n"
        "trio.run(main)\n"
    )
    env = {**__import__("os").environ, "ICEAGENT_TRACE": str(path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (written,) = tmp_path.glob("env-*.jsonl")
    assert written.name != path.name  # {pid} was filled in
    records = load_trace(written)
    assert {r["agent"] for r in records} == {"envtraced"}
    assert any(r["event"] == "candidate" for r in records)


def test_from_env_shares_one_tracer_per_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEAGENT_TRACE", str(tmp_path / "shared.jsonl"))
    first, second = trace_entry_point.from_env(), trace_entry_point.plugin
    try:
        assert isinstance(first, Tracer) and first is second
    finally:
        assert isinstance(first, Tracer)
        first.close()
        trace_entry_point._tracers.clear()


def test_readme_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    readme = Path(__file__).parent.parent / "plugins" / "iceagent-trace" / "README.md"
    (code,) = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)
    exec(code, {"__name__": "readme"})
    assert capsys.readouterr().out.strip().endswith("events; True")


async def test_trace_explains_a_path_through_nats(autojump_clock: object) -> None:
    """On the vnet: A behind eim-eif, B behind adm-eif. B answers A's check on its srflx address from
    another NAT port, so that pair fails and a peer-reflexive one wins: the trace shows both."""
    from iceagent_vnet import vnet

    from iceagent import IceServer
    from iceagent.stun.server import serve_stun

    scenario = vnet("eim-eif", "adm-eif", rtt=0.05, seed=3)
    stun = "{}:{}".format(*scenario.stun_addresses[0])
    servers = [IceServer(urls=[f"stun:{stun}"])]
    buf = io.StringIO()
    pm = create_plugin_manager(load_entrypoints=False)
    pm.register(Tracer(buf))
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_stun, scenario.server_network, [stun])
        async with (
            open_agent(network=scenario.network_a, ice_servers=servers, name="A", plugin_manager=pm) as a,
            open_agent(network=scenario.network_b, ice_servers=servers, name="B", controlling=False,
                       plugin_manager=pm) as b,
        ):
            with trio.fail_after(60):
                await connect_both(a, b)
                await a.state.wait_value(IceState.COMPLETED)
        nursery.cancel_scope.cancel()
    records = load_trace(buf.getvalue().splitlines())
    assert all(r["t"] < 100 for r in records)  # virtual time: the mock clock starts at 0
    a_info = summarize(records)[(records[0]["pid"], "A")]
    assert "prflx" in a_info["selected"]
    fates = {p.label: p for p in a_info["pairs"].values()}
    assert any(p.state == "failed" and p.asymmetric for p in fates.values())
    svg = render_svg(records)
    ET.fromstring(svg)
    assert "(lost)" in svg  # checks to the other side's private address went nowhere
    page = render_html(records)
    assert "the answer came from another address" in page
