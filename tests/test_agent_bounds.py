"""Agent-side bounds (docs/security.md "Agent-side bounds") on the vnet under MockClock: remote candidates
no peer can have are ignored and counted, signalled or resolved from an mDNS answer; numbers out of range
are refused with the documented error; peer-driven restarts are rate-limited and still follow the peer's
latest parameters."""

from __future__ import annotations

import logging
import socket

import attrs
import pytest
import trio
import trio.testing
from iceagent_vnet import Host, Lan

from iceagent import Agent, Candidate, CandidateParseError, IceConfig, IceParameters, open_agent
from iceagent.agent._gathering import MAX_GATHERER_ERRORS
from iceagent.agent._runner import MAX_DATA_SOURCES
from iceagent.ice.session import REMOTE_CANDIDATES_PER_PAIR
from iceagent.mdns import open_responder
from iceagent.stun import Attr, Message, MessageClass, Method

CONFIG = IceConfig(global_pacing=False)
INTERVAL = 1.0  # IceConfig.peer_restart_interval, the default


def params(i: int) -> IceParameters:
    return IceParameters(ufrag=f"peer{i:04d}", pwd=f"password{i:04d}" + "p" * 14)


def host(address: str, port: int, ufrag: str | None = None) -> Candidate:
    return Candidate.from_sdp(f"candidate:1 1 udp 2130706431 {address} {port} typ host"
                              + (f" ufrag {ufrag}" if ufrag else ""))


def remote_addresses(agent: Agent) -> set[str]:
    return {c.address for c in agent._runner().ice.remote_candidates}


def paired_remotes(agent: Agent) -> set[str]:
    return {p["remote"].split()[4] for p in agent.stats()["pairs"]}


UNUSABLE = {
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "224.0.0.251": "multicast",
    "ff02::fb": "multicast",
    "255.255.255.255": "broadcast",
    "::ffff:239.255.255.250": "multicast",
}


async def test_unusable_signalled_candidates_are_ignored_counted_and_logged(
    autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    lan = Lan("192.168.1.0/24")
    h = Host("a", lan)
    caplog.set_level(logging.INFO, logger="iceagent.agent")
    with trio.fail_after(30):
        async with open_agent(network=h.network, config=CONFIG, name="A") as a:
            [c async for c in a.gather()]
            a.set_remote_parameters(params(1))
            for address in UNUSABLE:
                a.add_remote_candidate(host(address, 5000))
            a.add_remote_candidate(host("192.168.1.9", 0))
            a.add_remote_candidate(host("192.168.1.9", 5000))  # a usable one goes through
            await trio.sleep(0.5)
            assert remote_addresses(a) == {"192.168.1.9"} and paired_remotes(a) == {"192.168.1.9"}
            stats = a.stats()
            assert stats["ignored_remote_candidates"] == {
                "unspecified": 2, "multicast": 3, "broadcast": 1, "port-0": 1}
            assert all(p["remote"].split()[5] == "5000" for p in stats["pairs"])
    ignored = [r.getMessage() for r in caplog.records if "remote candidate ignored" in r.getMessage()]
    assert len(ignored) == len(UNUSABLE) + 1
    assert any("(multicast)" in m and "224.0.0.251" in m for m in ignored)


async def test_mdns_answers_naming_unusable_addresses_are_ignored(autojump_clock: object) -> None:
    """A host on the LAN answers for `.local` names with multicast, unspecified and broadcast addresses
    (RFC 6762 lets anyone answer): none becomes a remote candidate; each is counted."""
    lan = Lan("192.168.1.0/24")
    ha, hostile = Host("a", lan), Host("hostile", lan)
    names = {"224.0.0.1": "", "0.0.0.0": "", "255.255.255.255": ""}
    with trio.fail_after(60):
        async with open_responder(hostile.network) as responder, open_agent(
            network=ha.network, config=CONFIG, name="A"
        ) as a:
            good = await responder.publish(hostile.address)  # joins the group on the LAN
            for address in names:
                names[address] = responder.zone.publish(address)
            [c async for c in a.gather()]
            a.set_remote_parameters(params(1))
            for name in [*names.values(), good]:
                a.add_remote_candidate(host(name, 5000))
            await trio.sleep(CONFIG.mdns_timeout + 1)  # every name answered or timed out (simulated time)
            stats = a.stats()
            assert stats["mdns"]["pending"] == 0
            assert remote_addresses(a) == {hostile.address}
            assert paired_remotes(a) == {hostile.address}
            ignored = stats["ignored_remote_candidates"]
            # counted here, or refused earlier by a stricter resolver (then an unresolved name)
            assert sum(ignored.values()) + stats["mdns"]["unresolved"] == len(names)
            assert set(ignored) <= {"multicast", "unspecified", "broadcast"}


async def test_remote_candidate_numbers_out_of_range_raise_the_documented_error(autojump_clock: object) -> None:
    """A Candidate built by hand with a port or priority no line could carry: CandidateParseError (a
    ValueError), never an OverflowError from a socket later on."""
    lan = Lan("192.168.1.0/24")
    h = Host("a", lan)
    good = host("192.168.1.9", 5000)
    with trio.fail_after(30):
        async with open_agent(network=h.network, config=CONFIG, name="A") as a:
            [c async for c in a.gather()]
            a.set_remote_parameters(params(1))
            for field, value in [("port", 10**400), ("port", 65536), ("port", -1), ("priority", 2**32),
                                 ("priority", 10**400), ("component", 0), ("related_port", 70000),
                                 ("generation", 10**400)]:
                with pytest.raises(CandidateParseError, match="out of range"):
                    a.add_remote_candidate(attrs.evolve(good, **{field: value}))
            with pytest.raises(CandidateParseError, match="not an integer"):
                a.add_remote_candidate(attrs.evolve(good, port="5000"))
            a.add_remote_candidate(good)
            await trio.sleep(0.5)
            assert remote_addresses(a) == {"192.168.1.9"}


async def test_signalled_pacing_is_clamped_to_what_parameters_accept(autojump_clock: object) -> None:
    """A Ta of 5 s is signalled as the largest pacing IceParameters accept (1000 ms), not as 5000."""
    h = Host("a", Lan("192.168.1.0/24"))
    with trio.fail_after(30):
        async with open_agent(network=h.network, config=IceConfig(ta=5.0), name="A") as a:
            assert a.local_parameters.pacing == 1000


# ---- peer-driven restarts (RFC 8445 9; DESIGN.md "Contract") ----


async def test_a_peer_flipping_ufrags_restarts_us_once_per_interval(autojump_clock: object) -> None:
    """50 new ufrags at once: one restart now, the rest coalesce; when the interval ends the agent follows
    the latest, with the candidates signalled after it (those of superseded ufrags are dropped)."""
    h = Host("a", Lan("192.168.1.0/24"))
    with trio.fail_after(60):
        async with open_agent(network=h.network, config=CONFIG, name="A") as a:
            [c async for c in a.gather()]
            a.set_remote_parameters(params(0))
            a.add_remote_candidate(host("192.168.1.10", 5000))
            for i in range(1, 51):
                a.set_remote_parameters(params(i))
                a.add_remote_candidate(host("192.168.1.20", 5000 + i))  # each generation's candidate
            assert a.generation.value == 1  # the first new ufrag restarted at once
            assert a._runner().ice.remote_parameters == params(1)
            stats = a.stats()["peer_restarts"]
            assert stats == {"restarts": 1, "superseded": 48, "held": True}
            with trio.fail_after(INTERVAL + 0.1):  # simulated time: applied when the interval ends
                await a.generation.wait_value(2)
            assert a._runner().ice.remote_parameters == params(50)
            assert a.stats()["peer_restarts"] == {"restarts": 2, "superseded": 48, "held": False}
            await trio.sleep(0.5)
            assert remote_addresses(a) == {"192.168.1.20"}
            assert {c.port for c in a._runner().ice.remote_candidates} == {5050}
            # a peer that keeps flipping, ten times per interval for 20 intervals: about one restart each
            for i in range(51, 251):
                a.set_remote_parameters(params(i))
                await trio.sleep(INTERVAL / 10)
            await trio.sleep(1.5 * INTERVAL)  # past the end of the last interval (simulated time)
            restarts = a.stats()["peer_restarts"]["restarts"]
            assert 2 + 18 <= restarts <= 2 + 21 and a.generation.value == restarts
            assert a._runner().ice.remote_parameters == params(250)


async def test_held_restart_dropped_when_the_peer_returns_to_the_current_ufrag(autojump_clock: object) -> None:
    """A -> B (restart) -> C (held) -> B again: nothing more to restart; B's late candidates still count."""
    h = Host("a", Lan("192.168.1.0/24"))
    with trio.fail_after(60):
        async with open_agent(network=h.network, config=CONFIG, name="A") as a:
            [c async for c in a.gather()]
            a.set_remote_parameters(params(0))
            a.set_remote_parameters(params(1))
            a.set_remote_parameters(params(2))
            assert a.stats()["peer_restarts"]["held"]
            a.set_remote_parameters(params(1))
            a.add_remote_candidate(host("192.168.1.30", 5000, ufrag=params(1).ufrag))
            assert not a.stats()["peer_restarts"]["held"]
            await trio.sleep(2 * INTERVAL)
            assert a.generation.value == 1 and a._runner().ice.remote_parameters == params(1)
            assert remote_addresses(a) == {"192.168.1.30"}


async def test_answer_to_our_own_restart_is_not_a_peer_restart(autojump_clock: object) -> None:
    """After `restart()` the new generation has no remote parameters: the peer's new ones restart nothing,
    even inside the interval of an earlier peer-driven restart."""
    h = Host("a", Lan("192.168.1.0/24"))
    with trio.fail_after(60):
        async with open_agent(network=h.network, config=CONFIG, name="A") as a:
            [c async for c in a.gather()]
            a.set_remote_parameters(params(0))
            a.set_remote_parameters(params(1))  # peer-driven: generation 1
            await a.restart()  # ours: generation 2
            a.set_remote_parameters(params(2))  # the answer to it
            assert a.generation.value == 2 and a._runner().ice.remote_parameters == params(2)
            assert a.stats()["peer_restarts"] == {"restarts": 1, "superseded": 0, "held": False}


async def test_a_held_peer_restart_does_not_hold_the_answer_to_our_own_restart(autojump_clock: object) -> None:
    """Parameters held when we restart belong to the old generation: the peer's answer to our restart (the new
    generation has no remote parameters) applies at once, with its candidates, not after the interval."""
    h = Host("a", Lan("192.168.1.0/24"))
    with trio.fail_after(60):
        async with open_agent(network=h.network, config=CONFIG, name="A") as a:
            [c async for c in a.gather()]
            a.set_remote_parameters(params(0))
            a.set_remote_parameters(params(1))  # peer-driven: generation 1
            a.set_remote_parameters(params(2))  # within the interval: held
            assert a.stats()["peer_restarts"]["held"]
            await a.restart()  # ours: generation 2, no remote parameters yet
            a.set_remote_parameters(params(3))  # the answer to it
            a.add_remote_candidate(host("192.168.1.40", 5000, ufrag=params(3).ufrag))
            assert a.generation.value == 2 and a._runner().ice.remote_parameters == params(3)
            assert remote_addresses(a) == {"192.168.1.40"}
            assert a.stats()["peer_restarts"] == {"restarts": 1, "superseded": 0, "held": False}
            await trio.sleep(2 * INTERVAL)  # nothing held fires later
            assert a.generation.value == 2 and a._runner().ice.remote_parameters == params(3)


def test_peer_restart_interval_is_configurable() -> None:
    assert IceConfig().peer_restart_interval == 1.0
    assert IceConfig(peer_restart_interval=0).peer_restart_interval == 0
    with pytest.raises(ValueError, match="peer_restart_interval"):
        IceConfig(peer_restart_interval=-1)


# ---- a hostile peer on real sockets ----


@pytest.mark.slow
async def test_authenticated_checks_from_thousands_of_sources_stay_within_the_bounds() -> None:
    """A peer that knows our credentials sends nominating checks, and data, from 2000 loopback addresses
    (127.0.x.y): the prflx candidates, pairs, transactions and the data-source cache stay within their
    documented bounds (docs/security.md "Agent-side bounds")."""
    config = IceConfig(global_pacing=False)
    p = config.max_pairs
    with trio.fail_after(30):
        async with open_agent(host_addresses=["127.0.0.1"], controlling=False, config=config, name="A") as a:
            (local,) = [c async for c in a.gather()]
            a.set_remote_parameters(params(1))
            mine = a.local_parameters
            for i in range(2000):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind((f"127.0.{i // 250 + 1}.{i % 250 + 2}", 0))
                    check = Message(Method.BINDING, MessageClass.REQUEST, attributes=[
                        (Attr.USERNAME, f"{mine.ufrag}:{params(1).ufrag}"), (Attr.PRIORITY, 1862270975 - i),
                        (Attr.ICE_CONTROLLING, 7), (Attr.USE_CANDIDATE, None)])
                    s.sendto(check.encode(integrity_key=mine.pwd.encode(), fingerprint=True), local.addr)
                    s.sendto(b"data from everywhere", local.addr)
                if i % 100 == 0:
                    await trio.testing.wait_all_tasks_blocked(cushion=0.01)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            sizes = a._runner().table_sizes()
            assert sizes["remote_candidates"] <= (REMOTE_CANDIDATES_PER_PAIR + 1) * p
            assert sizes["prflx_sources"] <= p and sizes["local_candidates"] <= 1 + p
            assert sizes["pairs"] <= p and sizes["valid"] <= p and sizes["routes"] <= p
            assert sizes["peer_nominated"] <= p and sizes["generated"] <= 2 * p and sizes["triggered"] <= 2 * p
            assert sizes["requests"] <= 39.5 / config.ta + 1
            assert sizes["data_sources"] <= MAX_DATA_SOURCES
            assert len(a.stats()["pairs"]) <= 2 * p
            assert sizes["prflx_sources"] == p  # the cap was reached: later sources taught nothing


async def test_gatherer_errors_keep_the_latest_only(autojump_clock: object) -> None:
    """A gatherer failing again and again (a TURN server refusing every refresh for days) keeps its last
    MAX_GATHERER_ERRORS errors in stats(), not all of them."""
    h = Host("a", Lan("192.168.1.0/24"))
    with trio.fail_after(30):
        async with open_agent(network=h.network, config=CONFIG, name="A") as a:
            [c async for c in a.gather()]
            (ctx,) = [c for c in a._runner()._contexts if c.kind == "host"]
            for i in range(1000):
                ctx.error(f"failure {i}")
            errors = a.stats()["gatherers"]["host"]["errors"]
            assert len(errors) == MAX_GATHERER_ERRORS and errors[-1] == "failure 999"
