"""The UPnP-IGD client against a scripted Internet Gateway Device on the vnet (MockClock): the SSDP search,
the description, the SOAP calls, and what a hostile or odd device gets (UDA 1.1, WANIPConnection:1).

The device is a vnet host on A's LAN; a NetworkWrapper names it as A's default gateway. It answers no
PCP, so only UPnP maps (the PCP silence is in stats() too).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import trio
from iceagent_vnet import Host, vnet
from iceagent_vnet.scenario import Scenario

from iceagent import GatheringState, open_agent
from iceagent.gatherers.portmap import PORT_MAPPING_TIMEOUT
from iceagent.net.base import NetworkWrapper

HTTP_PORT = 5000
SERVICE = "urn:schemas-upnp-org:service:WANIPConnection:1"
DESCRIPTION = f"""<?xml version="1.0"?><root><device><serviceList><service><serviceType>{SERVICE}</serviceType>
<controlURL>/ctl/IPConn</controlURL></service></serviceList></device></root>""".encode()


def _http(body: bytes, status: str = "200 OK") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def _fault(code: int) -> bytes:
    return _http(f"<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>{code}</errorCode>"
                 "<errorDescription>no</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>".encode(),
                 "500 Internal Server Error")  # fmt: skip


class FakeIgd:
    """An IGD: answers M-SEARCH with `location`, serves the description, and each SOAP action with
    `answer(action, body) -> bytes` (default: success). Records the actions and the connections."""

    def __init__(self, host: Host, location: str | None = None) -> None:
        self.host = host
        self.location = location or f"http://{host.address}:{HTTP_PORT}/rootDesc.xml"
        self.actions: list[tuple[str, str]] = []
        self.connections = 0
        self.searches = 0
        self.answer: Callable[[str, str], bytes] = self.succeed
        self.description = _http(DESCRIPTION)

    def succeed(self, action: str, body: str) -> bytes:
        if action == "GetExternalIPAddress":
            return _http(b"<u:R><NewExternalIPAddress>11.0.0.7</NewExternalIPAddress></u:R>")
        return _http(b"<u:R></u:R>")

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        network = self.host.network
        sock = await network.bind_udp(self.host.address, 1900)
        listener = await network.listen_tcp(self.host.address, HTTP_PORT)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._ssdp, sock)
            task_status.started()
            while True:
                stream, _ = await listener.accept()
                nursery.start_soon(self._http, stream)

    async def _ssdp(self, sock: object) -> None:
        while True:
            data, source = await sock.receive()  # type: ignore[attr-defined]
            if data.startswith(b"M-SEARCH"):
                self.searches += 1
                answer = f"HTTP/1.1 200 OK\r\nST: x\r\nLOCATION: {self.location}\r\n\r\n".encode()
                await sock.send(answer, source)  # type: ignore[attr-defined]

    async def _http(self, stream: trio.abc.Stream) -> None:
        self.connections += 1
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"CONTENT-LENGTH: (\d+)", head, re.I)
            while length and len(body) < int(length.group(1)):
                body += await stream.receive_some(65536)
            if head.startswith(b"GET "):
                answer = self.description
            else:
                action = re.search(rb'SOAPACTION: "[^#]*#(\w+)"', head, re.I)
                assert action is not None
                name = action.group(1).decode()
                self.actions.append((name, body.decode()))
                answer = self.answer(name, body.decode())
            try:
                await stream.send_all(answer)
                await trio.sleep_forever()  # the client closes (a device may hold the connection open)
            except trio.BrokenResourceError:
                pass  # the client stopped reading


class _Gateway(NetworkWrapper):
    def __init__(self, inner: object, gateway: str) -> None:
        super().__init__(inner)  # type: ignore[arg-type]
        self.gateway = gateway

    async def default_gateway(self, family: int = 4) -> str | None:
        return self.gateway


async def _gather(scenario: Scenario, igd: FakeIgd, linger: float = 0.0) -> tuple[list[str], dict[str, object]]:
    """Open an agent on A with port mapping and the fake IGD as gateway; its srflx lines and portmap stats."""
    network = _Gateway(scenario.network_a, igd.host.address)
    async with trio.open_nursery() as nursery:
        await nursery.start(igd.serve)
        async with open_agent(controlling=True, network=network, port_mapping=True) as agent:
            await agent.gathering_state.wait_value(GatheringState.COMPLETE)
            srflx = [c.to_sdp() async for c in agent.gather() if c.type == "srflx"]
            stats = agent.stats()["gatherers"]["portmap"]
            await trio.sleep(linger)
        nursery.cancel_scope.cancel()
    return srflx, stats


def _setup(location: str | None = None) -> tuple[Scenario, FakeIgd]:
    scenario = vnet("symmetric", "symmetric", seed=2)
    return scenario, FakeIgd(Host("igd", scenario.lan_a), location)


def _argument(body: str, name: str) -> str:
    found = re.search(f"<{name}>([^<]*)</{name}>", body)
    assert found is not None, body
    return found.group(1)


async def test_upnp_maps_renews_and_deletes(autojump_clock: object) -> None:
    """Search, description, GetExternalIPAddress, AddPortMapping for the host socket (lease 7200 s), a
    candidate on the external address; renewed by AddPortMapping at half the lease; DeletePortMapping on
    close."""
    scenario, igd = _setup()
    srflx, stats = await _gather(scenario, igd, linger=3700)
    assert len(srflx) == 1 and " 11.0.0.7 " in srflx[0] and f"raddr {scenario.host_a.address}" in srflx[0]
    assert stats["candidates"] == 1
    names = [name for name, _ in igd.actions]
    assert names == ["GetExternalIPAddress", "AddPortMapping", "GetExternalIPAddress", "AddPortMapping",
                     "DeletePortMapping"]  # fmt: skip
    add = igd.actions[1][1]
    port = srflx[0].split()[5]
    assert _argument(add, "NewExternalPort") == _argument(add, "NewInternalPort") == port
    assert _argument(add, "NewInternalClient") == scenario.host_a.address
    assert _argument(add, "NewProtocol") == "UDP" and _argument(add, "NewLeaseDuration") == "7200"
    assert _argument(igd.actions[-1][1], "NewExternalPort") == port


async def test_a_taken_port_is_retried_elsewhere_and_permanent_leases_are_not_renewed(autojump_clock: object) -> None:
    """718 ConflictInMappingEntry: another external port; 725 OnlyPermanentLeasesSupported: lease 0, which
    is never renewed (it is deleted on close)."""
    scenario, igd = _setup()
    refusals = [718, 725]

    def answer(action: str, body: str) -> bytes:
        if action == "AddPortMapping" and refusals:
            return _fault(refusals.pop(0))
        return igd.succeed(action, body)

    igd.answer = answer
    srflx, _ = await _gather(scenario, igd, linger=20000)
    adds = [body for name, body in igd.actions if name == "AddPortMapping"]
    assert len(adds) == 3, igd.actions  # the conflict, the 725, the permanent one; no renewal in 20000 s
    assert _argument(adds[0], "NewExternalPort") != _argument(adds[1], "NewExternalPort")
    assert [_argument(a, "NewLeaseDuration") for a in adds] == ["7200", "7200", "0"]
    assert f" {_argument(adds[2], 'NewExternalPort')} typ srflx" in srflx[0]
    assert igd.actions[-1][0] == "DeletePortMapping"


async def test_a_location_off_the_gateway_is_not_followed(autojump_clock: object) -> None:
    """The SSDP answer points at another host: no HTTP connection is made anywhere, no candidate."""
    scenario, igd = _setup(location="http://192.168.1.99:5000/rootDesc.xml")
    srflx, stats = await _gather(scenario, igd)
    assert srflx == [] and igd.connections == 0 and igd.searches >= 1
    assert any("not http:// on the gateway" in str(e) for e in stats["errors"]), stats  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["huge", "endless"])
async def test_a_hostile_description_costs_a_bounded_read(kind: str, autojump_clock: object) -> None:
    """A description over 64 KiB is refused after reading 64 KiB; one that never ends is cut by the timeout.
    Either way gathering completes on time and the error is in stats()."""
    scenario, igd = _setup()
    if kind == "huge":
        igd.description = _http(b" " * 10_000_000)
    else:
        igd.description = b"HTTP/1.1 200 OK\r\n\r\n"  # then nothing, the connection held open

    start = trio.current_time()
    srflx, stats = await _gather(scenario, igd)
    assert srflx == []
    assert trio.current_time() - start <= PORT_MAPPING_TIMEOUT + 1
    errors = " ".join(stats["errors"])  # type: ignore[arg-type]
    assert ("longer than 65536 bytes" if kind == "huge" else "UPNP on gateway") in errors, errors
