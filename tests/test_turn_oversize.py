"""Data too large for any TURN message (RFC 8656 11.1: a Send indication is a STUN message, whose attributes
hold at most 65532 bytes, RFC 8489 5; 12.4: ChannelData's Length field has 16 bits) is lost as UDP loses it:
dropped and counted (`dropped`), or, from `sync_sendto`, OSError(EMSGSIZE) as a UDP socket says, which
IceStream drops as it does a host socket's. Before, struct.error or ValueError escaped into the application."""

from __future__ import annotations

import errno
from typing import Any

import pytest
import trio
from coturn import PASSWORD, USER, Coturn, coturn_server  # noqa: F401
from test_turn_client import PEER, allocated, one, sent, success
from test_turn_tap import relayed_streams

from iceagent import IceStream
from iceagent.stun import Attr, Message, Method
from iceagent.turn import CHANNEL_DATA_MAX, ChannelDataError
from iceagent.turn.allocation import open_allocation
from iceagent.turn.client import SEND_DATA_MAX


@pytest.mark.parametrize("peer", [("192.0.2.1", 5000), ("2001:db8::1", 5000)])
def test_send_data_max_is_what_a_send_indication_holds(peer: tuple[str, int]) -> None:
    """SEND_DATA_MAX is exact: that much data encodes in a Send indication, one byte more does not."""
    client = allocated()
    most = SEND_DATA_MAX[6 if ":" in peer[0] else 4]
    assert Message.decode(client.send_indication(b"x" * most, peer)).get(Attr.DATA) == b"x" * most
    with pytest.raises(ValueError):
        client.send_indication(b"x" * (most + 1), peer)


def test_client_drops_data_no_message_holds() -> None:
    """`TurnClient.send` drops and counts what no Send indication (held or not) or ChannelData message holds, and
    sends the largest that fit; `channel_data` says ChannelDataError (a ValueError), not struct.error."""
    client = allocated()
    too_big = b"x" * (SEND_DATA_MAX[4] + 1)
    assert client.send(too_big, PEER, 1.0) is None
    assert client.dropped == 1 and sent(client) == []  # no permission asked for it
    assert client.send(b"small", PEER, 1.0) is None  # held: the permission is asked for
    req = one(client)
    assert req.method == Method.CREATE_PERMISSION
    assert client.send(too_big, PEER, 1.0) is None  # not held
    assert client.dropped == 2
    client.receive(success(req), 1.0)
    out = sent(client)
    assert [m.get(Attr.DATA) for m in out if m.method == Method.SEND] == [b"small"]
    assert client.send(too_big, PEER, 1.1) is None  # the permission is installed: still no Send indication
    assert client.dropped == 3
    raw = client.send(b"x" * SEND_DATA_MAX[4], PEER, 1.1)
    assert raw is not None and len(Message.decode(raw).get(Attr.DATA)) == SEND_DATA_MAX[4]
    bind = next(m for m in out if m.method == Method.CHANNEL_BIND)
    client.receive(success(bind), 1.2)
    assert client.send(b"x" * CHANNEL_DATA_MAX, PEER, 1.3) == bytes.fromhex("4000 ffff") + b"x" * CHANNEL_DATA_MAX
    assert client.send(b"x" * (CHANNEL_DATA_MAX + 1), PEER, 1.3) is None
    assert client.dropped == 4
    with pytest.raises(ChannelDataError):
        client.channel_data(0x4000, b"x" * (CHANNEL_DATA_MAX + 1))



@pytest.mark.coturn
@pytest.mark.interop
async def test_allocation_calls_drop_oversized_data(coturn_server: Coturn) -> None:  # noqa: F811
    """On an allocation over UDP, before and after the channel is bound: `sync_sendto` raises OSError(EMSGSIZE),
    `send_nowait` and `send` drop; all count it in `dropped`, the allocation stays usable."""
    uri = coturn_server.uri("udp")
    with trio.fail_after(20):
        async with (
            open_allocation(uri, USER, PASSWORD, local_address="127.0.0.1") as a,
            open_allocation(uri, USER, PASSWORD, local_address="127.0.0.1") as b,
        ):
            sa: Any = a
            rb = b.relayed_address
            await a.create_permission(rb[0])
            await b.create_permission(a.relayed_address[0])
            for size in (SEND_DATA_MAX[4] + 1, CHANNEL_DATA_MAX + 1):  # a Send indication, then ChannelData
                if size > SEND_DATA_MAX[4] + 1:
                    await a.bind_channel(rb)
                dropped = a.dropped
                with pytest.raises(OSError) as raised:
                    sa.sync_sendto(b"x" * size, rb)
                assert raised.value.errno == errno.EMSGSIZE
                sa.send_nowait(b"x" * size, rb)
                await a.send(b"x" * size, rb)
                assert a.dropped == dropped + 3
            assert a.error is None
            await a.send(b"after", rb)
            assert await b.receive() == (b"after", a.relayed_address)


@pytest.mark.coturn
@pytest.mark.interop
async def test_relayed_send_of_an_oversized_datagram_is_lost_not_raised(coturn_server: Coturn) -> None:  # noqa: F811
    """A relayed IceStream loses a datagram no TURN message holds, as a host pair's loses one the socket refuses,
    on its fast path (`sync_sendto`) and on the scheduling round (`Allocation.send`) alike."""
    with trio.fail_after(30):
        async with relayed_streams(coturn_server, warm_up=3) as (sa, sb):
            route = sa._routes.route
            assert route is not None
            allocation: Any = route[0]
            dropped = allocation.dropped
            for _ in range(IceStream.SCHEDULE_EVERY):  # every path `send` takes, the scheduling round included
                await sa.send(b"x" * 70000)
            assert allocation.dropped == dropped + IceStream.SCHEDULE_EVERY
            await sa.send(b"after")
            assert await sb.receive() == b"after"
