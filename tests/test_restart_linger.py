"""An ICE restart loses no data in flight on the previous pair (RFC 8445 9, 12.1).

The controlled side learns of the new nomination first (the USE-CANDIDATE check), the controlling side
a round trip later (its response): until then the controlling side still sends on the previous pair.
The previous generation therefore keeps receiving for `IceConfig.restart_linger` before it closes.
"""

from __future__ import annotations

import trio
import trio.testing
from agent_helpers import connect_both, signal
from iceagent_vnet import vnet

from iceagent import IceConfig, IceState, open_agent


async def test_data_sent_on_the_previous_pair_during_a_restart_arrives(autojump_clock: trio.testing.MockClock) -> None:
    scenario = vnet("none", "none", seed=3, rtt=0.04)
    config = IceConfig(restart_linger=2.0)
    with trio.fail_after(60):
        async with (
            open_agent(network=scenario.network_a, name="peer", config=config) as peer,
            open_agent(controlling=False, network=scenario.network_b, name="server", config=config) as server,
        ):
            to_server, at_server = await connect_both(peer, server)
            await server.restart()
            await signal(server, peer)
            await signal(peer, server)
            for i in range(40):  # one per one-way delay (20 ms of virtual time), across the switch of pairs
                await to_server.send(b"%d" % i)
                with trio.fail_after(1):
                    assert await at_server.receive() == b"%d" % i
            assert server.generation.value == 1 and server.state.value is IceState.COMPLETED
            # the previous generation closes once restart_linger has passed
            await trio.sleep(config.restart_linger)
            assert len(server._runners) == 1 and len(peer._runners) == 1
