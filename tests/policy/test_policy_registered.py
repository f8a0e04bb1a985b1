"""Issue 20: "registered with a service in LA X" (a GP practice, a health visiting team) is a
lead to where the child lives, never a home address (docs/connectors.md, "How the rulebook
uses evidence"), and the kinds of evidence the rulebook reads are one list."""

from __future__ import annotations

from datetime import date
from typing import get_args

import pytest
from evidence_kit import Ev

from connectors import EvidenceKind
from policy import (
    EVIDENCE_KINDS,
    CaseOutcome,
    CaseStatus,
    CheckOutcome,
    CheckResult,
    Rule,
    decide,
    evidence_problems,
    finding_key,
    results_from_evidence,
)
from tests.la_configs import case_facts

TODAY = date(2026, 3, 2)
ALL = frozenset({"other_la", "housing", "lpd", "dwp", "border_force", "gp"})
CASE = case_facts(reference="MX-0001", school_urn="116000", received=date(2026, 1, 12),
                  rounds=3, enabled_connectors=ALL)



def found(connector: str, *evidence: Ev, official: bool = False) -> list[CheckResult]:
    return list(results_from_evidence(connector, "found", evidence, official=official))


def nf(*connectors: str) -> list[CheckResult]:
    return [CheckResult(connector=c, outcome=CheckOutcome.NOT_FOUND) for c in connectors]


GP_852 = Ev("registered", la_code="852", address="1 Surgery Row", postcode="SO14 7AA")
GP_850 = Ev("registered", la_code="850", postcode="SO23 9AA")
HOME_853 = Ev("resident", la_code="853", address="2 Home Lane", postcode="RG21 4AA")
HOME_850 = Ev("resident", la_code="850", address="3 Home Lane", postcode="SO22 5AA")

# (name, the agencies' answers, expected rule, status, outcome, proposed)
CASES = [
    # A registration alone, however strong the match (even official), is only a lead.
    ("registration_in_other_la_is_a_possible_match",
     [*found("gp", GP_852), *nf("other_la", "housing", "lpd", "dwp", "border_force")],
     Rule.POSSIBLE_MATCH, CaseStatus.NEEDS_REVIEW, CaseOutcome.POSSIBLE_MATCH,
     CaseOutcome.RESIDENT_OTHER_LA),
    ("official_registration_is_still_a_possible_match",
     [*found("gp", GP_852, official=True)], Rule.POSSIBLE_MATCH, CaseStatus.NEEDS_REVIEW,
     CaseOutcome.POSSIBLE_MATCH, CaseOutcome.RESIDENT_OTHER_LA),
    ("registration_in_home_la_proposes_located_in_area",
     [*found("gp", GP_850)], Rule.POSSIBLE_MATCH, CaseStatus.NEEDS_REVIEW,
     CaseOutcome.POSSIBLE_MATCH, CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL),
    # The service's postcode is not the child's: no "conflicting evidence" with a home address.
    ("service_postcode_never_conflicts_with_a_home_address",
     [*found("gp", GP_852), *found("housing", HOME_853)], Rule.TRANSFERRED,
     CaseStatus.TRANSFERRED, CaseOutcome.RESIDENT_OTHER_LA, None),
    ("registration_in_another_la_than_the_home_does_not_conflict",
     [*found("gp", GP_852), *found("housing", HOME_850)], Rule.LOCATED_IN_AREA,
     CaseStatus.NEEDS_REVIEW, CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL, None),
    ("the_same_facts_as_an_address_would_conflict",
     [*found("gp", Ev("address", la_code="852", address="1 Surgery Row",
                      postcode="SO14 7AA")), *found("housing", HOME_853)],
     Rule.CONFLICTING_EVIDENCE, CaseStatus.NEEDS_REVIEW, CaseOutcome.CONFLICTING_EVIDENCE, None),
    ("registrations_in_two_las_and_nothing_else_conflict",
     [*found("gp", GP_852), *found("dentist", Ev("registered", la_code="853"))],
     Rule.CONFLICTING_EVIDENCE, CaseStatus.NEEDS_REVIEW, CaseOutcome.CONFLICTING_EVIDENCE, None),
    ("a_school_settles_it_whatever_the_registration",
     [*found("gp", GP_852), *found("other_la", Ev("on_roll", school_urn="117000",
                                                  la_code="850"))],
     Rule.ON_ROLL_ELSEWHERE, CaseStatus.LOCATED, CaseOutcome.ON_ROLL_ELSEWHERE, None),
]


@pytest.mark.parametrize(("answers", "rule", "status", "outcome", "proposed"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_registration_with_a_service_is_a_lead_not_a_home(
    answers: list[CheckResult], rule: Rule, status: CaseStatus, outcome: CaseOutcome,
    proposed: CaseOutcome | None,
) -> None:
    d = decide(CASE, answers, TODAY)
    assert (d.rule, d.status, d.outcome, d.proposed) == (rule, status, outcome, proposed)


def test_a_registration_carries_only_its_la_to_the_rulebook() -> None:
    (r,) = found("gp", GP_852)
    assert (r.la_code, r.registered, r.address_key, r.postcode) == ("852", True, None, None)


def test_an_officer_who_confirms_a_registration_lead_establishes_the_outcome() -> None:
    answers = found("gp", GP_852)
    proposal = decide(CASE, answers, TODAY)
    confirmed = case_facts(reference="MX-0001", school_urn="116000", received=date(2026, 1, 12),
                           rounds=3, enabled_connectors=ALL,
                           confirmed_outcome=proposal.proposed,
                           confirmed_findings=frozenset(proposal.findings))
    d = decide(confirmed, answers, TODAY)
    assert (d.status, d.outcome) == (CaseStatus.TRANSFERRED, CaseOutcome.RESIDENT_OTHER_LA)


def test_an_officer_who_rejects_it_leaves_no_whereabouts() -> None:
    answers = [*found("gp", GP_852), *nf("other_la", "housing", "lpd", "dwp", "border_force")]
    proposal = decide(CASE, answers, TODAY)
    rejected = case_facts(reference="MX-0001", school_urn="116000", received=date(2026, 1, 12),
                          rounds=3, enabled_connectors=ALL,
                          rejected_findings=frozenset(proposal.findings))
    d = decide(rejected, answers, TODAY)
    assert d.rule is Rule.WHEREABOUTS_UNKNOWN


def test_finding_keys_of_other_evidence_are_unchanged() -> None:
    # Keys are stored with officers' decisions: adding registrations must not move them.
    (r,) = found("housing", HOME_853)
    assert finding_key(r) == "2c3b9b67a3e59989"
    (g,) = found("gp", GP_852)
    assert finding_key(g) != finding_key(CheckResult(connector="gp", outcome="found",
                                                     la_code="852"))


def test_the_rulebook_reads_every_kind_a_connector_may_return() -> None:
    assert frozenset(get_args(EvidenceKind)) == EVIDENCE_KINDS


@pytest.mark.parametrize(("evidence", "problem"), [
    ([Ev("registered", la_code="852")], None),
    ([Ev("on_roll", school_urn="117000", match_basis=None)], "match_basis not said"),
    ([Ev("gp_visit", la_code="852")], "not one the rulebook reads"),
    ([Ev("registered")], "nothing the rules use"),
    ([Ev("on_roll", school_urn="117000", confidence=1.5)], "between 0 and 1"),
], ids=["fine", "no-basis", "unknown-kind", "nothing-usable", "bad-confidence"])
def test_evidence_problems_names_what_the_rulebook_cannot_weigh(
    evidence: list[Ev], problem: str | None
) -> None:
    problems = evidence_problems(evidence)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems
