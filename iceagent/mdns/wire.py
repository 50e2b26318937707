"""mDNS messages on the wire through dnslib (RFC 6762 18): parse what may arrive, build what we send.

Sans-IO. `parse_packet` is the one parser: it returns a `Message` or raises `MdnsWireError`, whatever
the bytes, in work linear in their length; `parse` is the same returning None instead of raising.
dnslib reads the header, sections and record data; only its name decoder is replaced: dnslib's follows
every compression pointer chain again (recursively) for every name, so one 9000-byte packet could
cost seconds. Ours (`_NameBuffer`) reads each offset of a packet once (RFC 1035 4.1.4).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence

import attrs
from dnslib import AAAA, NSEC, QTYPE, RR, A, DNSError, DNSHeader, DNSLabel, DNSQuestion, DNSRecord
from dnslib.bimap import BimapError
from dnslib.buffer import BufferError as DnsBufferError
from dnslib.label import DNSBuffer

__all__ = [
    "CACHE_FLUSH",
    "LEGACY_TTL",
    "MAX_MESSAGE",
    "MAX_PARSED",
    "MAX_RECORDS",
    "MDNS_GROUP4",
    "MDNS_GROUP6",
    "MDNS_PORT",
    "QTYPE_A",
    "QTYPE_AAAA",
    "QTYPE_ANY",
    "QU_BIT",
    "TTL_HOST",
    "MdnsWireError",
    "Message",
    "ParseWork",
    "Question",
    "Record",
    "build_goodbye",
    "build_query",
    "build_response",
    "normalize_name",
    "parse",
    "parse_packet",
]

#: The mDNS port and groups (RFC 6762 3, 22: 224.0.0.251 and FF02::FB, UDP port 5353).
MDNS_PORT = 5353
MDNS_GROUP4 = "224.0.0.251"
MDNS_GROUP6 = "ff02::fb"
#: Top bit of the rrclass: cache-flush in answers (RFC 6762 10.2), unicast-response (QU) in questions (5.4).
CACHE_FLUSH = 0x8000
QU_BIT = 0x8000
#: TTL of host address records (RFC 6762 10: 120 s for records that carry a host name).
TTL_HOST = 120
#: Largest TTL in a reply to a legacy unicast query (RFC 6762 6.7: "SHOULD NOT be greater than ten seconds").
LEGACY_TTL = 10
#: Largest mDNS message we read (RFC 6762 17: 9000 bytes including IP/UDP headers); larger ones are dropped.
MAX_MESSAGE = 9000
#: Questions and records looked at per message (hostile-input bound; the rest is ignored).
MAX_RECORDS = 64
#: Questions and records parsed per message at most (questions, then answer, authority and additional
#: records in order; parsing stops there and the rest of the message is not read).
MAX_PARSED = 2 * MAX_RECORDS
#: Longest name we accept (RFC 1035 2.3.4: 255 octets).
MAX_NAME = 255
#: Smallest question and resource record on the wire (RFC 1035 4.1.2, 4.1.3: a root name, then 4 or 10
#: octets): the header's counts may not claim more than the message can hold.
MIN_QUESTION = 1 + 4
MIN_RECORD = 1 + 10
_HEADER = 12

QTYPE_A = 1
QTYPE_AAAA = 28
QTYPE_ANY = 255
_CLASS_IN = 1


def normalize_name(name: str) -> str:
    """Case-folded name without the trailing dot (RFC 6762 16: names compare case-insensitively)."""
    return name.rstrip(".").lower()


def _label_text(labels: Sequence[bytes]) -> str | None:
    """The dotted, case-folded text of a dnslib label tuple; None for names we could never have asked for."""
    parts = []
    for label in labels:
        try:
            text = label.decode("ascii")
        except UnicodeDecodeError:
            return None
        if "." in text:
            return None
        parts.append(text.lower())
    name = ".".join(parts)
    return name if 0 < len(name) <= MAX_NAME else None


@attrs.frozen
class Question:
    """One question: a name (case-folded), its type and whether it asks for a unicast reply (RFC 6762 5.4)."""

    name: str
    qtype: int
    unicast: bool = False


@attrs.frozen
class Record:
    """An address record (A or AAAA) from an answer or additional section (RFC 6762 6, 10.2)."""

    name: str
    rtype: int
    address: str
    ttl: int
    cache_flush: bool = False


@attrs.frozen
class Message:
    """What we use of a parsed mDNS message: header bits, questions, and the address records of the
    answer and additional sections (other types such as NSEC, TXT, PTR are skipped, RFC 6762 6)."""

    id: int
    response: bool
    questions: tuple[Question, ...]
    answers: tuple[Record, ...]  # answer section (the known answers of a query, RFC 6762 7.1)
    additional: tuple[Record, ...]

    @property
    def records(self) -> tuple[Record, ...]:
        """Address records of the answer and additional sections, in order (RFC 6762 6)."""
        return self.answers + self.additional


def _address_record(rr: RR) -> Record | None:
    name = _label_text(rr.rname.label)
    if name is None or (rr.rclass & ~CACHE_FLUSH) != _CLASS_IN:
        return None
    try:
        if rr.rtype == QTYPE_A and isinstance(rr.rdata, A):
            address = str(ipaddress.IPv4Address(bytes(rr.rdata.data)))
        elif rr.rtype == QTYPE_AAAA and isinstance(rr.rdata, AAAA):
            address = str(ipaddress.IPv6Address(bytes(rr.rdata.data)))
        else:
            return None
    except (ValueError, TypeError):
        return None
    return Record(name, rr.rtype, address, int(rr.ttl), bool(rr.rclass & CACHE_FLUSH))


class MdnsWireError(ValueError):
    """A datagram that is not a usable mDNS message: malformed (RFC 1035 4.1), over MAX_MESSAGE bytes, or
    not a standard query or response (RFC 6762 18.3, 18.11). The only error `parse_packet` raises."""


@attrs.define
class ParseWork:
    """What parsing one packet cost, for tests and fuzzing: names decoded, and the label reads and pointer
    follows they took (each offset of the packet is read at most once, so steps <= the packet length)."""

    names: int = 0
    labels: int = 0
    pointers: int = 0

    @property
    def steps(self) -> int:
        return self.labels + self.pointers


class _NameBuffer(DNSBuffer):  # type: ignore[misc]
    """dnslib's buffer with a name decoder that reads each offset once per packet (RFC 1035 4.1.4).

    The name found from each offset is remembered, so pointer chains are followed once per packet, not
    once per name; a pointer must point before the labels it ends (a prior occurrence: no forward, self
    or looping pointers); labels use the 00 or 11 (pointer) length bits only; names are at most 255
    octets and their labels valid UTF-8 (as dnslib requires)."""

    offset: int
    data: bytes

    def __init__(self, data: bytes, work: ParseWork) -> None:
        super().__init__(data)
        self.work = work
        self._names: dict[int, tuple[tuple[bytes, ...], int, int]] = {}  # offset -> (labels, end, octets)

    def decode_name(self, last: int = -1) -> DNSLabel:
        self.work.names += 1
        labels, self.offset, _octets = self._name_at(self.offset)
        return DNSLabel(labels)

    def _name_at(self, start: int) -> tuple[tuple[bytes, ...], int, int]:
        """The labels of the name at `start`, the offset after it in place, and its length in octets."""
        data, names, work = self.data, self._names, self.work
        walked: list[tuple[int, bytes | None]] = []  # offsets read, with their label (None: a pointer)
        pos = segment = start  # segment: where the labels being read began (the last pointer's target)
        while pos not in names:
            if pos >= len(data):
                raise MdnsWireError(f"a name runs past the end of the message (offset {start})")
            length = data[pos]
            if length >= 0xC0:
                if pos + 1 >= len(data):
                    raise MdnsWireError(f"a compression pointer is cut short at offset {pos}")
                target = (length & 0x3F) << 8 | data[pos + 1]
                if target >= segment:
                    raise MdnsWireError(f"compression pointer at offset {pos} to {target} does not point back "
                                        "(RFC 1035 4.1.4: a prior occurrence)")
                work.pointers += 1
                walked.append((pos, None))
                pos = segment = target
            elif length >= 0x40:
                raise MdnsWireError(f"label type 0x{length:02x} at offset {pos} (RFC 1035 4.1.4: 00 or 11 only)")
            elif length == 0:
                names[pos] = ((), pos + 1, 1)
            else:
                work.labels += 1
                label = data[pos + 1 : pos + 1 + length]
                if len(label) < length:
                    raise MdnsWireError(f"a label runs past the end of the message (offset {pos})")
                try:
                    label.decode()
                except UnicodeDecodeError:
                    raise MdnsWireError(f"label at offset {pos} is not UTF-8") from None
                walked.append((pos, label))
                pos += 1 + length
        labels, end, octets = names[pos]
        for offset, read in reversed(walked):  # each suffix is a name of its own, from its offset
            if read is None:
                end = offset + 2
            else:
                labels, octets = (read, *labels), octets + 1 + len(read)
                if octets > MAX_NAME:
                    raise MdnsWireError(f"name at offset {offset} is over {MAX_NAME} octets (RFC 1035 2.3.4)")
            names[offset] = (labels, end, octets)
        return names[start]


def _decode(data: bytes, work: ParseWork) -> DNSRecord:
    """dnslib's DNSRecord.parse on a `_NameBuffer`, after checking the header's counts against the size."""
    buffer = _NameBuffer(data, work)
    header = DNSHeader.parse(buffer)
    if header.q * MIN_QUESTION + (header.a + header.auth + header.ar) * MIN_RECORD > len(data) - _HEADER:
        raise MdnsWireError(f"the header counts more records than {len(data)} bytes can hold")
    # Parsing stops after MAX_PARSED entries: what follows is ignored, not read (bounded work per packet:
    # dnslib builds several objects per entry, and 9000 bytes can claim 1797 questions).
    left = MAX_PARSED
    questions = [DNSQuestion.parse(buffer) for _ in range(min(header.q, left))]
    left = left - header.q if header.q <= left else 0
    sections: list[list[RR]] = []
    for count in (header.a, header.auth, header.ar):
        sections.append([RR.parse(buffer) for _ in range(min(count, max(left, 0)))])
        left = left - count if count <= left else 0
    return DNSRecord(header, questions, sections[0], auth=sections[1], ar=sections[2])


def parse_packet(data: bytes, *, work: ParseWork | None = None) -> Message:
    """Parse an mDNS message (RFC 6762 18). Raises MdnsWireError, and nothing else, if it is malformed,
    over MAX_MESSAGE bytes, or not a standard query or response; `work` counts what parsing cost."""
    if not _HEADER <= len(data) <= MAX_MESSAGE:
        raise MdnsWireError(f"{len(data)} bytes is not an mDNS message size ({_HEADER}-{MAX_MESSAGE}, RFC 6762 17)")
    try:
        record = _decode(data, work if work is not None else ParseWork())
    except (DNSError, DnsBufferError, BimapError, struct.error, ValueError) as exc:
        if isinstance(exc, MdnsWireError):
            raise
        raise MdnsWireError(f"malformed DNS message: {exc}") from exc
    header = record.header
    if header.opcode != 0 or header.rcode != 0:
        # RFC 6762 18.3, 18.11: messages with another OPCODE or a non-zero RCODE are ignored
        raise MdnsWireError(f"OPCODE {header.opcode}, RCODE {header.rcode}: not a standard query or response")
    questions = []
    for q in record.questions[:MAX_RECORDS]:
        name = _label_text(q.qname.label)
        if name is not None and (q.qclass & ~QU_BIT) in (_CLASS_IN, 255):
            questions.append(Question(name, int(q.qtype), bool(q.qclass & QU_BIT)))
    answers: list[Record] = []
    additional: list[Record] = []
    budget = MAX_RECORDS
    for section, out in ((record.rr, answers), (record.ar, additional)):
        for rr in section:
            if budget <= 0:
                break
            budget -= 1
            found = _address_record(rr)
            if found is not None:
                out.append(found)
    return Message(int(header.id), bool(header.qr), tuple(questions), tuple(answers), tuple(additional))


def parse(data: bytes) -> Message | None:
    """`parse_packet`, with None for a message it rejects (never raises)."""
    try:
        return parse_packet(data)
    except MdnsWireError:
        return None


def _rr(name: str, address: str, ttl: int, cache_flush: bool) -> RR:
    ip = ipaddress.ip_address(address)
    rclass = _CLASS_IN | (CACHE_FLUSH if cache_flush else 0)
    if ip.version == 4:
        return RR(name, QTYPE.A, rclass=rclass, ttl=ttl, rdata=A(str(ip)))
    return RR(name, QTYPE.AAAA, rclass=rclass, ttl=ttl, rdata=AAAA(str(ip)))


def _nsec(name: str, address: str, ttl: int, cache_flush: bool) -> RR:
    """The negative answer for the other address type of `name` (RFC 6762 6.1)."""
    rclass = _CLASS_IN | (CACHE_FLUSH if cache_flush else 0)
    present = "A" if ipaddress.ip_address(address).version == 4 else "AAAA"
    return RR(name, QTYPE.NSEC, rclass=rclass, ttl=ttl, rdata=NSEC(name, [present]))


def build_query(names: Iterable[str], qtypes: Sequence[int], *, unicast: bool = False) -> bytes:
    """A multicast query (RFC 6762 5, 18): ID 0, no flags, one question per name and type."""
    header = DNSHeader(id=0, qr=0, rd=0)
    qclass = _CLASS_IN | (QU_BIT if unicast else 0)
    questions = [DNSQuestion(name, qtype, qclass) for name in names for qtype in qtypes]
    return bytes(DNSRecord(header, questions=questions).pack())


def build_response(
    answers: Sequence[tuple[str, str]],
    *,
    negative: Sequence[tuple[str, str]] = (),
    legacy: tuple[int, Sequence[Question]] | None = None,
    ttl: int = TTL_HOST,
) -> bytes:
    """An authoritative response (RFC 6762 6, 18): address records for (name, address) `answers`, and an
    NSEC for the other address type of each, in the answer section for `negative` ones (6.1) and in the
    additional section otherwise.

    Multicast (and QU) responses: ID 0, no questions, cache-flush bit set (10.2). A reply to a legacy
    unicast query (`legacy` = (query ID, its questions)) repeats the ID and questions, has no cache-flush
    bit and a TTL of at most LEGACY_TTL (6.7)."""
    if legacy is None:
        header = DNSHeader(id=0, qr=1, aa=1, rd=0)
        questions: list[DNSQuestion] = []
        flush, rr_ttl = True, ttl
    else:
        query_id, asked = legacy
        header = DNSHeader(id=query_id, qr=1, aa=1, rd=0)
        questions = [DNSQuestion(q.name, q.qtype, _CLASS_IN) for q in asked]
        flush, rr_ttl = False, min(ttl, LEGACY_TTL)
    message = DNSRecord(header, questions=questions)
    for name, address in answers:
        message.add_answer(_rr(name, address, rr_ttl, flush))
    for name, address in negative:
        message.add_answer(_nsec(name, address, rr_ttl, flush))
    for name, address in answers:
        message.add_ar(_nsec(name, address, rr_ttl, flush))
    return bytes(message.pack())


def build_goodbye(records: Sequence[tuple[str, str]]) -> bytes:
    """Withdraw records: the same records with TTL 0 (RFC 6762 10.1 "Goodbye Packets")."""
    header = DNSHeader(id=0, qr=1, aa=1, rd=0)
    message = DNSRecord(header)
    for name, address in records:
        message.add_answer(_rr(name, address, 0, True))
    return bytes(message.pack())
