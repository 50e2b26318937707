"""Interop: an iceagent server agent on a mux against aioice (its own socket) on 127.0.0.1, both roles.

aioice runs in a subprocess (tests/aioice_peer.py); real sockets, so the real clock under `trio.fail_after`."""

from __future__ import annotations

import pytest
import trio
from test_interop_aioice import FAST, LO, TIMEOUT, aioice_peer, data_both_ways, exchange

from iceagent import IceState, open_agent
from iceagent.net.mux import open_mux

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("controlling", [False, True])
async def test_mux_agent_with_aioice(controlling: bool) -> None:
    role = "controlled" if controlling else "controlling"
    with trio.fail_after(TIMEOUT):
        async with open_mux(LO, 0) as mux, aioice_peer(role) as peer, open_agent(
            controlling=controlling, mux=mux, host_addresses=LO, config=FAST
        ) as agent:
            _, (theirs,) = await exchange(agent, peer)
            await peer.command("connect")
            stream = await agent.connect()
            await peer.expect("connected")
            await agent.state.wait_value(IceState.COMPLETED)
            pair = agent.selected_pair
            assert pair is not None and pair.nominated
            assert (pair.local.address, pair.local.port) == mux.local_addresses[0]
            assert pair.remote.port == theirs.port
            await data_both_ways(stream, peer)
            assert mux.stats()["dropped"] == {}
        assert peer.process.returncode == 0
