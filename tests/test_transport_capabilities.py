"""The transport capability Protocols of iceagent.net.base: every concrete transport satisfies exactly the
ones it claims, on real instances (loopback sockets, the vnet, TURN allocations on an embedded server), and
`transport_capabilities` gives the same answer as isinstance, with bound methods that work."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
from iceagent_vnet import vnet
from iceagent_vnet.udp import VirtualUdpSocket

from iceagent import IceConfig
from iceagent.gatherers import base as gatherers_base
from iceagent.gatherers.tcp_transport import TcpActiveEndpoint, TcpPassiveEndpoint
from iceagent.net import base
from iceagent.net.base import (
    CandidateTransport,
    ConnectionTransport,
    SupportsReceiveBatch,
    SupportsSendNowait,
    SupportsTrySend,
    TransportCapabilities,
    UdpSocket,
    transport_capabilities,
)
from iceagent.net.os import OSNetwork, OSUdpSocket
from iceagent.turn.allocation import Allocation, open_allocation
from iceagent.turn.server import TurnServerConfig, open_turn_server
from iceagent.turn.transports import (
    NowaitTurnConnection,
    OSUdpTurnConnection,
    StreamTurnConnection,
    TurnConnection,
    UdpTurnConnection,
)

USERS = {"alice": "secret"}
LOOPBACK_PEERS = TurnServerConfig(allow_loopback_peers=True)

#: Each capability field of TransportCapabilities and the Protocol that declares it.
PROTOCOLS: dict[str, type] = {
    "send_nowait": SupportsSendNowait,
    "try_send": SupportsTrySend,
    "receive_batch": SupportsReceiveBatch,
    "connection": ConnectionTransport,
}


def check(transport: Any, expected: set[str]) -> TransportCapabilities:
    """`transport` is a CandidateTransport with exactly the capabilities `expected`, by isinstance and by
    transport_capabilities alike; the methods handed out are the transport's own."""
    assert isinstance(transport, CandidateTransport)
    by_isinstance = {name for name, protocol in PROTOCOLS.items() if isinstance(transport, protocol)}
    assert by_isinstance == expected, type(transport).__name__
    caps = transport_capabilities(transport)
    assert caps.names == expected
    for name in ("send_nowait", "try_send", "receive_batch"):
        method = getattr(caps, name)
        assert method == (getattr(transport, name) if name in expected else None)
    assert caps.connection is (transport if "connection" in expected else None)
    return caps


def test_capabilities_follow_the_names_the_protocols_declare() -> None:
    class Plain:
        async def send(self, data: bytes, remote: Any) -> None: ...

        async def receive(self) -> Any: ...

    class NowaitOnly(Plain):
        def send_nowait(self, data: bytes, remote: Any) -> None: ...

    assert transport_capabilities(Plain()).names == frozenset()
    assert transport_capabilities(NowaitOnly()).names == {"send_nowait"}
    assert base._CONNECTION == ("close_connection", "confirm", "connections", "receive", "send", "watch")


def test_transport_protocols_are_still_importable_from_gatherers_base() -> None:
    assert gatherers_base.CandidateTransport is CandidateTransport
    assert gatherers_base.ConnectionTransport is ConnectionTransport


async def test_os_udp_socket_has_the_datagram_fast_paths() -> None:
    network = OSNetwork()
    with trio.fail_after(5):
        a, b = await network.bind_udp("127.0.0.1"), await network.bind_udp("127.0.0.1")
        try:
            assert isinstance(a, OSUdpSocket) and isinstance(a, UdpSocket)
            caps = check(a, {"send_nowait", "try_send", "receive_batch"})
            receiver = check(b, {"send_nowait", "try_send", "receive_batch"})
            assert caps.send_nowait is not None and caps.try_send is not None
            caps.send_nowait(b"one", b.local_address)
            assert caps.try_send(b"two", b.local_address) is True
            assert receiver.receive_batch is not None
            got: list[tuple[bytes, Any]] = []
            while len(got) < 2:
                got += await receiver.receive_batch()
            assert got == [(b"one", a.local_address), (b"two", a.local_address)]
        finally:
            a.close()
            b.close()


async def test_vnet_udp_socket_has_none(autojump_clock: object) -> None:
    scenario = vnet("none", "none")
    sock = await scenario.network_a.bind_udp(scenario.host_a.address)
    try:
        assert isinstance(sock, VirtualUdpSocket) and isinstance(sock, UdpSocket)
        check(sock, set())
    finally:
        sock.close()


async def test_ice_tcp_endpoints_are_connection_transports() -> None:
    network = OSNetwork()
    listener = await network.listen_tcp("127.0.0.1")
    try:
        for endpoint in (
            TcpPassiveEndpoint(listener, IceConfig()),
            TcpActiveEndpoint(network, "127.0.0.1", IceConfig()),
        ):
            caps = check(endpoint, {"send_nowait", "connection"})
            assert caps.connection is not None and caps.connection.connections == []
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("transport", "connection", "expected"),
    [
        ("udp", OSUdpTurnConnection, {"send_nowait", "receive_batch"}),
        ("tcp", StreamTurnConnection, {"receive_batch"}),
    ],
)
async def test_turn_allocation_on_loopback(transport: str, connection: type, expected: set[str]) -> None:
    network = OSNetwork()
    with trio.fail_after(10):
        async with AsyncExitStack() as stack:
            server = await stack.enter_async_context(
                open_turn_server(network, ["127.0.0.1:0"], users=USERS, tcp=True, config=LOOPBACK_PEERS)
            )
            port = (server.address if transport == "udp" else server.tcp_addresses[0])[1]
            uri = f"turn:127.0.0.1:{port}?transport={transport}"
            allocation = await stack.enter_async_context(
                open_allocation(uri, "alice", "secret", network=network, local_address="127.0.0.1")
            )
            peer = await network.bind_udp("127.0.0.1")
            stack.callback(peer.close)
            assert type(allocation._conn) is connection
            assert isinstance(allocation._conn, TurnConnection)
            assert isinstance(allocation._conn, NowaitTurnConnection) == ("send_nowait" in expected)
            caps = check(allocation, expected)
            await allocation.create_permission("127.0.0.1")
            if caps.send_nowait is not None:
                caps.send_nowait(b"to peer", peer.local_address)  # a Send indication, at once
            else:
                await allocation.send(b"to peer", peer.local_address)
            assert await peer.receive() == (b"to peer", allocation.relayed_address)
            await peer.send(b"to client", allocation.relayed_address)
            assert caps.receive_batch is not None
            assert await caps.receive_batch() == [(b"to client", peer.local_address)]


async def test_turn_allocation_on_the_vnet_has_no_synchronous_send(autojump_clock: object) -> None:
    scenario = vnet("none", "none")
    turn = scenario.turn_address
    async with (
        open_turn_server(scenario.server_network, [f"{turn[0]}:{turn[1]}"], users=USERS),
        open_allocation(f"turn:{turn[0]}:{turn[1]}", "alice", "secret", network=scenario.network_a) as allocation,
    ):
        assert type(allocation) is Allocation
        assert type(allocation._conn) is UdpTurnConnection
        assert not isinstance(allocation._conn, NowaitTurnConnection)
        check(allocation, {"receive_batch"})


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_os_udp_receive_batch_gives_host_port_pairs_and_respects_its_limit(host: str) -> None:
    """receive_batch returns (data, (host, port)) for both families (an IPv6 source's flowinfo and scope id
    dropped), at most `limit` per call, in arrival order."""
    network = OSNetwork()
    with trio.fail_after(5):
        try:
            a, b = await network.bind_udp(host), await network.bind_udp(host)
        except OSError as e:  # no IPv6 loopback on this host
            pytest.skip(f"cannot bind {host}: {e}")
        try:
            assert isinstance(a, OSUdpSocket) and isinstance(b, OSUdpSocket)
            for i in range(5):
                a.send_nowait(bytes([i]), b.local_address)
            got: list[tuple[bytes, Any]] = []
            while len(got) < 5:
                batch = await b.receive_batch(limit=2)
                assert 1 <= len(batch) <= 2
                got += batch
            assert [d for d, _ in got] == [bytes([i]) for i in range(5)]
            assert {addr for _, addr in got} == {a.local_address}
            assert all(len(addr) == 2 for _, addr in got)
        finally:
            a.close()
            b.close()
