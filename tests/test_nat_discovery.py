"""RFC 5780 NAT behaviour discovery (`iceagent.stun.nat_discovery`, `iceagent nat`) checked against ground truth.

On vnet (MockClock) the classifier must name every NAT type exactly as the router's `.nat` says; on
loopback it runs against the embedded server and coturn (both on 127.0.0.1 with 127.0.0.2 as the
alternate IP: "no NAT"), and `iceagent nat` runs as a process.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from agent_helpers import connect_both
from iceagent_vnet import vnet
from iceagent_vnet.scenario import Scenario

from iceagent import IceConfig, IceFailed, IceServer, StunTimeout, open_agent
from iceagent.net.base import Network
from iceagent.net.os import OSNetwork
from iceagent.stun.nat_discovery import (
    ADF,
    ADM,
    ALL_CLASSES,
    APDF,
    APDM,
    EIF,
    EIM,
    FilteringBehavior,
    MappingBehavior,
    NatDiscoveryError,
    NatDiscoveryResult,
    direct_connection_possible,
    discover_nat,
    explain_direct_connectivity,
)
from iceagent.stun.server import answer, open_stun_server, serve_stun

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

ROOT = Path(__file__).resolve().parent.parent
NAT_TYPES = [f"{m}-{f}" for m in ("eim", "adm", "apdm") for f in ("eif", "adf", "apdf")]
ALT = "127.0.0.2"


async def _discover_on_vnet(scenario: Scenario, **options: Any) -> NatDiscoveryResult:
    """Run the embedded RFC 5780 server on the scenario's two STUN addresses and discover from host A."""
    (ip, port), (alt, _) = scenario.stun_addresses
    async with open_stun_server(scenario.server_network, [(ip, port)], alternate=alt):
        return await discover_nat(scenario.network_a, (ip, port), **options)


# --- every vnet NAT type against its ground truth ---------------------------------------------------------


@pytest.mark.parametrize("nat", ["none", *NAT_TYPES])
async def test_classifies_every_vnet_nat(nat: str, autojump_clock: object) -> None:
    scenario = vnet(nat, "none", rtt=0.04, seed=5)
    start = trio.current_time()
    result = await _discover_on_vnet(scenario, hairpinning=True)
    truth = scenario.nat_a.nat if scenario.nat_a is not None else None
    assert result.nat_type == nat
    if truth is None:
        assert not result.behind_nat
        assert result.mapping is EIM and result.filtering is EIF
        assert result.mapped == (scenario.host_a.address, result.local[1])
        assert result.hairpinning is None
    else:
        assert result.behind_nat
        assert result.mapping.value == truth.mapping.value
        assert result.filtering.value == truth.filtering.value
        assert result.mapped[0] == scenario.nat_a.public_address
        assert result.other_address == (scenario.stun_addresses[1][0], 3479)
        # vnet hairpins by default; a refused hairpin is only undecided when neither EIM nor EIF lets it in
        decidable = result.mapping is EIM or result.filtering is EIF
        assert result.hairpinning is (True if decidable else None)
        assert len(result.mapped_addresses) == (2 if result.mapping is EIM else 3)
    assert result.software is None  # never over UDP: it would only grow a reflected answer
    # the tests run at once: the whole run takes one timeout at most (plus round trips)
    assert trio.current_time() - start <= 3.0 + 1.0
    json.dumps(result.to_dict())


@pytest.mark.parametrize("nat", ["eim-eif", "eim-adf", "eim-apdf", "adm-eif", "apdm-eif", "apdm-apdf"])
async def test_hairpinning_off(nat: str, autojump_clock: object) -> None:
    """RFC 5780 4.5 against a NAT that drops hairpinned packets (RFC 4787 6 ground truth)."""
    scenario = vnet(nat, "none", hairpinning=False)
    result = await _discover_on_vnet(scenario, hairpinning=True)
    assert result.nat_type == nat
    if nat == "apdm-apdf":
        assert result.hairpinning is None
        assert any("undecided" in note for note in result.notes)
    else:
        assert result.hairpinning is False


@pytest.mark.parametrize(("nat", "preserved"), [("eim-apdf", True), ("adm-apdf", True), ("apdm-eif", False)])
async def test_port_preservation_does_not_fool_the_mapping_test(
    nat: str, preserved: bool, autojump_clock: object
) -> None:
    """RFC 4787 4.2.1: with port preservation the first mapping keeps the port, later ones cannot."""
    scenario = vnet(nat, "none", port_preservation=preserved)
    result = await _discover_on_vnet(scenario)
    assert result.nat_type == nat
    assert result.port_preserved is preserved


@pytest.mark.parametrize("nat", ["eim-apdf", "apdm-adf", "adm-eif"])
async def test_classifies_through_ipv6_nat66(nat: str, autojump_clock: object) -> None:
    scenario = vnet(nat, "none", ipv6=True)
    (ip, port), (alt, _) = scenario.stun_addresses_v6
    async with open_stun_server(scenario.server_network, [(ip, port)], alternate=alt):
        result = await discover_nat(scenario.network_a, f"[{ip}]:{port}")
    assert result.nat_type == nat
    assert ":" in result.mapped[0]


@pytest.mark.parametrize("nat", ["eim-adf", "adm-apdf", "apdm-eif"])
async def test_classifies_under_loss(nat: str, autojump_clock: object) -> None:
    """10% loss each way and 200 ms RTT: retransmissions (RFC 8489 6.2.1) keep the answers coming."""
    scenario = vnet(nat, "none", loss=0.1, rtt=0.2, seed=11)
    result = await _discover_on_vnet(scenario, timeout=8.0)
    assert result.nat_type == nat


@pytest.mark.parametrize(("lifetime", "at_least", "at_most"), [(30.0, 25.0, 30.0), (7.0, 5.0, 10.0), (3.0, 0.0, 5.0)])
async def test_mapping_lifetime(lifetime: float, at_least: float, at_most: float, autojump_clock: object) -> None:
    """RFC 5780 4.6 against vnet's mapping_lifetime (RFC 4787 4.3), within the probes' 5 s resolution."""
    scenario = vnet("apdm-apdf", "none", mapping_lifetime=lifetime, rtt=0.02)
    start = trio.current_time()
    result = await _discover_on_vnet(scenario, lifetime=True, lifetime_max=60.0, lifetime_probes=12)
    found = result.mapping_lifetime
    assert found is not None
    assert (found.at_least, found.at_most) == (at_least, at_most)
    assert found.at_least < lifetime <= found.at_most  # type: ignore[operator]
    assert trio.current_time() - start < 60.0 + 3.0 + 1.0  # bounded by lifetime_max plus one timeout


async def test_mapping_lifetime_beyond_the_bound(autojump_clock: object) -> None:
    scenario = vnet("eim-apdf", "none")  # 120 s, the RFC 4787 REQ-1 minimum
    result = await _discover_on_vnet(scenario, lifetime=True, lifetime_max=20.0, lifetime_probes=4)
    assert result.mapping_lifetime is not None
    assert result.mapping_lifetime.at_most is None
    assert result.mapping_lifetime.at_least == 20.0
    assert result.mapping_lifetime.describe() == "more than 20 s (the longest probe)"


async def test_no_nat_skips_hairpin_and_lifetime(autojump_clock: object) -> None:
    scenario = vnet("none", "none")
    result = await _discover_on_vnet(scenario, hairpinning=True, lifetime=True)
    assert not result.behind_nat
    assert result.hairpinning is None and result.mapping_lifetime is None
    assert result.mapped_addresses == (result.mapped,)
    assert trio.current_time() < 1.0  # no 60 s of lifetime probes for a NAT that is not there


# --- servers that cannot do RFC 5780 ----------------------------------------------------------------------


async def test_server_without_other_address(autojump_clock: object) -> None:
    scenario = vnet("eim-apdf", "none")
    ip, port = scenario.stun_addresses[0]
    async with open_stun_server(scenario.server_network, [(ip, port)]):
        with pytest.raises(NatDiscoveryError, match=r"does not support RFC 5780.*no OTHER-ADDRESS.*--alt"):
            await discover_nat(scenario.network_a, (ip, port))


async def test_no_server_times_out_in_bounded_time(autojump_clock: object) -> None:
    scenario = vnet("eim-apdf", "none")
    start = trio.current_time()
    with pytest.raises(StunTimeout, match="within 2 s"):
        await discover_nat(scenario.network_a, scenario.stun_addresses[0], timeout=2.0)
    assert trio.current_time() - start <= 2.0 + 0.01


async def _fake_server(
    network: Network,
    addresses: list[tuple[str, int]],
    other: tuple[str, int],
    change: bool,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A broken RFC 5780 server: advertises `other` but answers only from where a request arrived.

    With `change`, CHANGE-REQUEST is answered from the wrong address; without, not at all (like a server
    whose alternate address is down).
    """
    socks = [await network.bind_udp(ip, port) for ip, port in addresses]

    async def serve(sock: object) -> None:
        while True:
            data, remote = await sock.receive()  # type: ignore[attr-defined]
            reply = answer(data, remote, sock.local_address, other=other)  # type: ignore[attr-defined]
            if reply is not None and (change or not (reply.change_ip or reply.change_port)):
                await sock.send(reply.data, reply.destination)  # type: ignore[attr-defined]

    async with trio.open_nursery() as nursery:
        for sock in socks:
            nursery.start_soon(serve, sock)
        task_status.started()


async def test_other_address_that_does_not_answer(autojump_clock: object) -> None:
    scenario = vnet("eim-apdf", "none")
    async with trio.open_nursery() as nursery:
        await nursery.start(
            _fake_server, scenario.server_network, [("198.51.100.1", 3478)], ("198.51.100.2", 3479), False
        )
        with pytest.raises(NatDiscoveryError, match=r"no answer from 198\.51\.100\.2:3478.*test II"):
            await discover_nat(scenario.network_a, ("198.51.100.1", 3478), timeout=2.0)
        nursery.cancel_scope.cancel()


async def test_server_ignoring_change_request(autojump_clock: object) -> None:
    scenario = vnet("eim-eif", "none")
    addresses = [("198.51.100.1", 3478), ("198.51.100.2", 3478), ("198.51.100.2", 3479)]
    async with trio.open_nursery() as nursery:
        await nursery.start(_fake_server, scenario.server_network, addresses, ("198.51.100.2", 3479), True)
        with pytest.raises(NatDiscoveryError, match="does not honour CHANGE-REQUEST"):
            await discover_nat(scenario.network_a, ("198.51.100.1", 3478), timeout=2.0)
        nursery.cancel_scope.cancel()


async def test_bad_options() -> None:
    with pytest.raises(ValueError, match="timeout"):
        await discover_nat(OSNetwork(), ("127.0.0.1", 3478), timeout=0)
    with pytest.raises(ValueError, match="lifetime"):
        await discover_nat(OSNetwork(), ("127.0.0.1", 3478), lifetime=True, lifetime_probes=0)


# --- what the classification means -------------------------------------------------------------------------


def test_explanations() -> None:
    text = explain_direct_connectivity(True, EIM, APDF)
    assert text.startswith("EIM + APDF (port-restricted cone): direct connections work with peers with no NAT or ")
    assert "endpoint-independent mapping (cone NATs, any filtering)" in text
    assert "address- or port-dependent mapping (symmetric NATs) need a relay" in text
    assert "every peer, even one behind a symmetric NAT" in explain_direct_connectivity(True, EIM, ADF)
    assert explain_direct_connectivity(False, EIM, EIF).startswith("no NAT (open internet): ")
    symmetric = explain_direct_connectivity(True, APDM, APDF)
    assert symmetric.startswith("EIM") is False and "EIM+EIF (full cone) or EIM+ADF (restricted cone)" in symmetric
    assert "symmetric-like" in explain_direct_connectivity(True, ADM, EIF)
    for mapping in MappingBehavior:
        for filtering in FilteringBehavior:
            assert "relay" in explain_direct_connectivity(True, mapping, filtering) or mapping is EIM


def test_direct_connection_model_is_symmetric() -> None:
    for a in ALL_CLASSES:
        for b in ALL_CLASSES:
            assert direct_connection_possible(a, b) == direct_connection_possible(b, a)
    assert direct_connection_possible((EIM, APDF), (EIM, APDF))
    assert not direct_connection_possible((EIM, APDF), (ADM, EIF))
    assert direct_connection_possible((ADM, EIF), (APDM, ADF))
    assert not direct_connection_possible((APDM, EIF), (APDM, EIF))


async def _agents_connect(nat_a: str, nat_b: str) -> bool:
    scenario = vnet(nat_a, nat_b, rtt=0.02, seed=1)
    ip, port = scenario.stun_addresses[0]
    servers = [IceServer(urls=[f"stun:{ip}:{port}"])]
    config = IceConfig(failed_timeout=10)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_stun, scenario.server_network, [f"{ip}:{port}"])
            async with (
                open_agent(controlling=True, network=scenario.network_a, ice_servers=servers, config=config) as a,
                open_agent(controlling=False, network=scenario.network_b, ice_servers=servers, config=config) as b,
            ):
                await connect_both(a, b)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as e:
        if e.subgroup(IceFailed) is None:
            raise
        return False
    return True


async def test_explanations_match_the_agent_on_vnet(autojump_clock: object) -> None:
    """The model behind the explanations agrees with real agents on every pair of vnet NAT types."""
    names = {(m, f): f"{m.abbreviation[:-1].lower()}m-{f.abbreviation[:-1].lower()}f" for m, f in ALL_CLASSES}
    wrong = []
    for a in ALL_CLASSES:
        for b in ALL_CLASSES:
            with trio.fail_after(120):
                connected = await _agents_connect(names[a], names[b])
            if connected != direct_connection_possible(a, b):
                wrong.append((names[a], names[b], connected))
    assert not wrong, f"model and agent disagree (a, b, agent connected): {wrong}"


# --- loopback: the embedded server and coturn -------------------------------------------------------------


async def test_embedded_server_on_loopback_is_no_nat() -> None:
    with trio.fail_after(20):
        async with open_stun_server(OSNetwork(), ["127.0.0.1:0"], alternate=ALT) as server:
            result = await discover_nat(OSNetwork(), server.address, local_address="127.0.0.1", timeout=2.0)
    assert not result.behind_nat
    assert result.nat_type == "none"
    assert result.other_address == server.other_address
    assert result.elapsed < 2.0  # every answer comes: nothing waits for a timeout


def _free_udp_tcp_port_pair() -> int:
    """A port P such that P and P+1 are free for UDP and TCP on 127.0.0.1 and 127.0.0.2 (coturn binds all four)."""
    for _ in range(200):
        port = random.randrange(20000, 60000)
        socks: list[socket.socket] = []
        try:
            for ip in ("127.0.0.1", ALT):
                for p in (port, port + 1):
                    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                        s = socket.socket(socket.AF_INET, kind)
                        socks.append(s)
                        s.bind((ip, p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port pair on 127.0.0.1/127.0.0.2")


def _answers_binding(port: int) -> bool:
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.1)
        s.sendto(request, ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(2048)
        except OSError:
            return False
        return data[8:20] == request[8:20]


@pytest.fixture
def rfc5780_coturn(tmp_path: Path) -> Iterator[int]:
    """coturn with two listening IPs (127.0.0.1 and 127.0.0.2), which turns on its RFC 5780 support.

    coturn 4.6.1 has no --alt-listening-ip: two --listening-ip of one family enable RFC 5780, with the
    alternate port --alt-listening-port (default: the port + 1). Yields the primary port; ends it by PID.
    """
    turnserver = shutil.which("turnserver")
    if turnserver is None:
        pytest.skip("coturn's turnserver is not installed (apt-get install coturn)")
    port = _free_udp_tcp_port_pair()
    relay_min = random.randrange(30000, 40000, 100)
    argv = [
        turnserver,
        "-n",
        "--listening-ip=127.0.0.1",
        f"--listening-ip={ALT}",
        f"--listening-port={port}",
        "--relay-ip=127.0.0.1",
        f"--min-port={relay_min}",
        f"--max-port={relay_min + 99}",
        "--stun-only",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--log-file=stdout",
        "--simple-log",
        f"--pidfile={tmp_path / 'turnserver.pid'}",
        f"--userdb={tmp_path / 'turndb'}",
    ]
    log_path = tmp_path / "turnserver.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 10
        while not _answers_binding(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
        yield port
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.mark.coturn
@pytest.mark.interop
async def test_coturn_with_alternate_address_is_no_nat(rfc5780_coturn: int) -> None:
    with trio.fail_after(20):
        result = await discover_nat(
            OSNetwork(), ("127.0.0.1", rfc5780_coturn), local_address="127.0.0.1", hairpinning=True, timeout=2.0
        )
    assert not result.behind_nat
    assert result.nat_type == "none"
    assert result.other_address == (ALT, rfc5780_coturn + 1)
    assert result.software is not None and "Coturn" in result.software


@pytest.mark.coturn
@pytest.mark.interop
async def test_coturn_without_rfc5780_is_refused(tmp_path: Path) -> None:
    from coturn import coturn_available, start_coturn  # the shared helper (coturn with --no-rfc5780)

    if not coturn_available():
        pytest.skip("coturn's turnserver is not installed (apt-get install coturn)")
    server = start_coturn(tmp_path / "coturn")
    try:
        with trio.fail_after(20), pytest.raises(NatDiscoveryError, match="no OTHER-ADDRESS"):
            await discover_nat(OSNetwork(), server.address, local_address="127.0.0.1", timeout=2.0)
    finally:
        server.stop()


# --- `iceagent nat` as a process ----------------------------------------------------------------------------


async def _iceagent(*argv: str) -> tuple[int, str, str]:
    with trio.fail_after(30):
        proc = await trio.run_process(
            [sys.executable, "-m", "iceagent.cli", *argv],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


async def test_cli_text_against_embedded_server() -> None:
    async with open_stun_server(OSNetwork(), ["127.0.0.1:0"], alternate=ALT) as server:
        host, port = server.address
        code, out, err = await _iceagent("nat", "--stun", f"{host}:{port}", "--local", "127.0.0.1", "--hairpin")
    assert code == 0, err
    assert err == ""
    assert "NAT:              no: the server sees 127.0.0.1:" in out
    assert "mapping:          none (no NAT)" in out
    assert "filtering:        endpoint-independent (EIF, RFC 4787 5)" in out
    assert "hairpinning:      not applicable (no NAT)" in out
    assert f"other address {ALT}:" in out
    assert "direct connectivity: no NAT (open internet): direct connections work with every peer" in out


async def test_cli_json_and_uri() -> None:
    async with open_stun_server(OSNetwork(), ["127.0.0.1:0"], alternate=ALT) as server:
        host, port = server.address
        code, out, err = await _iceagent("nat", "--stun", f"stun:{host}:{port}", "--json", "--lifetime")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["behind_nat"] is False and doc["nat_type"] == "none"
    assert doc["mapping"] == "endpoint-independent" and doc["filtering"] == "endpoint-independent"
    assert doc["server"] == {"address": host, "port": port}
    assert doc["other_address"]["address"] == ALT
    assert doc["mapping_lifetime"] is None
    assert len(doc["direct_peers"]) == 9


async def test_cli_errors() -> None:
    async with open_stun_server(OSNetwork(), ["127.0.0.1:0"]) as plain:
        code, out, err = await _iceagent("nat", "--stun", f"127.0.0.1:{plain.address[1]}", "--timeout", "1")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("iceagent nat: error: ") and "no OTHER-ADDRESS" in err
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a port nobody answers on
        s.bind(("127.0.0.1", 0))
        silent = s.getsockname()[1]
        code, out, err = await _iceagent("nat", "--stun", f"127.0.0.1:{silent}", "--timeout", "0.5")
    assert code == 1 and err.count("\n") == 1 and "no STUN response" in err
    code, _, err = await _iceagent("nat", "--stun", "turns:127.0.0.1")
    assert code == 2 and "needs STUN over UDP" in err
    code, _, err = await _iceagent("nat", "--stun", "127.0.0.1:3478", "--local", "::1")
    assert code == 2 and "--local ::1 is IPv6" in err
    code, _, err = await _iceagent("nat")
    assert code == 2 and "--stun" in err
