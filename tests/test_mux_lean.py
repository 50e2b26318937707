"""The mux's work per datagram and per scheduling round (issue 14 item 5): counted, never timed.

A signalling call that routes what the mux socket holds (its turn, agent/_session_task.py `release`) takes
its agent's share itself, so the delivery does not also wake the agent's session task; and the mux drains
its sockets between task steps only in rounds that could fill them, so a quiet mux costs its run no call per
task step.
"""

from __future__ import annotations

import math
import socket
import time
from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing
from test_mux import LOOP, TIMEOUT, check

import iceagent.net.mux as mux_module
from iceagent import Candidate, IceConfig, IceParameters, open_agent
from iceagent.net._mux_inbox import Item
from iceagent.net.mux import AgentMux, Mux, open_mux
from iceagent.stun import Attr, Message, MessageClass, Method

FAST = IceConfig(global_pacing=False)


def _check_to(ufrag: str, pwd: str, peer_ufrag: str) -> bytes:
    """A check to the agent with local credentials (`ufrag`, `pwd`) from a controlling peer `peer_ufrag`."""
    msg = Message(Method.BINDING, MessageClass.REQUEST, attributes=[
        (Attr.USERNAME, f"{ufrag}:{peer_ufrag}"), (Attr.PRIORITY, 0x6E0001FF), (Attr.ICE_CONTROLLING, 1)])
    return msg.encode(integrity_key=pwd.encode(), fingerprint=True)


async def test_a_signalling_turn_that_routes_a_check_does_not_wake_the_session_task() -> None:
    """The peer's check waits on the mux socket when the agent learns the peer's candidate: the signalling
    call has the mux route it and answers it in its own turn. The session task stays parked on the inbox
    (the delivery used to reschedule it, for a step that found nothing); the answer and the triggered check
    left in the call."""
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0) as mux, AsyncExitStack() as stack:
            agent = await stack.enter_async_context(
                open_agent(controlling=False, host_addresses=[LOOP], config=FAST, mux=mux))
            _ = [c async for c in agent.gather()]
            peer = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            peer.bind((LOOP, 0))
            peer.setblocking(False)
            await trio.testing.wait_all_tasks_blocked()
            endpoint = agent._mux
            assert isinstance(endpoint, AgentMux)
            inbox = endpoint.transports[0]
            session_task = inbox._waiter
            assert session_task is not None  # parked on the endpoint's inbox
            params = agent.local_parameters
            peer.sendto(_check_to(params.ufrag, params.pwd, "peer"), mux.local_addresses[0])
            host, port = peer.getsockname()
            agent.set_remote_parameters(IceParameters(ufrag="peer", pwd="p" * 22))
            agent.add_remote_candidate(Candidate(foundation="1", component=1, transport="udp",
                                                 priority=0x6E0001FF, address=host, port=port, type="host"))
            agent.add_remote_candidate(None)
            # (no checkpoint since the check was sent: only the signalling calls can have routed it)
            assert mux.stats()["routed"] == 1
            assert inbox._waiter is session_task  # still parked: not rescheduled by the delivery
            got = [Message.decode(peer.recv(2048)) for _ in range(2)]
            assert sorted((m.method.name, m.message_class.name) for m in got) == [
                ("BINDING", "REQUEST"), ("BINDING", "SUCCESS")]  # answered, and its triggered check sent


async def test_a_partial_take_wakes_the_receiver_that_routing_left_parked() -> None:
    """`route_waiting` routes without waking the session task parked on the inbox (its caller takes the share
    at once); should the caller take less than what waits, the parked task is woken for the rest."""
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0) as mux:
            endpoint = AgentMux(mux, "a")
            with endpoint:
                generation = endpoint.open_generation("ufA")
                view = generation.transports[0]
                peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                woken: list[bool] = []

                async def receiver() -> None:
                    await view.wait_receivable()
                    woken.append(True)

                try:
                    peer.bind((LOOP, 0))
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(receiver)
                        await trio.testing.wait_all_tasks_blocked()
                        for i in range(3):
                            peer.sendto(check("ufA:p", bytes([i]) * 12), mux.local_addresses[0])
                        view.route_waiting()
                        assert mux.stats()["routed"] == 3
                        await trio.testing.wait_all_tasks_blocked()
                        assert woken == []  # routed for the caller, who takes it now:
                        first: list[Item] = view.receive_now(1)  # but it leaves two
                        assert len(first) == 1 and view._shared.pending() == 2
                        await trio.testing.wait_all_tasks_blocked()
                        assert woken == [True]
                        assert len(view.receive_now(64)) == 2
                finally:
                    peer.close()
                generation.close()


class _Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


async def _rounds(n: int) -> None:
    """Let `n` scheduling rounds pass (each checkpoint of this task is one)."""
    for _ in range(n):
        await trio.lowlevel.checkpoint()


async def test_a_quiet_mux_drains_between_task_steps_only_while_a_round_could_fill_its_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From the first round that took fewer datagrams than its pressure mark (DRAIN_SHARE of what the socket
    holds) while it serves fewer agents than that, no task step calls into the mux; a round that took a
    burst of that many turns the drains between steps on for the next, and a quiet one off again."""
    drains: list[Mux] = []
    drain = Mux._drain

    def counted(self: Mux) -> None:
        drains.append(self)
        drain(self)

    monkeypatch.setattr(Mux, "_drain", counted)
    monkeypatch.setattr(mux_module, "DRAIN_INTERVAL", 0.0)  # each step drains, while steps drain at all
    monkeypatch.setattr(mux_module, "DRAIN_SHARE", 8 / 8192, raising=False)  # 8 datagrams with a 4 MiB buffer
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind((LOOP, 0))
        with trio.fail_after(TIMEOUT):
            async with open_mux([LOOP], 0) as mux:
                await _rounds(3)
                drains.clear()
                steps = _Steps()
                trio.lowlevel.add_instrument(steps)
                await _rounds(20)
                assert steps.count >= 20 and drains == []  # quiet: no step drained
                pressure = mux._pressure
                assert 1 <= pressure <= 16  # (the kernel may grant less than 4 MiB)
                for i in range(pressure):  # a burst no agent is bound for: taken (and dropped) all the same
                    peer.sendto(b"data %d" % i, mux.local_addresses[0])
                while mux.stats()["dropped"].get("unbound_address", 0) < pressure:
                    await trio.lowlevel.checkpoint()
                await _rounds(3)
                assert drains  # the round that took the burst turned them on
                await _rounds(3)
                drains.clear()
                await _rounds(20)
                assert drains == []  # and quiet rounds off again
                trio.lowlevel.remove_instrument(steps)
    finally:
        peer.close()


async def test_a_mux_serving_many_agents_drains_between_every_rounds_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serving its pressure mark of agents, the mux drains between task steps in every round, traffic or not:
    a round in which they all step could fill the socket with their answers."""
    drains: list[Mux] = []
    monkeypatch.setattr(Mux, "_drain", lambda self: drains.append(self))
    monkeypatch.setattr(mux_module, "DRAIN_INTERVAL", 0.0)
    monkeypatch.setattr(mux_module, "DRAIN_SHARE", 4 / 8192)
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0) as mux:
            endpoints = [mux.register(f"a{i}") for i in range(mux._pressure)]
            await _rounds(3)
            drains.clear()
            await _rounds(20)
            assert len(drains) >= 20
            endpoints.pop().close()  # one fewer: quiet rounds take no drain
            await _rounds(3)
            drains.clear()
            await _rounds(20)
            assert drains == []
            for ep in endpoints:
                ep.close()


async def test_a_long_round_drains_between_the_next_rounds_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A round whose task steps took DRAIN_ROUND or longer (the process busy with other work, a mux below its
    pressure mark) turns the drains between steps on for the next round: what waits on the socket would
    otherwise wait that long (past a check's RTO); quiet short rounds turn them off again."""
    drains: list[Mux] = []
    monkeypatch.setattr(Mux, "_drain", lambda self: drains.append(self))
    monkeypatch.setattr(mux_module, "DRAIN_INTERVAL", 0.0)
    monkeypatch.setattr(mux_module, "DRAIN_ROUND", 0.2)  # (short rounds stay far below it on a loaded machine)
    with trio.fail_after(TIMEOUT):
        async with open_mux([LOOP], 0):
            await _rounds(3)
            drains.clear()
            await _rounds(20)
            assert drains == []  # short quiet rounds: no drain between steps
            busy_until = time.perf_counter() + 0.3
            while time.perf_counter() < busy_until:  # one task step of 0.3 s (CPU-bound work in the process)
                pass
            await _rounds(3)
            assert drains
            drains.clear()
            await _rounds(20)
            assert drains == []


async def test_routing_for_a_closed_generation_still_wakes_the_live_one() -> None:
    """After a restart the old generation's view is closed and the new one's task parks on the shared inbox.
    `route_waiting` through the closed view (nothing takes for it) must route as usual, waking the parked
    task for the check it delivers; leaving it parked would strand the check."""
    woke: list[list[Item]] = []
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind((LOOP, 0))
        with trio.fail_after(TIMEOUT):
            async with open_mux([LOOP], 0) as mux:
                agent = AgentMux(mux, "a")
                old = agent.open_generation("old")
                new = agent.open_generation("new")
                v_old, v_new = old.transports[0], new.transports[0]
                old.close()

                async def park() -> None:
                    await v_new.wait_receivable()
                    woke.append(v_new.receive_now(64))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(park)
                    await trio.testing.wait_all_tasks_blocked()
                    peer.sendto(check("new"), mux.local_addresses[0])  # (on loopback: queued as sendto returns)
                    v_old.route_waiting()
                while not woke:
                    await trio.lowlevel.checkpoint()
                assert len(woke[0]) == 1
                new.close()
                agent.close()
    finally:
        peer.close()


async def test_what_comes_after_the_receive_tasks_turn_is_routed_at_the_rounds_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A datagram that reaches the mux socket after its receive task's turn in a round is routed before Trio's
    I/O wait at that round's end (DRAIN_TAIL: tasks are ready to run), so its agent handles it in the next
    round, as it would from a socket of its own (epoll reports that at the round's end). It used to wait for
    the receive task's turn in the next round and reach its agent a round later: at 1000 pairs on a mux
    (bench/mux.py) a connect took five rounds where agents with their own sockets took four, unless the
    rounds were long enough to drain between task steps (DRAIN_ROUND)."""
    monkeypatch.setattr(mux_module, "DRAIN_TAIL", 0.0)  # (any round: not timed)
    monkeypatch.setattr(mux_module, "DRAIN_ROUND", math.inf)  # no drains between task steps
    routed_at_io_wait: list[int] = []

    class AtIoWait(trio.abc.Instrument):
        def after_io_wait(self, timeout: float) -> None:
            routed_at_io_wait.append(mux.stats()["routed"])

    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind((LOOP, 0))
        with trio.fail_after(TIMEOUT):
            async with open_mux([LOOP], 0) as mux:
                with mux.register("a") as a:
                    a.add_ufrag("ufA")
                    await _rounds(3)  # the receive task waits on its socket; no drains between steps
                    instrument = AtIoWait()
                    trio.lowlevel.add_instrument(instrument)
                    try:
                        peer.sendto(check("ufA:p"), mux.local_addresses[0])  # (loopback: queued as it returns)
                        await trio.lowlevel.checkpoint()  # the round ends
                    finally:
                        trio.lowlevel.remove_instrument(instrument)
                    assert routed_at_io_wait[0] == 1  # routed before the I/O wait, not by the receive task after it
                    assert a.transports[0].pending() == 1
    finally:
        peer.close()


async def test_the_round_end_drain_never_overtakes_what_the_receive_task_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Datagrams from one source reach the agent in the order the socket held them: d1 arrives just after the
    receive task found the socket empty, d2 after that task's step in the same round. The task used to read d1
    in its wait and hold it across a checkpoint while the round's end (DRAIN_TAIL) routed d2 first. (Review of
    b39c762: [d0, d2, d1] there.)"""
    monkeypatch.setattr(mux_module, "DRAIN_TAIL", 0.0)
    monkeypatch.setattr(mux_module, "DRAIN_ROUND", math.inf)
    state = {"armed": False, "fired": False, "sent2": False}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer, trio.fail_after(TIMEOUT):
        peer.bind((LOOP, 0))
        async with open_mux([LOOP], 0) as mux:
            target = mux.local_addresses[0]
            with mux.register("a") as a:
                inbox = a.transports[0]
                inbox.confirm(peer.getsockname())
                port = mux._ports[0]
                real = port.receive_now

                def receive_now(limit: int) -> object:  # the receive task's look: d1 comes just after it found none
                    out = real(limit)
                    if state["armed"] and not state["fired"] and not out:
                        state["fired"] = True
                        peer.sendto(b"d1", target)  # (loopback: queued when sendto returns)
                    return out

                monkeypatch.setattr(port, "receive_now", receive_now)

                class After(trio.abc.Instrument):
                    def after_task_step(self, task: trio.lowlevel.Task) -> None:
                        if state["fired"] and not state["sent2"] and task.name.startswith("iceagent.mux receive"):
                            state["sent2"] = True
                            peer.sendto(b"d2", target)  # after the receive task's step, in the same round

                after = After()
                trio.lowlevel.add_instrument(after)
                try:
                    await trio.testing.wait_all_tasks_blocked()
                    state["armed"] = True
                    peer.sendto(b"d0", target)
                    # a real socket, polled until all three are routed (fail_after bounds it); this task must not be
                    # ready at the rounds' ends, or the round-end drain takes d0 and d1 first
                    while inbox.pending() < 3:  # noqa: ASYNC110
                        await trio.sleep(0.001)
                finally:
                    trio.lowlevel.remove_instrument(after)
                assert state["sent2"]
                assert [data for data, _ in inbox.receive_now()] == [b"d0", b"d1", b"d2"]
