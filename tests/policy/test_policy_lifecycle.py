"""A case's life (issue 16, point 3): every legal and every illegal status change, and the
README's graph is the module's graph."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

import policy
from policy import CaseStatus, IllegalTransition, Transition, next_status

S = CaseStatus
OPEN = frozenset(s for s in S if s is not S.CLOSED)
DECIDED = {S.TRACING, S.AWAITING_RESPONSE, S.LOCATED, S.TRANSFERRED, S.LEFT_UK,
           S.WHEREABOUTS_UNKNOWN, S.NEEDS_REVIEW, S.ESCALATED}
ANSWERED = DECIDED - {S.AWAITING_RESPONSE, S.ESCALATED}

# Written out by hand from the guidance (docs/guidance.md, *Safeguarding*, *The joint
# decision*), not derived from the module: (transition, from) -> the statuses it may reach.
EXPECTED: dict[tuple[Transition, CaseStatus], set[CaseStatus]] = {
    **{(Transition.ACKNOWLEDGE, s): {S.ACKNOWLEDGED if s is S.RECEIVED else s} for s in S},
    **{(Transition.RECORD_DECISION, s): DECIDED for s in OPEN - {S.ESCALATED}},
    (Transition.RECORD_DECISION, S.ESCALATED): {S.ESCALATED},
    **{(Transition.RECORD_OFFICER_ANSWER, s): ANSWERED for s in OPEN - {S.ESCALATED}},
    **{(Transition.RAISE_CONCERN, s): {S.ESCALATED} for s in S},
    **{(Transition.CLOSE, s): {S.CLOSED} for s in OPEN},
    **{(Transition.CLOSE_BY_RULE, s): {S.CLOSED} for s in OPEN - {S.ESCALATED}},
    (Transition.REOPEN, S.CLOSED): {S.TRACING, S.ESCALATED},
    (Transition.ANONYMISE, S.CLOSED): {S.CLOSED},
}

ALL = list(itertools.product(Transition, S, S))
LEGAL = [(t, a, b) for t, a, b in ALL if b in EXPECTED.get((t, a), set())]
ILLEGAL = [(t, a, b) for t, a, b in ALL if b not in EXPECTED.get((t, a), set())]


def test_the_table_covers_every_transition_and_status() -> None:
    assert len(LEGAL) + len(ILLEGAL) == len(Transition) * len(S) ** 2
    assert {t for t, _, _ in LEGAL} == set(Transition)


@pytest.mark.parametrize(("transition", "current", "target"), LEGAL,
                         ids=lambda v: str(v))
def test_every_legal_transition_is_allowed(transition: Transition, current: CaseStatus,
                                           target: CaseStatus) -> None:
    assert next_status(current, transition, target) is target


@pytest.mark.parametrize(("transition", "current", "target"), ILLEGAL,
                         ids=lambda v: str(v))
def test_every_illegal_transition_is_an_error(transition: Transition, current: CaseStatus,
                                              target: CaseStatus) -> None:
    with pytest.raises(IllegalTransition) as err:
        next_status(current, transition, target)
    message = str(err.value)
    assert transition.value in message and current.value in message and "\n" not in message


def test_the_graph_is_exactly_the_table() -> None:
    module = {(t, a, b) for t, starts in policy.TRANSITIONS.items()
              for a, ends in starts.items() for b in ends}
    assert module == set(LEGAL)


@pytest.mark.parametrize(("transition", "current", "expected"), [
    (Transition.ACKNOWLEDGE, S.RECEIVED, S.ACKNOWLEDGED),
    (Transition.ACKNOWLEDGE, S.TRACING, S.TRACING),
    (Transition.ACKNOWLEDGE, S.CLOSED, S.CLOSED),
    (Transition.RAISE_CONCERN, S.CLOSED, S.ESCALATED),
    (Transition.CLOSE, S.ESCALATED, S.CLOSED),
    (Transition.CLOSE_BY_RULE, S.RECEIVED, S.CLOSED),
    (Transition.ANONYMISE, S.CLOSED, S.CLOSED),
])
def test_a_transition_with_one_end_needs_no_target(transition: Transition, current: CaseStatus,
                                                   expected: CaseStatus) -> None:
    assert next_status(current, transition) is expected


@pytest.mark.parametrize(("transition", "current"), [
    (Transition.RECORD_DECISION, S.TRACING), (Transition.RECORD_OFFICER_ANSWER, S.NEEDS_REVIEW),
    (Transition.REOPEN, S.CLOSED),
])
def test_a_transition_with_several_ends_must_name_one(transition: Transition,
                                                      current: CaseStatus) -> None:
    with pytest.raises(IllegalTransition):
        next_status(current, transition)


def test_the_guidances_two_rules_hold_in_the_graph() -> None:
    # A concern is never decided away: nothing but a person's close leaves escalated.
    leaving = {t for t, starts in policy.TRANSITIONS.items()
               for b in starts.get(S.ESCALATED, ()) if b is not S.ESCALATED}
    assert leaving == {Transition.CLOSE}
    # A closed case is traced again only when reopened or a new concern is raised.
    waking = {t for t, starts in policy.TRANSITIONS.items()
              for b in starts.get(S.CLOSED, ()) if b is not S.CLOSED}
    assert waking == {Transition.REOPEN, Transition.RAISE_CONCERN}


def test_a_reopened_case_with_a_concern_goes_to_a_person() -> None:
    assert policy.reopened_status(concern_recorded=True) is S.ESCALATED
    assert policy.reopened_status(concern_recorded=False) is S.TRACING


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError):
        next_status("lost", Transition.CLOSE)
    with pytest.raises(ValueError):
        next_status(S.TRACING, "delete")


# --- the README's graph -------------------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def _statuses(cell: str, transition: str, rows: list[tuple[str, str, str]]) -> set[S]:
    cell = cell.strip()
    if cell == "any status":
        return set(S)
    if cell == "any open status":
        return set(OPEN)
    if cell == "any open status but escalated":
        return set(OPEN - {S.ESCALATED})
    if cell == "any other status":
        named = set().union(*(_statuses(f, t, []) for t, f, _ in rows
                              if t == transition and f != cell))
        return set(S) - named
    words = set(re.findall(r"[a-z_]+", cell))
    return {s for s in S if s.value in words}


def _readme_graph() -> set[tuple[Transition, S, S]]:
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- lifecycle-graph", 1)[1].split("<!-- /lifecycle-graph -->", 1)[0]
    rows = []
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            rows.append((cells[0].strip("`"), cells[1], cells[2]))
    triples = set()
    for name, frm, to in rows:
        for a in _statuses(frm, name, rows):
            ends = {a} if to == "the same status" else _statuses(to, name, rows)
            triples |= {(Transition(name), a, b) for b in ends}
    return triples


def test_the_readmes_graph_is_the_modules_graph() -> None:
    module = {(t, a, b) for t, starts in policy.TRANSITIONS.items()
              for a, ends in starts.items() for b in ends}
    assert _readme_graph() == module
