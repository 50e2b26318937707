"""An iceagent peer for the heavy-loss lab (tests/test_loss_netns.py): an application that resends until echoed.

Run inside a private network namespace like tests/netns_peer.py (the same JSON-lines signaling on stdin and
stdout, the same `local`/`candidate`/`gathered`/`connected`/`failed`/`closed` events), with the agent's
default IceConfig. Once `connect()` returned, the application sends `hello from <name>` every `--resend`
seconds until the peer's echo of it comes back (then `{"event": "echoed", "pair": {...}}`), and echoes
every greeting of the peer's, until told to close. tests/test_loss_vnet.py runs the same application.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import trio
from netns_peer import connect_or_report, describe_pair, emit, peer_parser, signal_until_closed

from iceagent import IceServer, IceStream, open_agent


async def chat(stream: IceStream, name: str, resend: float, echoed: Callable[[], None]) -> None:
    """Resend `hello from NAME` every `resend` s until its echo arrives (then call `echoed`); echo the peer's
    greetings, always (it may not have had our echo yet). Runs until cancelled."""
    greeting = f"hello from {name}".encode()
    done = trio.Event()

    async def resend_until_echoed() -> None:
        while not done.is_set():
            await stream.send(greeting)
            with trio.move_on_after(resend):
                await done.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(resend_until_echoed)
        while True:
            data = await stream.receive()
            if data == b"echo " + greeting and not done.is_set():
                done.set()
                echoed()
            elif data.startswith(b"hello from "):
                await stream.send(b"echo " + data)


async def main(args: argparse.Namespace) -> None:
    async with (
        open_agent(
            controlling=args.controlling,
            ice_servers=[IceServer(urls=[f"stun:{args.stun}"])] if args.stun else [],
            host_addresses=[args.host],
            name=args.name,
        ) as agent,
        trio.open_nursery() as nursery,
    ):

        async def run_ice() -> None:
            stream = await connect_or_report(agent)
            if stream is not None:
                await chat(stream, args.name, args.resend, echoed)

        def echoed() -> None:
            emit("echoed", pair=describe_pair(agent.selected_pair))

        nursery.start_soon(run_ice)
        await signal_until_closed(agent, nursery)
    emit("closed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = peer_parser(__doc__.splitlines()[0])
    p.add_argument("--resend", type=float, default=0.3, help="seconds between the application's resends")
    return p.parse_args(argv)


if __name__ == "__main__":
    trio.run(main, parse_args())
