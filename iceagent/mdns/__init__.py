"""mDNS for ICE host candidates (draft-ietf-mmusic-mdns-ice-candidates, RFC 6762): a responder that
publishes `<uuid4>.local` names for host addresses and a resolver for remote `.local` candidates, on
the Network seam, with the DNS wire format from dnslib. `parse_packet` is the one mDNS parser (it raises
only MdnsWireError, in work linear in the packet's size)."""

from .link import LocalLink
from .resolver import MdnsResolveError, MdnsResolver, ResolverCore, is_valid_name
from .responder import MdnsResponder, Zone, new_name, open_responder
from .wire import MDNS_GROUP4, MDNS_GROUP6, MDNS_PORT, MdnsWireError, ParseWork, parse_packet

__all__ = [
    "MDNS_GROUP4",
    "MDNS_GROUP6",
    "MDNS_PORT",
    "LocalLink",
    "MdnsResolveError",
    "MdnsResolver",
    "MdnsResponder",
    "MdnsWireError",
    "ParseWork",
    "ResolverCore",
    "Zone",
    "is_valid_name",
    "new_name",
    "open_responder",
    "parse_packet",
]
