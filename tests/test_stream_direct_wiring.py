"""The stream reader's direct read (agent/_tap.py) follows the session's known data sources through the real
event path, on loopback sockets: when the pair of the Tap's source leaves the session (a PairRemoved from the
`max_pairs` cap, RFC 8445 6.1.2.5), the runner's event handling forgets that source at once, and the next
datagram from its address goes through the demultiplexer and is dropped (RFC 8445 12.2: data only from a known
remote candidate), instead of being returned by the reader's `recvfrom`."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio
import trio.testing
from agent_helpers import connect_both
from test_stream_tap import b_address

import iceagent.agent._tap as tap_module
from iceagent import IceConfig, IceState, open_agent
from iceagent.agent._tap import Tap
from iceagent.ice.candidate import Candidate
from iceagent.ice.pair import PairState

LO = ["127.0.0.1"]


def host(foundation: str, addr: tuple[str, int], priority: int) -> Candidate:
    """A signalled host candidate of the peer at `addr` (here: a stdlib socket of the test's)."""
    return Candidate(foundation, 1, "udp", priority, addr[0], addr[1], "host")


async def test_a_source_whose_pair_the_cap_removes_is_not_read_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    """B knows a second remote candidate X (a stdlib socket) whose data its reader returns directly (the Tap's
    source). A higher-priority candidate signalled while the reader waits on the socket pushes X's idle pair
    off B's check list (max_pairs=2): the session's PairRemoved clears the Tap's source, and X's next datagram
    is looked up by the demultiplexer and dropped; the peer's next one is delivered."""
    monkeypatch.setattr(tap_module, "TAP_PARK", 60.0)  # the parked session task does not take the socket back
    config = IceConfig(global_pacing=False, consent_interval=600.0, max_pairs=2)
    with trio.fail_after(10):
        async with (
            open_agent(host_addresses=LO, config=config, name="A") as a,
            open_agent(controlling=False, host_addresses=LO, config=config, name="B") as b,
            trio.open_nursery() as nursery,
        ):
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as x,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as y,
            ):
                x.bind(("127.0.0.1", 0))
                y.bind(("127.0.0.1", 0))
                x_addr, y_addr = x.getsockname(), y.getsockname()
                sa, sb = await connect_both(a, b)
                await b.state.wait_value(IceState.COMPLETED)  # nomination concluded: no more checks (8.1.2)
                runner: Any = b._route_runner  # type: ignore[attr-defined]
                selected = b.selected_pair
                assert selected is not None
                base = selected.local
                b.add_remote_candidate(host("x", x_addr, 1000))  # paired, never checked: an idle pair
                for i in range(3):  # the first is delivered by the session task, which then makes the Tap
                    await sa.send(b"warm-up %d" % i)
                    assert await sb.receive() == b"warm-up %d" % i
                x.sendto(b"from x", b_address(b))
                assert await sb.receive() == b"from x"  # a known remote candidate's data (12.2)
                tap = sb._receive.tap  # type: ignore[attr-defined]
                assert isinstance(tap, Tap)
                assert tap.source == x_addr  # read directly from now on
                x_pair = runner.ice.find_pair(base, x_addr)
                assert x_pair is not None and x_pair.state is not PairState.IN_PROGRESS and not x_pair.valid

                seen: list[list[Any]] = []  # the sources of each batch through the demultiplexer
                process = tap.process

                def watched(items: list[Any], t: Tap | None) -> bool:
                    seen.append([addr for _, addr in items])
                    return process(items, t)

                tap.process = watched
                got: list[bytes] = []
                done = trio.Event()

                async def reader() -> None:
                    got.append(await sb.receive())
                    done.set()

                nursery.start_soon(reader)
                await trio.testing.wait_all_tasks_blocked()
                assert tap.reader  # the reader waits on the socket, the session task is parked
                b.add_remote_candidate(host("y", y_addr, 2000))  # 3 pairs: the lowest idle one goes (6.1.2.5)
                await trio.testing.wait_all_tasks_blocked()  # the session task applied the events
                source_after = tap.source
                assert x_pair not in runner.ice.pairs and runner.ice.find_pair(base, x_addr) is None
                x.sendto(b"stray", b_address(b))
                await trio.testing.wait_all_tasks_blocked()
                assert got == []  # dropped: the reader waits on the socket again
                assert seen == [[x_addr]]  # looked up by the demultiplexer, not returned by the direct read
                assert source_after is None
                await sa.send(b"known")
                await done.wait()
                assert got == [b"known"]
