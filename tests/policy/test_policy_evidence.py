"""Issue 14: every finding reaches the rulebook, matches are weighed, rounds are defined once,
and the decisions the guidance gives to a person are only proposed."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from evidence_kit import Ev

from policy import (
    AUTOMATIC_OUTCOMES,
    Action,
    ActionKind,
    Answer,
    CaseOutcome,
    CaseStatus,
    CheckOutcome,
    CheckResult,
    MatchBasis,
    Rule,
    complete_rounds,
    decide,
    finding_key,
    officer_decision,
    results_from_evidence,
)
from tests.la_configs import case_facts

TODAY = date(2026, 3, 2)
ALL = frozenset({"other_la", "housing", "lpd", "dwp", "border_force"})
CASE = case_facts(reference="MX-0001", school_urn="116000", received=date(2026, 1, 12),
                  rounds=3, enabled_connectors=ALL)
SCHOOL = Action(kind=ActionKind.NOTIFY_SCHOOL, school_urn="116000")
REVIEW = Action(kind=ActionKind.OFFICER_REVIEW)



def found(connector: str, *evidence: Ev, official: bool = False) -> list[CheckResult]:
    return list(results_from_evidence(connector, "found", evidence, official=official))


def nf(*connectors: str) -> list[CheckResult]:
    return [CheckResult(connector=c, outcome=CheckOutcome.NOT_FOUND) for c in connectors]


# --- 1. every finding reaches decide ----------------------------------------------------


def test_two_schools_from_one_agency_are_conflicting_evidence_not_on_roll_elsewhere() -> None:
    results = found("other_la", Ev("on_roll", school_urn="125111", la_code="936"),
                    Ev("on_roll", school_urn="125222", la_code="852"))
    assert len(results) == 2
    decision = decide(CASE, results, TODAY)
    assert decision.rule is Rule.CONFLICTING_EVIDENCE
    assert SCHOOL not in decision.actions


def test_two_las_from_one_agency_are_conflicting_evidence() -> None:
    results = found("other_la", Ev("resident", la_code="936", postcode="GU1 1AA"),
                    Ev("resident", la_code="852", postcode="SO14 2AA"))
    assert decide(CASE, results, TODAY).rule is Rule.CONFLICTING_EVIDENCE


def test_one_agencys_current_and_forwarding_address_in_one_la_do_not_conflict() -> None:
    results = found("housing", Ev("address", la_code="936", postcode="GU1 1AA"),
                    Ev("address", la_code="936", postcode="GU2 2BB"), official=True)
    assert decide(CASE, results, TODAY).rule is Rule.TRANSFERRED


def test_an_arrival_after_the_departure_from_the_same_agency_undoes_it() -> None:
    results = found("border_force", Ev("departure", departure_date=date(2026, 1, 20)),
                    Ev("arrival", departure_date=date(2026, 2, 1)), official=True)
    assert decide(CASE, results, TODAY).rule is Rule.KEEP_TRACING


def test_a_found_answer_with_nothing_usable_is_no_whereabouts() -> None:
    results = found("border_force", Ev("arrival", departure_date=date(2026, 2, 1)))
    assert [r.outcome for r in results] == [CheckOutcome.FOUND]
    assert decide(CASE, results + nf("other_la", "housing", "lpd", "dwp"), TODAY).rule is (
        Rule.WHEREABOUTS_UNKNOWN)


def test_a_safeguarding_flag_on_any_piece_of_evidence_escalates() -> None:
    results = found("other_la", Ev("on_roll", school_urn="125111"),
                    Ev("resident", la_code="936", safeguarding=True))
    assert decide(CASE, results, TODAY).status is CaseStatus.ESCALATED


def test_evidence_that_does_not_say_how_it_matched_reads_as_demographic() -> None:
    (result,) = found("other_la", Ev("on_roll", school_urn="125111", match_basis=None))
    assert result.match_basis is MatchBasis.DEMOGRAPHIC


# --- 4. one task per concern --------------------------------------------------------------


def test_a_recorded_concern_keeps_the_case_escalated_and_asks_for_no_second_task() -> None:
    case = replace(CASE, safeguarding=True, concerns=frozenset({"school"}))
    decision = decide(case, nf(*ALL), TODAY)
    assert decision.status is CaseStatus.ESCALATED and decision.actions == ()
    flagged = CheckResult(connector="dwp", outcome=CheckOutcome.NOT_FOUND, safeguarding=True)
    decision = decide(case, [flagged], TODAY)
    assert decision.actions == (Action(kind=ActionKind.SAFEGUARDING_TASK, connector="dwp"),)
    agency_only = replace(CASE, concerns=frozenset({"dwp"}))
    assert decide(agency_only, nf(*ALL), TODAY).status is CaseStatus.ESCALATED


# --- 9. weighing the evidence: every combination and its precedence ---------------------

ON_ROLL = Ev("on_roll", school_urn="125111", la_code="936", date_seen=date(2026, 1, 5))
RESIDENT = Ev("resident", la_code="936", postcode="GU1 1AA", date_seen=date(2026, 1, 5))
IN_AREA = Ev("resident", la_code="850", postcode="SO23 8UJ", date_seen=date(2026, 1, 5))
DEPARTED = Ev("departure", departure_date=date(2026, 1, 20), departure_country="PL")
CANDIDATES = {
    CaseOutcome.ON_ROLL_ELSEWHERE: ("other_la", ON_ROLL),
    CaseOutcome.RESIDENT_OTHER_LA: ("other_la", RESIDENT),
    CaseOutcome.LEFT_UK: ("border_force", DEPARTED),
    CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL: ("housing", IN_AREA),
}
STATUS = {
    CaseOutcome.ON_ROLL_ELSEWHERE: CaseStatus.LOCATED,
    CaseOutcome.RESIDENT_OTHER_LA: CaseStatus.TRANSFERRED,
    CaseOutcome.LEFT_UK: CaseStatus.LEFT_UK,
    CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL: CaseStatus.NEEDS_REVIEW,
}


@pytest.mark.parametrize("candidate", list(CANDIDATES), ids=str)
@pytest.mark.parametrize(
    ("basis", "confidence", "official", "strong"),
    [
        ("identifier", 1.0, False, True),
        ("identifier", 0.9, False, True),  # at the threshold counts
        ("identifier", 0.89, False, False),
        ("demographic", 1.0, False, False),
        (None, 1.0, False, False),
        ("demographic", 1.0, True, True),  # official records: DWP, Border Force
        ("demographic", 0.5, True, False),
    ],
)
def test_only_a_strong_match_acts_alone(candidate: CaseOutcome, basis: str | None,
                                        confidence: float, official: bool,
                                        strong: bool) -> None:
    connector, ev = CANDIDATES[candidate]
    ev = replace(ev, match_basis=basis, confidence=confidence)
    decision = decide(CASE, found(connector, ev, official=official), TODAY)
    if strong:
        assert decision.status is STATUS[candidate] and decision.outcome is candidate
        assert decision.proposed is None
    else:
        assert decision.rule is Rule.POSSIBLE_MATCH
        assert decision.status is CaseStatus.NEEDS_REVIEW
        assert decision.outcome is CaseOutcome.POSSIBLE_MATCH
        assert decision.proposed is candidate
        assert decision.actions == (REVIEW,)  # nothing goes to a school or another LA
        assert decision.on_confirm  # what an officer's confirmation would do
        assert decision.findings


def test_the_threshold_is_a_setting() -> None:
    results = found("other_la", replace(ON_ROLL, confidence=0.7))
    assert decide(CASE, results, TODAY).rule is Rule.POSSIBLE_MATCH
    assert decide(CASE, results, TODAY, match_threshold=0.7).rule is Rule.ON_ROLL_ELSEWHERE


def test_a_weak_school_beside_conflicting_addresses_is_a_conflict() -> None:
    results = (found("lpd", replace(ON_ROLL, match_basis="demographic"))
               + found("housing", IN_AREA) + found("dwp", RESIDENT))
    assert decide(CASE, results, TODAY).rule is Rule.CONFLICTING_EVIDENCE


def test_a_strong_school_settles_it_beside_a_weak_one_for_the_same_school() -> None:
    results = found("other_la", ON_ROLL) + found("lpd", replace(ON_ROLL, match_basis=None))
    assert decide(CASE, results, TODAY).rule is Rule.ON_ROLL_ELSEWHERE


def test_a_weak_residence_still_blocks_left_uk_when_it_is_later() -> None:
    later = replace(RESIDENT, match_basis="demographic", date_seen=date(2026, 2, 10))
    results = found("border_force", DEPARTED, official=True) + found("housing", later)
    decision = decide(CASE, results, TODAY)
    assert decision.rule is Rule.POSSIBLE_MATCH
    assert decision.proposed is CaseOutcome.RESIDENT_OTHER_LA


def test_a_confirmed_finding_is_strong_and_a_rejected_one_is_no_whereabouts() -> None:
    results = found("housing", replace(RESIDENT, match_basis="demographic"))
    key = finding_key(results[0])
    confirmed = replace(CASE, confirmed_findings=frozenset({key}))
    assert decide(confirmed, results, TODAY).rule is Rule.TRANSFERRED
    rejected = replace(CASE, rejected_findings=frozenset({key}))
    assert decide(rejected, results, TODAY).rule is Rule.KEEP_TRACING
    all_else = nf("other_la", "lpd", "dwp", "border_force")
    assert decide(rejected, results + all_else, TODAY).rule is Rule.WHEREABOUTS_UNKNOWN


def test_finding_keys_are_stable_across_rounds_and_hide_the_address() -> None:
    one = found("housing", replace(RESIDENT, postcode="gu1 1aa"))[0]
    two = found("housing", RESIDENT)[0]
    assert finding_key(one) == finding_key(two)
    assert "GU1" not in finding_key(one) and len(finding_key(one)) == 16
    assert finding_key(found("dwp", RESIDENT)[0]) != finding_key(two)


# --- 10-11. the joint decision and other outcomes are a person's ----------------------------


def test_whereabouts_unknown_is_only_proposed_and_its_letter_waits() -> None:
    decision = decide(CASE, nf(*ALL), TODAY)
    assert decision.status is CaseStatus.NEEDS_REVIEW and decision.outcome is None
    assert decision.proposed is CaseOutcome.WHEREABOUTS_UNKNOWN
    assert all(a.kind is ActionKind.OFFICER_REVIEW for a in decision.actions)
    assert Action(kind=ActionKind.RECOMMEND_JOINT_DELETION, school_urn="116000") in (
        decision.on_confirm)


def test_whereabouts_unknown_can_never_be_automatic() -> None:
    with pytest.raises(ValueError, match="whereabouts_unknown"):
        decide(CASE, nf(*ALL), TODAY,
               automatic={*AUTOMATIC_OUTCOMES, CaseOutcome.WHEREABOUTS_UNKNOWN})


def test_an_outcome_left_out_of_the_automatic_set_is_proposed_even_on_a_strong_match() -> None:
    results = found("other_la", RESIDENT)
    decision = decide(CASE, results, TODAY,
                      automatic={CaseOutcome.ON_ROLL_ELSEWHERE, CaseOutcome.LEFT_UK})
    assert decision.rule is Rule.TRANSFERRED and decision.status is CaseStatus.NEEDS_REVIEW
    assert decision.proposed is CaseOutcome.RESIDENT_OTHER_LA and decision.outcome is None
    assert decision.actions == (REVIEW,)
    assert Action(kind=ActionKind.NOTIFY_OTHER_LA, la_code="936") in decision.on_confirm


def test_an_officers_decision_stands_until_new_evidence() -> None:
    case = replace(CASE, confirmed_outcome=CaseOutcome.WHEREABOUTS_UNKNOWN)
    decision = decide(case, nf(*ALL), TODAY)
    assert decision.status is CaseStatus.WHEREABOUTS_UNKNOWN
    assert decision.rule is Rule.OFFICER_DECISION and decision.actions == ()
    assert decide(case, found("other_la", ON_ROLL), TODAY).rule is Rule.ON_ROLL_ELSEWHERE


def test_an_officer_decision_takes_the_outcomes_actions() -> None:
    d = officer_decision(CASE, CaseOutcome.WHEREABOUTS_UNKNOWN)
    assert d.status is CaseStatus.WHEREABOUTS_UNKNOWN and d.rule is Rule.OFFICER_DECISION
    assert [a.kind for a in d.actions] == [ActionKind.NOTIFY_SCHOOL,
                                           ActionKind.RECOMMEND_JOINT_DELETION,
                                           ActionKind.RECOMMEND_LPD_UPLOAD]
    moved = officer_decision(CASE, "resident_other_la", la_codes=["936"])
    assert moved.actions[0] == Action(kind=ActionKind.NOTIFY_OTHER_LA, la_code="936")
    with pytest.raises(ValueError, match="LA code"):
        officer_decision(CASE, CaseOutcome.RESIDENT_OTHER_LA)
    with pytest.raises(ValueError):
        officer_decision(CASE, CaseOutcome.CONFLICTING_EVIDENCE)


# --- 6. rounds that count -----------------------------------------------------------------

D1, D2, D3 = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)
TWO = frozenset({"a", "b"})


def answers(round_: int, on: date, **outcomes: str) -> list[Answer]:
    return [Answer(round_, c, o, on) for c, o in outcomes.items()]


@pytest.mark.parametrize(
    ("rows", "counted"),
    [
        pytest.param(answers(1, D1, a="not_found", b="not_found"), 1, id="complete"),
        pytest.param(answers(1, D1, a="not_found", b="found"), 1, id="found-is-final"),
        pytest.param(answers(1, D1, a="not_found", b="pending"), 0, id="pending"),
        pytest.param(answers(1, D1, a="not_found", b="error"), 0, id="error"),
        pytest.param(answers(1, D1, a="not_found"), 0, id="an-agency-not-asked"),
        pytest.param(answers(1, D1, a="not_found", b="not_found")
                     + answers(2, D1, a="not_found", b="not_found")
                     + answers(3, D1, a="not_found", b="not_found"), 1,
                     id="three-rounds-one-day-count-once"),
        pytest.param(answers(1, D1, a="not_found", b="not_found")
                     + answers(2, D2, a="not_found")
                     + answers(3, D3, a="not_found", b="not_found"), 2,
                     id="a-narrow-trace-between-nights"),
        pytest.param(answers(1, D1, a="not_found", b="not_found", c="error"), 1,
                     id="a-disabled-agency-does-not-matter"),
    ],
)
def test_complete_rounds(rows: list[Answer], counted: int) -> None:
    assert complete_rounds(rows, TWO) == counted


def test_no_enabled_connector_means_no_rounds() -> None:
    assert complete_rounds(answers(1, D1, a="not_found"), frozenset()) == 0


def test_whereabouts_needs_counted_rounds_not_traces() -> None:
    assert decide(replace(CASE, rounds=2), nf(*ALL), TODAY).rule is Rule.KEEP_TRACING
