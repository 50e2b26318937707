"""The built-in mDNS gatherer: with `mdns=True`, one `<uuid4>.local` host candidate per host socket, the
name published by a responder that lives as long as the session (draft-ietf-mmusic-mdns-ice-candidates
3.1, RFC 6762). The host gatherer opens the sockets and emits nothing in that mode."""

from __future__ import annotations

import trio

from ..hookspecs import hookimpl
from ..ice.candidate import Candidate
from ..ice.priority import candidate_priority, local_preferences
from ..logs import get_logger
from ..mdns.responder import open_responder
from .base import GatherContext, GatherOptions
from .host import gather_addresses

log = get_logger("iceagent.gather.mdns")


class MdnsGatherer:
    """Names each host address with a fresh UUIDv4 `.local` name and answers for it until the session ends."""

    kind = "mdns"

    async def run(self, ctx: GatherContext) -> None:
        try:
            addresses = gather_addresses(ctx)
        except ValueError:
            addresses = []
        prefs = local_preferences(addresses) if addresses else {}
        async with open_responder(ctx.network) as responder:
            async for sock in ctx.bases():
                address, port = sock.local_address
                try:
                    name = await responder.publish(address)
                except (OSError, ValueError) as exc:
                    # the message never carries the address: it is what mdns=True hides
                    reason = "loopback has no multicast" if isinstance(exc, ValueError) else (exc.strerror or "")
                    ctx.error(f"cannot publish an mDNS name for a host candidate ({reason}); it is not offered")
                    continue
                candidate = Candidate(
                    foundation=ctx.foundation("host", address, "udp"),
                    component=1,
                    transport="udp",
                    priority=candidate_priority("host", 1, local_pref=prefs.get(address, 65535)),
                    address=name,
                    port=port,
                    type="host",
                )
                ctx.emit(candidate, sock)
            ctx.done()
            await trio.sleep_forever()  # keep answering for the names until the session ends


#: The gatherer holds no state (what it opens lives in the session it runs for): one serves every agent.
_MDNS = MdnsGatherer()


@hookimpl
def iceagent_gatherers(options: GatherOptions) -> list[object]:
    """An mDNS gatherer when `mdns=True` (not under the relay-only policy, which offers no host candidates)."""
    if not options.mdns or options.ice_transport_policy == "relay":
        return []
    return [_MDNS]
