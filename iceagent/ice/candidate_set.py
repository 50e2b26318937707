"""The candidates one ICE session knows, local and remote, and peer-reflexive learning (RFC 8445 5.1, 7)."""

from __future__ import annotations

import enum

from .candidate import MDNS_ENDINGS, Candidate, unusable_address
from .pair import Address, CandidatePair
from .priority import foundation

__all__ = ["CandidateSet", "RemoteAdded"]

_OPPOSITE_TCPTYPE = {"active": "passive", "passive": "active", "so": "so"}

#: Peer-reflexive remote candidates learned over UDP on one base from one source IP. Each of the peer's
#: bases behind one NAT needs one; more means two NATs that map per destination port are chasing each
#: other's new ports (every triggered check opens a new mapping, which the other side learns as a new
#: prflx candidate and checks in turn). That never connects, and its triggered checks, which go first
#: (RFC 8445 6.1.4.2), would starve the ordinary checks of the pairs that can: the relayed ones.
MAX_PRFLX_PER_SOURCE = 8


class RemoteAdded(enum.Enum):
    """What `CandidateSet.add_remote` did with a signalled candidate."""

    NEW = "new"
    REPLACED = "replaced"  # it took the place of a learned prflx candidate with the same address
    IGNORED = "ignored"  # a duplicate or an mDNS name
    FULL = "full"  # over the cap (`max_remote`)


_NEW, _REPLACED, _IGNORED, _FULL = RemoteAdded.NEW, RemoteAdded.REPLACED, RemoteAdded.IGNORED, RemoteAdded.FULL


class CandidateSet:
    """Local (candidate, base) pairs and remote candidates, with bounded peer-reflexive learning."""

    __slots__ = (
        "_from_mdns",
        "_prflx_by_source",
        "_prflx_locals",
        "_prflx_remotes",
        "locals",
        "max_prflx",
        "max_prflx_per_source",
        "max_remote",
        "remotes",
    )

    def __init__(
        self, *, max_prflx: int = 100, max_remote: int = 400, max_prflx_per_source: int = MAX_PRFLX_PER_SOURCE
    ) -> None:
        self.max_prflx = max_prflx
        self.max_remote = max_remote
        self.max_prflx_per_source = max_prflx_per_source
        # both None until first needed: most sessions learn no prflx candidate over UDP and resolve no name
        self._prflx_by_source: dict[tuple[Candidate, str], int] | None = None
        self.locals: list[tuple[Candidate, Candidate]] = []
        self.remotes: list[Candidate] = []
        self._prflx_remotes = 0
        self._prflx_locals = 0
        #: remote candidates resolved from `.local` names (a dict as a set: smaller than a set)
        self._from_mdns: dict[Candidate, None] | None = None

    # ---- local ----

    def add_local(self, candidate: Candidate, base: Candidate) -> bool:
        """Remember a gathered local candidate and its base; False if it was known."""
        if (candidate, base) in self.locals:
            return False
        self.locals.append((candidate, base))
        return True

    def learn_local(self, pair: CandidatePair, mapped: Address, priority: int) -> Candidate | None:
        """A peer-reflexive local candidate from a check's XOR-MAPPED-ADDRESS, with the PRIORITY the check
        carried and `pair.base` as its base (RFC 8445 7.2.5.3.1); None over the cap."""
        if self._prflx_locals >= self.max_prflx:
            return None
        self._prflx_locals += 1
        base = pair.base
        related: tuple[str, int] = (base.address, base.port)
        if self.hides_base(base):  # the base is behind an mDNS name (draft-ietf-mmusic-mdns-ice-candidates 3.1.1)
            related = ("::" if ":" in base.address else "0.0.0.0", 9)
        candidate = Candidate(
            foundation=foundation("prflx", base.address, base.transport),
            component=pair.local.component,
            transport=base.transport,
            priority=priority,
            address=mapped[0],
            port=mapped[1],
            type="prflx",
            related_address=related[0],
            related_port=related[1],
        )
        self.locals.append((candidate, base))
        return candidate

    def local_at(self, pair: CandidatePair, address: Address) -> Candidate | None:
        """The local candidate at the XOR-MAPPED-ADDRESS of a response to a check on `pair` (7.2.5.3.1)."""
        base = pair._base
        if base.port == address[1] and base.address == address[0]:
            return pair._local  # no NAT on the way: the base itself, or the mDNS name hiding it
        for candidate, _base in self.locals:
            if (candidate.address, candidate.port) == address and candidate.transport == pair.base.transport:
                return candidate
        return None

    def local_for_base(self, base: Candidate) -> Candidate | None:
        """The local candidate of a triggered check received on `base`: a host/relay one (7.3.1.4)."""
        for candidate, cbase in self.locals:
            if (cbase is base or cbase == base) and candidate.type in ("host", "relay"):
                return candidate
        return None

    def hides_base(self, base: Candidate) -> bool:
        """True when a `.local` host candidate stands for `base` (its address must not leak, draft 3.1.1)."""
        return any(local.is_mdns for local, cbase in self.locals if cbase is base or cbase == base)

    def locals_for(self, remote: Candidate) -> list[tuple[Candidate, Candidate]]:
        """The local (candidate, base) pairs `remote` may be paired with: not relay ones for a candidate
        resolved from an mDNS name (the TURN server would learn its address, draft 3.3.2)."""
        from_mdns = self._from_mdns  # self.from_mdns(remote), inline: once per remote candidate
        if from_mdns is not None and remote in from_mdns:
            return [(c, b) for c, b in self.locals if c.type != "relay"]
        return list(self.locals)

    def remotes_for(self, local: Candidate) -> list[Candidate]:
        """The remote candidates `local` may be paired with (no mDNS-resolved ones for a relay, draft 3.3.2)."""
        if local.type == "relay" and self._from_mdns:
            from_mdns = self._from_mdns
            return [r for r in self.remotes if r not in from_mdns]
        return list(self.remotes)

    def from_mdns(self, remote: Candidate) -> bool:
        """True for a remote candidate whose address came from resolving its `.local` name."""
        return self._from_mdns is not None and remote in self._from_mdns

    def base_of(self, candidate: Candidate) -> Candidate | None:
        """The base of a local candidate (RFC 8445 5.1.1), or None if it is not ours."""
        for local, base in self.locals:
            if local == candidate:
                return base
        return None

    # ---- remote ----

    def add_remote(self, candidate: Candidate, *, mdns: bool = False) -> tuple[RemoteAdded, Candidate | None]:
        """Add a signalled remote candidate; a learned prflx one at its address is replaced, and returned
        (RFC 8838 11.4; draft-ietf-mmusic-mdns-ice-candidates 3.2.1 for a resolved name). mDNS names are
        ignored: the agent resolves them first and passes the result with `mdns=True`."""
        if candidate.address.endswith(MDNS_ENDINGS) and candidate.is_mdns:  # (an IP address: no call)
            return _IGNORED, None
        known = self.remote_at(candidate.transport, (candidate.address, candidate.port))
        if known is not None:
            if known.type != "prflx" or candidate.type == "prflx":
                return _IGNORED, None
            self.remotes[self.remotes.index(known)] = candidate
            if mdns:
                self._note_mdns(candidate)
            return _REPLACED, known
        if len(self.remotes) >= self.max_remote:
            return _FULL, None
        self.remotes.append(candidate)
        if mdns:
            self._note_mdns(candidate)
        return _NEW, None

    def _note_mdns(self, candidate: Candidate) -> None:
        if self._from_mdns is None:
            self._from_mdns = {}
        self._from_mdns[candidate] = None

    def learn_remote(self, base: Candidate, source: Address, priority: int) -> Candidate | None:
        """A peer-reflexive remote candidate from the source of a check received on `base`, with the
        request's PRIORITY and a fresh foundation (RFC 8445 7.3.1.3); None over the cap (in all, or over UDP
        `max_prflx_per_source` from one IP on this base, see MAX_PRFLX_PER_SOURCE), or from a source no peer
        can have (unspecified, multicast, broadcast, port 0: `unusable_address`)."""
        if self._prflx_remotes >= self.max_prflx:
            return None
        if unusable_address(source[0], source[1] if base.transport == "udp" else None) is not None:
            return None
        if base.transport == "udp":
            key = (base, source[0])
            by_source = self._prflx_by_source
            if by_source is None:
                by_source = self._prflx_by_source = {}
            if by_source.get(key, 0) >= self.max_prflx_per_source:
                return None
            by_source[key] = by_source.get(key, 0) + 1
        self._prflx_remotes += 1
        taken = {c.foundation for c in self.remotes}
        n = self._prflx_remotes
        while f"prflx{n}" in taken:
            n += 1
        candidate = Candidate(
            foundation=f"prflx{n}",
            component=base.component,
            transport=base.transport,
            priority=priority,
            address=source[0],
            port=source[1],
            type="prflx",
            tcptype=_OPPOSITE_TCPTYPE.get(base.tcptype or ""),
        )
        self.remotes.append(candidate)
        return candidate

    def awaiting_tcp(self) -> bool:
        """A remote active TCP candidate may still connect to a local passive one: its checks arrive as
        peer-reflexive pairs, so the check list is not hopeless yet (RFC 6544 7.1, 7.2); the agent's
        failed timeout bounds the wait."""
        if not any(c.tcptype == "passive" and c.type in ("host", "relay") for c, _ in self.locals):
            return False
        return any(r.tcptype == "active" for r in self.remotes)

    def sizes(self) -> dict[str, int]:
        """The sizes of its tables (docs/security.md "Agent-side bounds")."""
        return {
            "local_candidates": len(self.locals),
            "remote_candidates": len(self.remotes),
            "prflx_sources": len(self._prflx_by_source or ()),
            "from_mdns": len(self._from_mdns or ()),
        }

    def remote_at(self, transport: str, address: Address) -> Candidate | None:
        """The remote candidate with this transport address, if any."""
        host, port = address
        for candidate in self.remotes:  # no (address, port) tuple built per candidate
            if candidate.port == port and candidate.address == host and candidate.transport == transport:
                return candidate
        return None
