"""IceConfig: every timer and limit the RFCs leave to the implementation, with the RFC defaults."""

from __future__ import annotations

from typing import Any

import attrs


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"IceConfig.{attribute.name} must be > 0, got {value!r}")


def _not_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"IceConfig.{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class IceConfig:
    """Knobs of the agent. Defaults follow the RFCs; each field's comment cites the section."""

    #: Pacing interval Ta in seconds between new check transactions (RFC 8445 14.2: 50 ms default). A
    #: non-default Ta is signalled as a=ice-pacing and both sides use the larger; a peer that signals none
    #: counts as 50 ms (RFC 8839 4.4), so a lower Ta takes effect only when the peer signals it too.
    ta: float = attrs.field(default=0.05, validator=_positive)
    #: Process-wide cap of one new STUN transaction per 5 ms across all agents (RFC 8445 14.2).
    global_pacing: bool = True
    #: Upper bound on the number of candidate pairs per check list (RFC 8445 6.1.2.5: 100).
    max_pairs: int = attrs.field(default=100, validator=_positive)
    #: Initial STUN retransmission timeout in seconds (RFC 8489 6.2.1: 500 ms; ICE checks use it too).
    rto: float = attrs.field(default=0.5, validator=_positive)
    #: Number of STUN request transmissions over UDP (RFC 8489 6.2.1: Rc = 7).
    rc: int = attrs.field(default=7, validator=_positive)
    #: Multiplier of RTO for the wait after the last transmission (RFC 8489 6.2.1: Rm = 16).
    rm: int = attrs.field(default=16, validator=_positive)
    #: Transaction timeout over TCP/TLS, where nothing is retransmitted (RFC 8489 6.2.2: 39.5 s).
    reliable_timeout: float = attrs.field(default=39.5, validator=_positive)
    #: Controlling side: how long to wait for a better pair to succeed before nominating the best valid
    #: one (regular nomination, RFC 8445 8.1.1 leaves the moment to the agent). Nominates at once when
    #: no higher-priority pair is still pending.
    nomination_delay: float = attrs.field(default=0.5, validator=_positive)
    #: Offer renomination (`a=ice-options:renomination`, draft-thatcher-ice-renomination): when the peer
    #: offers it too, the controlling side may nominate a better valid pair later without a restart and the
    #: controlled side follows the highest NOMINATION value (docs/renomination.md). Off: RFC 8445 8.1.1.
    renomination: bool = False
    #: Gathering is declared COMPLETE after this many seconds even if a gatherer has not finished.
    gather_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Keepalive interval on the selected pair when idle (RFC 8445 11: 15 s by default).
    keepalive_interval: float = attrs.field(default=15.0, validator=_positive)
    #: Mean interval of consent freshness checks, randomized to 0.8-1.2 times this (RFC 7675 5.1: 5 s).
    consent_interval: float = attrs.field(default=5.0, validator=_positive)
    #: Consent is lost after this long without a successful consent check (RFC 7675 5.1: 30 s).
    consent_timeout: float = attrs.field(default=30.0, validator=_positive)
    #: Time without any traffic on the selected pair before DISCONNECTED (implementation choice, as browsers).
    disconnected_timeout: float = attrs.field(default=5.0, validator=_positive)
    #: Time spent CHECKING without a valid pair before FAILED (implementation choice). A DISCONNECTED agent
    #: fails when consent expires (`consent_timeout`, RFC 7675 5.1), not through this timer.
    failed_timeout: float = attrs.field(default=30.0, validator=_positive)
    #: After an ICE restart's new generation is nominated, the previous one keeps receiving this long (it
    #: sends nothing more) before it closes: the peer learns of the nomination up to a round trip later and
    #: keeps sending on the previous pair until then (RFC 8445 9, 12.1), so closing at once lost that data.
    restart_linger: float = attrs.field(default=2.0, validator=_not_negative)
    #: Initial back-off between automatic restarts of a FAILED agent (doubles up to 16 times this).
    restart_backoff: float = attrs.field(default=1.0, validator=_positive)
    #: At most one peer-driven restart (a new remote ufrag, RFC 8445 9) per this many seconds; a new ufrag
    #: inside the interval waits, later ones replace it, and the latest is followed when the interval ends
    #: (0: no limit). A restart gathers anew (a STUN/TURN transaction per base and server, RFC 8489 6.2.1,
    #: a new TURN allocation, RFC 8656 7) and no peer can restart faster than its own gathering and
    #: signaling, which take at least a STUN round trip: 1 s, the pace of our own first automatic restart.
    peer_restart_interval: float = attrs.field(default=1.0, validator=_not_negative)
    #: TURN permission refresh interval (RFC 8656 9: permissions last 300 s; refresh at 240 s).
    permission_refresh: float = attrs.field(default=240.0, validator=_positive)
    #: TURN channel refresh interval (RFC 8656 12: bindings last 600 s; refresh at 540 s).
    channel_refresh: float = attrs.field(default=540.0, validator=_positive)
    #: How long to wait for an mDNS answer when resolving a remote `.local` candidate.
    mdns_timeout: float = attrs.field(default=3.0, validator=_positive)
    #: Maximum simultaneous inbound ICE-TCP connections per passive candidate (RFC 6544 leaves it open); at
    #: the cap a new connection replaces the oldest one that has not sent a valid check yet, else it is refused.
    tcp_max_inbound: int = attrs.field(default=64, validator=_positive)
    #: An inbound ICE-TCP connection that sends no valid check within this many seconds is closed.
    tcp_check_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Largest RFC 4571 frame accepted on an ICE-TCP connection (RFC 4571 2: 65535, the 16-bit LENGTH's
    #: limit); a connection that announces a larger one is closed.
    tcp_max_frame: int = attrs.field(default=65535, validator=[_positive, attrs.validators.le(65535)])
    #: Datagrams queued for the application before the oldest ones are dropped (see IceStream).
    receive_buffer: int = attrs.field(default=256, validator=_positive)
