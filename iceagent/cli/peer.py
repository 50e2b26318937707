"""`iceagent offer` / `iceagent answer`: two real peers connected by copy-paste signaling, then a tiny chat.

`offer` gathers, prints one line (a `SignalBlob`, see signal_blob.py) and reads the answer line from
stdin; `answer` reads the offer (argument or stdin), gathers and prints its answer line. Both then
connect (the offer side controlling) and relay stdin lines to the peer, one datagram per line, and the
peer's datagrams to stdout, one line each. End of stdin sends an empty datagram ("bye") and exits 0;
receiving one exits 0 too. Status messages go to stderr, so stdout carries only the blob and the chat.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import trio

from ..agent import Agent, IceStream
from ..errors import IceError, IceFailed
from ..ice.candidate import Candidate
from ..logs import get_logger
from ..states import IceState
from . import UsageError, add_command
from .options import add_agent_arguments, agent_options, cli_errors, open_cli_agent, positive_seconds, sole_error
from .signal_blob import DEFAULT_MAX_AGE, BlobError, Role, SignalBlob

__all__ = ["register"]

log = get_logger("iceagent.cli")

_BYE = b""


def register(subparsers: Any) -> None:
    """Add `iceagent offer` and `iceagent answer`."""
    offer = add_command(
        subparsers,
        "offer",
        run_offer,
        help="start a copy-paste connection: print an offer line, read the answer, then chat",
        description=(
            "Gather candidates and print one line, the offer (a compact base64url blob of ufrag, pwd and "
            "candidates). Paste it into 'iceagent answer' on the other machine, then paste the answer line "
            "it prints here (stdin). Both sides connect (this one is controlling) and relay stdin lines to "
            "the peer and the peer's messages to stdout. Ctrl-D (end of stdin) ends the chat on both sides."
        ),
    )
    answer = add_command(
        subparsers,
        "answer",
        run_answer,
        help="answer a copy-paste offer: print the answer line, then chat",
        description=(
            "Read the offer line of 'iceagent offer' (argument, or the first line of stdin), gather and "
            "print one line, the answer: paste it into the offer side. Both sides connect (this one is "
            "controlled) and relay stdin lines to the peer and the peer's messages to stdout. Ctrl-D (end "
            "of stdin) ends the chat on both sides."
        ),
    )
    answer.add_argument("offer", nargs="?", metavar="OFFER", help="the offer line (default: read it from stdin)")
    for p in (offer, answer):
        add_agent_arguments(p)
        p.add_argument(
            "--timeout",
            type=positive_seconds,
            default=30.0,
            metavar="SECONDS",
            help="give up when not connected this long after the peer's line arrived (30)",
        )
        p.add_argument(
            "--max-age",
            type=float,
            default=DEFAULT_MAX_AGE,
            metavar="SECONDS",
            help=f"refuse a peer line older than this as stale; 0 = no limit ({DEFAULT_MAX_AGE:g})",
        )
        p.add_argument(
            "--json",
            action="store_true",
            help="stdout: one JSON object per event (offer/answer, connected, message, closed)",
        )


def run_offer(args: argparse.Namespace) -> int:
    """Run `iceagent offer`."""
    options = agent_options(args)
    with cli_errors():
        return trio.run(_offer, args, options)


def run_answer(args: argparse.Namespace) -> int:
    """Run `iceagent answer`."""
    options = agent_options(args)
    reader = _LineReader(0)
    offer_line = args.offer
    if offer_line is None or offer_line == "-":
        offer_line = trio.run(_read_blob_line, reader, "offer")
    offer = _decode(offer_line, "offer", args.max_age)
    with cli_errors():
        return trio.run(_answer, args, options, reader, offer)


# ---- stdin and stdout ----


class _LineReader:
    """Lines from a file descriptor, read in a worker thread so the agent keeps running meanwhile."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""
        self._eof = False

    async def readline(self) -> bytes | None:
        """The next line without its line ending; None at end of input."""
        while b"\n" not in self._buffer and not self._eof:
            chunk = await trio.to_thread.run_sync(os.read, self._fd, 65536, abandon_on_cancel=True)
            if not chunk:
                self._eof = True
            self._buffer += chunk
        if not self._buffer:
            return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.rstrip(b"\r")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


class _Output:
    """stdout: the blob line and the chat (or JSON events); stderr: status for the human."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        self.tty = sys.stdout.isatty()

    def event(self, doc: dict[str, Any]) -> None:
        if self.json:
            print(json.dumps(doc), flush=True)

    def line(self, text: str) -> None:
        if not self.json:
            print(text, flush=True)

    def message(self, data: bytes) -> None:
        text = data.decode("utf-8", errors="replace")
        if self.json:
            self.event({"type": "message", "text": text})
        elif self.tty:  # a peer must not drive this terminal with escape sequences
            print(_CONTROL.sub(lambda m: repr(m.group())[1:-1], text), flush=True)
        else:
            sys.stdout.buffer.write(data + b"\n")
            sys.stdout.buffer.flush()

    @staticmethod
    def status(text: str) -> None:
        print(text, file=sys.stderr, flush=True)


async def _read_blob_line(reader: _LineReader, role: Role, prompt: bool = True) -> str:
    """The first non-empty line of stdin (a JSON event line with a "blob" is accepted too)."""
    if prompt and sys.stdin.isatty():
        _Output.status(f"paste the {role} line here, then press Enter:")
    while True:
        line = await reader.readline()
        if line is None:
            raise IceError(f"stdin ended before the {role} line arrived")
        text = line.decode("utf-8", errors="replace").strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                doc = json.loads(text)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and isinstance(doc.get("blob"), str):
                text = doc["blob"]
        return text


def _decode(text: str, role: Role, max_age: float) -> SignalBlob:
    try:
        return SignalBlob.decode(text, expect=role, max_age=max_age if max_age > 0 else None)
    except BlobError as e:
        raise UsageError(f"bad {role} line: {e}") from None


# ---- the two sides ----


async def _gather(agent: Agent) -> list[Candidate]:
    start = trio.current_time()
    candidates = [c async for c in agent.gather()]
    log.info("%s: gathered %s in %.1f ms", agent.name, _count(candidates), (trio.current_time() - start) * 1e3)
    if not candidates:
        errors = [e for g in agent.stats()["gatherers"].values() for e in g["errors"]]
        raise IceError("no candidates gathered" + (f": {'; '.join(errors)}" if errors else ""))
    return candidates


def _print_blob(out: _Output, blob: SignalBlob) -> None:
    text = blob.encode()
    out.line(text)
    out.event(
        {
            "type": blob.role,
            "blob": text,
            "ufrag": blob.parameters.ufrag,
            "candidates": [c.to_sdp() for c in blob.candidates],
        }
    )
    log.info("%s line: %d characters", blob.role, len(text))


def _apply(agent: Agent, blob: SignalBlob) -> None:
    agent.set_remote_parameters(blob.parameters)
    for candidate in blob.candidates:
        agent.add_remote_candidate(candidate)
    if blob.end_of_candidates:
        agent.add_remote_candidate(None)


async def _offer(args: argparse.Namespace, options: dict[str, Any]) -> int:
    out = _Output(args.json)
    reader = _LineReader(0)
    async with open_cli_agent(args, options, controlling=True, name="offer") as agent:
        candidates = await _gather(agent)
        _print_blob(out, SignalBlob("offer", agent.local_parameters, candidates))
        out.status(
            f"offer: {_count(candidates)}; paste the line above into 'iceagent answer', then paste its answer line here"
        )
        while True:
            text = await _read_blob_line(reader, "answer", prompt=False)
            try:
                answer = _decode(text, "answer", args.max_age)
                if answer.offer_ufrag != agent.local_parameters.ufrag:
                    raise UsageError("bad answer line: it answers another offer (paste the answer to this one)")
                break
            except UsageError as e:
                if not sys.stdin.isatty():
                    raise
                out.status(f"{e}; try again")
        log.info("answer line: %s, made %.0f s ago", _count(answer.candidates), answer.age())
        _apply(agent, answer)
        return await _connect_and_chat(agent, reader, out, args.timeout)


async def _answer(args: argparse.Namespace, options: dict[str, Any], reader: _LineReader, offer: SignalBlob) -> int:
    out = _Output(args.json)
    log.info("offer line: %s, made %.0f s ago", _count(offer.candidates), offer.age())
    async with open_cli_agent(args, options, controlling=False, name="answer") as agent:
        _apply(agent, offer)
        candidates = await _gather(agent)
        blob = SignalBlob("answer", agent.local_parameters, candidates, offer_ufrag=offer.parameters.ufrag)
        _print_blob(out, blob)
        out.status(f"answer: {_count(candidates)}; paste the line above into the 'iceagent offer' side")
        return await _connect_and_chat(agent, reader, out, args.timeout)


def _count(candidates: Sequence[Candidate]) -> str:
    return f"{len(candidates)} candidate" + ("" if len(candidates) == 1 else "s")


def _describe(candidate: Candidate) -> str:
    host = f"[{candidate.address}]" if ":" in candidate.address else candidate.address
    return f"{candidate.type} {candidate.transport} {host}:{candidate.port}"


async def _connect_and_chat(agent: Agent, reader: _LineReader, out: _Output, wait: float) -> int:
    start = trio.current_time()
    stream: IceStream | None = None
    with trio.move_on_after(wait):
        stream = await agent.connect()
    pair = agent.selected_pair
    if stream is None or pair is None:
        raise IceError(f"not connected within {wait:g} s (--timeout): no candidate pair worked")
    elapsed = trio.current_time() - start
    rtt = None if pair.rtt is None else round(pair.rtt * 1000, 3)
    out.event(
        {
            "type": "connected",
            "local": pair.local.to_sdp(),
            "remote": pair.remote.to_sdp(),
            "rtt_ms": rtt,
            "connect_ms": round(elapsed * 1000, 3),
        }
    )
    out.status(
        f"connected in {elapsed * 1000:.1f} ms: {_describe(pair.local)} <-> {_describe(pair.remote)}"
        + ("" if rtt is None else f", rtt {rtt:.2f} ms")
        + "; type lines to send them, Ctrl-D to quit"
    )
    reason = await _chat(agent, stream, reader, out)
    out.event({"type": "closed", "reason": reason})
    out.status(reason)
    return 0


async def _chat(agent: Agent, stream: IceStream, reader: _LineReader, out: _Output) -> str:
    """Relay until stdin ends or the peer says bye; returns why it ended. Raises IceFailed if ICE fails."""
    reason = ""

    async def send_lines(cancel: trio.CancelScope) -> None:
        nonlocal reason
        while True:
            line = await reader.readline()
            if line is None:
                await stream.send(_BYE)
                reason = "stdin closed: left the chat"
                cancel.cancel()
                return
            if line:
                await stream.send(line)

    async def receive(cancel: trio.CancelScope) -> None:
        nonlocal reason
        while True:
            try:
                data = await stream.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                reason = "the agent closed"
                cancel.cancel()
                return
            if data == _BYE:
                reason = "the peer left the chat"
                cancel.cancel()
                return
            out.message(data)

    async def watch() -> None:
        while True:
            await agent.state.wait_value(IceState.FAILED)
            await agent.connect()  # raises IceFailed with the reason (no auto restart)

    try:
        async with trio.open_nursery() as nursery:
            for task in (send_lines, receive):
                nursery.start_soon(task, nursery.cancel_scope)
            nursery.start_soon(watch)
    except BaseException as e:
        error = sole_error(e)
        if isinstance(error, IceFailed):
            raise IceError(f"connection lost: {error}") from None
        raise
    return reason
