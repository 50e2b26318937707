"""Sans-IO port mapping: PCP MAP (RFC 6887), NAT-PMP (RFC 6886), UPnP-IGD documents, retransmission
schedules, the /proc routing tables, and the exchange's acceptance rules (RFC 6887 8.3, RFC 6886 3.1)."""

from __future__ import annotations

import struct

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from iceagent.net._routes import default_gateway_v4, default_gateway_v6
from iceagent.net.base import Address
from iceagent.portmap import natpmp, pcp, upnp
from iceagent.portmap.client import MAX_IGNORED, Drops, _exchange
from iceagent.portmap.errors import PortMapDecodeError, PortMapError, PortMapRefused, PortMapTimeout, UnsupportedVersion
from iceagent.portmap.schedule import Retransmit, natpmp_schedule, pcp_schedule

NONCE = bytes(range(12))


def _pcp_response(result: int = 0, lifetime: int = 600, port: int = 5000, external: int = 40000,
                  nonce: bytes = NONCE, ip: str = "11.0.0.1", extra: bytes = b"") -> bytes:  # fmt: skip
    header = struct.pack("!BBBBII", 2, 0x81, 0, result, lifetime, 77) + bytes(12)
    packed = bytes(10) + b"\xff\xff" + bytes(int(x) for x in ip.split("."))
    return header + nonce + struct.pack("!B3xHH", 17, port, external) + packed + extra


# --- PCP ----------------------------------------------------------------------------------------------------


def test_pcp_map_request_layout() -> None:
    """RFC 6887 7.1 + 11.1: version 2, opcode MAP, lifetime, client IP IPv4-mapped; nonce, protocol 17,
    internal port, suggested port, all-zeros suggested IPv4 address."""
    data = pcp.encode_map_request(NONCE, "10.0.1.2", 5000, 7200, suggested_port=5000)
    assert len(data) == 60
    assert data[:4] == bytes((2, 1, 0, 0))
    assert struct.unpack_from("!I", data, 4)[0] == 7200
    assert data[8:24] == bytes(10) + b"\xff\xff" + bytes((10, 0, 1, 2))
    assert data[24:36] == NONCE
    assert struct.unpack_from("!B3xHH", data, 36) == (17, 5000, 5000)
    assert data[44:60] == bytes(10) + b"\xff\xff" + bytes(4)
    with pytest.raises(ValueError):
        pcp.encode_map_request(b"short", "10.0.1.2", 5000, 1)


def test_pcp_map_response_decodes() -> None:
    mapping = pcp.decode_map_response(_pcp_response(), NONCE, 5000)
    assert mapping == pcp.PcpMapping("11.0.0.1", 40000, 600, 77)
    # options after the MAP body are walked (7.3) and ignored: a THIRD_PARTY-shaped option of 16 bytes
    option = struct.pack("!BBH", 1, 0, 16) + bytes(16)
    assert pcp.decode_map_response(_pcp_response(extra=option), NONCE, 5000).external_port == 40000


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (_pcp_response(nonce=bytes(12)), "another mapping nonce"),
        (_pcp_response(port=5001), "port 5001, not 17 5000"),
        (_pcp_response()[:-4], "5000"),  # a success too short for its MAP body... (56 bytes)
        (_pcp_response() + b"\x00", "multiple of 4"),
        (_pcp_response() + bytes(1100), "24 to 1100"),
        (bytes((2, 0x01)) + _pcp_response()[2:], "not a MAP response"),  # R bit clear: a request
        (bytes((2, 0x82)) + _pcp_response()[2:], "not a MAP response"),  # PEER
        (_pcp_response(external=0), "no external port"),
        (_pcp_response(extra=struct.pack("!BBH", 1, 0, 64)), "runs past the end"),
    ],
)
def test_pcp_rejects_what_does_not_answer_the_request(data: bytes, needle: str) -> None:
    """RFC 6887 8.3 / 11.3: dropped, not trusted (the caller keeps waiting)."""
    with pytest.raises(PortMapDecodeError, match=needle if needle != "5000" else None):
        pcp.decode_map_response(data, NONCE, 5000)


def test_pcp_result_codes_are_refusals_with_their_names() -> None:
    with pytest.raises(PortMapRefused) as info:
        pcp.decode_map_response(_pcp_response(result=2, lifetime=30), NONCE, 5000)
    assert (info.value.code, info.value.name) == (2, "NOT_AUTHORIZED")
    assert "NOT_AUTHORIZED (2)" in str(info.value)
    with pytest.raises(PortMapRefused, match="NO_RESOURCES"):
        pcp.decode_map_response(_pcp_response(result=8), NONCE, 5000)


def test_version_negotiation() -> None:
    """A NAT-PMP server's answer to a PCP request (RFC 6886 9) and a PCP server of another version (RFC 6887
    9) are UnsupportedVersion naming the version; the client falls back to NAT-PMP on 0."""
    natpmp_answer = struct.pack("!BBHI", 0, 129, 1, 5)
    with pytest.raises(UnsupportedVersion) as info:
        pcp.decode_map_response(natpmp_answer, NONCE, 5000)
    assert info.value.version == 0
    v1 = bytes((1, 0x81, 0, 1)) + bytes(20)
    with pytest.raises(UnsupportedVersion) as info:
        pcp.decode_map_response(v1, NONCE, 5000)
    assert info.value.version == 1
    assert pcp.is_version_mismatch(struct.pack("!BBHI", 0, 129, 2, 5)) is None  # another NAT-PMP error


def test_pcp_epoch_detects_a_server_that_lost_its_state() -> None:
    """RFC 6887 8.5: the server's epoch must advance with the client's clock (1/16 and 2 s of slack)."""
    tracker = pcp.EpochTracker()
    assert tracker.check(100.0, 1000)
    assert tracker.check(200.0, 1100)
    assert tracker.check(300.0, 1203)  # within 2 s + 1/16
    assert not tracker.check(400.0, 10)  # went backwards: rebooted
    assert tracker.check(500.0, 110)
    assert not tracker.check(600.0, 300)  # ran ahead of the client's clock by far


# --- NAT-PMP ------------------------------------------------------------------------------------------------


def test_natpmp_requests() -> None:
    assert natpmp.encode_address_request() == b"\x00\x00"
    assert natpmp.encode_map_request(5000, 5000, 7200) == struct.pack("!BBHHHI", 0, 1, 0, 5000, 5000, 7200)
    assert natpmp.encode_map_request(5000, 0, 0)[-6:] == bytes(6)  # the delete (3.4)


def test_natpmp_responses() -> None:
    address = struct.pack("!BBHI", 0, 128, 0, 9) + bytes((11, 0, 0, 1))
    assert natpmp.decode_address(address) == natpmp.NatPmpAddress("11.0.0.1", 9)
    mapping = struct.pack("!BBHIHHI", 0, 129, 0, 9, 5000, 40000, 3600)
    assert natpmp.decode_mapping(mapping, 5000) == natpmp.NatPmpMapping(5000, 40000, 3600, 9)
    with pytest.raises(PortMapDecodeError, match="internal port 5000, not 5001"):
        natpmp.decode_mapping(mapping, 5001)
    with pytest.raises(PortMapDecodeError, match="does not answer"):
        natpmp.decode_mapping(address, 5000)
    with pytest.raises(PortMapRefused, match="Out of resources"):
        natpmp.decode_mapping(struct.pack("!BBHIHHI", 0, 129, 4, 9, 5000, 0, 0), 5000)
    with pytest.raises(UnsupportedVersion):
        natpmp.decode_mapping(struct.pack("!BBHI", 0, 129, 1, 9), 5000)
    with pytest.raises(PortMapDecodeError, match="version 2"):
        natpmp.decode_mapping(b"\x02" + mapping[1:], 5000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1200))
def test_hostile_datagrams_raise_only_documented_errors(data: bytes) -> None:
    """Every decoder, on any bytes: a result or a PortMapError (decode error or refusal), nothing else."""
    for decode in (
        lambda: pcp.decode_map_response(data, NONCE, 5000),
        lambda: natpmp.decode_address(data),
        lambda: natpmp.decode_mapping(data, 5000),
        lambda: upnp.parse_location(data, "10.0.1.1"),
        lambda: upnp.decode_http(data),
        lambda: upnp.find_service(data, "10.0.1.1", ("10.0.1.1", 5000)),
    ):
        try:
            decode()
        except PortMapError:
            pass


# --- UPnP-IGD -----------------------------------------------------------------------------------------------

DESCRIPTION = b"""<?xml version="1.0"?><root><device><serviceList>
<service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><controlURL>/ctl/L3F</controlURL></service>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/ctl/IPConn</controlURL></service>
</serviceList></device></root>"""


def test_upnp_msearch_and_location() -> None:
    search = upnp.encode_msearch("10.0.1.1").decode()
    assert search.startswith("M-SEARCH * HTTP/1.1\r\nHOST: 10.0.1.1:1900\r\n")
    assert 'MAN: "ssdp:discover"' in search and "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1" in search
    answer = b"HTTP/1.1 200 OK\r\nST: x\r\nLocation: http://10.0.1.1:5000/rootDesc.xml\r\n\r\n"
    assert upnp.parse_location(answer, "10.0.1.1") == ("10.0.1.1", 5000, "/rootDesc.xml")


@pytest.mark.parametrize(
    "location",
    ["http://10.0.1.99:5000/x.xml", "http://router.example/x.xml", "https://10.0.1.1/x.xml", "file:///etc/passwd"],
)
def test_upnp_follows_no_url_off_the_gateway(location: str) -> None:
    """The answer could come from anyone on the LAN: only an http:// URL on the gateway's IP is followed."""
    answer = f"HTTP/1.1 200 OK\r\nLOCATION: {location}\r\n\r\n".encode()
    with pytest.raises(PortMapDecodeError, match="not http:// on the gateway"):
        upnp.parse_location(answer, "10.0.1.1")


def test_upnp_finds_the_connection_service() -> None:
    service = upnp.find_service(DESCRIPTION, "10.0.1.1", ("10.0.1.1", 5000))
    assert service == upnp.Service("urn:schemas-upnp-org:service:WANIPConnection:1", "10.0.1.1", 5000, "/ctl/IPConn")
    elsewhere = DESCRIPTION.replace(b"/ctl/IPConn", b"http://192.0.2.9/ctl")
    with pytest.raises(PortMapDecodeError):
        upnp.find_service(elsewhere, "10.0.1.1", ("10.0.1.1", 5000))
    with pytest.raises(PortMapDecodeError, match="no WANIPConnection"):
        upnp.find_service(DESCRIPTION.replace(b"WANIPConnection", b"Other"), "10.0.1.1", ("10.0.1.1", 5000))
    with pytest.raises(PortMapDecodeError, match="at most"):
        upnp.find_service(b" " * (upnp.MAX_DOCUMENT + 1), "10.0.1.1", ("10.0.1.1", 5000))


def test_upnp_soap_request_and_answers() -> None:
    service = upnp.Service("urn:schemas-upnp-org:service:WANIPConnection:1", "10.0.1.1", 5000, "/ctl/IPConn")
    request = upnp.encode_soap(service, "AddPortMapping", {"NewPortMappingDescription": "<a&b>", "NewExternalPort": 1})
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /ctl/IPConn HTTP/1.1\r\nHOST: 10.0.1.1:5000\r\n")
    assert b'SOAPACTION: "urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"' in head
    assert f"CONTENT-LENGTH: {len(body)}".encode() in head
    assert b"&lt;a&amp;b&gt;" in body  # arguments are escaped
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n<NewExternalIPAddress>11.0.0.1</NewExternalIPAddress>"
    response = upnp.soap_result(upnp.decode_http(ok), "GetExternalIPAddress")
    assert upnp.soap_field(response.body, "NewExternalIPAddress") == "11.0.0.1"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"
    assert upnp.decode_http(chunked).body == b"Wikipedia"
    fault = b"HTTP/1.1 500 Error\r\n\r\n<errorCode>718</errorCode><errorDescription>Conflict</errorDescription>"
    with pytest.raises(PortMapRefused) as info:
        upnp.soap_result(upnp.decode_http(fault), "AddPortMapping")
    assert info.value.code == upnp.CONFLICT


# --- schedules ----------------------------------------------------------------------------------------------


def test_pcp_schedule_doubles_from_three_seconds_with_jitter() -> None:
    """RFC 6887 8.1.1: RT = (1 + RAND) * IRT, then (1 + RAND) * min(2 * RTprev, MRT), RAND in [-0.1, 0.1]."""
    schedule = pcp_schedule(0.0, random=lambda: 1.0)  # RAND = +0.1 every time
    times = []
    for _ in range(4):
        deadline = schedule.get_timer()
        assert deadline is not None
        assert schedule.handle_timer(deadline)
        times.append(deadline)
    assert times == pytest.approx([3.3, 3.3 + 7.26, 3.3 + 7.26 + 15.972, 3.3 + 7.26 + 15.972 + 35.1384])
    bounded = pcp_schedule(0.0, duration=1.0, random=lambda: 0.5)
    assert bounded.get_timer() == 1.0
    assert not bounded.handle_timer(1.0) and bounded.over


def test_natpmp_schedule_is_nine_tries_from_250_ms() -> None:
    """RFC 6886 3.1: 250 ms, doubling, nine transmissions (the last at 63.75 s), then give up at 64 s."""
    schedule = natpmp_schedule(0.0)
    sends = 1
    while (deadline := schedule.get_timer()) is not None:
        if schedule.handle_timer(deadline):
            sends += 1
    assert sends == 9
    assert schedule.interval == 64.0 and schedule.sent == 9  # the 9th went at 63.75 s
    early = Retransmit(0.0, 1.0, 8.0)
    assert not early.handle_timer(0.5) and not early.over  # not yet


# --- the default gateway from /proc -------------------------------------------------------------------------

ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
garbage line
"""
IPV6_ROUTE = (
    "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth0\n"
    "zz\n"
)


def test_default_gateway_from_proc_tables() -> None:
    """The default route with UP and GATEWAY flags, lowest metric; malformed lines skipped."""
    assert default_gateway_v4(ROUTE) == "192.0.2.1"
    assert default_gateway_v6(IPV6_ROUTE) == "fd00::1"
    assert default_gateway_v4(ROUTE.replace("0003", "0001")) is None
    assert default_gateway_v4("") is None and default_gateway_v6("") is None


# --- the exchange: answers only from the server, bounded work -----------------------------------------------


class _ScriptedSocket:
    """Plays back datagrams, then waits forever; records what was sent."""

    def __init__(self, datagrams: list[tuple[bytes, Address]]) -> None:
        self.datagrams = datagrams
        self.sent: list[tuple[bytes, Address]] = []

    @property
    def local_address(self) -> Address:
        return ("10.0.1.2", 40000)

    async def send(self, data: bytes, remote: Address) -> None:
        self.sent.append((data, remote))
        await trio.lowlevel.checkpoint()

    async def receive(self) -> tuple[bytes, Address]:
        if self.datagrams:
            await trio.lowlevel.checkpoint()
            return self.datagrams.pop(0)
        await trio.sleep_forever()
        raise AssertionError

    def close(self) -> None:
        pass


async def test_answers_only_from_the_gateway_address_and_port(autojump_clock: object) -> None:
    """RFC 6887 8.3, RFC 6886 3.1: a valid answer from another port or address, and a malformed one from the
    server, are dropped (counted); the next valid one from the server is taken."""
    good = _pcp_response()
    server = ("10.0.1.1", 5351)
    sock = _ScriptedSocket([(good, ("10.0.1.1", 5352)), (good, ("10.0.1.9", 5351)), (b"\x02", server), (good, server)])
    drops = Drops()
    mapping = await _exchange(sock, server, b"req", pcp_schedule(trio.current_time()),
                              lambda d: pcp.decode_map_response(d, NONCE, 5000), drops)  # fmt: skip
    assert mapping.external_port == 40000
    assert drops.count == 3 and "24 to 1100" in drops.last
    assert sock.sent == [(b"req", server)]


async def test_a_flood_of_strays_ends_the_exchange(autojump_clock: object) -> None:
    sock = _ScriptedSocket([(b"x", ("10.0.1.9", 5351))] * (MAX_IGNORED + 10))
    with pytest.raises(PortMapError, match="stray or malformed"):
        await _exchange(sock, ("10.0.1.1", 5351), b"req", pcp_schedule(0.0),
                        lambda d: pcp.decode_map_response(d, NONCE, 5000), Drops())  # fmt: skip
    assert len(sock.datagrams) == 10  # it stopped reading


async def test_silence_is_a_timeout_after_the_schedule(autojump_clock: object) -> None:
    sock = _ScriptedSocket([])
    start = trio.current_time()
    with pytest.raises(PortMapTimeout, match="after 9 requests"):
        await _exchange(sock, ("10.0.1.1", 5351), b"req", natpmp_schedule(start),
                        lambda d: natpmp.decode_mapping(d, 5000), Drops())  # fmt: skip
    assert len(sock.sent) == 9
    assert trio.current_time() - start == pytest.approx(64.0)


@pytest.mark.parametrize("size", [b"-6", b"-7", b"-1", b"-0x6"])
def test_chunked_body_with_a_negative_chunk_size_is_refused_not_looped(size: bytes) -> None:
    """A chunk size that int() reads as negative ("-6" moved the parser back to the same line: an endless
    loop in the gateway's HTTP answer, blocking the whole Trio run) is a PortMapDecodeError; work per
    answer stays bounded (the SIGALRM only turns the old endless loop into a failure)."""
    import signal

    def _stuck(signum: int, frame: object) -> None:
        raise TimeoutError("the chunked body parser did not end")

    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\n"
    old = signal.signal(signal.SIGALRM, _stuck)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        with pytest.raises(PortMapDecodeError):
            upnp.decode_http(answer)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
