"""Connectivity-check messages (iceagent.ice.checks): the directly packed check requests and success
responses give exactly the bytes of the generic STUN codec, and decode back to what was asked."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from iceagent.ice.candidate import IceParameters
from iceagent.ice.checks import check_request, success_response
from iceagent.stun.attributes import Attr
from iceagent.stun.message import Message, MessageClass, Method

_ICE_CHARS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/", min_size=4,
                     max_size=40)
_PWDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=22, max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    _ICE_CHARS, _ICE_CHARS, _PWDS, st.integers(0, 2**32 - 1), st.booleans(), st.integers(0, 2**64 - 1), st.booleans(),
    st.binary(min_size=12, max_size=12),
)
def test_check_request_is_what_the_generic_codec_encodes(
    lfrag: str, rfrag: str, pwd: str, priority: int, controlling: bool, tie: int, use: bool, tid: bytes
) -> None:
    local, remote = IceParameters(ufrag=lfrag, pwd="l" * 22), IceParameters(ufrag=rfrag, pwd=pwd)
    data = check_request(transaction_id=tid, local=local, remote=remote, priority=priority,
                         controlling=controlling, tie_breaker=tie, use_candidate=use)
    attributes: list[tuple[Attr | int, object]] = [
        (Attr.USERNAME, f"{rfrag}:{lfrag}"),
        (Attr.PRIORITY, priority),
        (Attr.ICE_CONTROLLING if controlling else Attr.ICE_CONTROLLED, tie),
    ]
    if use:
        attributes.append((Attr.USE_CANDIDATE, None))
    expected = Message(Method.BINDING, MessageClass.REQUEST, tid, attributes).encode(
        integrity_key=pwd.encode(), fingerprint=True
    )
    assert data == expected
    decoded = Message.decode(data)
    assert decoded.get(Attr.USERNAME) == f"{rfrag}:{lfrag}" and decoded.get(Attr.PRIORITY) == priority
    assert decoded.verify_integrity(pwd.encode()) and decoded.verify_fingerprint()


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(), st.integers(0, 65535), st.binary(min_size=12, max_size=12))
def test_success_response_is_what_the_generic_codec_encodes(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, tid: bytes
) -> None:
    request = Message(Method.BINDING, MessageClass.REQUEST, tid, [(Attr.PRIORITY, 1)])
    local = IceParameters(ufrag="abcd", pwd="p" * 22)
    source = (str(ip), port)
    data = success_response(request, source, local)
    expected = request.success_response([(Attr.XOR_MAPPED_ADDRESS, source)]).encode(
        integrity_key=local.pwd.encode(), fingerprint=True
    )
    assert data == expected
    mapped = Message.decode(data).get(Attr.XOR_MAPPED_ADDRESS)
    assert mapped is not None
    host, decoded_port = mapped
    assert ipaddress.ip_address(host) == ip and decoded_port == port
