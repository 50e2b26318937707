"""Benchmark: iceagent's STUN codec against aioice.stun, in the same run (RFC 8489, RFC 8445 7.2.2).

Both sides do the same work on the same messages: ICE connectivity checks (Binding requests with
USERNAME, PRIORITY, ICE-CONTROLLING, USE-CANDIDATE, MESSAGE-INTEGRITY, FINGERPRINT).

- encode: build the request and serialize it with MESSAGE-INTEGRITY (HMAC-SHA1) and FINGERPRINT.
- decode: parse it, check MESSAGE-INTEGRITY with the short-term key, check FINGERPRINT, and read the four
  attributes an agent acts on. (aioice's parse_message checks FINGERPRINT itself and decodes every value;
  check_message_integrity does the HMAC.)

Each case cycles through 64 checks with distinct transaction ids and tie-breakers, so nothing is timed on
one repeated input. The two sides are timed in alternating rounds and the best round of each counts, so a
busy machine favours neither. Numbers are operations per second of the process's CPU time (`--clock wall`
for wall-clock time, which other load on the machine disturbs more).

A second table times iceagent alone on the STUN work of one ICE connectivity check as the sans-IO core does
it (RFC 8445 7.2.2, 7.3): encode the check (`check_request`), decode it, verify FINGERPRINT, read and screen
it (`read_check`, `screen_check`: credentials and MESSAGE-INTEGRITY), encode the success response
(`success_response`), decode it, verify its FINGERPRINT and MESSAGE-INTEGRITY; in nanoseconds of CPU time
per message (best round), and the sum for one check and its answer. A connect exchanges three of each.

Run: `.venv/bin/python bench/stun_codec.py [--seconds 0.05] [--rounds 30] [--clock cpu|wall] [--ice-only]`.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from collections.abc import Callable

from aioice import stun as aioice_stun

from iceagent.ice.candidate import IceParameters
from iceagent.ice.checks import check_request, read_check, screen_check, success_response
from iceagent.stun import Attr, Message, MessageClass, Method

USERNAME = "Sb7q:9Xk2"  # remote ufrag ":" local ufrag (RFC 8445 7.2.2)
PASSWORD = b"8h3x5QmB0bqkqJ1aXq2nTz"  # 22 characters, as ICE passwords are
PRIORITY = 1853824767
_rng = random.Random(8489)
CHECKS = [(_rng.randbytes(12), _rng.getrandbits(64)) for _ in range(64)]  # (transaction id, tie-breaker)


def iceagent_encode(tid: bytes, tie_breaker: int) -> bytes:
    return Message(
        Method.BINDING,
        MessageClass.REQUEST,
        tid,
        [
            (Attr.USERNAME, USERNAME),
            (Attr.PRIORITY, PRIORITY),
            (Attr.ICE_CONTROLLING, tie_breaker),
            (Attr.USE_CANDIDATE, None),
        ],
    ).encode(integrity_key=PASSWORD, fingerprint=True)


def aioice_encode(tid: bytes, tie_breaker: int) -> bytes:
    msg = aioice_stun.Message(
        message_method=aioice_stun.Method.BINDING,
        message_class=aioice_stun.Class.REQUEST,
        transaction_id=tid,
        attributes={
            "USERNAME": USERNAME,
            "PRIORITY": PRIORITY,
            "ICE-CONTROLLING": tie_breaker,
            "USE-CANDIDATE": None,
        },
    )
    msg.add_message_integrity(PASSWORD)  # adds FINGERPRINT too
    return bytes(msg)


def iceagent_decode(data: bytes) -> object:
    msg = Message.decode(data)
    if not (msg.verify_integrity(PASSWORD) and msg.verify_fingerprint()):
        raise AssertionError("iceagent: verification failed")
    return (
        msg.get(Attr.USERNAME),
        msg.get(Attr.PRIORITY),
        msg.get(Attr.ICE_CONTROLLING),
        Attr.USE_CANDIDATE in msg,
    )


def aioice_decode(data: bytes) -> object:
    msg = aioice_stun.parse_message(data)  # raises if FINGERPRINT is wrong
    if not msg.check_message_integrity(PASSWORD):
        raise AssertionError("aioice: verification failed")
    a = msg.attributes
    return a.get("USERNAME"), a.get("PRIORITY"), a.get("ICE-CONTROLLING"), "USE-CANDIDATE" in a


LOCAL = IceParameters(ufrag="9Xk2", pwd="8h3x5QmB0bqkqJ1aXq2nTz")  # the checking agent
REMOTE = IceParameters(ufrag="Sb7q", pwd="Zq0b7c2Lk9PpR4tYw1xVn3")  # the answering agent
SOURCE = ("192.0.2.7", 50123)  # where the check came from: the response's XOR-MAPPED-ADDRESS


def ice_cases() -> list[tuple[str, Callable[[int], None]]]:
    """The STUN steps of one check and its success response, each over the 64 CHECKS (module docstring)."""
    rkey, lkey = REMOTE.pwd.encode(), LOCAL.pwd.encode()

    def request(tid: bytes, tie_breaker: int) -> bytes:
        return check_request(
            transaction_id=tid, local=LOCAL, remote=REMOTE, priority=PRIORITY, controlling=True,
            tie_breaker=tie_breaker, use_candidate=True, key=rkey,
        )  # fmt: skip

    requests = [request(*c) for c in CHECKS]
    decoded = [Message.decode(d) for d in requests * 2][64:]  # decoded often enough to take the fast path
    fields = [read_check(m) for m in decoded]
    responses = [success_response(m, SOURCE, REMOTE, rkey) for m in decoded]
    answers = [Message.decode(d) for d in responses * 2][64:]
    assert all(
        screen_check(m, f, REMOTE, m.verify_integrity(rkey)) is None for m, f in zip(decoded, fields, strict=True)
    )
    assert all(a.verify_integrity(rkey) and a.verify_fingerprint() for a in answers)
    assert lkey != rkey

    def loop(step: Callable[[int], object]) -> Callable[[int], None]:
        def run(loops: int) -> None:
            for i in itertools.islice(itertools.cycle(range(64)), loops):
                step(i)

        return run

    return [
        ("check: encode", loop(lambda i: request(*CHECKS[i]))),
        ("check: decode", loop(lambda i: Message.decode(requests[i]))),
        ("check: verify FP", loop(lambda i: decoded[i].verify_fingerprint())),
        ("check: read_check", loop(lambda i: read_check(decoded[i]))),
        ("check: screen (MI)", loop(lambda i: screen_check(decoded[i], fields[i], REMOTE,
                                                            decoded[i].verify_integrity(rkey)))),
        ("response: encode", loop(lambda i: success_response(decoded[i], SOURCE, REMOTE, rkey))),
        ("response: decode", loop(lambda i: Message.decode(responses[i]))),
        ("response: verify FP", loop(lambda i: answers[i].verify_fingerprint())),
        ("response: verify MI", loop(lambda i: answers[i].verify_integrity(rkey))),
    ]


def best_ns(run: Callable[[int], None], seconds: float, rounds: int, clock: Callable[[], float]) -> float:
    """The best of `rounds` timings of `run`, in nanoseconds per loop."""
    loops = calibrate(run, seconds, clock)
    best = float("inf")
    for _ in range(rounds):
        t0 = clock()
        run(loops)
        best = min(best, (clock() - t0) / loops)
    return best * 1e9


def encode_case(encode: Callable[[bytes, int], bytes]) -> Callable[[int], None]:
    def run(loops: int) -> None:
        for tid, tie_breaker in itertools.islice(itertools.cycle(CHECKS), loops):
            encode(tid, tie_breaker)

    return run


def decode_case(decode: Callable[[bytes], object], messages: list[bytes]) -> Callable[[int], None]:
    def run(loops: int) -> None:
        for data in itertools.islice(itertools.cycle(messages), loops):
            decode(data)

    return run


def calibrate(run: Callable[[int], None], seconds: float, clock: Callable[[], float]) -> int:
    """How many loops take about `seconds`."""
    loops = 64
    while True:
        t0 = clock()
        run(loops)
        elapsed = clock() - t0
        if elapsed > seconds / 8:
            return max(64, int(loops * seconds / elapsed))
        loops *= 2


def race(
    mine: Callable[[int], None],
    other: Callable[[int], None],
    seconds: float,
    rounds: int,
    clock: Callable[[], float],
) -> tuple[float, float]:
    """Best ops/s of each side over `rounds` alternating rounds."""
    loops_a, loops_b = calibrate(mine, seconds, clock), calibrate(other, seconds, clock)
    best_a = best_b = 0.0
    for _ in range(rounds):
        t0 = clock()
        mine(loops_a)
        best_a = max(best_a, loops_a / (clock() - t0))
        t0 = clock()
        other(loops_b)
        best_b = max(best_b, loops_b / (clock() - t0))
    return best_a, best_b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="STUN codec: iceagent vs aioice")
    parser.add_argument("--seconds", type=float, default=0.05, help="length of one timed round")
    parser.add_argument("--rounds", type=int, default=30, help="alternating rounds per case; the best counts")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="process CPU time or wall clock")
    parser.add_argument("--ice-only", action="store_true", help="only the ICE check table (iceagent alone)")
    args = parser.parse_args(argv)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if not args.ice_only and not compare(args.seconds, args.rounds, clock, args.clock):
        return 1
    print(f"\nSTUN work of one ICE check and its success response, ns of {args.clock} time per message")
    total = 0.0
    for name, run in ice_cases():
        ns = best_ns(run, args.seconds, args.rounds, clock)
        total += ns
        print(f"{name:<24} {ns:>8,.0f}")
    print(f"{'one check + response':<24} {total:>8,.0f}")
    return 0


def compare(seconds: float, rounds: int, clock: Callable[[], float], clock_name: str) -> bool:
    """The iceagent vs aioice table; False (after saying why) when the two encode or decode differently."""

    ours = [iceagent_encode(*c) for c in CHECKS]
    theirs = [aioice_encode(*c) for c in CHECKS]
    if ours != theirs:  # same content, same bytes: the comparison is like for like
        print("error: iceagent and aioice encode the checks differently", file=sys.stderr)
        return False
    if iceagent_decode(ours[0]) != aioice_decode(ours[0]):
        print("error: iceagent and aioice decode the check differently", file=sys.stderr)
        return False

    cases = [
        ("encode +MI +FP", encode_case(iceagent_encode), encode_case(aioice_encode)),
        ("decode +verify MI, FP", decode_case(iceagent_decode, ours), decode_case(aioice_decode, ours)),
    ]
    print(f"ICE Binding request ({len(ours[0])} bytes), Python {sys.version.split()[0]}, {clock_name} time")
    print(f"{'case':<24} {'iceagent ops/s':>15} {'aioice ops/s':>14} {'ratio':>7}")
    for name, mine, other in cases:
        a, b = race(mine, other, seconds, rounds, clock)
        print(f"{name:<24} {a:>15,.0f} {b:>14,.0f} {a / b:>6.2f}x")
    return True


if __name__ == "__main__":
    raise SystemExit(main())
