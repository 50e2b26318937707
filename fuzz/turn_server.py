"""The stateful fuzz target: `TurnServerState` fed whole client messages on a clock the input drives.

The input is a program: each step picks an operation (Allocate, Refresh, CreatePermission, ChannelBind,
Send, ChannelData with valid long-term credentials and fuzzed attributes; raw or corrupted bytes; a
datagram from a peer; a closed connection; time passing) and its arguments from the fuzz bytes. The
server must never raise (RFC 8656: every input is answered or dropped), what it sends must decode, it
relays only where a permission allows, and its tables stay within their documented bounds.
"""

from __future__ import annotations

from typing import Any, Literal

from iceagent.stun import Attr, Message, MessageClass, Method, StunDecodeError, long_term_key, userhash
from iceagent.turn.framing import encode_channel_data
from iceagent.turn.server.state import (
    Allocation,
    CloseRelay,
    FiveTuple,
    OpenRelay,
    Output,
    SendToClient,
    SendToPeer,
    TurnServerConfig,
    TurnServerState,
    split_stream,
)

from .support import Budget, Finding, Reader, expect, timed

__all__ = ["CHECKS", "turn_server"]

REALM = "fuzz.example"
USERS = {"alice": "secret", "bob": "hunter2"}
_SERVER4 = ("198.51.100.1", 3478)
_SERVER6 = ("2001:db8::1", 3478)
_CLIENTS = (
    FiveTuple(("192.0.2.10", 40000), _SERVER4, "udp"),
    FiveTuple(("192.0.2.11", 40001), _SERVER4, "tcp"),
    FiveTuple(("2001:db8::10", 40002), _SERVER6, "udp"),
)
#: Peers worth trying: ordinary ones, the server itself, and the addresses of DESIGN.md "Security defaults".
_PEERS = (
    ("203.0.113.5", 6000),
    ("203.0.113.6", 7000),
    ("2001:db8::5", 6000),
    ("198.51.100.1", 50001),
    ("198.51.100.1", 3478),
    ("127.0.0.1", 5000),
    ("::1", 5000),
    ("0.0.0.0", 9),
    ("169.254.169.254", 80),
    ("224.0.0.251", 5353),
    ("255.255.255.255", 9),
    ("10.0.0.7", 5000),
)
#: Small quotas, so that an input reaches them in a few steps.
CONFIG = TurnServerConfig(max_allocations_per_user=2, max_allocations=3, max_permissions=4)
MAX_STEPS = 48
#: Timer entries allowed beyond twice the live allocations, permissions, channels and cooldowns.
TIMER_SLACK = 16
_CHANNELS = range(0x4000, 0x5000)  # RFC 8656 12
_REQUESTS = (Method.ALLOCATE, Method.REFRESH, Method.CREATE_PERMISSION, Method.CHANNEL_BIND, Method.BINDING)
_INTEGRITY: tuple[Literal["sha1", "sha256", "both"], ...] = ("sha1", "sha256", "both", "sha1")

#: Invariants that can be switched off (`python -m fuzz.run turn_server --skip-check timers`) to keep
#: fuzzing past a known finding.
CHECKS = {"timers": True}

_OpResult = list[Output]


class _Program:
    """One run: the server, what each client has learned (nonce, offered algorithms), the clock."""

    def __init__(self, reader: Reader, budget: Budget | None) -> None:
        self.r = reader
        self.budget = budget
        self.state = TurnServerState(
            realm=REALM, users=USERS, relay_families=(4, 6), config=CONFIG, secret=b"fuzz-nonce-secret"
        )
        self.now = 1000.0
        self.nonces: dict[FiveTuple, str] = {}
        self.offered: list[tuple[int, bytes]] | None = None
        self.streams: dict[FiveTuple, bytearray] = {}
        self.next_port = 50000
        self.last: tuple[FiveTuple, bytes] | None = None

    # ---- choices ----

    def peer(self) -> tuple[str, int]:
        r = self.r
        b = r.u8()
        if b < 224:
            return _PEERS[b % len(_PEERS)]
        if b & 1:
            return ".".join(str(x) for x in r.take(4).ljust(4, b"\x00")), r.u16()
        raw = r.take(16).ljust(16, b"\x00")
        return ":".join(raw[i : i + 2].hex() for i in range(0, 16, 2)), r.u16()

    def extras(self) -> list[tuple[Attr | int, Any]]:
        """0 to 3 more attributes, well-formed or not for the method (RFC 8656 18, RFC 8489 14)."""
        r = self.r
        out: list[tuple[Attr | int, Any]] = []
        for _ in range(r.u8() % 4):
            kind = r.u8() % 13
            if kind == 0:
                out.append((Attr.LIFETIME, r.pick_or((0, 1, 599, 600, 3600, 3601), r.u32)))
            elif kind == 1:
                out.append((Attr.REQUESTED_ADDRESS_FAMILY, r.pick_or((1, 2), r.u8)))
            elif kind == 2:
                out.append((Attr.EVEN_PORT, r.flag()))
            elif kind == 3:
                out.append((Attr.DONT_FRAGMENT, None))
            elif kind == 4:
                out.append((Attr.RESERVATION_TOKEN, r.take(8).ljust(8, b"\x00")))
            elif kind == 5:
                out.append((Attr.XOR_PEER_ADDRESS, self.peer()))
            elif kind == 6:
                out.append((Attr.CHANNEL_NUMBER, r.u16()))
            elif kind == 7:
                out.append((Attr.REQUESTED_TRANSPORT, r.pick_or((17, 6), r.u8)))
            elif kind == 8:
                out.append((r.u16(), r.blob(16)))
            elif kind == 9:
                out.append((Attr.SOFTWARE, r.text(32)))
            elif kind == 10:
                out.append((Attr.DATA, r.blob(64)))
            elif kind == 11:
                out.append((Attr.ICE_CONTROLLING, r.uint(8)))
            else:
                out.append((Attr.USERNAME, r.text(16)))
        return out

    # ---- building messages ----

    def signed(self, ft: FiveTuple, method: Method, attributes: list[tuple[Attr | int, Any]]) -> bytes | None:
        """A request with long-term credentials (RFC 8489 9.2.3): user, password, integrity and algorithm
        picked by the input; None if the fuzzed attributes cannot be encoded."""
        r = self.r
        mode = r.u8()
        user = "bob" if mode & 1 else "alice"
        password = "wrong" if mode & 0xC0 == 0xC0 else USERS[user]
        integrity = _INTEGRITY[(mode >> 1) & 3]
        nonce = self.nonces.get(ft)
        if nonce is None:
            self.challenge(ft)
            nonce = self.nonces.get(ft, "no-nonce")
        ident: tuple[Attr, Any] = (Attr.USERHASH, userhash(user, REALM)) if mode & 0x10 else (Attr.USERNAME, user)
        auth: list[tuple[Attr | int, Any]] = [ident, (Attr.REALM, REALM), (Attr.NONCE, nonce)]
        algorithm = 1
        if mode & 0x20 and self.offered:
            chosen = self.offered[r.u8() % len(self.offered)]
            algorithm = chosen[0]
            auth += [(Attr.PASSWORD_ALGORITHMS, list(self.offered)), (Attr.PASSWORD_ALGORITHM, chosen)]
        try:
            key = long_term_key(user, REALM, password, algorithm)
            message = Message(method, MessageClass.REQUEST, None, [*attributes, *auth])
            return message.encode(integrity_key=key, integrity=integrity, fingerprint=bool(mode & 8))
        except ValueError:
            return None

    def challenge(self, ft: FiveTuple) -> None:
        """A request without credentials: the 401 brings REALM, NONCE, PASSWORD-ALGORITHMS (RFC 8489 9.2.4)."""
        self.deliver(ft, Message(Method.ALLOCATE, MessageClass.REQUEST).encode())

    # ---- feeding the server ----

    def deliver(self, ft: FiveTuple, data: bytes) -> None:
        """Send `data` from the client of `ft`: one datagram over UDP, bytes on the stream over TCP."""
        self.last = (ft, data)
        if ft.transport == "udp":
            frames = [data]
        else:
            stream = self.streams.setdefault(ft, bytearray())
            stream += data
            try:
                frames = split_stream(stream)
            except ValueError:
                del self.streams[ft]
                self.handle(self.state.client_closed(ft, self.now))
                return
        for frame in frames:
            with timed(self.budget, f"receive_from_client of {len(frame)} bytes"):
                outputs = self.state.receive_from_client(frame, ft, self.now)
            self.handle(outputs, ft, frame)

    def handle(self, outputs: _OpResult, ft: FiveTuple | None = None, request: bytes | None = None) -> None:
        """Check every output and act on it as the I/O layer would (bind the relay, or fail to)."""
        tid = request[8:20] if request is not None and len(request) >= 20 and request[0] < 0x40 else None
        for out in outputs:
            if isinstance(out, SendToClient):
                expect(ft is None or out.five_tuple == ft, f"answer to {ft} sent to {out.five_tuple}")
                self.learn(out, tid)
            elif isinstance(out, SendToPeer):
                allocation = self.relays().get(out.relay)
                expect(allocation is not None, f"relayed from {out.relay}, which is no allocation's")
                assert allocation is not None
                expect(
                    allocation.permissions.get(out.peer[0], 0.0) > self.now,
                    f"relayed to {out.peer} without a permission",
                )
            elif isinstance(out, OpenRelay):
                self.open_relay(out)
            else:
                expect(isinstance(out, CloseRelay), f"unknown output {out!r}")
                expect(out.relay not in self.relays(), f"CloseRelay for {out.relay}, which is still in use")

    def learn(self, out: SendToClient, tid: bytes | None) -> None:
        data = out.data
        if data[:1] and data[0] & 0xC0 == 0x40:
            return  # ChannelData from a peer
        try:
            response = Message.decode(data)
        except StunDecodeError as e:
            raise Finding(f"the server sent {data.hex()}, which does not decode: {e}") from e
        expect(tid is None or response.transaction_id == tid, "a response with another transaction id")
        nonce = response.get(Attr.NONCE)
        if nonce is not None:
            self.nonces[out.five_tuple] = nonce
        offered = response.get(Attr.PASSWORD_ALGORITHMS)
        if offered is not None:
            self.offered = offered

    def open_relay(self, out: OpenRelay) -> None:
        how = self.r.u8() % 8
        if how == 7:
            return  # still binding: the client may leave meanwhile
        if how == 6:
            self.handle(self.state.relay_failed(out.five_tuple, "no port free", self.now), out.five_tuple)
            return
        self.next_port += 1
        host = _SERVER4[0] if out.family == 4 else _SERVER6[0]
        self.handle(self.state.relay_opened(out.five_tuple, (host, self.next_port), self.now), out.five_tuple)

    def relays(self) -> dict[tuple[str, int], Allocation]:
        """The live allocations by relayed address (read from the allocations, not a private index)."""
        return {a.relay: a for a in self.state.allocations.values()}

    # ---- the steps ----

    def step(self) -> None:
        r = self.r
        op = r.u8() % 14
        ft = r.pick(_CLIENTS)
        attributes: list[tuple[Attr | int, Any]]
        if op <= 4:
            method = _REQUESTS[op]
            if method is Method.ALLOCATE:
                attributes = [(Attr.REQUESTED_TRANSPORT, 17)]
            elif method is Method.REFRESH:
                attributes = [(Attr.LIFETIME, r.pick_or((0, 600, 3600), r.u32))] if r.flag() else []
            elif method is Method.CREATE_PERMISSION:
                attributes = [(Attr.XOR_PEER_ADDRESS, self.peer()) for _ in range(1 + r.u8() % 3)]
            elif method is Method.CHANNEL_BIND:
                number = 0x4000 + r.u8() % 8 if r.u8() < 240 else r.u16()
                attributes = [(Attr.CHANNEL_NUMBER, number), (Attr.XOR_PEER_ADDRESS, self.peer())]
            else:
                attributes = []
            data = self.signed(ft, method, attributes + self.extras())
            if data is not None:
                self.deliver(ft, data)
        elif op == 5:
            attributes = [(Attr.XOR_PEER_ADDRESS, self.peer()), (Attr.DATA, r.blob(64)), *self.extras()]
            try:
                data = Message(Method.SEND, MessageClass.INDICATION, None, attributes).encode(fingerprint=r.flag())
            except ValueError:
                return
            self.deliver(ft, data)
        elif op == 6:
            number = 0x4000 + r.u8() % 8 if r.u8() < 240 else r.pick(_CHANNELS)
            frame = encode_channel_data(number, r.blob(64), pad=ft.transport != "udp")
            self.deliver(ft, frame[: len(frame) - r.u8() % 4] if r.u8() > 240 else frame)
        elif op == 7:
            self.deliver(ft, r.blob(255))
        elif op == 8:
            data = self.signed(ft, r.pick(list(Method)), self.extras())
            if data:
                corrupt = bytearray(data)
                corrupt[r.u16() % len(corrupt)] ^= r.u8() | 1
                self.deliver(ft, bytes(corrupt))
        elif op == 9:
            self.now += r.pick_or((0.5, 1.0, 30.0, 299.0, 301.0, 599.0, 601.0, 3601.0), lambda: r.u16() / 16)
            with timed(self.budget, "handle_timer"):
                outputs = self.state.handle_timer(self.now)
            self.handle(outputs)
        elif op == 10:
            relays = list(self.relays())
            relay = relays[r.u8() % len(relays)] if relays and r.u8() < 224 else (_SERVER4[0], 50000 + r.u8())
            with timed(self.budget, "receive_from_peer"):
                out = self.state.receive_from_peer(relay, r.blob(64), self.peer(), self.now)
            self.handle([out] if out is not None else [])
        elif op == 11:
            self.streams.pop(ft, None)
            self.handle(self.state.client_closed(ft, self.now), ft)
        elif op == 12:
            self.challenge(ft)
        elif self.last is not None:
            self.deliver(*self.last)  # a retransmission: the cached response (RFC 8489 6.3.1)
        self.check_bounds()

    def check_bounds(self) -> None:
        """The tables stay within CONFIG's quotas; the timer heap within about twice what is live."""
        state = self.state
        allocations = state.allocations
        pending = getattr(state, "_pending", {})
        expect(len(allocations) + len(pending) <= CONFIG.max_allocations, "more allocations than max_allocations")
        for user in USERS:
            owned = sum(a.username == user for a in allocations.values())
            expect(owned <= CONFIG.max_allocations_per_user, f"{user} holds {owned} allocations")
        live = len(allocations)
        for a in allocations.values():
            expect(len(a.permissions) <= CONFIG.max_permissions, f"{len(a.permissions)} permissions on one allocation")
            expect(len(a.channels) == len(a.channel_by_peer), "channels and channel_by_peer differ")
            live += len(a.permissions) + len(a.channels) + len(a.cooldown)
        expect(len(getattr(state, "_responses", {})) <= 10_000, "the response cache grew past 10000")
        timers = getattr(state, "_timers", [])
        if CHECKS["timers"]:
            expect(
                len(timers) <= 2 * live + TIMER_SLACK,
                f"{len(timers)} timer entries for {live} live allocations, permissions, channels and cooldowns",
            )


def turn_server(data: bytes, budget: Budget | None = None) -> None:
    """`TurnServerState` never raises, answers with messages that decode, relays only with a permission and
    keeps its tables bounded, whatever the client sends and however time passes (RFC 8656 5-12)."""
    program = _Program(Reader(data), budget)
    for _ in range(MAX_STEPS):
        if not program.r.remaining:
            break
        program.step()
