"""vnet TCP: connect/accept through NATs, a reliable in-order byte stream, half-close, refusal, timeouts."""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing
from iceagent_vnet import Host, Lan, Link, VirtualTcpStream, vnet


async def echo_once(listener: trio.abc.AsyncResource, record: list[tuple[str, int]]) -> None:
    stream, peer = await listener.accept()  # type: ignore[attr-defined]
    record.append(peer)
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data.upper())


async def test_connect_through_a_nat(autojump_clock: object) -> None:
    scenario = vnet(rtt=0.1)
    listener = await scenario.server_network.listen_tcp("198.51.100.1", 443)
    assert listener.local_address == ("198.51.100.1", 443)
    peers: list[tuple[str, int]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo_once, listener, peers)
        start = trio.current_time()
        stream, local = await scenario.network_a.connect_tcp(("198.51.100.1", 443))
        assert trio.current_time() - start == pytest.approx(0.1)  # SYN, SYN-ACK
        assert local[0] == "192.168.1.2"
        await stream.send_all(b"hello")
        assert await stream.receive_some() == b"HELLO"
        await stream.aclose()
    (peer,) = peers
    assert peer[0] == "203.0.113.1"  # the server sees the NAT's address
    assert scenario.nat_a is not None
    assert scenario.nat_a.mapping_table("tcp") == {peer: local}
    assert scenario.nat_a.mapping_table("udp") == {}


async def test_connection_refused(autojump_clock: object) -> None:
    scenario = vnet()
    with pytest.raises(ConnectionRefusedError):
        await scenario.network_a.connect_tcp(("198.51.100.1", 9))


async def test_unsolicited_connect_to_a_nat_times_out(autojump_clock: object) -> None:
    scenario = vnet()
    listener = await scenario.network_a.listen_tcp("0.0.0.0", 8080)
    assert scenario.nat_a is not None
    start = trio.current_time()
    with pytest.raises(TimeoutError) as info:
        await scenario.server_network.connect_tcp((scenario.nat_a.public_address, 8080))
    assert info.value.errno == errno.ETIMEDOUT
    assert trio.current_time() - start == pytest.approx(127.0)
    assert scenario.nat_a.drops["no_mapping"] == 1
    listener.close()


async def test_big_transfer_over_a_lossy_link_arrives_intact(autojump_clock: object) -> None:
    scenario = vnet(rtt=0.05, loss=0.1, reorder=0.05, duplicate=0.05, seed=3)
    listener = await scenario.server_network.listen_tcp("198.51.100.1", 80)
    payload = bytes(range(256)) * 4096  # 1 MiB
    received = bytearray()

    async def server() -> None:
        stream, _ = await listener.accept()
        while data := await stream.receive_some(65536):
            received.extend(data)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        stream, _ = await scenario.network_b.connect_tcp(("198.51.100.1", 80))
        await stream.send_all(payload)
        await stream.send_eof()
        assert await stream.receive_some() == b""
    assert bytes(received) == payload
    assert scenario.internet.link.stats["retransmitted"] > 0
    assert scenario.drops()["loss"] == 0  # TCP loss is delay, not loss


async def test_half_close_and_close(autojump_clock: object) -> None:
    lan = Lan("10.0.0.0/24", link=Link(latency=0.01))
    a, b = Host("a", lan), Host("b", lan)
    listener = await b.network.listen_tcp("10.0.0.3", 7)
    client, _ = await a.network.connect_tcp(("10.0.0.3", 7))
    server, peer = await listener.accept()
    assert peer == client.local_address if isinstance(client, VirtualTcpStream) else False
    assert isinstance(server, VirtualTcpStream)
    await client.send_all(b"request")
    await server.send_eof()  # half-close: the server will not send, the client still may
    assert await client.receive_some() == b""
    await client.send_all(b" more")
    await client.aclose()
    got = b""
    while data := await server.receive_some():
        got += data
    assert got == b"request more"
    with pytest.raises(trio.ClosedResourceError):
        await server.send_all(b"x")  # after send_eof
    with pytest.raises(trio.ClosedResourceError):
        await client.receive_some()
    await server.aclose()


async def test_send_after_the_peer_closed_is_broken(autojump_clock: object) -> None:
    lan = Lan("10.0.0.0/24")
    a, b = Host("a", lan), Host("b", lan)
    listener = await b.network.listen_tcp("0.0.0.0", 7)
    client, _ = await a.network.connect_tcp(("10.0.0.3", 7))
    server, _ = await listener.accept()
    await server.aclose()
    await trio.sleep(1)
    assert await client.receive_some() == b""
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"x")


async def test_listener_errors_and_close(autojump_clock: object) -> None:
    host = Host("h", Lan("10.0.0.0/24"))
    listener = await host.network.listen_tcp("10.0.0.2", 80)
    with pytest.raises(OSError) as info:
        await host.network.listen_tcp("0.0.0.0", 80)
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as info:
        await host.network.listen_tcp("10.0.0.9", 80)
    assert info.value.errno == errno.EADDRNOTAVAIL
    ephemeral = await host.network.listen_tcp("10.0.0.2", 0)
    assert ephemeral.local_address[1] != 0

    async def close_soon() -> None:
        await trio.sleep(1)
        listener.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_soon)
        with pytest.raises(trio.ClosedResourceError):
            await listener.accept()


async def test_listener_close_resets_pending_connections(autojump_clock: object) -> None:
    lan = Lan("10.0.0.0/24")
    a, b = Host("a", lan), Host("b", lan)
    listener = await b.network.listen_tcp("10.0.0.3", 7)
    client, _ = await a.network.connect_tcp(("10.0.0.3", 7))

    async def reader() -> None:
        with pytest.raises(trio.BrokenResourceError):
            await client.receive_some()  # parked before the reset comes

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        listener.close()


async def test_connect_from_a_chosen_local_address(autojump_clock: object) -> None:
    lan = Lan("10.0.0.0/24")
    a, b = Host("a", lan), Host("b", lan)
    listener = await b.network.listen_tcp("10.0.0.3", 7)
    client, local = await a.network.connect_tcp(("10.0.0.3", 7), local=("10.0.0.2", 9000))
    assert local == ("10.0.0.2", 9000)
    _, peer = await listener.accept()
    assert peer == ("10.0.0.2", 9000)
    with pytest.raises(OSError) as info:
        await a.network.connect_tcp(("10.0.0.3", 7), local=("10.0.0.2", 9000))
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as info:
        await a.network.connect_tcp(("10.0.0.3", 7), local=("10.0.0.77", 0))
    assert info.value.errno == errno.EADDRNOTAVAIL
    await client.aclose()


async def test_conforms_to_trio_half_closeable_stream(autojump_clock: object) -> None:
    """trio's own conformance checks for HalfCloseableStream implementations."""

    async def make_pair() -> tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]:
        lan = Lan("10.0.0.0/24", link=Link(latency=0.001))
        a, b = Host("a", lan), Host("b", lan)
        listener = await b.network.listen_tcp("10.0.0.3", 7)
        client, _ = await a.network.connect_tcp(("10.0.0.3", 7))
        server, _ = await listener.accept()
        assert isinstance(client, VirtualTcpStream) and isinstance(server, VirtualTcpStream)
        return client, server

    await trio.testing.check_half_closeable_stream(make_pair, None)
