"""The NAT traversal matrix (issue 4, item 4): every pair of NAT types on the vnet, under MockClock.

Agent A behind NAT type X and agent B behind NAT type Y, for the 9 mapping x filtering combinations of
RFC 4787 plus "none" on either side (100 cells), with the embedded STUN server on the virtual internet
and no relay. Each cell must do what `nat_matrix_tools.theory` predicts (connect directly, with the
predicted candidate types, or fail), and its outcome is recorded. When the run covered every cell,
docs/nat-matrix.md and docs/nat-matrix.svg are regenerated from the recorded outcomes (only written
when their content changes, so a re-run does not churn git).
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import trio
from nat_matrix_tools import (
    KINDS,
    NAT_TYPES,
    Outcome,
    render_markdown,
    render_svg,
    run_cell,
    split,
    summary,
    theory,
    write_docs,
)

CELLS = list(itertools.product(NAT_TYPES, NAT_TYPES))
RESULTS: dict[tuple[str, str], Outcome] = {}


@pytest.fixture(scope="module")
def matrix() -> Iterator[dict[tuple[str, str], Outcome]]:
    """Collects every cell's outcome; after the module, regenerates the docs if all cells ran."""
    yield RESULTS
    if len(RESULTS) == len(CELLS):
        write_docs(RESULTS)
        counts = summary(RESULTS.values())
        print("\nNAT matrix:", ", ".join(f"{kind} {counts[kind]}" for kind in KINDS))


@pytest.mark.parametrize(("nat_a", "nat_b"), CELLS, ids=[f"{a}_vs_{b}" for a, b in CELLS])
async def test_cell(nat_a: str, nat_b: str, matrix: dict[tuple[str, str], Outcome], autojump_clock: object) -> None:
    with trio.fail_after(120):
        run = await run_cell(nat_a, nat_b)
    outcome = run.outcome
    matrix[(nat_a, nat_b)] = outcome
    (ma, fa), (mb, fb) = split(nat_a), split(nat_b)

    # The floor, stated directly (theory() covers it too).
    if ma in ("none", "eim") and mb in ("none", "eim"):
        assert outcome.connected, "both sides map endpoint-independently: must connect directly"
    if (ma == "eim" and fa in ("eif", "adf")) or (mb == "eim" and fb in ("eif", "adf")):
        assert outcome.connected, "an EIM side with EIF or ADF filtering connects to anything"

    assert outcome == theory(nat_a, nat_b)

    if not outcome.connected:
        return
    assert run.time_to_connect is not None
    # Where each side's packets appear to come from, as the peer sees them (ground truth: the NAT tables).
    for mapping, seen, srflx, mapped in (
        (ma, run.a_as_seen_by_b, run.srflx_a, run.mapped_a),
        (mb, run.b_as_seen_by_a, run.srflx_b, run.mapped_b),
    ):
        assert seen is not None
        if mapping == "none":
            assert not srflx and not mapped  # on the internet: no NAT, no srflx candidate
        elif mapping == "eim":
            assert seen in srflx  # the same mapping towards the STUN server and the peer
        else:
            # ADM/APDM: the mapping towards the peer is not the one the STUN server saw, so the peer can
            # only have learned it from the checks: a peer-reflexive candidate (RFC 8445 7.3.1.3).
            assert seen in mapped and seen not in srflx


def test_rendering_is_deterministic_and_well_formed() -> None:
    outcomes = {(a, b): theory(a, b) for a, b in CELLS}
    shuffled = dict(reversed(list(outcomes.items())))
    assert render_markdown(outcomes) == render_markdown(shuffled)
    assert render_svg(outcomes) == render_svg(shuffled)
    svg = ET.fromstring(render_svg(outcomes))
    rects = svg.findall("{http://www.w3.org/2000/svg}rect")
    assert len(rects) == 1 + len(CELLS) + len(KINDS)  # background, cells, legend
    table = [line for line in render_markdown(outcomes).splitlines() if line.startswith("| `")]
    assert len(table) == len(NAT_TYPES)
    assert all(line.count("|") == len(NAT_TYPES) + 2 for line in table)


def test_relay_outcomes_have_a_place() -> None:
    """The TURN work records relay cells: they render with their own colour and count."""
    relayed = {(a, b): theory(a, b) for a, b in CELLS}
    relayed[("eim-apdf", "apdm-apdf")] = Outcome("eim-apdf", "apdm-apdf", "relay", "prflx", "prflx", "relay")
    assert relayed[("eim-apdf", "apdm-apdf")].kind == "relay"
    assert summary(relayed.values())["relay"] == 1
    assert "relay/prflx" in render_markdown(relayed)
    assert "relay (1)" in render_svg(relayed)
