"""mDNS candidates on vnet under MockClock: agents publish `.local` host candidates and resolve the peer's
(draft-ietf-mmusic-mdns-ice-candidates, RFC 6762); multicast stays inside the virtual LAN."""

from __future__ import annotations

import random
import re
import uuid

import pytest
import trio
from agent_helpers import connect_both
from dnslib import DNSRecord
from iceagent_vnet import Host, Lan, vnet

from iceagent import Agent, Candidate, IceConfig, IceFailed, IceParameters, IceServer, open_agent
from iceagent.mdns import MdnsResolveError, MdnsResolver, open_responder
from iceagent.mdns.resolver import MAX_PENDING
from iceagent.mdns.wire import MDNS_GROUP4, MDNS_PORT, QTYPE_A, build_query, build_response, parse
from iceagent.net.base import UdpSocket
from iceagent.stun.server import serve_stun

UUID_LOCAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.local$")
CONFIG = IceConfig(global_pacing=False)


def host_ips(*hosts: Host) -> set[str]:
    return {a for h in hosts for iface in h.network.interfaces() for a in iface.addresses if not iface.loopback}


async def gathered(agent: Agent) -> list[Candidate]:
    return [c async for c in agent.gather()]


def assert_no_address_leak(cands: list[Candidate], hidden: set[str]) -> None:
    for cand in cands:
        sdp = cand.to_sdp()
        for ip in hidden:
            assert f" {ip} " not in f"{sdp} ", (ip, sdp)
        if cand.type == "host":
            assert UUID_LOCAL.match(cand.address), sdp
        if cand.type in ("srflx", "relay", "prflx"):
            assert cand.related_address in ("0.0.0.0", "::") and cand.related_port == 9, sdp


async def test_two_mdns_agents_on_one_lan_connect_over_local_names(autojump_clock: object) -> None:
    lan = Lan("192.168.1.0/24")
    ha, hb = Host("a", lan), Host("b", lan)
    with trio.fail_after(60):
        async with (
            open_agent(controlling=True, network=ha.network, mdns=True, config=CONFIG, name="A") as a,
            open_agent(controlling=False, network=hb.network, mdns=True, config=CONFIG, name="B") as b,
        ):
            cands_a, cands_b = await gathered(a), await gathered(b)
            assert [c.type for c in cands_a] == ["host"] and [c.type for c in cands_b] == ["host"]
            assert_no_address_leak(cands_a + cands_b, host_ips(ha, hb))
            assert cands_a[0].address != cands_b[0].address
            stream_a, stream_b = await connect_both(a, b)
            await stream_a.send(b"hello over a name")
            assert await stream_b.receive() == b"hello over a name"
            pair = a.selected_pair
            assert pair is not None
            assert pair.local.address == cands_a[0].address  # what we hand out is the name
            assert pair.remote.address == hb.address  # what we send to is the resolved address
            assert pair.remote.port == cands_b[0].port and pair.remote.type == "host"
            stats = a.stats()
            assert stats["mdns"]["resolved"] == 1 and stats["mdns"]["unresolved"] == 0
            for p in stats["pairs"]:
                assert ha.address not in p["local"]
            assert ha.address not in repr(stats["selected_pair"])


async def listener(host: Host) -> UdpSocket:
    """A socket on port 5353 that joined the IPv4 group: it sees every mDNS packet on the LAN."""
    sock = await host.network.bind_udp("0.0.0.0", MDNS_PORT, reuse=True)
    await host.network.join_multicast(sock, MDNS_GROUP4, host.address)
    return sock


def drain_packets(sock: UdpSocket) -> list[tuple[bytes, tuple[str, int]]]:
    out = []
    while sock.pending():  # type: ignore[attr-defined]
        out.append(sock._queue.receive_nowait())  # type: ignore[attr-defined]
    return out


async def test_mdns_on_one_side_only(autojump_clock: object) -> None:
    lan = Lan("192.168.1.0/24")
    ha, hb = Host("a", lan), Host("b", lan)
    with trio.fail_after(60):
        async with (
            open_agent(controlling=True, network=ha.network, mdns=True, config=CONFIG, name="A") as a,
            open_agent(controlling=False, network=hb.network, mdns=False, config=CONFIG, name="B") as b,
        ):
            (ca,) = await gathered(a)
            (cb,) = await gathered(b)
            assert ca.address.endswith(".local") and cb.address == hb.address
            stream_a, stream_b = await connect_both(a, b)
            await stream_b.send(b"to the named side")
            assert await stream_a.receive() == b"to the named side"
            assert b.selected_pair is not None and b.selected_pair.remote.address == ha.address
            assert b.stats()["mdns"]["resolved"] == 1
            assert a.stats()["mdns"] == {"resolved": 0, "unresolved": 0, "pending": 0, "errors": []}


@pytest.mark.parametrize(("nat", "expect_srflx_equal_host"), [("eim-apdf", False), ("none", True)])
async def test_names_across_nats_do_not_resolve_and_srflx_connects_without_waiting(
    nat: str, expect_srflx_equal_host: bool, autojump_clock: object
) -> None:
    """Multicast never crosses a router: each side's name times out (counted), srflx connects at once, and
    the srflx candidates name no host address (raddr 0.0.0.0 port 9, draft 3.1.1)."""
    scenario = vnet(nat, nat, rtt=0.04, seed=5)
    ip, port = scenario.stun_addresses[0]
    servers = [IceServer(urls=[f"stun:{ip}:{port}"])]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_stun, scenario.server_network, [f"{ip}:{port}"])
            async with (
                open_agent(controlling=True, network=scenario.network_a, ice_servers=servers, mdns=True,
                           config=CONFIG, name="A") as a,
                open_agent(controlling=False, network=scenario.network_b, ice_servers=servers, mdns=True,
                           config=CONFIG, name="B") as b,
            ):
                cands = await gathered(a) + await gathered(b)
                hosts = {c.address for c in cands if c.type == "host"}
                assert all(UUID_LOCAL.match(h) for h in hosts) and len(hosts) == 2
                srflx = [c for c in cands if c.type == "srflx"]
                assert len(srflx) == 2
                assert all((c.related_address, c.related_port) == ("0.0.0.0", 9) for c in srflx)
                host_addresses = {iface_ip for n in (scenario.network_a, scenario.network_b)
                                  for iface in n.interfaces() if not iface.loopback for iface_ip in iface.addresses}
                assert ({c.address for c in srflx} <= host_addresses) is expect_srflx_equal_host
                started = trio.current_time()
                await connect_both(a, b)
                assert trio.current_time() - started < CONFIG.mdns_timeout  # nothing waited for the names
                pair = a.selected_pair
                assert (pair is not None and not pair.local.address.endswith(".local")) or nat == "none"
                await trio.sleep(CONFIG.mdns_timeout + 1)
                for agent in (a, b):
                    mdns = agent.stats()["mdns"]
                    assert (mdns["resolved"], mdns["unresolved"], mdns["pending"]) == (0, 1, 0), mdns
                    assert "no mDNS answer" in mdns["errors"][0]
            nursery.cancel_scope.cancel()


async def test_a_name_nobody_answers_times_out_and_other_candidates_connect(autojump_clock: object) -> None:
    lan = Lan("192.168.1.0/24")
    ha, hb = Host("a", lan), Host("b", lan)
    ghost = Candidate.from_sdp("candidate:9 1 udp 2130706431 3b1d8e0e-5a9f-4c43-9d1e-0e6f2b7f1a00.local 7000 typ host")
    with trio.fail_after(60):
        async with (
            open_agent(controlling=True, network=ha.network, mdns=True, config=CONFIG, name="A") as a,
            open_agent(controlling=False, network=hb.network, mdns=True, config=CONFIG, name="B") as b,
        ):
            b.add_remote_candidate(ghost)  # first, before the real ones: it must hold nothing up
            started = trio.current_time()
            await connect_both(a, b)
            assert trio.current_time() - started < 1.0
            assert b.stats()["mdns"]["pending"] == 1
            await trio.sleep(CONFIG.mdns_timeout + 0.5)
            mdns = b.stats()["mdns"]
            assert (mdns["resolved"], mdns["unresolved"], mdns["pending"]) == (1, 1, 0)
            assert ghost.address in mdns["errors"][0]


async def test_only_an_unresolvable_name_fails_after_the_timeout_not_before(autojump_clock: object) -> None:
    lan = Lan("192.168.1.0/24")
    hb = Host("b", lan)
    ghost = Candidate.from_sdp("candidate:9 1 udp 2130706431 3b1d8e0e-5a9f-4c43-9d1e-0e6f2b7f1a00.local 7000 typ host")
    config = IceConfig(global_pacing=False, mdns_timeout=2.0)
    with trio.fail_after(60):
        async with open_agent(controlling=False, network=hb.network, config=config, name="B") as b:
            await gathered(b)
            b.set_remote_parameters(IceParameters(ufrag="gho5", pwd="ghostPassword0123456789"))
            b.add_remote_candidate(ghost)
            b.add_remote_candidate(None)  # end-of-candidates while the name is pending
            started = trio.current_time()
            with pytest.raises(IceFailed):
                await b.connect()
            assert trio.current_time() - started >= 2.0
            assert b.stats()["mdns"]["unresolved"] == 1


async def test_two_responders_on_one_host_answer_only_their_own_names(autojump_clock: object) -> None:
    """Name collisions: two responders share port 5353 on one host (and one process), each with its own
    names; a resolver elsewhere gets each name's answer from its owner only (RFC 6762 6, 15)."""
    lan = Lan("192.168.1.0/24")
    shared, other, observer = Host("shared", lan), Host("other", lan), Host("observer", lan)
    watch = await listener(observer)
    with trio.fail_after(30):
        async with open_responder(shared.network) as r1, open_responder(shared.network) as r2:
            n1 = await r1.publish(shared.address)
            n2 = await r2.publish(shared.address)
            assert n1 != n2
            async with trio.open_nursery() as nursery:
                resolver = MdnsResolver(other.network)
                await nursery.start(resolver.run, [other.address])
                drain_packets(watch)
                assert await resolver.resolve(n1, 3.0) == shared.address
                await trio.sleep(0.5)
                answers = [parse(d) for d, src in drain_packets(watch) if src[0] == shared.address]
                answered = [{r.name for r in m.records} for m in answers if m is not None and m.response]
                assert answered == [{n1}]  # one answer, from r1 alone, naming n1 alone
                assert await resolver.resolve(n2, 3.0) == shared.address
                with pytest.raises(MdnsResolveError):
                    await resolver.resolve("0" * 8 + "-0000-4000-8000-" + "0" * 12 + ".local", 2.0)
                nursery.cancel_scope.cancel()
            assert r1.zone.address_of(n2) is None and r2.zone.address_of(n1) is None


async def test_goodbye_on_close_and_legacy_and_qu_queries(autojump_clock: object) -> None:
    lan = Lan("192.168.1.0/24")
    ha, hq = Host("a", lan), Host("querier", lan)
    watch = await listener(hq)
    legacy = await hq.network.bind_udp("0.0.0.0", 0)
    with trio.fail_after(30):
        async with open_agent(network=ha.network, mdns=True, config=CONFIG, name="A") as a:
            (cand,) = await gathered(a)
            name = cand.address
            # legacy unicast (RFC 6762 6.7): from an ephemeral port, reply to it with the ID and question
            query = DNSRecord.question(name, "A")
            await legacy.send(bytes(query.pack()), (MDNS_GROUP4, MDNS_PORT))
            data, src = await legacy.receive()
            reply = DNSRecord.parse(data)
            assert src == (ha.address, MDNS_PORT) and reply.header.id == query.header.id
            assert len(reply.questions) == 1 and reply.rr[0].ttl <= 10 and reply.rr[0].rclass == 1
            # QU (5.4): a unicast reply to the 5353 socket
            drain_packets(watch)
            await watch.send(build_query([name], [QTYPE_A], unicast=True), (MDNS_GROUP4, MDNS_PORT))
            await trio.sleep(0.1)
            got = [(parse(d), s) for d, s in drain_packets(watch)]
            answers = [m for m, s in got if m is not None and m.response and s[0] == ha.address]
            assert len(answers) == 1 and answers[0].answers[0].address == ha.address
            drain_packets(watch)
        await trio.sleep(0.1)
        bye = [parse(d) for d, s in drain_packets(watch) if s[0] == ha.address]
        assert [(r.name, r.ttl) for m in bye if m is not None for r in m.records] == [(name, 0)]


async def test_ipv6_and_ipv4_names(autojump_clock: object) -> None:
    lan = Lan("192.168.1.0/24", "fd00:1::/64")
    ha, hb = Host("a", lan), Host("b", lan)
    with trio.fail_after(60):
        async with (
            open_agent(controlling=True, network=ha.network, mdns=True, config=CONFIG, name="A") as a,
            open_agent(controlling=False, network=hb.network, mdns=True, config=CONFIG, name="B") as b,
        ):
            cands = await gathered(a)
            assert len(cands) == 2 and all(UUID_LOCAL.match(c.address) for c in cands)
            assert_no_address_leak(cands, host_ips(ha))
            await connect_both(a, b)
            await trio.sleep(1)
            assert b.stats()["mdns"]["resolved"] == 2
            remotes = {p["remote"].split()[4] for p in b.stats()["pairs"]}
            assert remotes == host_ips(ha)  # the v6 name resolved over AAAA, the v4 one over A


async def test_relay_policy_ignores_local_candidates_without_querying(autojump_clock: object) -> None:
    lan = Lan("192.168.1.0/24")
    ha, hq = Host("a", lan), Host("observer", lan)
    watch = await listener(hq)
    servers = [IceServer(urls=["turn:198.51.100.3:3478"], username="u", credential="p")]
    ghost = Candidate.from_sdp("candidate:9 1 udp 2130706431 3b1d8e0e-5a9f-4c43-9d1e-0e6f2b7f1a00.local 7000 typ host")
    with trio.fail_after(30):
        async with open_agent(network=ha.network, ice_servers=servers, ice_transport_policy="relay", mdns=True,
                              config=CONFIG, name="A") as a:
            a.add_remote_candidate(ghost)
            await trio.sleep(1)
            assert a.stats()["mdns"] == {"resolved": 0, "unresolved": 0, "pending": 0, "errors": []}
            assert drain_packets(watch) == []  # no query, no answer, nothing published


async def test_hostile_lan_changes_nothing_and_grows_nothing(autojump_clock: object) -> None:
    """Floods of queries, malformed packets, huge and unsolicited answers and a peer signalling hundreds
    of names: the agents still connect, answers stay rate-limited, caches and queues stay bounded."""
    lan = Lan("192.168.1.0/24")
    ha, hb, evil = Host("a", lan), Host("b", lan), Host("evil", lan)
    bad = await evil.network.bind_udp("0.0.0.0", MDNS_PORT, reuse=True)
    watch = await listener(Host("observer", lan))
    rng = random.Random(7)

    async def flood(names: list[str]) -> None:
        big = build_response([(f"x{i:04d}.local", "10.6.6.6") for i in range(150)])
        for i in range(4000):
            choice = i % 5
            if choice == 0:
                data = build_query([rng.choice(names)], [QTYPE_A, 255])
            elif choice == 1:
                data = build_query([rng.choice(names)], [QTYPE_A], unicast=True)
            elif choice == 2:
                data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200)))
            elif choice == 3:
                data = big + bytes(rng.randrange(0, 5000))  # huge, and sometimes over 9000 bytes
            else:
                data = build_response([(f"{uuid.UUID(int=rng.getrandbits(128))}.local", "10.6.6.6")])
            await bad.send(data, (MDNS_GROUP4, MDNS_PORT))
            if i % 100 == 0:
                await trio.sleep(0.05)

    with trio.fail_after(120):
        async with (
            open_agent(controlling=True, network=ha.network, mdns=True, config=CONFIG, name="A") as a,
            open_agent(controlling=False, network=hb.network, mdns=True, config=CONFIG, name="B") as b,
        ):
            (ca,), (cb,) = await gathered(a), await gathered(b)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood, [ca.address, cb.address, "nobody.local"])
                await connect_both(a, b)
                for i in range(300):  # then the peer signals hundreds of names nobody answers
                    b.add_remote_candidate(Candidate.from_sdp(
                        f"candidate:{i} 1 udp 100 {uuid.UUID(int=rng.getrandbits(128))}.local {1000 + i} typ host"))
                runner = b._current
                assert runner is not None
                assert runner._names.pending <= MAX_PENDING and b.stats()["mdns"]["pending"] <= MAX_PENDING
                assert b.stats()["mdns"]["unresolved"] >= 300 - MAX_PENDING
                assert len(b.stats()["mdns"]["errors"]) <= 32
            await trio.sleep(CONFIG.mdns_timeout + 0.5)
            elapsed = trio.current_time()
            assert b.stats()["mdns"]["pending"] == 0 and runner._names.pending == 0
            resolver = runner._names.resolver
            assert resolver is not None and resolver.core.cache_size <= 2 and resolver.core.pending == []
            assert resolver.core.stats.unsolicited > 0
            answers = [parse(d) for d, s in drain_packets(watch) if s[0] in (ha.address, hb.address)]
            multicast = [m for m in answers if m is not None and m.response]
            # one multicast per name per second at most (RFC 6762 6); unicast ones never reach the observer
            assert len(multicast) <= 2 * (elapsed + 2), (len(multicast), elapsed)
            stream_a = await a.connect()
            await stream_a.send(b"still fine")
            assert await (await b.connect()).receive() == b"still fine"


async def test_restart_publishes_fresh_names_and_connects_again(autojump_clock: object) -> None:
    lan = Lan("192.168.1.0/24")
    ha, hb, ho = Host("a", lan), Host("b", lan), Host("observer", lan)
    watch = await listener(ho)
    with trio.fail_after(60):
        async with (
            open_agent(controlling=True, network=ha.network, mdns=True, config=CONFIG, name="A") as a,
            open_agent(controlling=False, network=hb.network, mdns=True, config=CONFIG, name="B") as b,
        ):
            (old,) = await gathered(a)
            await connect_both(a, b)
            await a.restart()
            (new,) = await gathered(a)
            assert new.address != old.address and UUID_LOCAL.match(new.address)
            await connect_both(a, b)  # B restarts too (new ufrag), resolves A's new name
            # the old pair carries data until the new session nominates (RFC 8445 12.1); simulated time
            while a.selected_pair is None or a.selected_pair.local.address != new.address:  # noqa: ASYNC110
                await trio.sleep(0.05)
            assert a.generation.value == 1 and b.stats()["mdns"]["resolved"] == 2
            await trio.sleep(CONFIG.restart_linger + 1)  # the old session lingers (restart_linger), then closes
            bye = [parse(d) for d, s in drain_packets(watch) if s[0] == ha.address]
            withdrawn = {r.name for m in bye if m is not None for r in m.records if r.ttl == 0}
            assert withdrawn == {old.address}  # the old session closed and said goodbye for its name
