"""A sans-IO test client for the embedded TURN server (`TurnServerState`) and the constants its tests share."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from iceagent.net.base import Address, UdpSocket
from iceagent.stun import Attr, Message, MessageClass, Method, long_term_key, userhash
from iceagent.turn.server.state import FiveTuple, OpenRelay, Output, SendToClient, TurnServerConfig, TurnServerState

REALM = "example.org"
USERS = {"alice": "secret", "bob": "hunter2"}
CLIENT = ("192.0.2.10", 40000)
SERVER = ("198.51.100.1", 3478)
FT = FiveTuple(CLIENT, SERVER, "udp")
RELAY = ("198.51.100.1", 50000)
PEER = ("203.0.113.5", 6000)
PEER2 = ("203.0.113.6", 7000)
Attrs = Sequence[tuple[Attr | int, Any]]


# ---- a sans-IO test client ----


def make_state(*, server_addresses: Sequence[Address] = (), auth_secrets: Sequence[bytes] = (), **config: Any
               ) -> TurnServerState:
    config.setdefault("nonce_lifetime", 10**5)  # tests of the nonce itself set it
    extra: dict[str, Any] = {}
    if auth_secrets:
        extra["auth_secrets"] = auth_secrets
    if server_addresses:
        extra["server_addresses"] = server_addresses
    return TurnServerState(
        realm=REALM, users=USERS, relay_families=(4, 6), config=TurnServerConfig(**config), secret=b"k" * 16, **extra
    )


class Client:
    """Builds and signs raw requests for one 5-tuple and feeds them to a `TurnServerState`."""

    def __init__(self, state: TurnServerState, ft: FiveTuple = FT, user: str = "alice", password: str = "secret"):
        self.state, self.ft, self.user, self.password = state, ft, user, password
        self.nonce: str | None = None
        self.key = long_term_key(user, REALM, password)
        self.unix_time: float | None = None  # the wall clock handed to the server (ephemeral credentials)

    def send(self, message: Message | bytes, now: float, **encode: Any) -> list[Output]:
        data = message if isinstance(message, bytes) else message.encode(**encode)
        if self.unix_time is None:
            return self.state.receive_from_client(data, self.ft, now)
        return self.state.receive_from_client(data, self.ft, now, self.unix_time)

    def request(
        self,
        method: Method,
        attributes: Attrs = (),
        now: float = 0.0,
        *,
        tid: bytes | None = None,
        extra_auth: Attrs = (),
        key: bytes | None = None,
        integrity: Any = "sha1",
        username: bool = True,
    ) -> list[Output]:
        """Send an authenticated request (after a 401 challenge for the nonce) and return the outputs."""
        if self.nonce is None:
            challenge = only_response(self.send(Message(method, MessageClass.REQUEST), now))
            assert challenge.get(Attr.ERROR_CODE)[0] == 401
            self.nonce = challenge.get(Attr.NONCE)
        ident: list[tuple[Attr | int, Any]] = (
            [(Attr.USERNAME, self.user)] if username else [(Attr.USERHASH, userhash(self.user, REALM))]
        )
        auth = [*ident, (Attr.REALM, REALM), (Attr.NONCE, self.nonce), *extra_auth]
        message = Message(method, MessageClass.REQUEST, tid, [*attributes, *auth])
        return self.send(message, now, integrity_key=key or self.key, integrity=integrity)

    def call(self, method: Method, attributes: Attrs = (), now: float = 0.0, **kw: Any) -> Message:
        """`request` that expects exactly one response, checks its signature, and returns it."""
        response = only_response(self.request(method, attributes, now, **kw))
        code = response.get(Attr.ERROR_CODE)
        if code is None or code[0] not in (400, 401, 438):
            assert response.verify_integrity(kw.get("key") or self.key), response
        return response

    def allocate(self, now: float = 0.0, relay: Address = RELAY, attributes: Attrs = (), **kw: Any) -> Message:
        outputs = self.request(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, 17), *attributes], now, **kw)
        if len(outputs) == 1 and isinstance(outputs[0], SendToClient):
            return decode(outputs[0])
        assert outputs == [OpenRelay(self.ft, 6 if Attr.REQUESTED_ADDRESS_FAMILY in dict(attributes) else 4)]
        response = only_response(self.state.relay_opened(self.ft, relay, now))
        assert response.verify_integrity(kw.get("key") or self.key)
        return response

    def permit(self, *peers: Address, now: float = 0.0) -> Message:
        return self.call(Method.CREATE_PERMISSION, [(Attr.XOR_PEER_ADDRESS, p) for p in peers], now)

    def bind(self, number: int, peer: Address, now: float = 0.0) -> Message:
        return self.call(Method.CHANNEL_BIND, [(Attr.CHANNEL_NUMBER, number), (Attr.XOR_PEER_ADDRESS, peer)], now)

    def send_indication(self, peer: Address, data: bytes, now: float = 0.0) -> list[Output]:
        attributes = [(Attr.XOR_PEER_ADDRESS, peer), (Attr.DATA, data)]
        return self.send(Message(Method.SEND, MessageClass.INDICATION, None, attributes), now)


def decode(out: Output) -> Message:
    assert isinstance(out, SendToClient)
    return Message.decode(out.data)


def only_response(outputs: list[Output]) -> Message:
    assert len(outputs) == 1, outputs
    return decode(outputs[0])


def error_code(message: Message) -> int | None:
    code = message.get(Attr.ERROR_CODE)
    return None if code is None else int(code[0])


class RawClient:
    """A raw STUN/TURN client on one loopback UDP socket, signing requests with the long-term key."""

    def __init__(self, sock: UdpSocket, server: Address, user: str = "alice", password: str = "secret") -> None:
        self.sock, self.server, self.user = sock, server, user
        self.key = long_term_key(user, REALM, password)
        self.nonce: str | None = None
        self.realm = REALM

    async def exchange(self, message: Message, **encode: Any) -> Message:
        await self.sock.send(message.encode(**encode), self.server)
        while True:
            data, _ = await self.sock.receive()
            if data[0] & 0xC0:
                continue  # ChannelData
            response = Message.decode(data)
            if response.transaction_id == message.transaction_id:
                return response

    async def call(self, method: Method, attributes: Attrs = ()) -> Message:
        """An authenticated request: first the 401 dance (or a 438 retry) for the nonce."""
        for _ in range(3):
            if self.nonce is None:
                challenge = await self.exchange(Message(method, MessageClass.REQUEST, None, list(attributes)))
                if error_code(challenge) != 401:
                    return challenge
                self.nonce = challenge.get(Attr.NONCE)
            auth = [(Attr.USERNAME, self.user), (Attr.REALM, self.realm), (Attr.NONCE, self.nonce)]
            request = Message(method, MessageClass.REQUEST, None, [*attributes, *auth])
            response = await self.exchange(request, integrity_key=self.key, fingerprint=True)
            if error_code(response) == 438:
                self.nonce = response.get(Attr.NONCE)
                continue
            if error_code(response) not in (400, 401):
                assert response.verify_integrity(self.key) and response.verify_fingerprint()
            return response
        raise AssertionError("kept getting 438")

    async def allocate(self, *attributes: tuple[Attr | int, Any]) -> Message:
        return await self.call(Method.ALLOCATE, [(Attr.REQUESTED_TRANSPORT, 17), *attributes])

    async def send_indication(self, peer: Address, data: bytes) -> None:
        message = Message(
            Method.SEND, MessageClass.INDICATION, None, [(Attr.XOR_PEER_ADDRESS, peer), (Attr.DATA, data)]
        )
        await self.sock.send(message.encode(), self.server)

    async def receive_relayed(self) -> tuple[bytes, Any]:
        """The next Data indication (data, peer) or ChannelData (data, channel number)."""
        while True:
            data, _ = await self.sock.receive()
            if data[0] & 0xC0 == 0x40:
                length = int.from_bytes(data[2:4], "big")
                return data[4 : 4 + length], int.from_bytes(data[:2], "big")
            message = Message.decode(data)
            if message.method is Method.DATA and message.message_class is MessageClass.INDICATION:
                return message.get(Attr.DATA), message.get(Attr.XOR_PEER_ADDRESS)


_SERVE = (
    # A process started in the background inherits SIGINT ignored; restore the default so Ctrl-C works.
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from iceagent.cli import main; sys.exit(main(sys.argv[1:]))"
)


@attrs.define
class ServeRun:
    """A running `iceagent serve`: its stdout lines up to "serving", and its stderr once it has ended."""

    lines: list[str]
    stderr: bytes = b""


@asynccontextmanager
async def iceagent_serve(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[ServeRun]:
    """Run `iceagent serve ARGS` until it says "serving" (`stdin` is written and closed first); on exit,
    Ctrl-C, which must end it with exit code 0, and every pipe closed."""
    argv = [sys.executable, "-c", _SERVE, "serve", *args]
    proc = await trio.lowlevel.open_process(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        if stdin is not None:
            await proc.stdin.send_all(stdin)
        await proc.stdin.aclose()
        output = b""
        while b"serving" not in output:
            chunk = await proc.stdout.receive_some()
            assert chunk, f"serve exited early: {output!r} {await proc.stderr.receive_some()!r}"
            output += chunk
        run = ServeRun(output.decode().splitlines())
        yield run
        proc.send_signal(signal.SIGINT)
        assert await proc.wait() == 0
        while chunk := await proc.stderr.receive_some():
            run.stderr += chunk
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                await stream.aclose()


def turn_udp_address(lines: list[str]) -> Address:
    """The first `TURN udp IP:PORT` line of `iceagent serve`."""
    line = next(x for x in lines if x.startswith("TURN udp "))
    host, port = line.split()[2].rsplit(":", 1)
    return host, int(port)
