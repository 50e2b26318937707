"""Agents over loopback under hostile or odd input: floods, bad credentials, role conflicts, huge candidate lists."""

from __future__ import annotations

import os
import socket

import pytest
import trio
import trio.testing
from agent_helpers import connect_both, signal

from iceagent import Candidate, CandidateParseError, IceConfig, IceState, open_agent
from iceagent.stun import Attr, Message, MessageClass, Method

LO = ["127.0.0.1"]
FAST = IceConfig(global_pacing=False)


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2)
    return s


async def _recv(s: socket.socket) -> Message:
    data = await trio.to_thread.run_sync(s.recv, 2048)
    return Message.decode(data)


async def test_bad_integrity_gets_401_and_changes_nothing() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST) as a:
            (ca,) = [c async for c in a.gather()]
            ufrag = a.local_parameters.ufrag
            with _udp() as s:
                req = Message(Method.BINDING, MessageClass.REQUEST, attributes=[
                    (Attr.USERNAME, f"{ufrag}:peer"), (Attr.PRIORITY, 1), (Attr.ICE_CONTROLLED, 5)])
                s.sendto(req.encode(integrity_key=b"wrong password", fingerprint=True), ca.addr)
                resp = await _recv(s)
            assert resp.message_class is MessageClass.ERROR
            assert resp.get(Attr.ERROR_CODE)[0] == 401
            assert a.stats()["pairs"] == []  # no peer-reflexive candidate, no pair


async def test_good_request_before_remote_parameters_is_answered_at_once() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST) as a:
            (ca,) = [c async for c in a.gather()]
            p = a.local_parameters
            with _udp() as s:
                req = Message(Method.BINDING, MessageClass.REQUEST, attributes=[
                    (Attr.USERNAME, f"{p.ufrag}:peer"), (Attr.PRIORITY, 1845501695), (Attr.ICE_CONTROLLED, 5)])
                s.sendto(req.encode(integrity_key=p.pwd.encode(), fingerprint=True), ca.addr)
                resp = await _recv(s)
                assert resp.message_class is MessageClass.SUCCESS
                assert resp.transaction_id == req.transaction_id
                assert resp.get(Attr.XOR_MAPPED_ADDRESS) == s.getsockname()
                assert resp.verify_integrity(p.pwd.encode()) and resp.verify_fingerprint()
                # the triggered check waits for the remote parameters, then goes out (RFC 8445 7.3)
                from iceagent import IceParameters

                a.set_remote_parameters(IceParameters("peer", "p" * 22))
                check = await _recv(s)
            assert check.method is Method.BINDING and check.message_class is MessageClass.REQUEST
            assert check.get(Attr.USERNAME) == f"peer:{p.ufrag}"
            assert check.verify_integrity(b"p" * 22)


async def test_unknown_comprehension_required_attribute_gets_420() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST) as a:
            (ca,) = [c async for c in a.gather()]
            p = a.local_parameters
            with _udp() as s:
                req = Message(Method.BINDING, MessageClass.REQUEST, attributes=[
                    (Attr.USERNAME, f"{p.ufrag}:peer"), (Attr.PRIORITY, 1), (Attr.ICE_CONTROLLED, 5),
                    (0x0033, b"\x00\x00\x00\x01")])
                s.sendto(req.encode(integrity_key=p.pwd.encode(), fingerprint=True), ca.addr)
                resp = await _recv(s)
            assert resp.get(Attr.ERROR_CODE)[0] == 420
            assert resp.get(Attr.UNKNOWN_ATTRIBUTES) == [0x0033]


async def test_flood_from_unknown_addresses_is_bounded_and_agent_still_connects() -> None:
    with trio.fail_after(20):
        async with open_agent(host_addresses=LO, config=FAST) as a, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as b:
            (ca,) = [c async for c in a.gather()]
            p = a.local_parameters
            socks = [_udp() for _ in range(20)]
            try:
                for i in range(3000):
                    s = socks[i % len(socks)]
                    kind = i % 3
                    if kind == 0:  # valid-looking checks with random usernames
                        m = Message(Method.BINDING, MessageClass.REQUEST,
                                    attributes=[(Attr.USERNAME, f"{os.urandom(4).hex()}:x")])
                        s.sendto(m.encode(integrity_key=b"k", fingerprint=True), ca.addr)
                    elif kind == 1:  # correctly signed checks from many sources: prflx learning is capped
                        m = Message(Method.BINDING, MessageClass.REQUEST, attributes=[
                            (Attr.USERNAME, f"{p.ufrag}:x"), (Attr.PRIORITY, i), (Attr.ICE_CONTROLLED, i)])
                        s.sendto(m.encode(integrity_key=p.pwd.encode(), fingerprint=True), ca.addr)
                    else:
                        s.sendto(os.urandom(i % 200), ca.addr)
                    if i % 100 == 0:
                        await trio.lowlevel.checkpoint()
                await trio.testing.wait_all_tasks_blocked(cushion=0.05)
                sa, sb = await connect_both(a, b)
                await sa.send(b"alive")
                assert await sb.receive() == b"alive"
                assert len(a.stats()["pairs"]) <= FAST.max_pairs
            finally:
                for s in socks:
                    s.close()


async def test_thousands_of_remote_candidates_respect_the_pair_cap() -> None:
    cfg = IceConfig(global_pacing=False, max_pairs=100)
    with trio.fail_after(20):
        async with open_agent(host_addresses=LO, config=cfg) as a, open_agent(
            controlling=False, host_addresses=LO, config=cfg
        ) as b:
            for i in range(5000):
                a.add_remote_candidate(
                    Candidate(str(i), 1, "udp", 1000 + i, f"127.1.{i // 250}.{i % 250 + 1}", 9, "host"))
            sa, sb = await connect_both(a, b)
            await sa.send(b"x")
            assert await sb.receive() == b"x"
            assert len(a.stats()["pairs"]) <= 100


async def test_malformed_candidate_lines_raise_a_clear_error() -> None:
    for line in ("candidate:1 1 udp notanumber 127.0.0.1 5000 typ host",
                 "candidate:1 1 udp 1 127.0.0.1 99999 typ host",
                 "candidate:1 1 udp 1 127.0.0.1 5000",
                 "garbage"):
        with pytest.raises(CandidateParseError):
            Candidate.from_sdp(line)
    with trio.fail_after(5):
        async with open_agent(host_addresses=LO, config=FAST) as a:
            with pytest.raises(TypeError):
                a.add_remote_candidate("candidate:1 1 udp 1 127.0.0.1 5000 typ host")  # type: ignore[arg-type]


@pytest.mark.parametrize("roles", [(True, True), (False, False)])
async def test_role_conflict_resolves_and_connects(roles: tuple[bool, bool]) -> None:
    with trio.fail_after(10):
        async with open_agent(controlling=roles[0], host_addresses=LO, config=FAST) as a, open_agent(
            controlling=roles[1], host_addresses=LO, config=FAST
        ) as b:
            sa, sb = await connect_both(a, b)
            await sa.send(b"hi")
            assert await sb.receive() == b"hi"
            # exactly one side ends up controlling (RFC 8445 7.3.1.1)
            if roles == (True, True):
                await a.state.wait_value(IceState.COMPLETED)
                await b.state.wait_value(IceState.COMPLETED)
                assert a.controlling != b.controlling


async def test_send_before_a_pair_is_selected_waits() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST) as a, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as b:
            sent = trio.Event()
            stream = a._stream  # the stream connect() will return

            async def early_send() -> None:
                await stream.send(b"early")
                sent.set()

            async with trio.open_nursery() as n:
                n.start_soon(early_send)
                await trio.testing.wait_all_tasks_blocked()
                assert not sent.is_set()
                sa, sb = await connect_both(a, b)
                assert sa is stream
                assert await sb.receive() == b"early"


async def test_data_from_unknown_source_is_not_delivered() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST) as a, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as b:
            sa, sb = await connect_both(a, b)
            (cb,) = [c async for c in b.gather()]
            with _udp() as s:
                s.sendto(b"intruder", cb.addr)
            await sa.send(b"friend")
            assert await sb.receive() == b"friend"
            with trio.move_on_after(0.2):
                extra = await sb.receive()
                pytest.fail(f"unexpected datagram {extra!r}")


async def test_peer_restart_restarts_us() -> None:
    with trio.fail_after(10):
        async with open_agent(host_addresses=LO, config=FAST) as a, open_agent(
            controlling=False, host_addresses=LO, config=FAST
        ) as b:
            sa, sb = await connect_both(a, b)
            await b.restart()
            b_params = b.local_parameters
            a.set_remote_parameters(b_params)  # new ufrag: a restarts too
            assert a.generation.value == 1
            # the answer to a restart restarts nothing
            b.set_remote_parameters(a.local_parameters)
            assert b.generation.value == 1
            await signal(b, a, end=True)
            async for c in a.gather():
                b.add_remote_candidate(Candidate.from_sdp(c.to_sdp()))
            b.add_remote_candidate(None)
            while not (a.selected_pair and a.selected_pair.nominated and a.stats()["generation"] == 1
                       and len(a._runners) == 1):
                await trio.testing.wait_all_tasks_blocked(cushion=0.001)
            await sb.send(b"new generation")
            assert await sa.receive() == b"new generation"
