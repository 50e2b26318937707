"""A small STUN Binding client on Trio (RFC 8489 6.2, 7.2; RFC 5780 CHANGE-REQUEST and RESPONSE-PORT).

For the CLI, NAT discovery and the srflx gatherer. The retransmission schedule is the sans-IO
`Transaction` of `transaction.py`; this module only sends, receives and sleeps until its timer.
"""

from __future__ import annotations

import ipaddress
import math
import os
from typing import Any, Literal

import attrs
import trio

from ..errors import IceError, StunTimeout
from ..net.base import Address, Network, UdpSocket
from ..uri import format_host_port
from .attributes import COOKIE_BYTES, Attr
from .message import Message, MessageClass, Method, StunDecodeError
from .transaction import Transaction

__all__ = ["BindingResult", "StunErrorResponse", "stun_binding"]

_HEADER_SIZE = 20


class StunErrorResponse(IceError):
    """The server answered the Binding request with an error response (RFC 8489 6.3.4, 14.8)."""

    def __init__(self, message: str, code: int, reason: str, unknown_attributes: list[int] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.unknown_attributes = unknown_attributes or []


@attrs.frozen
class BindingResult:
    """The outcome of one Binding transaction (RFC 8489 7.2; RFC 5780 7.3, 7.4 for the last two)."""

    mapped: Address  # XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS from an old server): our reflexive address
    rtt: float  # seconds from the last transmission of the request to the response
    local: Address  # the local address the request went out from
    server: Address  # where the request was sent
    source: Address  # where the response came from (differs from `server` after CHANGE-REQUEST)
    attempts: int  # transmissions of the request (1 = no retransmission)
    transport: Literal["udp", "tcp"]
    software: str | None = None  # the server's SOFTWARE (RFC 8489 14.14)
    other_address: Address | None = None  # OTHER-ADDRESS: the server's alternate IP and port (RFC 5780 7.4)
    response_origin: Address | None = None  # RESPONSE-ORIGIN: where the server says it answered from (7.3)


def _norm(address: Address) -> Address:
    host, port = address
    try:
        return str(ipaddress.ip_address(host.partition("%")[0])), int(port)
    except ValueError:
        return host, int(port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _build_request(
    change_ip: bool, change_port: bool, response_port: int | None, padding: int | None, software: str | None
) -> Message:
    attributes: list[tuple[Attr | int, Any]] = []
    if change_ip or change_port:
        attributes.append((Attr.CHANGE_REQUEST, (change_ip, change_port)))
    if response_port is not None:
        attributes.append((Attr.RESPONSE_PORT, response_port))
    if padding:
        attributes.append((Attr.PADDING, bytes(padding)))
    if software:
        attributes.append((Attr.SOFTWARE, software))
    return Message(Method.BINDING, MessageClass.REQUEST, attributes=attributes)


def match_binding_response(data: bytes, transaction_id: bytes) -> Message | None:
    """The response to our transaction, or None for anything to ignore (RFC 8489 6.3.3, 6.3.4, 7.3)."""
    try:
        msg = Message.decode(data)
    except StunDecodeError:
        return None
    if msg.transaction_id != transaction_id or msg.method is not Method.BINDING:
        return None
    if msg.message_class not in (MessageClass.SUCCESS, MessageClass.ERROR):
        return None
    if Attr.FINGERPRINT in msg and not msg.verify_fingerprint():
        return None
    if msg.unknown_required:
        return None  # RFC 8489 6.3.3/6.3.4: discard a response with unknown comprehension-required attributes
    if msg.message_class is MessageClass.SUCCESS and msg.get(Attr.XOR_MAPPED_ADDRESS) is None:
        if msg.get(Attr.MAPPED_ADDRESS) is None:
            return None  # a success without an address is no answer to a Binding request
    return msg


def binding_result(
    msg: Message,
    server: Address,
    source: Address,
    local: Address,
    rtt: float,
    attempts: int,
    transport: Literal["udp", "tcp"],
) -> BindingResult:
    """The result of a matched Binding response: its mapped address, or StunErrorResponse for an error."""
    where = format_host_port(server)
    if msg.message_class is MessageClass.ERROR:
        code, reason = msg.get(Attr.ERROR_CODE) or (0, "no ERROR-CODE")
        unknown = msg.get(Attr.UNKNOWN_ATTRIBUTES)
        detail = f" (unknown attributes: {', '.join(f'{t:#06x}' for t in unknown)})" if unknown else ""
        raise StunErrorResponse(
            f"STUN server {where} answered the Binding request with error {code} {reason}{detail}",
            code,
            reason,
            unknown,
        )
    mapped = msg.get(Attr.XOR_MAPPED_ADDRESS) or msg.get(Attr.MAPPED_ADDRESS)
    assert mapped is not None  # match_binding_response checked
    return BindingResult(
        mapped=mapped,
        rtt=rtt,
        local=local,
        server=server,
        source=source,
        attempts=attempts,
        transport=transport,
        software=msg.get(Attr.SOFTWARE),
        other_address=msg.get(Attr.OTHER_ADDRESS),
        response_origin=msg.get(Attr.RESPONSE_ORIGIN),
    )


def _timeout(server: Address, attempts: int, elapsed: float, transport: str) -> StunTimeout:
    noun = "attempt" if attempts == 1 else "attempts"
    over = f" over {transport.upper()}" if transport != "udp" else ""
    return StunTimeout(
        f"no STUN response from {format_host_port(server)}{over} after {attempts} {noun} over {elapsed:.3g} s"
    )


async def stun_binding(
    network_or_socket: Network | UdpSocket,
    server: Address,
    *,
    rto: float = 0.5,
    rc: int = 7,
    rm: int = 16,
    timeout: float | None = None,  # noqa: ASYNC109 (ends the schedule early with a StunTimeout, not a cancel)
    change_ip: bool = False,
    change_port: bool = False,
    response_port: int | None = None,
    padding: int | None = None,
    software: str | None = None,
    local_address: str | None = None,
    transport: Literal["udp", "tcp"] = "udp",
) -> BindingResult:
    """Send one Binding request to `server` and return what the response says (RFC 8489 6.2, 7.2).

    Over UDP the request is retransmitted after `rto`, 3*`rto`, 7*`rto`... (`rc` transmissions in all)
    and the transaction fails `rm`*`rto` after the last one (RFC 8489 6.2.1: 39.5 s by default); over TCP
    it is sent once and fails after 39.5 s (6.2.2). `timeout` caps either. Raises `StunTimeout` when no
    response came, `StunErrorResponse` for an error response. With a `Network` a socket is opened on
    `local_address` (default: the wildcard of the server's family) for this request only; with a
    `UdpSocket` that socket is used and its other traffic is discarded meanwhile. Responses with another
    transaction id, or from another address than `server` (unless CHANGE-REQUEST asked for that), are
    ignored (RFC 8489 6.3). `change_ip`/`change_port` (CHANGE-REQUEST), `response_port` (RESPONSE-PORT)
    and `padding` (PADDING bytes) are the RFC 5780 7.2, 7.5, 7.6 requests; with RESPONSE-PORT the answer
    goes to that port, so this call sees it only when that is its own socket's port.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0, not {timeout}")
    cap = math.inf if timeout is None else timeout
    if transport not in ("udp", "tcp"):
        raise ValueError(f"transport must be 'udp' or 'tcp', not {transport!r}")
    host, port = server
    if not _is_ip(host):
        if isinstance(network_or_socket, UdpSocket):
            raise ValueError(f"{host!r} is not an IP address; resolve it first (or pass a Network)")
        resolved = await network_or_socket.resolve(host, port)
        if not resolved:
            raise OSError(f"cannot resolve STUN server name {host!r}")
        server = resolved[0]
    server = _norm(server)
    request = _build_request(change_ip, change_port, response_port, padding, software)
    data = request.encode(fingerprint=True)
    if transport == "tcp":
        if isinstance(network_or_socket, UdpSocket):
            raise ValueError("STUN over TCP needs a Network to connect with, not a UdpSocket")
        return await _binding_tcp(network_or_socket, server, request, data, cap, local_address)
    if isinstance(network_or_socket, UdpSocket):
        return await _binding_udp(network_or_socket, server, request, data, rto, rc, rm, cap, change_ip or change_port)
    wildcard = "::" if ":" in server[0] else "0.0.0.0"
    sock = await network_or_socket.bind_udp(local_address or wildcard, 0)
    try:
        return await _binding_udp(sock, server, request, data, rto, rc, rm, cap, change_ip or change_port)
    finally:
        sock.close()


async def _binding_udp(
    sock: UdpSocket,
    server: Address,
    request: Message,
    data: bytes,
    rto: float,
    rc: int,
    rm: int,
    cap: float,
    any_source: bool,
) -> BindingResult:
    """Run the transaction on a UDP socket (RFC 8489 6.2.1), ignoring what is not our response."""
    start = trio.current_time()
    tx = Transaction(data, request.transaction_id, start, rto=rto, rc=rc, rm=rm)
    hard_deadline = start + cap
    last_sent = start
    await sock.send(data, server)
    while True:
        timer = tx.get_timer()
        deadline = min(hard_deadline, timer if timer is not None else math.inf)
        with trio.move_on_at(deadline):
            while True:
                payload, source = await sock.receive()
                source = _norm(source)
                if not any_source and source != server:
                    continue  # RFC 8489 6.3: a response must come from where the request went
                msg = match_binding_response(payload, request.transaction_id)
                if msg is None:
                    continue
                now = trio.current_time()
                tx.handle_response(now)
                return binding_result(msg, server, source, sock.local_address, now - last_sent, tx.transmissions, "udp")
        now = trio.current_time()
        if now >= hard_deadline:
            raise _timeout(server, tx.transmissions, now - start, "udp")
        again = tx.handle_timer(now)
        if again is not None:
            last_sent = now
            await sock.send(again, server)
        elif tx.timed_out:
            raise _timeout(server, tx.transmissions, now - start, "udp")


async def _binding_tcp(
    network: Network,
    server: Address,
    request: Message,
    data: bytes,
    cap: float,
    local_address: str | None,
) -> BindingResult:
    """Run the transaction on a new TCP connection: one transmission, 39.5 s to answer (RFC 8489 6.2.2)."""
    start = trio.current_time()
    tx = Transaction(data, request.transaction_id, start, reliable=True)
    deadline = min(tx.timeout_at, start + cap)
    with trio.move_on_at(deadline):
        try:
            stream, local = await network.connect_tcp(server, local=(local_address, 0) if local_address else None)
        except OSError as e:
            reason = os.strerror(e.errno) if e.errno else str(e)
            where = format_host_port(server)
            raise OSError(e.errno, f"cannot connect to STUN server {where} over TCP: {reason}") from e
        async with stream:
            try:
                await stream.send_all(data)
                buffer = bytearray()
                while True:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        raise trio.BrokenResourceError("connection closed")
                    buffer += chunk
                    while len(buffer) >= _HEADER_SIZE:
                        if buffer[0] & 0xC0 or buffer[4:8] != COOKIE_BYTES:
                            raise trio.BrokenResourceError("the server sent something that is not STUN")
                        size = _HEADER_SIZE + int.from_bytes(buffer[2:4], "big")
                        if len(buffer) < size:
                            break
                        message = bytes(buffer[:size])
                        del buffer[:size]
                        msg = match_binding_response(message, request.transaction_id)
                        if msg is not None:
                            now = trio.current_time()
                            return binding_result(msg, server, server, _norm(local), now - start, 1, "tcp")
            except trio.BrokenResourceError as e:
                raise OSError(
                    f"STUN server {format_host_port(server)} closed the TCP connection without answering: {e}"
                ) from e
    raise _timeout(server, 1, trio.current_time() - start, "tcp")
