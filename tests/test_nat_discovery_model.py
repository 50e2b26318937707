"""The sans-IO side of RFC 5780 discovery (`iceagent.stun.nat_discovery.model`) with literal answers, no Trio.

Each rule of RFC 5780 4.3-4.6 is fed the mapped addresses, answered tests and probe outcomes a server
would give, and must name the RFC 4787 behaviour; the server's malformed or non-RFC 5780 answers must
raise `NatDiscoveryError` with a message that says what is wrong. The package keeps its layers (the
model imports no Trio and nothing of net/agent/gatherers) and `iceagent.nat` still re-exports the names.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from iceagent.stun.attributes import Attr
from iceagent.stun.message import Message, MessageClass, Method
from iceagent.stun.nat_discovery import model
from iceagent.stun.nat_discovery.model import (
    ADF,
    ADM,
    ALL_CLASSES,
    APDF,
    APDM,
    EIF,
    EIM,
    MappingLifetime,
    NatDiscoveryError,
    check_change_request_source,
    check_other_address,
    classic_name,
    classify_filtering,
    classify_mapping,
    is_behind_nat,
    lifetime_bounds,
    lifetime_idles,
    mapped_address,
    nat_type,
    no_nat_notes,
    raise_for_error,
    settle_hairpinning,
)

PACKAGE = Path(model.__file__).resolve().parent
SERVER = ("198.51.100.1", 3478)
OTHER = ("198.51.100.2", 3479)
M1, M2, M3 = ("203.0.113.1", 40000), ("203.0.113.1", 40001), ("203.0.113.1", 40002)


# --- RFC 5780 4.3: mapping -----------------------------------------------------------------------------------


def test_mapping_from_tests_i_ii_iii() -> None:
    assert classify_mapping([M1, M1]) is EIM  # I = II: test III is not needed
    assert classify_mapping([M1, M1, M3]) is EIM  # II decided; a third address does not change it
    assert classify_mapping([M1, M2]) is None  # I != II: test III decides
    assert classify_mapping([M1, M2, M2]) is ADM  # II = III
    assert classify_mapping([M1, M2, M3]) is APDM
    assert classify_mapping([M1, ("203.0.113.9", 40000)]) is None  # another IP is another mapping too
    with pytest.raises(ValueError, match="tests I and II"):
        classify_mapping([M1])


def test_behind_nat_only_when_the_mapped_address_is_not_ours() -> None:
    local = ("10.0.1.2", 40000)
    assert not is_behind_nat(("10.0.1.2", 40000), local, {"10.0.1.2", "::1"})
    assert is_behind_nat(("10.0.1.2", 40001), local, {"10.0.1.2"})  # same IP, other port: a NAT
    assert is_behind_nat(("203.0.113.1", 40000), local, {"10.0.1.2"})  # port preserved, other IP: a NAT
    # a wildcard-bound socket: the mapped IP is one of the interfaces' addresses
    assert not is_behind_nat(("192.0.2.5", 40000), ("0.0.0.0", 40000), ["10.0.1.2", "192.0.2.5"])
    assert is_behind_nat(("192.0.2.5", 40000), ("0.0.0.0", 40000), [])


# --- RFC 5780 4.4: filtering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip_and_port", "port", "expected"),
    [(True, True, EIF), (True, False, EIF), (False, True, ADF), (False, False, APDF)],
)
def test_filtering_from_the_answered_change_requests(ip_and_port: bool, port: bool, expected: object) -> None:
    assert classify_filtering(ip_and_port, port) is expected


def test_change_request_answer_must_come_from_the_asked_address() -> None:
    check_change_request_source(SERVER, "filtering test II", True, OTHER, OTHER)  # honoured: no error
    with pytest.raises(NatDiscoveryError, match=r"from 198\.51\.100\.1:3478 instead: it does not honour") as e:
        check_change_request_source(SERVER, "filtering test II", True, OTHER, SERVER)
    assert "its other IP and port (198.51.100.2:3479)" in str(e.value)
    with pytest.raises(NatDiscoveryError, match=r"its other port \(198\.51\.100\.1:3479\)"):
        check_change_request_source(SERVER, "filtering test III", False, ("198.51.100.1", 3479), SERVER)


# --- RFC 5780 4.5: hairpinning ------------------------------------------------------------------------------


@pytest.mark.parametrize("nat", ALL_CLASSES, ids=lambda nat: f"{nat[0].abbreviation}+{nat[1].abbreviation}")
def test_hairpinning_verdict(nat: tuple[model.MappingBehavior, model.FilteringBehavior]) -> None:
    mapping, filtering = nat
    assert settle_hairpinning(True, mapping, filtering) == (True, None)
    assert settle_hairpinning(None, mapping, filtering) == (None, None)  # not tested
    verdict, note = settle_hairpinning(False, mapping, filtering)
    if mapping is EIM or filtering is EIF:  # the hairpinned packet gets through the filter: "no" is real
        assert (verdict, note) == (False, None)
    else:
        assert verdict is None and note is not None and note.startswith("hairpinning: undecided")


def test_notes_without_a_nat() -> None:
    assert no_nat_notes(False, False) == [
        "the mapped address is the local address: no NAT between this host and the server"
    ]
    assert [n.split(":")[0] for n in no_nat_notes(True, True)[1:]] == ["hairpinning", "mapping lifetime"]


# --- RFC 5780 4.6: mapping lifetime --------------------------------------------------------------------------


def test_lifetime_probe_schedule() -> None:
    assert lifetime_idles(60.0, 12) == [5.0 * k for k in range(1, 13)]
    assert lifetime_idles(3.0, 1) == [3.0]


def test_lifetime_bounds_from_probe_outcomes() -> None:
    alive = {5.0: True, 10.0: True, 15.0: True, 20.0: False, 25.0: False, 30.0: False}
    assert lifetime_bounds(alive, 30.0) == MappingLifetime(at_least=15.0, at_most=20.0, bound=30.0)
    assert lifetime_bounds(alive, 30.0).describe() == "between 15 s and 20 s"
    every = lifetime_bounds({5.0: True, 10.0: True}, 10.0)
    assert every == MappingLifetime(at_least=10.0, at_most=None, bound=10.0)
    assert every.describe() == "more than 10 s (the longest probe)"
    none = lifetime_bounds({5.0: False, 10.0: False}, 10.0)
    assert none == MappingLifetime(at_least=0.0, at_most=5.0, bound=10.0)
    assert none.describe() == "less than 5 s"
    # an answer after a dead probe (a lost datagram, a rebooted NAT) does not raise the lower bound
    assert lifetime_bounds({10.0: False, 5.0: True, 15.0: True}, 15.0) == MappingLifetime(5.0, 10.0, 15.0)


# --- the server's answers ------------------------------------------------------------------------------------


def _response(*attributes: tuple[Attr, object], error: bool = False) -> Message:
    """A Binding response as it arrives: encoded and decoded again."""
    message_class = MessageClass.ERROR if error else MessageClass.SUCCESS
    return Message.decode(Message(Method.BINDING, message_class, attributes=list(attributes)).encode())


def test_mapped_address_prefers_xor_and_normalizes() -> None:
    both = _response((Attr.MAPPED_ADDRESS, ("192.0.2.9", 1)), (Attr.XOR_MAPPED_ADDRESS, ("2001:db8:0::5", 4000)))
    assert mapped_address(both) == ("2001:db8::5", 4000)
    assert mapped_address(_response((Attr.MAPPED_ADDRESS, ("192.0.2.9", 1)))) == ("192.0.2.9", 1)  # RFC 3489
    with pytest.raises(NatDiscoveryError, match="no XOR-MAPPED-ADDRESS"):
        mapped_address(_response((Attr.SOFTWARE, "x")))


def test_error_responses_name_the_test_and_what_the_server_lacks() -> None:
    raise_for_error(_response((Attr.XOR_MAPPED_ADDRESS, M1)), SERVER, "mapping test I")  # success: no error
    unknown = _response(
        (Attr.ERROR_CODE, (420, "Unknown Attribute")), (Attr.UNKNOWN_ATTRIBUTES, [0x0003, 0x7777]), error=True
    )
    with pytest.raises(NatDiscoveryError) as e:
        raise_for_error(unknown, SERVER, "filtering test II (CHANGE-REQUEST)")
    assert str(e.value) == (
        "STUN server 198.51.100.1:3478 answered filtering test II (CHANGE-REQUEST) with error 420 Unknown "
        "Attribute (it does not understand CHANGE-REQUEST, 0x7777: it does not implement RFC 5780)"
    )
    with pytest.raises(NatDiscoveryError, match=r"with error 0 no ERROR-CODE$"):
        raise_for_error(_response(error=True), SERVER, "mapping test I")


def test_other_address_must_make_rfc5780_possible() -> None:
    assert check_other_address(SERVER, OTHER, None) == OTHER
    assert check_other_address(("2001:db8::1", 3478), ("2001:db8:0::2", 3479), None) == ("2001:db8::2", 3479)
    with pytest.raises(NatDiscoveryError, match=r"198\.51\.100\.1:3478 \(coturn\) does not support RFC 5780"):
        check_other_address(SERVER, None, "coturn")
    with pytest.raises(NatDiscoveryError, match="of another family"):
        check_other_address(SERVER, ("2001:db8::2", 3479), None)
    with pytest.raises(NatDiscoveryError, match=r"must differ from the primary address in both IP and port"):
        check_other_address(SERVER, ("198.51.100.1", 3479), None)
    with pytest.raises(NatDiscoveryError, match=r"must differ from the primary address in both IP and port"):
        check_other_address(SERVER, ("198.51.100.2", 3478), None)


# --- names ---------------------------------------------------------------------------------------------------


def test_names_of_every_behaviour() -> None:
    types = {nat_type(True, m, f) for m, f in ALL_CLASSES}
    assert types == {f"{m}-{f}" for m in ("eim", "adm", "apdm") for f in ("eif", "adf", "apdf")}
    assert [nat_type(False, EIM, f) for f in (EIF, ADF, APDF)] == ["none", "none-adf", "none-apdf"]
    assert [classic_name(True, EIM, f) for f in (EIF, ADF, APDF)] == [
        "full cone",
        "restricted cone",
        "port-restricted cone",
    ]
    assert classic_name(True, APDM, APDF) == "symmetric"
    assert {classic_name(True, m, f) for m, f in ALL_CLASSES if m is not EIM and (m, f) != (APDM, APDF)} == {
        "symmetric-like"
    }
    assert classic_name(False, EIM, ADF) == "no NAT, but a firewall with address-dependent filtering"


# --- layers and the old path ---------------------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules `path` imports (relative imports resolved against iceagent.stun.nat_discovery)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ["iceagent", "stun", "nat_discovery"][: 3 - node.level + 1] if node.level else []
            names.add(".".join([*base, *(node.module or "").split(".")]).strip("."))
    return names


@pytest.mark.parametrize("module", ["model.py", "explain.py", "result.py"])
def test_sans_io_modules_import_no_trio_and_no_io_layer(module: str) -> None:
    imported = _imports(PACKAGE / module)
    assert imported, "the import scan found nothing"
    forbidden = ("trio", "iceagent.net", "iceagent.agent", "iceagent.gatherers", "iceagent.stun.nat_discovery.probe")
    bad = sorted(name for name in imported if any(name == f or name.startswith(f + ".") for f in forbidden))
    assert bad == [], f"{module} imports {bad}"


def test_modules_stay_small() -> None:
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 600, path.name


def test_iceagent_nat_reexports_the_public_names() -> None:
    old = importlib.import_module("iceagent.nat")
    new = importlib.import_module("iceagent.stun.nat_discovery")
    public = {
        "ADF", "ADM", "ALL_CLASSES", "APDF", "APDM", "EIF", "EIM", "FilteringBehavior", "MappingBehavior",
        "MappingLifetime", "NatClass", "NatDiscoveryError", "NatDiscoveryResult", "classic_name",
        "direct_connection_possible", "discover_nat", "explain_direct_connectivity",
    }  # fmt: skip
    assert set(old.__all__) == set(new.__all__) == public
    for name in public:
        assert getattr(old, name) is getattr(new, name), name
    assert "iceagent.stun.nat_discovery" in (old.__doc__ or "")
