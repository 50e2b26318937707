"""The Python calls the mux makes per datagram and per agent action (issue 14 item 5): counted, never timed.

At 1000 pairs the N server agents on one mux cost more than the same agents with sockets of their own, and
about a fifth of that was calls on the mux's path: kind, route, ufrag, deliver for each datagram routed;
three frames for each confirm; three for each answer sent. These counts hold the path as short as it is now
(tests/test_mux_route_diff.py holds its decisions equal to the routing table's).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from iceagent.net._mux_agent import GenerationTransport
from iceagent.net.mux import AgentMux, Mux, MuxLimits
from iceagent.stun import Attr, Message, MessageClass, Method

L = ("192.0.2.10", 3478)
PEER = ("198.51.100.7", 40000)


class _Port:
    """Just what `Mux._add_port` and the endpoints' transports read of a port (no socket: nothing is sent)."""

    def __init__(self, sent: list[tuple[bytes, tuple[str, int]]] | None = None) -> None:
        self.locals = [L]
        self.bind_address = L[0]
        self.capacity = 10_000
        self.direct: Callable[[bytes, tuple[str, int]], object] | None = (
            None if sent is None else lambda data, remote: sent.append((data, remote)))


def _python_calls(fn: Callable[[], object]) -> list[str]:
    """The Python functions `fn` calls (at any depth), by name, in order; `fn` itself and builtins excluded."""
    calls: list[str] = []
    depth = [0]

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            depth[0] += 1
            if depth[0] > 1:
                calls.append(frame.f_code.co_name)
        elif event == "return":
            depth[0] -= 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def _check(username: str) -> bytes:
    msg = Message(Method.BINDING, MessageClass.REQUEST, transaction_id=b"\x01" * 12,
                  attributes=[(Attr.USERNAME, username), (Attr.PRIORITY, 7)])
    return msg.encode(integrity_key=b"k" * 22, fingerprint=True)


def _answer(tid: bytes) -> bytes:
    msg = Message(Method.BINDING, MessageClass.SUCCESS, transaction_id=tid,
                  attributes=[(Attr.XOR_MAPPED_ADDRESS, PEER)])
    return msg.encode(integrity_key=b"k" * 22, fingerprint=True)


def _mux(sent: list[tuple[bytes, tuple[str, int]]] | None = None) -> Mux:
    mux = Mux(MuxLimits())
    mux._add_port(_Port(sent))  # type: ignore[arg-type]
    return mux


def test_a_check_or_data_for_an_empty_inbox_is_routed_without_a_call() -> None:
    """A check (USERNAME first, as agents send it) and data from a confirmed address are routed into empty
    inboxes by the loop alone: no call per datagram (there were four to five: `looks_like_stun`,
    `route_kind`, `local_ufrag`, `_deliver_check` / `_deliver`); a response costs the table's lookup of its
    transaction."""
    mux = _mux()
    a, b = mux.register("a"), mux.register("b")
    a.add_ufrag("ufA")
    b.transports[0].confirm(PEER)
    rows = [((_check("ufA:p"), PEER), L), ((b"application data", PEER), L)]
    assert _python_calls(lambda: mux._route(rows, 0.0)) == ["route"]
    assert a.transports[0].pending() == 1 and b.transports[0].pending() == 1
    a.transports[0].receive_now()
    tid = b"\x02" * 12
    mux._routes.add_transaction(a, tid, 0.0)
    answer = [((_answer(tid), PEER), L)]
    calls = _python_calls(lambda: mux._route(answer, 0.0))
    assert calls == ["route", "response_owner", "forget_transaction"]
    assert mux.stats() == {"agents": 2, "routed": 3, "dropped": {}}


async def test_a_generation_confirms_and_answers_in_one_call() -> None:
    """While an agent has one generation, its view's `confirm` is the routing table's own call (it was the
    view's method, then the table's `confirm`), and an answer goes to the socket's `sendto` from the view's
    `send_nowait` itself (it went through the shared transport's `send_nowait` and `try_send`)."""
    sent: list[tuple[bytes, tuple[str, int]]] = []
    mux = _mux(sent)
    agent = AgentMux(mux, "agent")
    view = agent.open_generation("ufA").transports[0]
    assert isinstance(view, GenerationTransport)
    assert _python_calls(lambda: view.confirm(PEER)) == ["bind"]
    assert mux._routes.bound_owner(L, PEER) is agent
    answer = _answer(b"\x03" * 12)
    assert _python_calls(lambda: view.send_nowait(answer, PEER)) == ["send_nowait", "<lambda>"]  # (<lambda>: the port)
    assert sent == [(answer, PEER)]
    # a request still records its transaction id, so its response is routed back (RFC 8489 6.3)
    check = _check("peer:ufA")
    assert view.try_send(check, PEER)
    assert agent.stats()["transactions"] == 1


def test_confirm_binds_nothing_once_the_view_or_the_endpoint_closed() -> None:
    """The view's `confirm` binds nothing (and raises nothing) once its generation or the whole endpoint closed,
    as before; the routing table's public `confirm` still refuses an owner that is not registered."""
    mux = _mux()
    agent = AgentMux(mux, "agent")
    generation = agent.open_generation("ufA")
    view = generation.transports[0]
    generation.close()
    view.confirm(PEER)
    assert mux._routes.bound_owner(L, PEER) is None
    view2 = agent.open_generation("ufB").transports[0]
    agent.close()
    view2.confirm(PEER)
    assert mux._routes.bound_owner(L, PEER) is None
    mux._routes.bind(agent, L, PEER)  # the table's own call: nothing for an owner that left
    assert mux._routes.sizes()["bindings"] == 0
    with pytest.raises(Exception, match="not registered"):
        mux._routes.confirm(agent, L, PEER)


def test_during_a_restart_confirm_also_steers_the_source_to_its_generation() -> None:
    """With two generations alive, each view's `confirm` binds and steers the source's other traffic to its
    generation; once the old one closes, the new one confirms by the table's call again."""
    mux = _mux()
    agent = AgentMux(mux, "agent")
    old = agent.open_generation("ufA")
    new = agent.open_generation("ufB")
    new.transports[0].confirm(PEER)
    assert mux._routes.bound_owner(L, PEER) is agent
    assert agent.fanouts[0]._sources == {PEER: new.transports[0]}
    old.close()
    assert _python_calls(lambda: new.transports[0].confirm(PEER)) == ["bind"]
