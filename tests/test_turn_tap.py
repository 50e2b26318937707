"""The stream's reader drains a relayed pair's TURN socket itself (agent/_tap.py), as it does a host socket.

Before, every batch of relayed data went through the agent's receive task for the allocation, which woke
the reader: a second task step (and a scheduling round) per batch, a third more round-trip time than the
bare TURN client through the same coturn. These count task steps, not time.
"""

from __future__ import annotations

import collections

import pytest
import trio
from agent_helpers import connect_both
from coturn import PASSWORD, USER, Coturn, coturn_server  # noqa: F401

from iceagent import IceConfig, IceServer, open_agent

pytestmark = [pytest.mark.coturn, pytest.mark.interop]

LO = ["127.0.0.1"]
ROUNDS = 200


class TaskSteps(trio.abc.Instrument):
    """Task steps by the first part of the task's name ("receive" for the agents' receive tasks)."""

    def __init__(self) -> None:
        self.steps: collections.Counter[str] = collections.Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task.name.rsplit(".", 1)[-1].split("-", 1)[0]] += 1


async def test_relayed_data_reaches_the_reader_without_the_receive_task(coturn_server: Coturn) -> None:  # noqa: F811
    """Relay-only agents through coturn over UDP, ping-pong of ROUNDS datagrams: the readers take every one
    off the TURN socket themselves, so the agents' receive tasks hardly run (the old path: one step per
    datagram, 2 x ROUNDS), and every datagram arrives, in order."""
    servers = [IceServer(urls=[coturn_server.uri("udp")], username=USER, credential=PASSWORD)]
    config = IceConfig(global_pacing=False)
    with trio.fail_after(30):
        async with (
            open_agent(controlling=True, host_addresses=LO, ice_servers=servers, ice_transport_policy="relay",
                       config=config) as a,
            open_agent(controlling=False, host_addresses=LO, ice_servers=servers, ice_transport_policy="relay",
                       config=config) as b,
        ):
            sa, sb = await connect_both(a, b)
            for agent in (a, b):
                pair = agent.selected_pair
                assert pair is not None and pair.local.type == "relay"
            await sa.send(b"warm-up")  # the first delivery opens the Tap
            assert await sb.receive() == b"warm-up"
            await sb.send(b"warm-up")
            assert await sa.receive() == b"warm-up"
            counter = TaskSteps()
            trio.lowlevel.add_instrument(counter)
            try:
                for i in range(ROUNDS):
                    await sa.send(i.to_bytes(4, "big"))
                    assert await sb.receive() == i.to_bytes(4, "big")
                    await sb.send(i.to_bytes(4, "big"))
                    assert await sa.receive() == i.to_bytes(4, "big")
            finally:
                trio.lowlevel.remove_instrument(counter)
    assert counter.steps["receive"] < ROUNDS // 10, counter.steps
