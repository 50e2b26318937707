"""open_agent's address options (DESIGN.md "Addresses"): port_range, public_ips in both modes, the interface and
IP filters, and the validation of every server option. Vnet tests run under MockClock; loopback ones on the real
clock under fail_after."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
import trio
from agent_helpers import connect_both, signal
from iceagent_vnet import Host, Lan, NatBehavior, vnet
from test_ice_tcp import UdpBlocked

from iceagent import Agent, Candidate, IceConfig, IceFailed, IceServer, PortRangeExhausted, open_agent
from iceagent.stun.server import serve_stun

LOW, HIGH = 40000, 40003


async def gathered(agent: Agent) -> list[Candidate]:
    return [c async for c in agent.gather()]


# ---- port_range ----


async def test_port_range_binds_every_host_socket_inside_it_on_the_vnet(autojump_clock: object) -> None:
    """UDP host sockets, ICE-TCP listeners and active connections all take ports of [lo, hi]; the pair works."""
    scenario = vnet("none", "none", seed=5)
    with trio.fail_after(60):
        async with (
            open_agent(controlling=True, network=scenario.network_a, tcp=True, port_range=(LOW, HIGH), name="A") as a,
            open_agent(controlling=False, network=scenario.network_b, tcp=True, name="B") as b,
        ):
            stream_a, stream_b = await connect_both(a, b)
            await stream_a.send(b"in range")
            assert await stream_b.receive() == b"in range"
            local = await gathered(a)
            bound = [c for c in local if not (c.transport == "tcp" and c.tcptype == "active")]
            assert {(c.transport, c.tcptype) for c in bound} == {("udp", None), ("tcp", "passive")}
            assert all(LOW <= c.port <= HIGH for c in bound), [c.to_sdp() for c in bound]
            # B's candidates are outside it: the range is A's alone
            assert not all(LOW <= c.port <= HIGH for c in await gathered(b))


async def test_port_range_applies_to_active_ice_tcp_connections(autojump_clock: object) -> None:
    """With UDP blocked the pair is A's active candidate to B's passive one: the connection's local port is
    in A's range (RFC 6544 4.5 gives active candidates port 9; the real one is the one bound)."""
    scenario = vnet("none", "none", seed=12)
    # Without the process-wide pacer A's first check leaves at once, at the instant A learns B's candidates;
    # with it, A may wait 5 ms for a slot B took, and the check B's own check triggers then goes first.
    config = IceConfig(global_pacing=False)
    with trio.fail_after(60):
        async with (
            open_agent(controlling=True, network=UdpBlocked(scenario.network_a), tcp=True, port_range=(LOW, HIGH),
                       name="A", config=config) as a,
            open_agent(controlling=False, network=UdpBlocked(scenario.network_b), tcp=True, name="B",
                       config=config) as b,
        ):
            # B signals first: A's first check (at once, RFC 8445 14.2) goes from its active candidate to B's
            # passive one before B knows A's candidates
            await signal(b, a)
            await signal(a, b)
            await a.connect()
            await b.connect()
            (passive,) = [(c.address, c.port) for c in await gathered(b) if c.tcptype == "passive"]
            connections = list(scenario.host_a.tcp.connections)
            # A checked its active candidate against B's passive one: A opened that connection
            assert any(remote == passive for _local, remote in connections), connections
            assert all(LOW <= local[1] <= HIGH for local, _remote in connections), connections


async def test_port_range_on_loopback_os_sockets() -> None:
    """On the OS network too: the host candidate's port is in the range and two agents connect over it."""
    with trio.fail_after(20):
        async with (
            open_agent(controlling=True, host_addresses=["127.0.0.1"], port_range=(47100, 47199), name="A") as a,
            open_agent(controlling=False, host_addresses=["127.0.0.1"], name="B") as b,
        ):
            await connect_both(a, b)
            (cand,) = await gathered(a)
            assert 47100 <= cand.port <= 47199
            assert a.selected_pair is not None and a.selected_pair.local.port == cand.port


async def test_exhausted_port_range_names_the_range_and_the_address(autojump_clock: object) -> None:
    """Every port of the range taken: no candidate, and stats() says which range ran out where, and why."""
    scenario = vnet("none", "none", seed=6)
    address = scenario.host_a.address
    squatters = [await scenario.network_a.bind_udp(address, port) for port in range(LOW, HIGH + 1)]
    listener = await scenario.network_a.listen_tcp(address, LOW)
    try:
        with trio.fail_after(60):
            async with open_agent(network=scenario.network_a, tcp=True, port_range=(LOW, LOW), name="A") as a:
                local = await gathered(a)
                assert [(c.transport, c.tcptype) for c in local] == [("tcp", "active")]  # nothing bound
                gatherers = a.stats()["gatherers"]
                (udp_error,) = gatherers["host"]["errors"]
                (tcp_error,) = gatherers["tcp"]["errors"]
        assert f"port_range=({LOW}, {LOW}) is exhausted: no free UDP port on {address}" in udp_error
        assert "room for two generations" in udp_error
        assert f"port_range=({LOW}, {LOW}) is exhausted: no free TCP listener port on {address}" in tcp_error
    finally:
        for sock in squatters:
            sock.close()
        listener.close()


async def test_no_port_at_all_fails_the_agent_and_stats_say_why(autojump_clock: object) -> None:
    """What a user sees when the first generation finds no port: connect() raises IceFailed once the peer's
    end-of-candidates arrives (no pair to check), and stats() names the exhausted range."""
    scenario = vnet("none", "none", seed=14)
    squatter = await scenario.network_a.bind_udp(scenario.host_a.address, LOW)
    try:
        with trio.fail_after(60):
            async with (
                open_agent(controlling=True, network=scenario.network_a, port_range=(LOW, LOW), name="A") as a,
                open_agent(controlling=False, network=scenario.network_b, name="B") as b,
            ):
                await signal(a, b)
                await signal(b, a)
                with pytest.raises(IceFailed) as failed:
                    await a.connect()
                (error,) = a.stats()["gatherers"]["host"]["errors"]
                assert f"port_range=({LOW}, {LOW}) is exhausted" in error
                # the exception says it too: nothing was gathered, and why
                assert "no local candidate was gathered" in str(failed.value)
                assert f"port_range=({LOW}, {LOW}) is exhausted" in str(failed.value)
    finally:
        squatter.close()


async def test_restart_inside_a_range_of_one_generation_reports_exhaustion(autojump_clock: object) -> None:
    """One UDP port for A: after the restart the old generation still holds it (it carries the data until the
    new one nominates, RFC 8445 9, 12.1), so the new generation finds none. The error is in stats(), and the
    old pair keeps working. With room for two generations the same restart gets a candidate."""
    for port_range, room in (((LOW, LOW), False), ((LOW, LOW + 1), True)):
        scenario = vnet("none", "none", seed=7)
        with trio.fail_after(120):
            async with (
                open_agent(controlling=True, network=scenario.network_a, port_range=port_range, name="A") as a,
                open_agent(controlling=False, network=scenario.network_b, name="B") as b,
            ):
                stream_a, stream_b = await connect_both(a, b)
                (first,) = await gathered(a)
                await a.restart()
                second = await gathered(a)  # ends when generation 1's gathering is complete
                errors = a.stats()["gatherers"]["host"]["errors"]
                if room:
                    assert errors == []
                    assert [c.port for c in second] == [LOW + 1 if first.port == LOW else LOW]
                else:
                    assert second == []
                    (error,) = errors
                    assert f"port_range=({LOW}, {LOW}) is exhausted: no free UDP port on {scenario.host_a.address}" in (
                        error
                    )
                    assert a.generation.value == 1
                    await stream_a.send(b"old pair still carries data")
                    assert await stream_b.receive() == b"old pair still carries data"


def test_port_range_exhausted_is_an_ice_error_and_an_os_error() -> None:
    import errno

    from iceagent import IceError

    exc = PortRangeExhausted("port_range=(1, 2) is exhausted")
    assert isinstance(exc, IceError) and isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
    assert str(exc) == "port_range=(1, 2) is exhausted"


# ---- public_ips ----

ONE_TO_ONE = NatBehavior(mapping="eim", filtering="eif", port_preservation=True)  # the vnet's closest to a 1:1 NAT


async def _public_ips_pair(mode: str, **extra: Any) -> tuple[Candidate, list[Candidate], str, int]:
    """A behind a port-preserving full-cone NAT says its public address; B on the internet connects to it.
    Returns B's selected remote candidate, A's candidates, the NAT's public address and A's host port."""
    scenario = vnet(ONE_TO_ONE, "none", seed=8)
    public = scenario.nat_a.public_address
    async with trio.open_nursery() as nursery:
        servers = []
        if extra.pop("stun", False):
            ip, port = scenario.stun_addresses[0]
            await nursery.start(serve_stun, scenario.server_network, [f"{ip}:{port}"])
            servers = [IceServer(urls=[f"stun:{ip}:{port}"])]
        async with (
            open_agent(
                controlling=True, network=scenario.network_a, ice_servers=servers, name="A",
                public_ips={scenario.host_a.address: public}, public_ip_mode=mode, **extra,
            ) as a,
            open_agent(controlling=False, network=scenario.network_b, name="B") as b,
        ):
            stream_a, stream_b = await connect_both(a, b)
            await stream_b.send(b"to the public address")
            assert await stream_a.receive() == b"to the public address"
            local = await gathered(a)
            pair = b.selected_pair
            assert pair is not None
            internal = scenario.nat_a.mapping_table().get((public, local[0].port))
            assert internal == (scenario.host_a.address, local[0].port)  # the NAT kept the port, as a 1:1 NAT does
            result = (pair.remote, local, public, local[0].port)
        nursery.cancel_scope.cancel()
    return result


async def test_public_ips_srflx_mode_adds_a_srflx_whose_base_is_the_host_socket(autojump_clock: object) -> None:
    """RFC 8445 5.1.1.2: the srflx candidate has the public address, the host port, the host as related
    address; the peer reaches A through it (not through a peer-reflexive candidate)."""
    with trio.fail_after(120):
        remote, local, public, port = await _public_ips_pair("srflx")
    host, srflx = local
    assert (host.type, host.address) == ("host", host.related_address or host.address)
    assert (srflx.type, srflx.address, srflx.port) == ("srflx", public, port)
    assert (srflx.related_address, srflx.related_port) == (host.address, host.port)
    assert srflx.foundation != host.foundation
    assert (remote.type, remote.address, remote.port) == ("srflx", public, port)


async def test_public_ips_host_mode_replaces_the_host_address(autojump_clock: object) -> None:
    """public_ip_mode="host": one host candidate, with the public address (the socket stays its base)."""
    with trio.fail_after(120):
        remote, local, public, port = await _public_ips_pair("host")
    (host,) = local
    assert (host.type, host.address, host.port, host.related_address) == ("host", public, port, None)
    assert (remote.type, remote.address, remote.port) == ("host", public, port)


async def test_stun_srflx_equal_to_the_public_ip_is_not_duplicated(autojump_clock: object) -> None:
    """The STUN server maps A to the same public address: RFC 8445 5.1.3 redundancy, one srflx is kept."""
    with trio.fail_after(120):
        _remote, local, public, _port = await _public_ips_pair("srflx", stun=True)
    assert [c.type for c in local] == ["host", "srflx"]
    assert local[1].address == public


async def test_public_ips_srflx_with_mdns_keeps_the_host_address_hidden(autojump_clock: object) -> None:
    """mdns=True names the host candidate; the public srflx is still offered, its related address hidden
    (draft-ietf-mmusic-mdns-ice-candidates 3.1.1: raddr 0.0.0.0, rport 9)."""
    scenario = vnet("eim-apdf", "none", seed=15)
    with trio.fail_after(60):
        async with open_agent(
            network=scenario.network_a, mdns=True, public_ips={scenario.host_a.address: "198.51.100.7"}
        ) as a:
            host, srflx = sorted(await gathered(a), key=lambda c: c.type)
    assert host.is_mdns and scenario.host_a.address not in srflx.to_sdp()
    assert (srflx.type, srflx.address, srflx.port) == ("srflx", "198.51.100.7", host.port)
    assert (srflx.related_address, srflx.related_port) == ("0.0.0.0", 9)


async def test_public_ips_apply_to_ice_tcp_candidates(autojump_clock: object) -> None:
    scenario = vnet("none", "none", seed=9)
    address = scenario.host_a.address
    with trio.fail_after(60):
        for mode in ("srflx", "host"):
            async with open_agent(
                network=scenario.network_a, tcp=True, public_ips={address: "198.51.100.77"}, public_ip_mode=mode
            ) as a:
                tcp = {(c.type, c.tcptype, c.address) for c in await gathered(a) if c.transport == "tcp"}
            if mode == "srflx":
                assert tcp == {("host", "passive", address), ("srflx", "passive", "198.51.100.77"),
                               ("host", "active", address)}
            else:
                assert tcp == {("host", "passive", "198.51.100.77"), ("host", "active", "198.51.100.77")}


# ---- interface_filter / ip_filter ----


def _two_interfaces() -> tuple[Host, str, str]:
    """A vnet host on a LAN (eth0) with a second interface on a "docker0" bridge."""
    scenario = vnet("eim-apdf", "none", seed=10)
    host = scenario.host_a
    host.attach(Lan("172.17.0.0/16", name="docker-net"), name="docker0")
    (docker,) = [i.addresses[0] for i in host.interfaces() if i.name == "docker0"]
    return host, host.address, docker


@pytest.mark.parametrize(
    "options",
    [
        {"interface_filter": lambda name: name != "docker0"},
        {"ip_filter": lambda ip: ip not in ipaddress.ip_network("172.17.0.0/16")},
        # both apply: the interface filter allows everything, the IP filter still hides docker0's address
        {"interface_filter": lambda name: True, "ip_filter": lambda ip: str(ip).startswith("192.168.")},
    ],
)
async def test_filters_hide_an_interface_from_udp_tcp_and_mdns(options: dict[str, Any], autojump_clock: object) -> None:
    host, eth0, docker = _two_interfaces()
    with trio.fail_after(60):
        async with open_agent(network=host.network, tcp=True, **options) as a:
            udp_tcp = await gathered(a)
        async with open_agent(network=host.network, mdns=True, **options) as m:
            named = await gathered(m)
        async with open_agent(network=host.network, tcp=True) as unfiltered:
            everything = await gathered(unfiltered)
    assert {c.address for c in everything} == {eth0, docker}  # the filter is what hides docker0
    assert {c.address for c in udp_tcp} == {eth0}
    assert {(c.transport, c.tcptype) for c in udp_tcp} == {("udp", None), ("tcp", "passive"), ("tcp", "active")}
    assert len(named) == 1 and named[0].is_mdns


async def test_filters_narrow_explicit_host_addresses(autojump_clock: object) -> None:
    host, eth0, docker = _two_interfaces()
    with trio.fail_after(60):
        async with open_agent(
            network=host.network, host_addresses=[eth0, docker], interface_filter=lambda name: name == "docker0"
        ) as a:
            assert [c.address for c in await gathered(a)] == [docker]


async def test_a_filter_that_raises_is_reported(autojump_clock: object) -> None:
    host, _eth0, _docker = _two_interfaces()

    def broken(name: str) -> bool:
        raise KeyError(name)

    with trio.fail_after(60):
        async with open_agent(network=host.network, interface_filter=broken) as a:
            assert await gathered(a) == []
            (error,) = a.stats()["gatherers"]["host"]["errors"]
    assert error.startswith("interface_filter('eth0') raised KeyError")


async def test_interface_filter_on_the_os_network() -> None:
    """The OS network's interface names reach the filter: hiding the loopback interface hides 127.0.0.1."""
    from iceagent.net.os import OSNetwork

    (loopback,) = [i.name for i in OSNetwork().interfaces() if "127.0.0.1" in i.addresses]
    with trio.fail_after(20):
        async with open_agent(host_addresses=["127.0.0.1"], interface_filter=lambda name: name != loopback) as a:
            assert await gathered(a) == []
        async with open_agent(host_addresses=["127.0.0.1"], interface_filter=lambda name: name == loopback) as a:
            assert [c.address for c in await gathered(a)] == ["127.0.0.1"]


# ---- validation ----


@pytest.mark.parametrize(
    ("options", "error", "needle"),
    [
        ({"lite": True, "controlling": True}, ValueError, "never controls"),
        ({"public_ip_mode": "host", "mdns": True}, ValueError, "needs no .local name"),
        ({"public_ip_mode": "nat"}, ValueError, "'srflx' or 'host'"),
        ({"port_range": (0, 10)}, ValueError, "1 <= lo <= hi <= 65535"),
        ({"port_range": (5000, 4000)}, ValueError, "1 <= lo <= hi <= 65535"),
        ({"port_range": (5000, 70000)}, ValueError, "1 <= lo <= hi <= 65535"),
        ({"port_range": (5000,)}, TypeError, "pair of ints"),
        ({"port_range": ("5000", "6000")}, TypeError, "pair of ints"),
        ({"port_range": (True, 6000)}, TypeError, "pair of ints"),
        ({"public_ips": {"10.0.0.5": "2001:db8::1"}}, ValueError, "address families"),
        ({"public_ips": {"10.0.0.5": "example.com"}}, ValueError, "not an IP address"),
        ({"public_ips": {"eth0": "203.0.113.7"}}, ValueError, "not an IP address"),
        ({"public_ips": {"10.0.0.5": "0.0.0.0"}}, ValueError, "unspecified"),
        ({"public_ips": {"10.0.0.5": "224.0.0.1"}}, ValueError, "multicast"),
        ({"public_ips": {"10.0.0.5": 7}}, TypeError, "IP address string"),
        ({"public_ips": ["203.0.113.7"]}, TypeError, "mapping of host address"),
        ({"interface_filter": "eth0"}, TypeError, "callable"),
        ({"ip_filter": True}, TypeError, "callable"),
        # ICE-lite (RFC 8445 2.5): host candidates only
        (
            {"lite": True, "controlling": False, "ice_servers": [IceServer(urls=["stun:127.0.0.1:3478"])]},
            ValueError,
            "offers host candidates only",
        ),
        ({"lite": True, "controlling": False, "mdns": True, "public_ips": {"10.0.0.5": "203.0.113.7"}}, ValueError,
         "public_ips replace the host address"),
        ({"mux": object()}, TypeError, "mux takes what `async with iceagent.open_mux"),
        ({"mux": object(), "port_range": (50000, 50010)}, ValueError, "a mux agent binds no port of its own"),
        ({"mux": object(), "port_mapping": True}, ValueError, "forward the mux port on the gateway once"),
        ({"lite": True, "controlling": False, "port_mapping": True}, ValueError, "a mapped address would go unused"),
        ({"port_mapping": "yes"}, TypeError, "port_mapping must be True or False"),
        # a value that can never work is reported as such, not as "not implemented"
        ({"continual_gathering": True, "port_range": (2, 1)}, ValueError, "1 <= lo <= hi"),
    ],
)
async def test_option_validation(options: dict[str, Any], error: type[Exception], needle: str) -> None:
    options.setdefault("host_addresses", ["127.0.0.1"])
    with pytest.raises(error) as info:
        async with open_agent(**options):
            pytest.fail("opened")
    assert needle in str(info.value)


async def test_public_ips_are_normalized(autojump_clock: object) -> None:
    """ipaddress objects and other spellings are matched against the gathered (canonical) addresses."""
    scenario = vnet("none", "none", seed=11)
    address = scenario.host_a.address
    public = {ipaddress.ip_address(address): ipaddress.ip_address("198.51.100.7")}
    with trio.fail_after(60):
        async with open_agent(network=scenario.network_a, public_ips=public) as a:  # type: ignore[arg-type]
            assert a.options.public_ips == {address: "198.51.100.7"}
            assert [c.address for c in await gathered(a)] == [address, "198.51.100.7"]


def _free_loopback_port() -> int:
    """A port on 127.0.0.1 free for UDP and TCP right now (a fixed one may be some other process's
    ephemeral port on a busy machine)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


@pytest.mark.parametrize(("network", "tcp"), [("vnet", False), ("vnet", True), ("os", False), ("os", True)])
async def test_restart_of_an_unconnected_agent_reuses_the_only_port(network: str, tcp: bool) -> None:
    """Without a selected pair the restart closes the previous generation at once (RFC 8445 9): its socket is
    released while it unwinds, and the new generation binds the range's only port instead of reporting it
    exhausted."""
    if network == "vnet":
        net: Any = vnet("none", "none", seed=13).network_a
        port_range, kwargs = (LOW, LOW), {"network": net}
    else:
        port = _free_loopback_port()
        port_range, kwargs = (port, port), {"host_addresses": ["127.0.0.1"]}
    with trio.fail_after(20):
        async with open_agent(port_range=port_range, tcp=tcp, **kwargs) as a:
            first = sorted((c.transport, c.port) for c in await gathered(a))
            lo = port_range[0]
            assert first == ([("tcp", 9), ("tcp", lo), ("udp", lo)] if tcp else [("udp", lo)])
            for generation in (1, 2, 3):
                await a.restart()
                assert a.generation.value == generation
                again = sorted((c.transport, c.port) for c in await gathered(a))
                assert again == first, a.stats()["gatherers"]
