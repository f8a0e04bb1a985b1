"""The tracing rulebook: every rule and its precedence."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from policy import (
    RULEBOOK,
    Action,
    ActionKind,
    CaseFacts,
    CaseOutcome,
    CaseStatus,
    CheckOutcome,
    CheckResult,
    Decision,
    MatchBasis,
    Rule,
    decide,
    next_check_due,
)
from tests.la_configs import case_facts

TODAY = date(2026, 3, 2)
ALL = frozenset({"other_la", "housing", "lpd", "dwp", "border_force"})
CASE = case_facts(
    reference="MX-0001",
    school_urn="116000",
    school_la="850",
    received=date(2026, 1, 12),
    rounds=3,
    enabled_connectors=ALL,
)
SCHOOL = Action(kind=ActionKind.NOTIFY_SCHOOL, school_urn="116000")
REVIEW = Action(kind=ActionKind.OFFICER_REVIEW)


def found(connector: str, **evidence: object) -> CheckResult:
    """A strong finding (matched on an identifier), unless the test says otherwise: these
    tests are about which rule the evidence fires; weak evidence is tested below."""
    evidence.setdefault("match_basis", MatchBasis.IDENTIFIER)
    return CheckResult(connector=connector, outcome=CheckOutcome.FOUND, **evidence)  # type: ignore[arg-type]


def weak(connector: str, **evidence: object) -> CheckResult:
    return found(connector, match_basis=MatchBasis.DEMOGRAPHIC, **evidence)


def nf(connector: str) -> CheckResult:
    return CheckResult(connector=connector, outcome=CheckOutcome.NOT_FOUND)


def pending(connector: str, expected_by: date | None = None) -> CheckResult:
    return CheckResult(connector=connector, outcome=CheckOutcome.PENDING, expected_by=expected_by)


def error(connector: str) -> CheckResult:
    return CheckResult(connector=connector, outcome=CheckOutcome.ERROR)


def all_not_found(*, except_: str | None = None) -> list[CheckResult]:
    return [nf(c) for c in sorted(ALL) if c != except_]


ON_ROLL_HANTS = found("other_la", school_urn="116999", la_code="850")
ON_ROLL_SURREY = found("other_la", school_urn="125111", la_code="936")
DEPARTED = found("border_force", departure_date=date(2026, 1, 20), departure_country="PL")
HOME_ADDRESS = found("housing", address_key="k-1", postcode="SO23 8UJ", la_code="850")
SURREY_RESIDENT = found("other_la", la_code="936")


# --- each rule on its own -------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "results", "expected"),
    [
        pytest.param(
            replace(CASE, safeguarding=True),
            [],
            Decision(
                status=CaseStatus.ESCALATED,
                outcome=None,
                rule=Rule.SAFEGUARDING,
                actions=(Action(kind=ActionKind.SAFEGUARDING_TASK),),
            ),
            id="safeguarding-on-referral",
        ),
        pytest.param(
            CASE,
            [
                nf("lpd"),
                CheckResult(connector="dwp", outcome=CheckOutcome.ERROR, safeguarding=True),
            ],
            Decision(
                status=CaseStatus.ESCALATED,
                outcome=None,
                rule=Rule.SAFEGUARDING,
                # Issue 14: the task names the agency that raised the concern.
                actions=(Action(kind=ActionKind.SAFEGUARDING_TASK, connector="dwp"),),
            ),
            id="safeguarding-flagged-by-an-agency",
        ),
        pytest.param(
            CASE,
            [ON_ROLL_HANTS, nf("lpd")],
            Decision(
                status=CaseStatus.LOCATED,
                outcome=CaseOutcome.ON_ROLL_ELSEWHERE,
                rule=Rule.ON_ROLL_ELSEWHERE,
                actions=(SCHOOL,),
            ),
            id="on-roll-in-home-la",
        ),
        pytest.param(
            CASE,
            [ON_ROLL_SURREY],
            Decision(
                status=CaseStatus.LOCATED,
                outcome=CaseOutcome.ON_ROLL_ELSEWHERE,
                rule=Rule.ON_ROLL_ELSEWHERE,
                actions=(SCHOOL, Action(kind=ActionKind.NOTIFY_OTHER_LA, la_code="936")),
            ),
            id="on-roll-in-another-la",
        ),
        pytest.param(
            CASE,
            [ON_ROLL_SURREY, found("lpd", school_urn=" 125111 ")],
            Decision(
                status=CaseStatus.LOCATED,
                outcome=CaseOutcome.ON_ROLL_ELSEWHERE,
                rule=Rule.ON_ROLL_ELSEWHERE,
                actions=(SCHOOL, Action(kind=ActionKind.NOTIFY_OTHER_LA, la_code="936")),
            ),
            id="two-agencies-agree-on-the-school",
        ),
        pytest.param(
            CASE,
            [ON_ROLL_HANTS, found("lpd", school_urn="125111")],
            Decision(
                status=CaseStatus.NEEDS_REVIEW,
                outcome=CaseOutcome.CONFLICTING_EVIDENCE,
                rule=Rule.CONFLICTING_EVIDENCE,
                actions=(REVIEW,),
            ),
            id="two-schools-conflict",
        ),
        pytest.param(
            CASE,
            [HOME_ADDRESS, SURREY_RESIDENT],
            Decision(
                status=CaseStatus.NEEDS_REVIEW,
                outcome=CaseOutcome.CONFLICTING_EVIDENCE,
                rule=Rule.CONFLICTING_EVIDENCE,
                actions=(REVIEW,),
            ),
            id="two-las-conflict",
        ),
        pytest.param(
            CASE,
            [HOME_ADDRESS, found("dwp", address_key="k-2", la_code="850")],
            Decision(
                status=CaseStatus.NEEDS_REVIEW,
                outcome=CaseOutcome.CONFLICTING_EVIDENCE,
                rule=Rule.CONFLICTING_EVIDENCE,
                actions=(REVIEW,),
            ),
            id="two-addresses-conflict",
        ),
        pytest.param(
            CASE,
            [HOME_ADDRESS, found("dwp", postcode="SO22 5PF")],
            Decision(
                status=CaseStatus.NEEDS_REVIEW,
                outcome=CaseOutcome.CONFLICTING_EVIDENCE,
                rule=Rule.CONFLICTING_EVIDENCE,
                actions=(REVIEW,),
            ),
            id="two-postcodes-conflict",
        ),
        pytest.param(
            CASE,
            [DEPARTED, nf("lpd")],
            Decision(
                status=CaseStatus.LEFT_UK,
                outcome=CaseOutcome.LEFT_UK,
                rule=Rule.LEFT_UK,
                actions=(SCHOOL, Action(kind=ActionKind.RECOMMEND_LPD_UPLOAD, destination="MMM")),
            ),
            id="left-uk",
        ),
        pytest.param(
            CASE,
            [SURREY_RESIDENT, nf("lpd")],
            Decision(
                status=CaseStatus.TRANSFERRED,
                outcome=CaseOutcome.RESIDENT_OTHER_LA,
                rule=Rule.TRANSFERRED,
                actions=(Action(kind=ActionKind.NOTIFY_OTHER_LA, la_code="936"), SCHOOL),
            ),
            id="transferred",
        ),
        pytest.param(
            CASE,
            [HOME_ADDRESS],
            Decision(
                status=CaseStatus.NEEDS_REVIEW,
                outcome=CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL,
                rule=Rule.LOCATED_IN_AREA,
                actions=(REVIEW,),
            ),
            id="located-in-area",
        ),
        pytest.param(
            CASE,
            [pending("dwp", TODAY + timedelta(days=3))],
            Decision(
                status=CaseStatus.AWAITING_RESPONSE, outcome=None, rule=Rule.AWAITING_RESPONSE
            ),
            id="awaiting-response",
        ),
        pytest.param(
            CASE,
            all_not_found(),
            # Issue 14, point 10: only proposed; the letters wait for an officer.
            Decision(
                status=CaseStatus.NEEDS_REVIEW,
                outcome=None,
                rule=Rule.WHEREABOUTS_UNKNOWN,
                actions=(REVIEW,),
                proposed=CaseOutcome.WHEREABOUTS_UNKNOWN,
                on_confirm=(
                    SCHOOL,
                    Action(kind=ActionKind.RECOMMEND_JOINT_DELETION, school_urn="116000"),
                    Action(kind=ActionKind.RECOMMEND_LPD_UPLOAD, destination="XXX"),
                ),
            ),
            id="whereabouts-unknown-is-proposed",
        ),
        pytest.param(
            CASE,
            [],
            Decision(status=CaseStatus.TRACING, outcome=None, rule=Rule.KEEP_TRACING),
            id="keep-tracing",
        ),
    ],
)
def test_each_rule(case: CaseFacts, results: list[CheckResult], expected: Decision) -> None:
    assert decide(case, results, TODAY) == expected


# --- precedence: every rule beats every rule after it ---------------------------------

# Evidence that makes each rule fire; combining two rules' evidence must fire the earlier.
TRIGGERS: dict[Rule, tuple[dict[str, object], list[CheckResult]]] = {
    Rule.SAFEGUARDING: ({"safeguarding": True}, []),
    Rule.ON_ROLL_ELSEWHERE: ({}, [ON_ROLL_SURREY]),
    Rule.CONFLICTING_EVIDENCE: (
        {},
        [
            found("housing", la_code="850", address_key="a"),
            found("district2", la_code="851", address_key="b"),
        ],
    ),
    # A weak finding of the same school ON_ROLL_SURREY names (so with it there is one school).
    Rule.POSSIBLE_MATCH: ({}, [weak("lpd3", school_urn="125111", la_code="936")]),
    Rule.LEFT_UK: ({}, [DEPARTED]),
    # Residence seen before DEPARTED's departure date, so it does not block left_uk.
    Rule.TRANSFERRED: ({}, [found("dwp", la_code="936", seen_on=date(2026, 1, 5))]),
    Rule.LOCATED_IN_AREA: (
        {},
        [found("lpd2", address_key="x", la_code="850", seen_on=date(2026, 1, 5))],
    ),
    Rule.OFFICER_DECISION: ({"confirmed_outcome": CaseOutcome.LEFT_UK}, []),
    Rule.AWAITING_RESPONSE: ({}, [pending("pending_agency")]),
    Rule.WHEREABOUTS_UNKNOWN: ({}, all_not_found()),
}


def _merge(rules: list[Rule]) -> tuple[CaseFacts, list[CheckResult]]:
    case = CASE
    results: list[CheckResult] = []
    for rule in rules:
        overrides, extra = TRIGGERS[rule]
        case = replace(case, **overrides)  # type: ignore[arg-type]
        results += extra
    return case, results


@pytest.mark.parametrize("rule", list(TRIGGERS))
def test_rule_fires_alone(rule: Rule) -> None:
    case, results = _merge([rule])
    assert decide(case, results, TODAY).rule is rule


@pytest.mark.parametrize(
    ("winner", "loser"),
    [
        (RULEBOOK[i], RULEBOOK[j])
        for i in range(len(RULEBOOK))
        for j in range(i + 1, len(RULEBOOK))
        if RULEBOOK[i] in TRIGGERS
        and RULEBOOK[j] in TRIGGERS
        # Residence in another LA and in the home LA together is a conflict, not precedence.
        and (RULEBOOK[i], RULEBOOK[j]) != (Rule.TRANSFERRED, Rule.LOCATED_IN_AREA)
        # An officer's left_uk and Border Force's departure agree: the evidence rule fires.
        and (RULEBOOK[i], RULEBOOK[j]) != (Rule.LEFT_UK, Rule.OFFICER_DECISION)
    ],
)
def test_precedence(winner: Rule, loser: Rule) -> None:
    case, results = _merge([loser, winner])
    assert decide(case, results, TODAY).rule is winner


def test_awaiting_response_beats_whereabouts_unknown() -> None:
    results = all_not_found(except_="dwp") + [pending("dwp")]
    assert decide(CASE, results, TODAY).rule is Rule.AWAITING_RESPONSE


def test_rulebook_order_is_the_documented_order() -> None:
    assert [str(r) for r in RULEBOOK] == [
        "safeguarding",
        "on_roll_elsewhere",
        "conflicting_evidence",
        "possible_match",
        "left_uk",
        "transferred",
        "located_in_area",
        "officer_decision",
        "awaiting_response",
        "whereabouts_unknown",
        "keep_tracing",
    ]


# --- safeguarding ---------------------------------------------------------------------


@pytest.mark.parametrize("outcome", list(CheckOutcome))
def test_a_flag_from_any_agency_escalates_whatever_its_outcome(outcome: CheckOutcome) -> None:
    flagged = CheckResult(connector="other_la", outcome=outcome, safeguarding=True)
    decision = decide(CASE, [*all_not_found(except_="other_la"), flagged], TODAY)
    assert decision.status is CaseStatus.ESCALATED
    assert decision.actions == (Action(kind=ActionKind.SAFEGUARDING_TASK, connector="other_la"),)


def test_safeguarding_overrides_a_found_child_and_never_closes() -> None:
    decision = decide(replace(CASE, safeguarding=True), [ON_ROLL_HANTS], TODAY)
    assert decision.rule is Rule.SAFEGUARDING and decision.status != CaseStatus.CLOSED


# --- on roll elsewhere ----------------------------------------------------------------


def test_the_referring_school_itself_is_not_a_new_school() -> None:
    lpd_last_school = found("lpd", school_urn="116000", la_code="850", ctf_destination="XXX")
    assert decide(CASE, [lpd_last_school], TODAY).rule is Rule.KEEP_TRACING
    results = [*all_not_found(except_="lpd"), lpd_last_school]
    assert decide(CASE, results, TODAY).rule is Rule.WHEREABOUTS_UNKNOWN


def test_on_roll_beats_conflicting_residence() -> None:
    results = [ON_ROLL_HANTS, HOME_ADDRESS, found("dwp", la_code="936", address_key="k-9")]
    assert decide(CASE, results, TODAY).rule is Rule.ON_ROLL_ELSEWHERE


def test_on_roll_school_without_la_code_notifies_only_the_school() -> None:
    decision = decide(CASE, [found("lpd", school_urn="125111")], TODAY)
    assert decision.actions == (SCHOOL,)


def test_home_la_is_configurable() -> None:
    surrey = replace(CASE, home_la="936")
    decision = decide(surrey, [ON_ROLL_HANTS], TODAY)
    assert Action(kind=ActionKind.NOTIFY_OTHER_LA, la_code="850") in decision.actions
    assert decide(surrey, [SURREY_RESIDENT], TODAY).rule is Rule.LOCATED_IN_AREA


# --- conflicts ------------------------------------------------------------------------


def test_same_address_from_two_agencies_is_no_conflict() -> None:
    results = [HOME_ADDRESS, found("dwp", address_key="k-1", postcode="so238uj")]
    assert decide(CASE, results, TODAY).rule is Rule.LOCATED_IN_AREA


def test_an_unstated_la_does_not_conflict_with_a_stated_one() -> None:
    results = [SURREY_RESIDENT, found("dwp", address_key="k-5")]
    decision = decide(CASE, results, TODAY)
    assert decision.rule is Rule.TRANSFERRED
    assert decision.actions[0] == Action(kind=ActionKind.NOTIFY_OTHER_LA, la_code="936")


def test_every_finding_of_a_connector_counts() -> None:
    # Issue 14, point 1: results are every finding of each connector's latest answer; none
    # is dropped. One agency's two addresses in one LA are its own account, not a conflict.
    results = [found("housing", address_key="old", la_code="850"), HOME_ADDRESS]
    assert decide(CASE, results, TODAY).rule is Rule.LOCATED_IN_AREA
    assert decide(CASE, [ON_ROLL_HANTS, nf("other_la")], TODAY).rule is Rule.ON_ROLL_ELSEWHERE


# --- left the UK ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("other", "rule"),
    [
        (found("housing", address_key="k", la_code="850", seen_on=date(2026, 1, 5)), Rule.LEFT_UK),
        (
            found("housing", address_key="k", la_code="850", seen_on=date(2026, 1, 20)),
            Rule.LEFT_UK,
        ),  # same day as the departure is not *later*
        (
            found("housing", address_key="k", la_code="850", seen_on=date(2026, 2, 5)),
            Rule.LOCATED_IN_AREA,
        ),
        (found("other_la", la_code="936", seen_on=date(2026, 2, 5)), Rule.TRANSFERRED),
        (found("other_la", la_code="936", seen_on=date(2025, 12, 1)), Rule.LEFT_UK),
        # Undated UK evidence may be later, so it blocks left_uk.
        (found("housing", address_key="k", la_code="850"), Rule.LOCATED_IN_AREA),
        # LPD destinations are not UK evidence.
        (found("lpd", ctf_destination="XXX"), Rule.LEFT_UK),
        (found("lpd", ctf_destination="MMM"), Rule.LEFT_UK),
        (nf("housing"), Rule.LEFT_UK),
    ],
)
def test_left_uk_needs_no_later_uk_evidence(other: CheckResult, rule: Rule) -> None:
    assert decide(CASE, [DEPARTED, other], TODAY).rule is rule


def test_arrival_after_departure_blocks_left_uk() -> None:
    back = found("border_force", departure_date=date(2026, 1, 20), seen_on=date(2026, 2, 10))
    assert decide(CASE, [back], TODAY).rule is Rule.KEEP_TRACING


def test_the_latest_departure_counts() -> None:
    results = [
        found("border_force", departure_date=date(2026, 2, 20)),
        found("dwp", address_key="k", la_code="850", seen_on=date(2026, 2, 1)),
        found("border_force_2", departure_date=date(2026, 1, 10)),
    ]
    assert decide(CASE, results, TODAY).rule is Rule.LEFT_UK


def test_lpd_mmm_alone_is_not_a_recorded_departure() -> None:
    mmm = found("lpd", ctf_destination="MMM")
    assert decide(CASE, [mmm], TODAY).rule is Rule.KEEP_TRACING
    assert decide(CASE, [*all_not_found(except_="lpd"), mmm], TODAY).rule is (
        Rule.WHEREABOUTS_UNKNOWN
    )


# --- awaiting response ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected_by", "chased"),
    [
        (None, False),
        (TODAY + timedelta(days=1), False),
        (TODAY, False),
        (TODAY - timedelta(days=1), True),
    ],
)
def test_overdue_deferred_enquiries_are_chased(expected_by: date | None, chased: bool) -> None:
    decision = decide(CASE, [nf("lpd"), pending("dwp", expected_by)], TODAY)
    assert decision.status is CaseStatus.AWAITING_RESPONSE
    expected = (Action(kind=ActionKind.CHASE_DEFERRED, connector="dwp"),) if chased else ()
    assert decision.actions == expected


def test_each_overdue_enquiry_is_chased_in_connector_order() -> None:
    past = TODAY - timedelta(days=2)
    decision = decide(CASE, [pending("dwp", past), pending("border_force", past)], TODAY)
    assert [a.connector for a in decision.actions] == ["border_force", "dwp"]


# --- whereabouts unknown --------------------------------------------------------------


@pytest.mark.parametrize(
    ("rounds", "min_rounds", "rule"),
    [
        (3, 3, Rule.WHEREABOUTS_UNKNOWN),
        (2, 3, Rule.KEEP_TRACING),
        (0, 3, Rule.KEEP_TRACING),
        (2, 2, Rule.WHEREABOUTS_UNKNOWN),
        (5, 6, Rule.KEEP_TRACING),
    ],
)
def test_whereabouts_unknown_needs_enough_rounds(rounds: int, min_rounds: int, rule: Rule) -> None:
    case = replace(CASE, rounds=rounds)
    assert decide(case, all_not_found(), TODAY, min_rounds=min_rounds).rule is rule


@pytest.mark.parametrize(
    "results",
    [
        pytest.param(all_not_found(except_="dwp"), id="an-enabled-connector-has-not-answered"),
        pytest.param([*all_not_found(except_="dwp"), error("dwp")], id="an-error"),
    ],
)
def test_whereabouts_unknown_needs_every_enabled_connector(results: list[CheckResult]) -> None:
    assert decide(CASE, results, TODAY).rule is Rule.KEEP_TRACING


def test_results_from_disabled_connectors_do_not_block_whereabouts_unknown() -> None:
    results = [*all_not_found(), error("retired_connector")]
    assert decide(CASE, results, TODAY).rule is Rule.WHEREABOUTS_UNKNOWN


def test_lpd_xxx_counts_as_no_whereabouts() -> None:
    results = [*all_not_found(except_="lpd"), found("lpd", ctf_destination="XXX")]
    assert decide(CASE, results, TODAY).rule is Rule.WHEREABOUTS_UNKNOWN


def test_no_enabled_connectors_never_means_whereabouts_unknown() -> None:
    case = replace(CASE, enabled_connectors=frozenset(), rounds=10)
    assert decide(case, all_not_found(), TODAY).rule is Rule.KEEP_TRACING


# --- values ---------------------------------------------------------------------------


def test_check_result_accepts_outcome_strings() -> None:
    result = CheckResult(connector="lpd", outcome="not_found")  # type: ignore[arg-type]
    assert result.outcome is CheckOutcome.NOT_FOUND
    with pytest.raises(ValueError):
        CheckResult(connector="lpd", outcome="maybe")  # type: ignore[arg-type]


def test_decision_values_are_plain_strings_for_the_timeline() -> None:
    decision = decide(CASE, all_not_found(), TODAY)
    assert decision.status == "needs_review"
    assert decision.proposed == "whereabouts_unknown"
    assert decision.rule == "whereabouts_unknown"
    assert [a.kind for a in decision.on_confirm] == [
        "notify_school",
        "recommend_joint_deletion",
        "recommend_lpd_upload",
    ]


def test_status_and_outcome_enums_cover_the_lifecycle() -> None:
    assert {s.value for s in CaseStatus} == {
        "received",
        "acknowledged",
        "tracing",
        "awaiting_response",
        "located",
        "transferred",
        "left_uk",
        "whereabouts_unknown",
        "needs_review",
        "escalated",
        "closed",
    }
    assert {
        "on_roll_elsewhere",
        "resident_other_la",
        "left_uk",
        "located_in_area_not_on_roll",
        "whereabouts_unknown",
        "conflicting_evidence",
    } <= {o.value for o in CaseOutcome}


@pytest.mark.parametrize(
    ("status", "days"),
    [
        ("received", 1),
        ("acknowledged", 1),
        ("tracing", 1),
        ("awaiting_response", 1),
        ("escalated", 1),
        ("needs_review", 7),
        ("located", 7),
        ("transferred", 7),
        ("left_uk", 30),
        ("whereabouts_unknown", 30),
        ("closed", None),
    ],
)
def test_next_check_due(status: str, days: int | None) -> None:
    expected = None if days is None else TODAY + timedelta(days=days)
    assert next_check_due(status, TODAY) == expected


def test_next_check_due_monthly_interval_is_configurable_and_status_validated() -> None:
    assert next_check_due(CaseStatus.WHEREABOUTS_UNKNOWN, TODAY, recheck_days=28) == date(
        2026, 3, 30
    )
    with pytest.raises(ValueError):
        next_check_due("lost", TODAY)
