"""Write the seed corpus, `tests/corpus/TARGET/seed-*`: small real inputs of every format.

    python -m fuzz.seeds        # rewrites the seed-* files (regression-* and pending-* are left alone)

STUN: the RFC 5769 vectors, ICE checks and TURN exchanges as iceagent and aioice build them. Candidates:
lines as Chrome, Firefox, Safari, pion and aioice write them. mDNS: aioice's query and answer and ours.
Blobs, URIs, framed streams, and TURN server programs (see fuzz/turn_server.py for how they read).
"""

from __future__ import annotations

import base64
import json
import sys
import zlib
from pathlib import Path

from iceagent.cli.signal_blob import SignalBlob
from iceagent.ice.candidate import Candidate, IceParameters
from iceagent.ice.tcp_framing import encode_frame
from iceagent.mdns import wire
from iceagent.stun import Attr, Message, MessageClass, Method, PasswordAlgorithm, long_term_key, userhash
from iceagent.turn.framing import encode_channel_data

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"
TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")


def _unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# RFC 5769 2.1-2.4 and RFC 8489 B.1 (errata 6268), byte for byte.
RFC5769 = {
    "rfc5769-request": """
        0001 0058 2112a442 b7e7a701bc34d686fa87dfae 8022 0010 5354554e207465737420636c69656e74
        0024 0004 6e0001ff 8029 0008 932ff9b151263b36 0006 0009 6576746a3a68367659202020
        0008 0014 9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2 8028 0004 e57a3bcf""",
    "rfc5769-ipv4-response": """
        0101 003c 2112a442 b7e7a701bc34d686fa87dfae 8022 000b 7465737420766563746f7220
        0020 0008 0001a147e112a643 0008 0014 2b91f599fd9e90c38c7489f92af9ba53f06be7d7 8028 0004 c07d4c96""",
    "rfc5769-ipv6-response": """
        0101 0048 2112a442 b7e7a701bc34d686fa87dfae 8022 000b 7465737420766563746f7220
        0020 0014 0002a1470113a9faa5d3f179bc25f4b5bed2b9d9
        0008 0014 a382954e4be67bf11784c97c8292c275bfe3ed41 8028 0004 c8fb0b4c""",
    "rfc5769-long-term": """
        0001 0060 2112a442 78ad3433c6ad72c029da412e 0006 0012 e3839ee38388e383aae38383e382afe382b90000
        0015 001c 662f2f3439396b39353464364f4c33346f4c3946535476793634 7341
        0014 000b 6578616d706c652e6f726700 0008 0014 f67024656dd64a3e02b8e0712e85c9a28ca89666""",
    "rfc8489-sha256": """
        0001 0088 2112a442 78ad3433c6ad72c029da412e
        001e 0020 4a3cf38fef6992bda952c6780417da0f248194155 69e60b205c46e41407f1704
        0015 0029 6f624d61744a6f733241414143662f2f3439396b3935346436 4f4c33346f4c394653547679363473 41000000
        0014 000b 6578616d706c652e6f726700
        001c 0020 fd8c273860d2e18ebca4c89b6973befa7ee8ecc69e9642db326fab65a0b955ba""",
}


def stun_seeds() -> dict[str, bytes]:
    seeds = {name: _unhex(text) for name, text in RFC5769.items()}
    key = long_term_key("alice", "example.org", "secret")
    check = Message(
        Method.BINDING,
        MessageClass.REQUEST,
        TID,
        [(Attr.USERNAME, "rfrag:lfrag"), (Attr.PRIORITY, 1853824767), (Attr.ICE_CONTROLLING, 0x1234567890ABCDEF),
         (Attr.USE_CANDIDATE, None)],
    )
    seeds["ice-check"] = check.encode(integrity_key="a" * 22, fingerprint=True)
    seeds["ice-check-response-v6"] = check.success_response(
        [(Attr.XOR_MAPPED_ADDRESS, ("2001:db8::7", 50000))]
    ).encode(integrity_key="a" * 22, fingerprint=True)
    seeds["ice-role-conflict"] = check.error_response(487).encode(integrity_key="a" * 22, fingerprint=True)
    allocate = Message(Method.ALLOCATE, MessageClass.REQUEST, TID, [(Attr.REQUESTED_TRANSPORT, 17)])
    seeds["turn-allocate-bare"] = allocate.encode()
    seeds["turn-401"] = allocate.error_response(
        401,
        attributes=[(Attr.REALM, "example.org"), (Attr.NONCE, "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"),
                    (Attr.PASSWORD_ALGORITHMS, [(2, b""), (1, b"")])],
    ).encode(fingerprint=True)
    seeds["turn-allocate-sha256"] = Message(
        Method.ALLOCATE,
        MessageClass.REQUEST,
        TID,
        [(Attr.REQUESTED_TRANSPORT, 17), (Attr.REQUESTED_ADDRESS_FAMILY, 2), (Attr.LIFETIME, 600),
         (Attr.USERHASH, userhash("alice", "example.org")), (Attr.REALM, "example.org"), (Attr.NONCE, "n0nce"),
         (Attr.PASSWORD_ALGORITHMS, [(2, b""), (1, b"")]), (Attr.PASSWORD_ALGORITHM, (PasswordAlgorithm.SHA256, b""))],
    ).encode(integrity_key=key, integrity="both", fingerprint=True)
    seeds["turn-allocate-success"] = allocate.success_response(
        [(Attr.XOR_RELAYED_ADDRESS, ("198.51.100.1", 50000)), (Attr.LIFETIME, 600),
         (Attr.XOR_MAPPED_ADDRESS, ("192.0.2.10", 40000)), (Attr.SOFTWARE, "iceagent")]
    ).encode(integrity_key=key)
    seeds["turn-channel-bind"] = Message(
        Method.CHANNEL_BIND,
        MessageClass.REQUEST,
        TID,
        [(Attr.CHANNEL_NUMBER, 0x4001), (Attr.XOR_PEER_ADDRESS, ("203.0.113.5", 6000)), (Attr.USERNAME, "alice")],
    ).encode(integrity_key=key)
    seeds["turn-data-indication"] = Message(
        Method.DATA,
        MessageClass.INDICATION,
        TID,
        [(Attr.XOR_PEER_ADDRESS, ("203.0.113.5", 6000)), (Attr.DATA, b"hello"), (Attr.DONT_FRAGMENT, None)],
    ).encode()
    seeds["rfc5780-binding"] = Message(
        Method.BINDING,
        MessageClass.REQUEST,
        TID,
        [(Attr.CHANGE_REQUEST, (True, True)), (Attr.RESPONSE_PORT, 40000), (Attr.PADDING, b"\x00" * 12)],
    ).encode()
    seeds["rfc5780-response"] = Message(
        Method.BINDING,
        MessageClass.SUCCESS,
        TID,
        [(Attr.MAPPED_ADDRESS, ("192.0.2.1", 1)), (Attr.OTHER_ADDRESS, ("192.0.2.2", 3479)),
         (Attr.RESPONSE_ORIGIN, ("192.0.2.1", 3478)), (Attr.ALTERNATE_SERVER, ("::1", 3478)),
         (Attr.ALTERNATE_DOMAIN, "stun.example.org")],
    ).encode()
    seeds["stun-420"] = check.error_response(420, attributes=[(Attr.UNKNOWN_ATTRIBUTES, [0x7FFF, 0x0030])]).encode()
    try:  # another implementation's bytes
        from aioice import stun as aioice_stun

        request = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.REQUEST, transaction_id=TID)
        request.attributes["USERNAME"] = "abcd:efgh"
        request.attributes["PRIORITY"] = 1853824767
        request.attributes["ICE-CONTROLLED"] = 5
        request.add_message_integrity(b"p" * 22)
        request.add_fingerprint()
        seeds["aioice-check"] = bytes(request)
    except ImportError:
        pass
    return seeds


def stream_seeds(pad: bool) -> dict[str, bytes]:
    """Streams as a TURN client sends them over TCP: STUN messages and (padded) ChannelData back to back."""
    stun = stun_seeds()
    data = encode_channel_data(0x4001, b"hello", pad=pad) + encode_channel_data(0x4FFF, b"", pad=pad)
    return {
        "allocate-then-data": b"\x07" + stun["turn-allocate-sha256"] + data + stun["turn-channel-bind"],
        "one-byte-reads": b"\x00" + data + stun["ice-check"],
        "tls-client-hello": b"\x10" + bytes.fromhex("16030100c4010000c00303") + bytes(32),
        "channel-data-odd": b"\x02" + encode_channel_data(0x4000, b"abc", pad=pad) + b"\x80garbage",
    }


def rfc4571_seeds() -> dict[str, bytes]:
    stun = stun_seeds()
    checks = encode_frame(stun["ice-check"]) + encode_frame(stun["ice-check-response-v6"]) + encode_frame(b"app data")
    return {
        "checks": b"\x05\x80" + checks,
        "small-limit": b"\x00\x10" + checks,
        "empty-frames": b"\x01\x80" + encode_frame(b"") * 3,
        "truncated": b"\x03\x80" + checks[:-3],
    }


CANDIDATE_LINES = {
    "chrome-host": "candidate:1467250027 1 udp 2122260223 192.168.1.5 54400 typ host generation 0 ufrag EsAw "
    "network-id 1 network-cost 10",
    "chrome-mdns": "candidate:2157334355 1 udp 2113937151 3f2a8c3e-6d7b-4e0f-9b4a-2d9e8f1c7a55.local 54400 typ host "
    "generation 0 ufrag EsAw network-cost 999",
    "chrome-srflx": "candidate:842163049 1 udp 1677729535 203.0.113.7 61665 typ srflx raddr 0.0.0.0 rport 0 "
    "generation 0 ufrag EsAw network-cost 999",
    "chrome-tcp": "candidate:1853887674 1 tcp 1518280447 192.168.1.5 9 typ host tcptype active generation 0 "
    "ufrag EsAw network-id 1",
    "chrome-relay-v6": "candidate:3 1 udp 41885695 2001:db8::20 61234 typ relay raddr 2001:db8::5 rport 61000 "
    "generation 0 ufrag EsAw",
    "firefox-host": "candidate:0 1 UDP 2122252543 192.168.1.5 53105 typ host",
    "firefox-srflx": "candidate:1 1 UDP 1686052863 203.0.113.7 53105 typ srflx raddr 192.168.1.5 rport 53105",
    "firefox-tcp": "candidate:2 1 TCP 2105524479 192.168.1.5 9 typ host tcptype active",
    "firefox-relay": "candidate:3 1 UDP 92217087 198.51.100.20 61234 typ relay raddr 198.51.100.20 rport 61234",
    "safari-sdp-line": "a=candidate:3345412921 1 udp 2113937151 ab8e6a2c-1234-4c55-9a77-0123456789ab.local 62000 "
    "typ host generation 0 network-cost 999\r\n",
    "pion-host": "candidate:1966762133 1 udp 2130706431 10.0.0.2 49152 typ host",
    "pion-relay": "candidate:233762139 1 udp 16777215 198.51.100.3 50000 typ relay raddr 0.0.0.0 rport 0",
    "pion-prflx": "candidate:4021839524 1 udp 1862270975 203.0.113.9 41000 typ prflx raddr 0.0.0.0 rport 0",
    "aioice-host": "candidate:a6f5ff0c0bbb5cc2f36ddf24d8d83b22 1 udp 2130706431 192.168.1.5 45000 typ host",
    "aioice-srflx": "candidate:0e35d7fd1aeeb05bc3a1a73a1b9a1b3e 1 udp 1694498815 203.0.113.7 45000 typ srflx "
    "raddr 192.168.1.5 rport 45000",
    "iceagent-so": "candidate:7 2 tcp 1015023871 192.0.2.1 40000 typ srflx tcptype so raddr 10.0.0.1 rport 40000",
    "no-prefix-reordered": "1 1 udp 1 ::1 9 typ host generation 2 raddr ::1 rport 1 x-ext value",
}


def blob_seeds() -> dict[str, bytes]:
    params = IceParameters("abcd", "p" * 22, pacing=20)
    candidates = tuple(Candidate.from_sdp(CANDIDATE_LINES[k]) for k in ("chrome-host", "firefox-srflx", "chrome-tcp"))
    offer = SignalBlob("offer", params, candidates, created=1_700_000_000.0).encode()
    answer = SignalBlob("answer", IceParameters("wxyz", "q" * 24), (), False, 1_700_000_100.0, "abcd").encode()
    doc = {"r": "offer", "u": "abcd", "p": "p" * 22, "c": [CANDIDATE_LINES["pion-host"][10:]], "e": True,
           "t": 1700000000, "pc": 50}
    return {
        "offer-text": b"\x00" + offer.encode(),
        "answer-wrapped": b"\x00" + "\n".join(answer[i : i + 20] for i in range(0, len(answer), 20)).encode(),
        "offer-json": b"\x01" + json.dumps(doc).encode(),
        "answer-json": b"\x01" + zlib.decompress(base64.urlsafe_b64decode(answer[5:] + "=" * (-len(answer[5:]) % 4))),
    }


URIS = {
    "stun": "stun:stun.l.google.com:19302",
    "stun-v4": "stun:127.0.0.1",
    "stuns-v6": "stuns:[2001:db8::1]:5349",
    "turn-udp": "turn:turn.example.org:3478?transport=udp",
    "turn-tcp": "TURN:198.51.100.1?transport=tcp",
    "turns": "turns:turn.example.org:443?transport=tcp",
    "host-port": "127.0.0.1:3478",
    "host-port-v6": "[::1]:3478",
    "bare-v6": "fe80::1",
}


def mdns_seeds() -> dict[str, bytes]:
    name = "0b5e4e2c-6f0e-4d7d-9d69-8a2f6f9d3a11.local"
    return {
        "aioice-query": _unhex(
            "000000000001000000000000 2430623565346532632d366630652d346437642d396436392d386132663666396433613131"
            "056c6f63616c00 00010001"
        ),
        "aioice-answer": _unhex(
            "000084000000000100000000 2430623565346532632d366630652d346437642d396436392d386132663666396433613131"
            "056c6f63616c00 000180010000007800040a090002"
        ),
        "rich-answer": _unhex(
            "0000 8400 0000 0003 0000 0003 056f74686572 056c6f63616c 00 0010 8001 00000078 0001 00"
            "08486f73742d414243 c012 0001 8001 00000078 0004 c0a80107"
            "c024 001c 8001 00000078 0010 fd000000000000000000000000000007"
            "c024 002f 8001 00000078 0008 c024 0004 40000008"
            "07756e61736b6564 c012 0001 8001 00000078 0004 0a000009"
            "045f696365045f756470 c012 000c 0001 00001194 0002 c024"
        ),
        "qu-query-both": wire.build_query([name], [wire.QTYPE_A, wire.QTYPE_AAAA], unicast=True),
        "response": wire.build_response([(name, "192.168.1.5"), (name, "fd00::5")]),
        "legacy-response": wire.build_response(
            [(name, "10.0.0.1")], legacy=(0x1234, [wire.Question(name, wire.QTYPE_A)])
        ),
        "goodbye": wire.build_goodbye([(name, "10.0.0.1")]),
    }


# TURN server programs (fuzz/turn_server.py): op, client, then the op's arguments, byte by byte.
_ALLOCATE = [0, 0, 0, 0, 0]  # op 0, UDP client, no extras, alice/SHA-1, relay bound
_PERMIT = [2, 0, 0, 0, 0, 0]  # CreatePermission: 1 peer (203.0.113.5), no extras, alice
_BIND = [3, 0, 0, 1, 0, 0, 0]  # ChannelBind 0x4001 to 203.0.113.5
_SEND = [5, 0, 0, 5, *b"hello", 0, 0]  # Send indication to 203.0.113.5
_CHANNEL = [6, 0, 0, 1, 3, *b"abc", 0]  # ChannelData on 0x4001
_FROM_PEER = [10, 0, 0, 0, 4, *b"data", 0]  # a datagram from 203.0.113.5 at the relay
_REFRESH_0 = [1, 0, 1, 0, 0, 0]  # Refresh LIFETIME 0
_LATER = [9, 0, 4]  # 301 s pass


def _on(client: int, *steps: list[int]) -> bytes:
    return bytes(b for step in steps for b in [step[0], client, *step[2:]])


TURN_PROGRAMS = {
    "udp-flow": _on(0, _ALLOCATE, _PERMIT, _BIND, _SEND, _CHANNEL, _FROM_PEER, _LATER, _FROM_PEER, _REFRESH_0),
    "tcp-flow": _on(1, _ALLOCATE, _PERMIT, _BIND, _SEND, _CHANNEL, _FROM_PEER, [13, 0], [11, 0]),
    "ipv6-sha256-userhash": bytes([0, 2, 1, 1, 1, 0x3A, 0, 0])
    + _on(2, [2, 0, 0, 2, 0, 0x3A, 0], [3, 0, 0, 2, 2, 0, 0x3A, 0]),
    "quota-and-stale-nonce": _on(0, _ALLOCATE, _ALLOCATE)
    + bytes([0, 1, 0, 1, 0, 0, 2, 0, 0, 0, 1, 0])
    + _on(0, [9, 0, 6], _PERMIT, [12, 0], _PERMIT, [9, 0, 7], [4, 0, 0, 0]),
    "corrupt-and-raw": _on(0, _ALLOCATE, [8, 0, 2, 0, 0, 0, 7, 0x41], [7, 0, 8, *b"\x00\x01\x00\x00\x21\x12\xa4\x42"]),
}


# Mux routing programs (fuzz/mux_routes.py): op, then its choices byte by byte.
def _check(ufrag: int, cls: int = 0, tid: int = 0, local: int = 0, source: int = 0) -> list[int]:
    """op 0: a Binding message with USERNAME _UFRAGS[ufrag]:peer, signed and fingerprinted."""
    return [0, 0, 1, ufrag, 0, 0, cls, tid, 1, 1, 0, local, source]


_REGISTER_A = [4, 0, 6, 0, 0, 1]  # agent "a", ufrag "ufA"
_REGISTER_B = [4, 1, 6, 1, 1, 1]  # agent "b", ufrag "ufB"
MUX_PROGRAMS = {
    "two-agents-checks": bytes([*_REGISTER_A, *_REGISTER_B, *_check(0), *_check(1, source=1), *_check(2)]),
    "responses-by-id": bytes([*_REGISTER_A, 7, 0, 3, 3, 0, 0, 3, 1, 0, 1, 3, 0, 0, 3, 1, 0, 1, 10, 2, 3, 0, 0, 3,
                              0, 0, 2]),
    "confirm-then-data": bytes([*_REGISTER_A, *_REGISTER_B, 8, 0, 0, 0, 2, 4, *b"data", 0, 0, 8, 1, 0, 0, 2, 4,
                                *b"more", 0, 0, 5, 1, 2, 4, *b"gone", 0, 0]),
    "own-transactions": bytes([9, 1, 5, 3, 0, 0, 5, 0, 0, 1, 3, 1, 1, 5, 1, 0, 2, 9, 1, 6, 9, 1, 7, 9, 0, 5,
                               3, 0, 0, 5, 0, 0, 0]),
    "burst-many-sources": bytes([*_REGISTER_A, 11, 6, 1, 8, *b"\x00\x01\x00\x00!\x12\xa4B", 0, 1,
                                 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 2, 0, 2, 7, 1, 3, *b"abc", 1, 3,
                                 1, 0, *b"", 2, 4, 0, 0, 1, 5, 0, 0, 0, 2, 0, 1, 1, 0, 0, 0, 0, 6, 1, 0, 2, 5]),
}

# Mux routing loop inputs (fuzz/mux_loop.py): each step is time, local (< 16: unknown), source, then the datagram:
# raw (1, length, bytes) or STUN (0, type, tid from the table?, USERNAME first?, its name, honest length?, ...).
_TO_A = [0, 32, 1, 0, 0, 1, 1, 0, 1, 0, 1, 1]  # a check with USERNAME ufA:p first
_TO_B = [0, 32, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1]  # ufB (no colon)
_ANSWER_B = [0, 32, 1, 0, 1, 1, 0, 0, 1, 1]  # a success response with b's transaction id
MUX_LOOP_INPUTS = {
    "checks-and-answer": bytes([*_TO_A, *_TO_B, *_ANSWER_B, *_ANSWER_B]),
    "data-from-confirmed-and-not": bytes([0, 32, 0, 1, 4, *b"data", 0, 32, 1, 1, 4, *b"more"]),
    "username-past-the-end": bytes([0, 32, 1, 0, 0, 1, 1, 0, 0, 1, 44, 0, 1, 1, *_TO_A]),
    "unknown-local-and-bad-cookie": bytes([0, 0, 1, 1, 3, *b"abc", 0, 32, 2, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0]),
}


def write(target: str, seeds: dict[str, bytes]) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("seed-*"):
        old.unlink()
    for name, data in seeds.items():
        (folder / f"seed-{name}").write_bytes(data)


def main() -> int:
    stun = stun_seeds()
    write("stun", stun)
    write("turn_framing", stream_seeds(pad=True))
    write("turn_split_stream", stream_seeds(pad=True))
    write("rfc4571", rfc4571_seeds())
    write("candidate", {name: line.encode() for name, line in CANDIDATE_LINES.items()})
    write("mdns", mdns_seeds())
    write("signal_blob", blob_seeds())
    write("uri", {name: text.encode() for name, text in URIS.items()})
    write("turn_server", TURN_PROGRAMS)
    write("mux_routes", MUX_PROGRAMS)
    write("mux_loop", MUX_LOOP_INPUTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
