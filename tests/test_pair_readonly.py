"""`CandidatePair` as users see it (agent.selected_pair, observer hooks) is read-only (issue 13): only the
session that owns it changes its state, and the agent counts data through methods."""

from __future__ import annotations

import pytest
import trio
from agent_helpers import connect_both

from iceagent import CandidatePair, IceConfig, PairState, open_agent
from iceagent.ice.candidate import Candidate


def _cand(port: int) -> Candidate:
    return Candidate(foundation="1", component=1, transport="udp", priority=1, address="10.0.0.1", port=port,
                     type="host")


@pytest.mark.parametrize(
    ("name", "value"),
    [("state", PairState.FAILED), ("nominated", True), ("rtt", 0.0), ("bytes_sent", 0), ("local", None),
     ("remote", None), ("valid", True), ("priority", 1), ("last_consent", 0.0)],
)
def test_public_attributes_cannot_be_set(name: str, value: object) -> None:
    pair = CandidatePair(local=_cand(1), remote=_cand(2))
    with pytest.raises(AttributeError):
        setattr(pair, name, value)


def test_the_constructor_takes_the_public_names() -> None:
    pair = CandidatePair(local=_cand(1), remote=_cand(2), state=PairState.SUCCEEDED, valid=True)
    assert (pair.state, pair.valid, pair.base) == (PairState.SUCCEEDED, True, pair.local)


async def test_selected_pair_is_read_only_and_counts_data() -> None:
    config = IceConfig(global_pacing=False)
    with trio.fail_after(10):
        async with (
            open_agent(controlling=True, host_addresses=["127.0.0.1"], config=config) as a,
            open_agent(controlling=False, host_addresses=["127.0.0.1"], config=config) as b,
        ):
            sa, sb = await connect_both(a, b)
            await sa.send(b"12345")
            assert await sb.receive() == b"12345"
            pair = a.selected_pair
            assert pair is not None and pair.bytes_sent == 5
            assert b.selected_pair is not None and b.selected_pair.bytes_received == 5
            with pytest.raises(AttributeError):
                pair.nominated = False  # type: ignore[misc]
