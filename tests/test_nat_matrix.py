"""The NAT traversal matrix (issue 4, item 4; completed with relays by issue 5, item 6), on the vnet under MockClock.

Agent A behind NAT type X and agent B behind NAT type Y, for the 9 mapping x filtering combinations of
RFC 4787 plus "none" on either side (100 cells), and B as an ICE-lite server on a public address against A
behind each of them (the `lite` column, 10 cells), run twice:

* STUN only (`test_cell`): the embedded STUN server on the virtual internet and no relay. Each cell must
  do what `nat_matrix_tools.theory` predicts (connect directly, with the predicted candidate types, or
  fail). This run is the ground truth for "a direct path exists".
* STUN and TURN (`test_cell_with_turn`): the embedded TURN server on the virtual internet as well. Every
  cell connects; exactly the cells without a direct path are relayed (and the data really goes through
  the TURN server), every other cell selects the same pair as without TURN (and no data touches the
  relay).

When both runs covered every cell, docs/nat-matrix.md and docs/nat-matrix.svg are regenerated from the
recorded outcomes (only written when their content changes, so a re-run does not churn git).
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import trio
from nat_matrix_render import render_markdown, render_svg, write_docs
from nat_matrix_tools import (
    COLUMNS,
    KINDS,
    LITE,
    NAT_TYPES,
    CellRun,
    Outcome,
    run_cell,
    split,
    summary,
    theory,
)

CELLS = list(itertools.product(NAT_TYPES, NAT_TYPES))
IDS = [f"{a}_vs_{b}" for a, b in CELLS]
#: The `lite` column: A (full, controlling) behind each NAT type, B an ICE-lite server on a public address.
LITE_CELLS = [(a, LITE) for a in NAT_TYPES]
ALL_CELLS = CELLS + LITE_CELLS
RESULTS: dict[tuple[str, str], Outcome] = {}
RELAYED: dict[tuple[str, str], Outcome] = {}


@pytest.fixture(scope="module")
def matrix() -> Iterator[dict[tuple[str, str], Outcome]]:
    """Collects every STUN-only cell's outcome; after the module, regenerates the docs if both runs are complete."""
    yield RESULTS
    if len(RESULTS) == len(RELAYED) == len(ALL_CELLS):
        write_docs(RESULTS, RELAYED)
        for name, outcomes in (("STUN only", RESULTS), ("STUN and TURN", RELAYED)):
            counts = summary(outcomes.values())
            print(f"\nNAT matrix, {name}:", ", ".join(f"{kind} {counts[kind]}" for kind in KINDS))


@pytest.fixture(scope="module")
def relay_matrix(matrix: dict[tuple[str, str], Outcome]) -> dict[tuple[str, str], Outcome]:
    """Collects every cell's outcome of the run with the TURN server."""
    return RELAYED


def check_seen_addresses(run: CellRun) -> None:
    """Where each side's packets appear to come from, as the peer sees them (ground truth: the NAT tables
    and the TURN server's allocations)."""
    outcome = run.outcome
    (ma, _), (mb, _) = split(outcome.nat_a), split(outcome.nat_b)
    for mapping, local, seen, srflx, mapped, relay in (
        (ma, outcome.a_local, run.a_as_seen_by_b, run.srflx_a, run.mapped_a, run.relay_a),
        (mb, outcome.b_local, run.b_as_seen_by_a, run.srflx_b, run.mapped_b, run.relay_b),
    ):
        assert seen is not None
        if local == "relay":
            assert seen in relay  # the peer sends to this side's relayed address on the TURN server
        elif mapping == "none":
            assert not srflx and not mapped  # on the internet: no NAT, no srflx candidate
        elif mapping == "eim":
            assert seen in srflx  # the same mapping towards the STUN server and the peer (or its relay)
        else:
            # ADM/APDM: the mapping towards the peer is not the one the STUN server saw, so the peer can
            # only have learned it from the checks: a peer-reflexive candidate (RFC 8445 7.3.1.3).
            assert seen in mapped and seen not in srflx


@pytest.mark.parametrize(("nat_a", "nat_b"), CELLS, ids=IDS)
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
    assert outcome.kind != "relay"

    if not outcome.connected:
        return
    assert run.time_to_connect is not None
    check_seen_addresses(run)


@pytest.mark.parametrize(("nat_a", "nat_b"), CELLS, ids=IDS)
async def test_cell_with_turn(
    nat_a: str, nat_b: str, relay_matrix: dict[tuple[str, str], Outcome], autojump_clock: object
) -> None:
    with trio.fail_after(120):
        run = await run_cell(nat_a, nat_b, turn=True)
    outcome = run.outcome
    relay_matrix[(nat_a, nat_b)] = outcome

    assert outcome.connected, "with a TURN server every cell connects"
    direct = theory(nat_a, nat_b)
    stun_only = RESULTS.get((nat_a, nat_b))  # this session's STUN-only run of the cell, when it ran first
    if stun_only is not None:
        assert stun_only == direct
    relayed = outcome.kind == "relay"
    assert relayed == (not direct.connected), "relayed exactly where no direct path exists"
    if relayed:
        assert "relay" in (outcome.a_local, outcome.a_remote) and "relay" in (outcome.b_local, outcome.b_remote)
        assert run.data_relayed == {"a->b": 2, "b->a": 2}, "the data went through the TURN server (in, out)"
    else:
        assert outcome == direct, "a direct cell selects the same pair with a TURN server as without"
        assert run.data_relayed == {"a->b": 0, "b->a": 0}, "a direct cell's data does not touch the relay"
    assert outcome == theory(nat_a, nat_b, turn=True)
    assert run.relay_a and run.relay_b, "both sides allocated on the TURN server"
    check_seen_addresses(run)


@pytest.mark.parametrize("turn", [False, True], ids=["stun_only", "with_turn"])
@pytest.mark.parametrize("nat_a", NAT_TYPES)
async def test_lite_cell(nat_a: str, turn: bool, matrix: dict[tuple[str, str], Outcome],
                         relay_matrix: dict[tuple[str, str], Outcome], autojump_clock: object) -> None:
    """A full client behind `nat_a` (STUN, and TURN in the second run) against an ICE-lite server on a public
    address (RFC 8445 2.5): always a direct path (the client's checks open its own NAT), the pair `theory`
    predicts (as against a full agent without NAT), the lite side sends no check, gathers no srflx or
    relay candidate, and no data touches the relay."""
    with trio.fail_after(120):
        run = await run_cell(nat_a, LITE, turn=turn)
    outcome = run.outcome
    (relay_matrix if turn else matrix)[(nat_a, LITE)] = outcome
    assert outcome.connected, "a full client reaches a lite server on a public address through any NAT"
    assert outcome == theory(nat_a, LITE) == theory(nat_a, LITE, turn=True)
    assert (outcome.a_remote, outcome.b_local) == ("host", "host")
    assert run.checks_sent_b == 0, "a lite agent sends no connectivity check (RFC 8445 2.5)"
    assert not run.srflx_b and not run.relay_b
    assert bool(run.relay_a) == turn
    assert run.data_relayed == {"a->b": 0, "b->a": 0}
    check_seen_addresses(run)


def test_rendering_is_deterministic_and_well_formed() -> None:
    outcomes = {(a, b): theory(a, b) for a, b in ALL_CELLS}
    relayed = {(a, b): theory(a, b, turn=True) for a, b in ALL_CELLS}
    shuffled = dict(reversed(list(outcomes.items())))
    shuffled_relayed = dict(reversed(list(relayed.items())))
    assert render_markdown(outcomes, relayed) == render_markdown(shuffled, shuffled_relayed)
    assert render_svg(relayed) == render_svg(shuffled_relayed)
    for picture in (render_svg(relayed), render_svg(outcomes, servers="STUN only")):
        svg = ET.fromstring(picture)
        rects = svg.findall("{http://www.w3.org/2000/svg}rect")
        assert len(rects) == 1 + len(ALL_CELLS) + len(KINDS)  # background, cells (the lite column too), legend
    for markdown, tables in ((render_markdown(outcomes), 1), (render_markdown(outcomes, relayed), 2)):
        table = [line for line in markdown.splitlines() if line.startswith("| `")]
        assert len(table) == tables * len(NAT_TYPES)
        assert all(line.count("|") == len(COLUMNS) + 2 for line in table)
        assert all(line.endswith(" |") and "?" not in line for line in table)  # every cell, lite ones too


def test_theory_relays_exactly_the_cells_without_a_direct_path() -> None:
    """The prediction with TURN: the STUN-only outcome where it connects, a one-relay pair elsewhere."""
    counts = summary(theory(a, b) for a, b in CELLS)
    assert counts == {"host": 1, "srflx": 15, "prflx": 45, "relay": 0, "failed": 39}
    relayed = summary(theory(a, b, turn=True) for a, b in CELLS)
    assert relayed == {**counts, "relay": 39, "failed": 0}
    # a dependent-mapping side keeps its own NAT mapping (prflx) and uses the other side's relay
    assert theory("eim-apdf", "apdm-apdf", turn=True).label == "relay/prflx"
    assert theory("apdm-apdf", "eim-apdf", turn=True).label == "prflx/relay"
    assert theory("apdm-apdf", "apdm-apdf", turn=True).label == "prflx/relay"  # tie: A's mapping, B's relay
    # a lite server on a public address: every client connects directly, as to a full agent without NAT
    lite = summary(theory(a, LITE) for a in NAT_TYPES)
    assert lite == {"host": 1, "srflx": 3, "prflx": 6, "relay": 0, "failed": 0}
    assert all(theory(a, LITE, turn=True) == theory(a, LITE) for a in NAT_TYPES)


def test_relay_outcomes_render_as_relayed() -> None:
    """Relayed cells render with their own colour and count, and say that no direct path exists."""
    outcomes = {(a, b): theory(a, b) for a, b in CELLS}
    relayed = {(a, b): theory(a, b, turn=True) for a, b in CELLS}
    assert relayed[("eim-apdf", "apdm-apdf")].kind == "relay"
    assert summary(relayed.values())["relay"] == 39
    markdown = render_markdown(outcomes, relayed)
    assert "**relay/prflx** (no direct path)" in markdown
    assert "## With STUN and TURN" in markdown and "## STUN only" in markdown
    assert "relay (39)" in render_svg(relayed)
    assert "(relayed)" in render_svg(relayed)
