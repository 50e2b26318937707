"""`iceagent offer` / `iceagent answer`: two real processes on loopback, wired by the test, chat both ways."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from iceagent import Candidate, IceParameters
from iceagent.cli import main
from iceagent.cli.signal_blob import SignalBlob
from iceagent.net.os import OSNetwork
from iceagent.turn.server import TurnServerConfig, open_turn_server

NET = OSNetwork()
ROOT = Path(__file__).resolve().parent.parent
LO = ["--address", "127.0.0.1"]
PARAMS = IceParameters(ufrag="test", pwd="0123456789012345678901")


class Peer:
    """A running `iceagent` process: write its stdin, read its stdout line by line, stderr at the end."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""
        self.stderr = b""

    async def line(self) -> bytes:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some()
            if not chunk:
                raise AssertionError(f"stdout ended: {self._buffer!r}; stderr: {await self.read_stderr()!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    async def event(self) -> dict[str, Any]:
        doc = json.loads(await self.line())
        assert isinstance(doc, dict)
        return doc

    async def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(data)

    async def close_stdin(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.aclose()

    async def read_stderr(self) -> bytes:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.receive_some():
            self.stderr += chunk
        return self.stderr

    async def finish(self) -> tuple[int, str]:
        """Wait for the exit; returns (status, stderr)."""
        err = await self.read_stderr()
        return await self.process.wait(), err.decode()


@asynccontextmanager
async def iceagent(*argv: str) -> AsyncIterator[Peer]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "iceagent.cli", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        yield Peer(process)
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


async def test_chat_both_ways() -> None:
    with trio.fail_after(40):
        async with iceagent("offer", *LO) as offer:
            blob = await offer.line()
            assert blob.startswith(b"ice1.") and b" " not in blob
            async with iceagent("answer", *LO, blob.decode()) as answer:
                reply = await answer.line()
                assert reply.startswith(b"ice1.")
                await offer.send(reply + b"\nhello from offer\n")
                await answer.send("hello from answer: grüße ✓\n".encode())
                assert await answer.line() == b"hello from offer"
                assert await offer.line() == "hello from answer: grüße ✓".encode()
                await offer.send(b"\nsecond line\n")  # the empty line is not sent
                assert await answer.line() == b"second line"
                await offer.close_stdin()  # Ctrl-D: the offer leaves, and tells the answer
                offer_status, offer_err = await offer.finish()
                answer_status, answer_err = await answer.finish()
    assert offer_status == 0, offer_err
    assert answer_status == 0, answer_err
    assert "connected in " in offer_err and "host udp 127.0.0.1:" in offer_err
    assert "stdin closed: left the chat" in offer_err
    assert "the peer left the chat" in answer_err
    assert "Traceback" not in offer_err + answer_err and "\x1b" not in offer_err + answer_err


async def test_chat_with_a_lite_answer() -> None:
    """`answer --lite`: the answer line says a=ice-lite (the blob's lite flag), the full offer side controls
    and nominates (RFC 8445 6.1.1), and the chat works."""
    with trio.fail_after(40):
        async with iceagent("offer", *LO) as offer:
            blob = await offer.line()
            async with iceagent("answer", *LO, "--lite", blob.decode()) as answer:
                reply = await answer.line()
                assert SignalBlob.decode(reply.decode(), expect="answer").parameters.lite
                await offer.send(reply + b"\nhello lite\n")
                assert await answer.line() == b"hello lite"
                await answer.send(b"hello full\n")
                assert await offer.line() == b"hello full"
                await offer.close_stdin()
                offer_status, offer_err = await offer.finish()
                answer_status, answer_err = await answer.finish()
    assert (offer_status, answer_status) == (0, 0), offer_err + answer_err


async def test_renomination_is_announced_in_the_offer() -> None:
    """`offer --renomination`: the blob's parameters carry a=ice-options:renomination (and without the flag
    they do not), so a peer that announces it too can move the pair without a restart."""
    with trio.fail_after(40):
        for flags, expected in (((), False), (("--renomination",), True)):
            async with iceagent("offer", *LO, *flags) as offer:
                blob = SignalBlob.decode((await offer.line()).decode(), expect="offer")
                assert ("renomination" in blob.parameters.options) is expected
                await offer.close_stdin()
                await offer.finish()


def test_port_mapping_flag_becomes_the_option() -> None:
    """`--port-mapping` asks open_agent(port_mapping=True) (not exercised on the host: it would ask the
    machine's real gateway)."""
    import argparse

    from iceagent.cli.options import add_agent_arguments, agent_options

    parser = argparse.ArgumentParser()
    add_agent_arguments(parser)
    assert agent_options(parser.parse_args([*LO, "--port-mapping"]))["port_mapping"] is True
    assert "port_mapping" not in agent_options(parser.parse_args(LO))


async def test_json_relay_only_offer_on_stdin() -> None:
    loopback_peers = TurnServerConfig(allow_loopback_peers=True)  # both agents are on 127.0.0.1
    async with open_turn_server(NET, ["127.0.0.1:0"], users={"alice": "secret"}, config=loopback_peers) as turn:
        relay = ["--relay-only", "--turn", turn.uris()[0], "--username", "alice", "--credential", "secret"]
        with trio.fail_after(40):
            async with iceagent("offer", *LO, *relay, "--json") as offer:
                offer_line = await offer.line()
                doc = json.loads(offer_line)
                assert doc["type"] == "offer" and doc["blob"].startswith("ice1.")
                assert [Candidate.from_sdp(c).type for c in doc["candidates"]] == ["relay"]
                async with iceagent("answer", *LO, *relay, "--json") as answer:
                    await answer.send(offer_line + b"\n")  # the whole JSON event line is accepted
                    answer_line = await answer.line()
                    assert json.loads(answer_line)["type"] == "answer"
                    await offer.send(answer_line + b"\n")
                    for peer in (offer, answer):
                        connected = await peer.event()
                        assert connected["type"] == "connected", connected
                        assert Candidate.from_sdp(connected["local"]).type == "relay"
                        assert Candidate.from_sdp(connected["remote"]).type == "relay"
                        assert connected["connect_ms"] >= 0
                    await answer.send(b"through the relay\n")
                    assert await offer.event() == {"type": "message", "text": "through the relay"}
                    await offer.send(b"and back\n")
                    assert await answer.event() == {"type": "message", "text": "and back"}
                    await answer.close_stdin()
                    assert await answer.event() == {"type": "closed", "reason": "stdin closed: left the chat"}
                    assert await offer.event() == {"type": "closed", "reason": "the peer left the chat"}
                    assert (await answer.finish())[0] == 0
                    assert (await offer.finish())[0] == 0


def _offer(**kwargs: Any) -> str:
    cand = Candidate.from_sdp("candidate:1 1 udp 2130706431 127.0.0.1 9 typ host")
    return SignalBlob("offer", PARAMS, (cand,), **kwargs).encode()


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        ("ice1.garbage", "bad offer line: the blob is damaged (checksum or format): copy the whole line again"),
        ("hello", "bad offer line: not an iceagent blob: expected a line starting with 'ice1.'"),
        ("ice9.abc", "bad offer line: this blob is format version 9; this iceagent reads version 1 only"),
        (_offer(created=time.time() - 3600), "bad offer line: the offer is stale: made "),
        (
            SignalBlob("answer", PARAMS, (), offer_ufrag="abcd").encode(),
            "bad offer line: this is an answer, not an offer: paste it into 'iceagent offer'",
        ),
    ],
)
def test_bad_offer_exit_2(offer: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["answer", *LO, offer]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"iceagent answer: error: {message}" in err, err
    assert "Traceback" not in err


async def test_bad_offer_exit_2_as_a_process() -> None:
    async with iceagent("answer", *LO) as answer:
        await answer.send(b"\n  \nice1.AAAA\n")  # blank lines are skipped; the first line is the offer
        status, err = await answer.finish()
    assert status == 2
    assert err.endswith(
        "iceagent answer: error: bad offer line: the blob is damaged (checksum or format): copy the whole line again\n"
    ), err


async def test_stale_offer_accepted_with_max_age_0() -> None:
    with trio.fail_after(30):
        async with iceagent("answer", *LO, "--max-age", "0", "--timeout", "0.5", _offer(created=0)) as answer:
            assert (await answer.line()).startswith(b"ice1.")  # accepted: it answers, then times out
            status, err = await answer.finish()
    assert status == 1
    assert err.endswith("iceagent answer: error: not connected within 0.5 s (--timeout): no candidate pair worked\n")


async def test_bad_answer_exit_2() -> None:
    with trio.fail_after(30):
        async with iceagent("offer", *LO) as offer:
            await offer.line()
            await offer.send(b"not a blob\n")
            status, err = await offer.finish()
    assert status == 2
    assert "iceagent offer: error: bad answer line: not an iceagent blob" in err, err


async def test_answer_to_another_offer_exit_2() -> None:
    other = SignalBlob("answer", PARAMS, (), offer_ufrag="zzzz").encode()
    with trio.fail_after(30):
        async with iceagent("offer", *LO) as offer:
            await offer.line()
            await offer.send(other.encode() + b"\n")
            status, err = await offer.finish()
    assert status == 2
    assert "bad answer line: it answers another offer" in err, err


async def test_stdin_ends_before_answer_exit_1() -> None:
    with trio.fail_after(30):
        async with iceagent("offer", *LO) as offer:
            await offer.close_stdin()
            assert (await offer.line()).startswith(b"ice1.")
            status, err = await offer.finish()
    assert status == 1
    assert err.endswith("iceagent offer: error: stdin ended before the answer line arrived\n"), err


async def test_connect_timeout_exit_1() -> None:
    silent = await NET.bind_udp("127.0.0.1", 0)  # receives the checks, never answers
    try:
        port = silent.local_address[1]
        cand = Candidate.from_sdp(f"candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host")
        offer = SignalBlob("offer", PARAMS, (cand,)).encode()
        with trio.fail_after(30):
            async with iceagent("answer", *LO, "--timeout", "1", offer) as answer:
                await answer.line()
                status, err = await answer.finish()
    finally:
        silent.close()
    assert status == 1
    assert err.endswith("iceagent answer: error: not connected within 1 s (--timeout): no candidate pair worked\n")


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["offer", *LO, "--relay-only"]) == 2
    assert "--relay-only needs a TURN server" in capsys.readouterr().err
    assert main(["answer", *LO, "--timeout", "-1", _offer()]) == 2
    assert "argument --timeout" in capsys.readouterr().err
    assert main(["offer", "--interface", "no-such-if0"]) == 2
    assert "no such interface" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--mdns", "--tcp"])
def test_not_implemented_option_is_one_line(
    flag: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import iceagent.cli.options

    def fake_open_agent(**kwargs: Any) -> Any:
        assert kwargs[flag[2:]] is True
        raise NotImplementedError(f"{flag[2:]}=True is not available yet")

    monkeypatch.setattr(iceagent.cli.options, "open_agent", fake_open_agent)
    assert main(["answer", *LO, flag, _offer()]) == 1
    out, err = capsys.readouterr()
    assert err == f"iceagent answer: error: not available yet: {flag[2:]}=True is not available yet\n"
    assert out == ""


def _raw_offer(**fields: Any) -> str:
    """An offer blob with fields no SignalBlob would write (a hostile or broken peer's)."""
    doc: dict[str, Any] = {"r": "offer", "u": PARAMS.ufrag, "p": PARAMS.pwd, "e": True, "t": int(time.time()),
                           "c": ["1 1 udp 2130706431 127.0.0.1 9 typ host"], **fields}
    raw = json.dumps(doc).encode()
    return "ice1." + base64.urlsafe_b64encode(zlib.compress(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        (_raw_offer(t=10**400), "bad offer line: the blob holds a 401-digit number (at most 20)"),
        (_raw_offer(pc=10**400), "bad offer line: the blob holds a 401-digit number"),
        (_raw_offer(pc=5000), "bad offer line: the blob's ICE parameters are invalid: ICE pacing 5000 ms is out"),
        (_raw_offer(c=[f"1 1 udp 1 127.0.0.1 {10**400} typ host"]), "bad offer line: candidate 1 of the blob is "
         "malformed: port '1000000000000000000000000000000000000000'... (401 characters) out of range"),
    ],
)
def test_huge_numbers_in_an_offer_exit_2(offer: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A 10**400 anywhere: the blob's own error, exit status 2, no OverflowError or traceback."""
    assert main(["answer", *LO, offer]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"iceagent answer: error: {message}" in err, err
    assert "Traceback" not in err and "Overflow" not in err
