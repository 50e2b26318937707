"""The TURN client and relay candidates against coturn on 127.0.0.1 (UDP, TCP, TLS), on the real clock."""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Callable

import pytest
import trio
from agent_helpers import connect_both, signal
from coturn import PASSWORD, REALM, USER, Coturn, coturn_factory, coturn_server, relay_only_agents  # noqa: F401
from ipv6 import needs_ipv6

from iceagent import IceConfig, IceFailed, IceServer, IceState, IceStream, open_agent
from iceagent.states import GatheringState
from iceagent.stun import Attr, Message
from iceagent.turn import (
    TurnAuthenticationError,
    TurnConnectionError,
    TurnForbidden,
    TurnQuotaReached,
    TurnRedirectError,
)
from iceagent.turn.allocation import Allocation, open_allocation

pytestmark = [pytest.mark.coturn, pytest.mark.interop]

LO = ["127.0.0.1"]
PROTOCOLS = ["udp", "tcp", "tls"]


def turn_server(server: Coturn, protocol: str = "udp", **kwargs: object) -> IceServer:
    return IceServer(
        urls=[server.uri(protocol)],
        username=kwargs.pop("username", USER),  # type: ignore[arg-type]
        credential=kwargs.pop("credential", PASSWORD),  # type: ignore[arg-type]
        ssl_context=kwargs.pop("ssl_context", server.ssl_context()),  # type: ignore[arg-type]
    )


async def _pump(allocation: Allocation, into: list[tuple[bytes, tuple[str, int]]]) -> None:
    while True:
        into.append(await allocation.receive())


async def _expect(got: list[tuple[bytes, tuple[str, int]]], n: int) -> None:
    while len(got) < n:  # noqa: ASYNC110 - polls a list that another task appends to
        await trio.sleep(0.01)


# ---- allocations ----


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_allocate_permission_channel(coturn_server: Coturn, protocol: str) -> None:  # noqa: F811
    """Allocate over each transport; data goes both ways, first in Send/Data indications, then on channels."""
    server = coturn_server
    with trio.fail_after(15):
        async with (
            open_allocation(
                server.uri(protocol), USER, PASSWORD, ssl_context=server.ssl_context(), local_address="127.0.0.1"
            ) as a,
            open_allocation(server.uri("udp"), USER, PASSWORD, local_address="127.0.0.1") as b,
        ):
            assert a.protocol == protocol and a.relayed_address[0] == "127.0.0.1"
            assert a.mapped_address is not None and a.mapped_address[0] == "127.0.0.1"
            assert a.lifetime == 600
            got_a: list[tuple[bytes, tuple[str, int]]] = []
            got_b: list[tuple[bytes, tuple[str, int]]] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump, a, got_a)
                nursery.start_soon(_pump, b, got_b)
                await b.create_permission("127.0.0.1")  # b accepts data from a's relay
                assert b.permissions() == {"127.0.0.1": "active"}
                await a.send(b"first", b.relayed_address)  # held until a's permission exists, then sent
                await _expect(got_b, 1)
                assert got_b[0] == (b"first", a.relayed_address)
                channel = await a.bind_channel(b.relayed_address)
                assert 0x4000 <= channel <= 0x4FFF and a.channels() == {b.relayed_address: channel}
                for i in range(20):
                    await a.send(b"x" * i, b.relayed_address)  # ChannelData, padded over TCP/TLS
                    await b.send(b"y" * i, a.relayed_address)
                await _expect(got_b, 21)
                await _expect(got_a, 20)
                nursery.cancel_scope.cancel()
            assert sorted(d for d, _ in got_b[1:]) == sorted(b"x" * i for i in range(20))
            assert sorted(d for d, _ in got_a) == sorted(b"y" * i for i in range(20))
            assert {p for _, p in got_a} == {b.relayed_address}
            assert a.requests_sent["Allocate"] == 2  # without, then with credentials
    assert a.error is None and b.error is None


async def test_released_on_exit(coturn_server: Coturn) -> None:  # noqa: F811
    """Leaving the `async with` sends Refresh with LIFETIME 0 and the server confirms (RFC 8656 8)."""
    with trio.fail_after(10):
        async with open_allocation(coturn_server.uri("udp"), USER, PASSWORD, local_address="127.0.0.1") as a:
            pass
    assert a.requests_sent["Refresh"] == 1
    assert a._client.state.value == "released"
    with pytest.raises(trio.ClosedResourceError):
        await a.receive()


async def test_permission_to_a_refused_peer(coturn_factory: Callable[..., Coturn]) -> None:  # noqa: F811
    """A peer the server refuses (--denied-peer-ip) is a 403 naming the peer; the error says what to check."""
    server = coturn_factory(["--denied-peer-ip=127.0.0.2"])
    with trio.fail_after(10):
        async with open_allocation(server.uri("udp"), USER, PASSWORD, local_address="127.0.0.1") as a:
            with pytest.raises(TurnForbidden) as info:
                await a.create_permission("127.0.0.2")
    assert "127.0.0.2" in str(info.value) and "403" in str(info.value) and "--allow-loopback-peers" in str(info.value)


async def test_wrong_password_raises(coturn_server: Coturn) -> None:  # noqa: F811
    with trio.fail_after(10), pytest.raises(TurnAuthenticationError, match="rejected the credentials"):
        async with open_allocation(coturn_server.uri("tcp"), USER, "wrong", local_address="127.0.0.1"):
            pass


async def test_tls_with_an_untrusted_certificate(coturn_server: Coturn) -> None:  # noqa: F811
    with trio.fail_after(10), pytest.raises(TurnConnectionError, match="certificate") as info:
        async with open_allocation(coturn_server.uri("tls"), USER, PASSWORD, local_address="127.0.0.1"):
            pass
    assert "ssl_context" in str(info.value)


async def test_short_lifetimes_survive(coturn_factory: Callable[..., Coturn]) -> None:  # noqa: F811
    """Allocation, permission and channel outlive twice their lifetimes on coturn (refreshed in time)."""
    server = coturn_factory(["--max-allocate-lifetime=3", "--permission-lifetime=3", "--channel-lifetime=3"])
    config = IceConfig(permission_refresh=1.5, channel_refresh=1.5)
    got: list[tuple[bytes, tuple[str, int]]] = []
    with trio.fail_after(20):
        async with (
            open_allocation(server.uri("udp"), USER, PASSWORD, local_address="127.0.0.1", config=config) as a,
            open_allocation(server.uri("udp"), USER, PASSWORD, local_address="127.0.0.1", config=config) as b,
        ):
            assert a.lifetime == 3
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump, b, got)
                nursery.start_soon(_pump, a, [])
                await b.create_permission("127.0.0.1")
                start = trio.current_time()
                i = 0
                while trio.current_time() - start < 6.5:  # > 2 x the lifetimes
                    await a.send(b"%d" % i, b.relayed_address)
                    i += 1
                    await trio.sleep(0.25)
                await _expect(got, i)
                nursery.cancel_scope.cancel()
            sent = a.requests_sent
            assert a.error is None and b.error is None
    assert [d for d, _ in got] == [b"%d" % n for n in range(i)]
    # coturn grants 3 s at Allocate (and its default, 600 s, on Refresh): the Refresh went out in time
    assert sent["Refresh"] >= 1 and sent["CreatePermission"] >= 4 and sent["ChannelBind"] >= 4, sent


async def test_quota_reached(coturn_factory: Callable[..., Coturn]) -> None:  # noqa: F811
    server = coturn_factory(["--user-quota=1"])
    with trio.fail_after(10):
        async with open_allocation(server.uri("udp"), USER, PASSWORD, local_address="127.0.0.1"):
            with pytest.raises(TurnQuotaReached, match="486") as info:
                async with open_allocation(server.uri("udp"), USER, PASSWORD, local_address="127.0.0.1"):
                    pass
    assert "--user-quota" in str(info.value)


async def _scripted_server(
    sock: trio.socket.SocketType, answers: list[Callable[[Message], Message]], seen: list[tuple[str, int]]
) -> None:
    """Answer each request with the next scripted response (a stand-in for a redirecting server)."""
    for answer in answers:
        data, addr = await sock.recvfrom(2048)
        seen.append(addr)
        await sock.sendto(answer(Message.decode(data)).encode(), addr)


async def test_redirection_and_allocation_mismatch(coturn_server: Coturn) -> None:  # noqa: F811
    """437 on Allocate: once more from a new local port; 300: allocate on the ALTERNATE-SERVER (coturn)."""
    seen: list[tuple[str, int]] = []
    answers = [
        lambda req: req.error_response(437),
        lambda req: req.error_response(300, attributes=[(Attr.ALTERNATE_SERVER, coturn_server.address)]),
    ]
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_scripted_server, sock, answers, seen)
                async with open_allocation(f"turn:127.0.0.1:{port}", USER, PASSWORD, local_address="127.0.0.1") as a:
                    assert a.server == coturn_server.address
                    assert "redirected to" in a.uri
                    assert a.relayed_address[0] == "127.0.0.1"
    assert len(seen) == 2 and seen[0] != seen[1]  # the retry after 437 came from another port


async def test_redirection_loop_is_an_error() -> None:
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        here = ("127.0.0.1", sock.getsockname()[1])
        answers = [lambda req: req.error_response(300, attributes=[(Attr.ALTERNATE_SERVER, here)])] * 3
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_scripted_server, sock, answers, [])
                with pytest.raises(TurnRedirectError, match="too many redirections"):
                    async with open_allocation(f"turn:127.0.0.1:{here[1]}", USER, PASSWORD):
                        pass
                nursery.cancel_scope.cancel()


# ---- agents with relay candidates ----


async def exchange(sa: IceStream, sb: IceStream, count: int = 10_000, window: int = 64, size: int = 200) -> set[int]:
    """Send `count` numbered datagrams a->b with at most `window` unacknowledged; return what b received."""
    received: set[int] = set()
    acked = 0
    pad = b"\x00" * (size - 4)

    async def receiver() -> None:
        while len(received) < count:
            data = await sb.receive()
            if len(data) == size:
                received.add(int.from_bytes(data[:4], "big"))
                if len(received) % (window // 2) == 0 or len(received) == count:
                    await sb.send(len(received).to_bytes(4, "big"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        for seq in range(count):
            while seq - acked >= window:
                ack = await sa.receive()
                if len(ack) == 4:
                    acked = max(acked, int.from_bytes(ack, "big"))
            await sa.send(seq.to_bytes(4, "big") + pad)
    return received


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_relay_only_agents_exchange_10000(coturn_server: Coturn, protocol: str) -> None:  # noqa: F811
    servers = [turn_server(coturn_server, protocol)]
    with trio.fail_after(60):
        async with relay_only_agents(servers) as (a, b):
            sa, sb = await connect_both(a, b)
            for agent in (a, b):
                local = [c async for c in agent.gather()]
                assert local and all(c.type == "relay" for c in local)
                assert all((c.related_address, c.related_port) == ("0.0.0.0", 0) for c in local)  # nothing leaks
                pair = agent.selected_pair
                assert pair is not None and pair.local.type == "relay" and pair.remote.type == "relay"
            received = await exchange(sa, sb)
    assert received == set(range(10_000))


@needs_ipv6
@pytest.mark.parametrize("protocol", ["udp", "tcp"])
async def test_ipv6_relay_only_agents(coturn_factory: Callable[..., Coturn], protocol: str) -> None:  # noqa: F811
    """coturn on ::1 allocates IPv6 relayed addresses (RFC 8656 6.1: the family of the connection): relay-only
    agents with only ::1 to gather on connect through it and carry data both ways."""
    server = coturn_factory(host="::1")
    servers = [turn_server(server, protocol)]
    with trio.fail_after(30):
        async with relay_only_agents(servers, host="::1") as (a, b):
            sa, sb = await connect_both(a, b)
            for agent in (a, b):
                pair = agent.selected_pair
                assert pair is not None and pair.local.type == "relay" and pair.local.address == "::1"
                assert (pair.local.related_address, pair.local.related_port) == ("::", 0)  # nothing leaks
            await sa.send(b"over an IPv6 relay")
            assert await sb.receive() == b"over an IPv6 relay"
            await sb.send(b"and back")
            assert await sa.receive() == b"and back"


async def test_relay_only_agent_and_host_only_agent(coturn_server: Coturn) -> None:  # noqa: F811
    with trio.fail_after(30):
        async with (
            open_agent(
                controlling=True,
                host_addresses=LO,
                ice_servers=[turn_server(coturn_server)],
                ice_transport_policy="relay",
            ) as a,
            open_agent(controlling=False, host_addresses=LO) as b,
        ):
            sa, sb = await connect_both(a, b)
            pa, pb = a.selected_pair, b.selected_pair
            assert pa is not None and pa.local.type == "relay" and pa.remote.type == "host"
            assert pb is not None and pb.local.type == "host"
            received = await exchange(sa, sb, count=500)
            received_back = await exchange(sb, sa, count=500)
    assert received == received_back == set(range(500))


async def test_all_policy_gathers_host_and_relay(coturn_server: Coturn) -> None:  # noqa: F811
    with trio.fail_after(20):
        async with open_agent(host_addresses=LO, ice_servers=[turn_server(coturn_server, "tcp")]) as a:
            local = [c async for c in a.gather()]
            stats = a.stats()["gatherers"]
    assert sorted(c.type for c in local) == ["host", "relay"]
    relay = next(c for c in local if c.type == "relay")
    assert relay.related_address == "127.0.0.1"  # the mapped address of the Allocate response
    assert relay.priority < next(c for c in local if c.type == "host").priority
    assert stats["relay"] == {"state": "done", "candidates": 1, "errors": []}


# ---- failures: gathering completes without the relay, the reason is in stats() ----


async def _gather_errors(servers: list[IceServer], config: IceConfig | None = None) -> tuple[list[str], float]:
    start = trio.current_time()
    async with open_agent(host_addresses=LO, ice_servers=servers, config=config) as agent:
        candidates = [c async for c in agent.gather()]
        assert agent.gathering_state.value is GatheringState.COMPLETE
        assert all(c.type == "host" for c in candidates)
        return agent.stats()["gatherers"]["relay"]["errors"], trio.current_time() - start


async def test_wrong_password_is_reported(coturn_server: Coturn, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.WARNING)
    with trio.fail_after(15):
        errors, took = await _gather_errors([turn_server(coturn_server, credential="wrong")])
    assert len(errors) == 1 and took < 5
    assert "rejected the credentials of user 'alice' in realm 'example.org'" in errors[0]
    assert "credential=" in errors[0]
    assert "rejected the credentials" in caplog.text


async def test_wrong_realm_is_reported(coturn_factory: Callable[..., Coturn]) -> None:  # noqa: F811
    """The server holds alice's key for another realm: to the client the credentials are wrong."""
    key = hashlib.md5(f"{USER}:other.org:{PASSWORD}".encode()).hexdigest()
    server = coturn_factory(user=f"{USER}:0x{key}")
    with trio.fail_after(15):
        errors, _ = await _gather_errors([turn_server(server, "udp")])
    assert len(errors) == 1 and f"in realm '{REALM}'" in errors[0], errors


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_server_down_udp_is_reported_within_gather_timeout() -> None:
    port = _closed_port()
    servers = [IceServer(urls=[f"turn:127.0.0.1:{port}"], username=USER, credential=PASSWORD)]
    with trio.fail_after(15):
        errors, took = await _gather_errors(servers, IceConfig(gather_timeout=2.0))
    assert took < 4
    assert errors == [
        f"no allocation on turn:127.0.0.1:{port}?transport=udp within 1.8 s: the server did not answer in time; "
        "check that it runs at that address and port and that nothing blocks the way"
    ]


@pytest.mark.parametrize("scheme", ["turn", "turns"])
async def test_server_down_tcp_is_reported_at_once(scheme: str) -> None:
    port = _closed_port()
    servers = [IceServer(urls=[f"{scheme}:127.0.0.1:{port}?transport=tcp"], username=USER, credential=PASSWORD)]
    with trio.fail_after(15):
        errors, took = await _gather_errors(servers)
    assert took < 2
    assert len(errors) == 1 and "cannot connect" in errors[0] and "refused" in errors[0].lower(), errors


async def test_tls_failure_is_reported(coturn_server: Coturn) -> None:  # noqa: F811
    with trio.fail_after(15):
        errors, _ = await _gather_errors([turn_server(coturn_server, "tls", ssl_context=None)])
    assert len(errors) == 1 and "TLS handshake" in errors[0] and "certificate" in errors[0], errors


async def test_server_killed_mid_session_then_restart(coturn_factory: Callable[..., Coturn]) -> None:  # noqa: F811
    """The relayed pair dies with the server, the agents go FAILED; with the server back, a restart reconnects."""
    server = coturn_factory()
    servers = [turn_server(server)]
    config = IceConfig(consent_interval=0.3, consent_timeout=2.0, disconnected_timeout=0.5, rto=0.1, rc=4, rm=4)
    with trio.fail_after(40):
        async with (
            open_agent(
                controlling=True, host_addresses=LO, ice_servers=servers, ice_transport_policy="relay", config=config
            ) as a,
            open_agent(
                controlling=False, host_addresses=LO, ice_servers=servers, ice_transport_policy="relay", config=config
            ) as b,
        ):
            sa, sb = await connect_both(a, b)
            assert await exchange(sa, sb, count=100) == set(range(100))
            server.stop()
            await a.state.wait_value(IceState.FAILED)
            await b.state.wait_value(IceState.FAILED)
            with pytest.raises(IceFailed):
                await a.connect()
            server = coturn_factory(port=server.port, tls_port=server.tls_port)  # back on the same address
            await a.restart()
            await signal(a, b)  # b sees a's new ufrag and restarts too
            await signal(b, a)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(a.connect)
                nursery.start_soon(b.connect)
            assert a.generation.value == 1 and b.generation.value == 1
            assert await exchange(sa, sb, count=100) == set(range(100))
