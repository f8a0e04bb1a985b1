"""Templates: every template renders minimised content; anything else is refused by key."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

import policy
from models.enums import CaseStatus, Template
from models.schemas import SchoolAction
from notifications import (
    ALLOWED_FIELDS,
    OPTIONAL_FIELDS,
    TEMPLATE_FIELDS,
    InvalidPersonalisationError,
    render,
    validate_personalisation,
)
from tests.la_configs import LA_NAME

# A child's record as intake sees it. None of it may reach a message except the initials.
CANARY = {
    "forename": "Zebedee",
    "surname": "Quixote-Canary",
    "dob": "2014-02-28",
    "postcode": "SO99 9ZZ",
    "upn": "H801200001001",
    "address_line1": "7 Canary Lane",
}
CANARY_VALUES = tuple(CANARY.values())

SCHOOL = {"reference": "CME-2026-0042", "initials": "Z.Q.", "school_name": "Test Primary School",
          "la_name": LA_NAME}

SAMPLES: dict[Template, dict[str, Any]] = {
    Template.acknowledgement: {**SCHOOL, "due_date": "2026-12-07"},
    Template.acknowledgement_reminder: {"reference": "CME-2026-0042", "due_date": "2026-12-07"},
    Template.missing_school_actions: {**SCHOOL, "missing_actions": ["phone_parents", "ask_peers"]},
    Template.not_cme_signpost: {
        **SCHOOL,
        "reason": "reduced_hours_provision",
        "signpost_team": "reduced_hours_provision",
        "signpost_contact": "rhp@hants.example.gov.uk",
    },
    Template.resolution: {**SCHOOL, "outcome": "located"},
    Template.half_termly_update: {
        "school_name": "Test Primary School",
        "la_name": LA_NAME,
        "updates": [
            {"reference": "CME-2026-0042", "initials": "Z.Q.", "status": "tracing"},
            {"reference": "CME-2026-0043", "initials": "A.B.", "status": "awaiting_response"},
        ],
    },
    Template.inter_la: {"reference": "CME-2026-0042", "initials": "Z.Q.", "other_la_code": "852",
                        "la_name": LA_NAME},
    Template.safeguarding_task: {"reference": "CME-2026-0042"},
    Template.pmooe_attendance: {**SCHOOL, "pmooe_reason": "leave_not_returned",
                                "met_on": "2026-03-02"},
    Template.delivery_failing: {"channel": "smtp", "failing": 48, "gave_up": 0,
                                "failing_since": "2026-03-02", "retry_days": 5},
}


def test_every_template_has_fields_and_a_sample() -> None:
    assert set(TEMPLATE_FIELDS) == set(Template) == set(OPTIONAL_FIELDS) == set(SAMPLES)
    for tpl in Template:
        assert TEMPLATE_FIELDS[tpl] | OPTIONAL_FIELDS[tpl] <= ALLOWED_FIELDS


def test_no_personal_field_is_ever_allowed() -> None:
    forbidden = {
        "forename",
        "surname",
        "name",
        "full_name",
        "dob",
        "date_of_birth",
        "upn",
        "address",
        "address_line1",
        "postcode",
        "town",
        "parents",
        "nhs_number",
    }
    assert not forbidden & ALLOWED_FIELDS


@pytest.mark.parametrize("template", list(Template))
def test_every_template_renders_with_its_required_fields(template: Template) -> None:
    out = render(template, SAMPLES[template])
    assert out.subject and "\n" not in out.subject
    assert out.body.endswith("\n") and "\n\n\n" not in out.body
    if template is not Template.delivery_failing:  # about the outbox, not one case
        reference = SAMPLES[template].get("reference", "CME-2026-0042")
        assert reference in out.subject + out.body
    assert "{{" not in out.body and "None" not in out.body
    for value in CANARY_VALUES:
        assert value not in out.subject + out.body


@pytest.mark.parametrize("template", list(Template))
@pytest.mark.parametrize("key", sorted(CANARY))
def test_a_personal_field_is_rejected_by_name_without_echoing_it(
    template: Template, key: str
) -> None:
    with pytest.raises(InvalidPersonalisationError) as info:
        render(template, {**SAMPLES[template], key: CANARY[key]})
    assert info.value.key == key
    assert key in str(info.value)
    assert CANARY[key] not in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("template", list(Template))
def test_a_missing_required_key_is_named(template: Template) -> None:
    for key in TEMPLATE_FIELDS[template]:
        values = {k: v for k, v in SAMPLES[template].items() if k != key}
        with pytest.raises(InvalidPersonalisationError, match=f"'{key}' is required"):
            render(template, values)


def test_a_key_of_another_template_is_refused_as_unused() -> None:
    with pytest.raises(InvalidPersonalisationError, match="'initials' is not used"):
        render(Template.safeguarding_task, {"reference": "CME-1", "initials": "Z.Q."})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("initials", "Zebedee Quixote-Canary"),
        ("initials", "ZQ"),
        ("initials", "Zo.Q."),
        ("initials", "1.2."),
        ("reference", "CME 1; Zebedee"),
        ("school_name", "Test School\nBcc: Zebedee@example.org"),
        ("school_name", "x" * 201),
        ("school_name", "   "),
    ],
)
def test_malformed_values_are_rejected_without_echoing_them(key: str, value: str) -> None:
    with pytest.raises(InvalidPersonalisationError) as info:
        render(Template.acknowledgement, {**SCHOOL, key: value})
    assert info.value.key == key
    assert "Zebedee" not in str(info.value)
    if value.strip():
        assert value.strip() not in str(info.value)


def test_an_unknown_code_is_rejected() -> None:
    with pytest.raises(InvalidPersonalisationError, match="'outcome' must be one of"):
        render(Template.resolution, {**SCHOOL, "outcome": "Zebedee"})
    with pytest.raises(InvalidPersonalisationError, match="'missing_actions'"):
        render(Template.missing_school_actions, {**SCHOOL, "missing_actions": ["Zebedee"]})


def test_half_termly_update_items_are_checked_key_by_key() -> None:
    item = {"reference": "CME-1", "initials": "Z.Q.", "status": "tracing", "surname": "Quixote"}
    with pytest.raises(InvalidPersonalisationError) as info:
        render(Template.half_termly_update, {"school_name": "S", "updates": [item],
                                             "la_name": LA_NAME})
    assert info.value.key == "updates[0].surname"
    assert "Quixote" not in str(info.value)


@pytest.mark.parametrize(
    ("outcome", "must_say"),
    [
        ("located", ["9(1)(a)"]),
        ("on_roll_elsewhere", ["9(1)(a)"]),
        ("transferred", ["(LA 852)", "written to that authority"]),
        ("resident_other_la", ["written to that authority"]),
        ("left_uk", ["Lost Pupil Database", "MMM"]),
        (
            "whereabouts_unknown",
            ["joint decision", "9(1)(i)", "9(1)(h)", "XXX", "Lost Pupil Database"],
        ),
    ],
)
def test_resolution_tells_the_school_its_next_step(outcome: str, must_say: list[str]) -> None:
    out = render(Template.resolution, {**SCHOOL, "outcome": outcome, "other_la_code": "852",
                                       "other_la_told": True})
    for phrase in must_say:
        assert phrase in out.body
    others = {"9(1)(a)", "MMM", "XXX"} - set(must_say)
    assert not any(o in out.body for o in others)


def test_a_transfer_letter_claims_no_message_we_could_not_send() -> None:
    # Issue 14, point 7: with no contact for that LA the school must not read "we have told".
    out = render(Template.resolution, {**SCHOOL, "outcome": "resident_other_la",
                                       "other_la_code": "852", "other_la_told": False})
    assert "written to" not in out.body and "told" not in out.body
    assert "passing the case to that authority" in out.body


def test_an_inter_la_message_without_a_contact_says_what_to_forward_and_to_whom() -> None:
    body = {"reference": "CME-2026-0042", "initials": "Z.Q.", "other_la_code": "852",
            "la_name": LA_NAME}
    forwarded = render(Template.inter_la, {**body, "forward": True})
    assert forwarded.subject.startswith("PLEASE FORWARD to LA 852")
    assert "forward the message below" in forwarded.body
    assert "LA 852" in forwarded.body and "CME_OTHER_LA_CONTACTS" in forwarded.body
    direct = render(Template.inter_la, {**body, "forward": False})
    assert "FORWARD" not in direct.subject and "forward" not in direct.body.lower()


def test_the_safeguarding_task_names_who_raised_the_concern() -> None:
    out = render(Template.safeguarding_task, {"reference": "CME-2026-0042", "raised_by": "dwp"})
    assert "raised by agency dwp" in out.body
    school = render(Template.safeguarding_task,
                    {"reference": "CME-2026-0042", "raised_by": "school"})
    assert "raised by the referring school" in school.body


def test_resolution_subjects_differ_by_outcome() -> None:
    subjects = {
        render(Template.resolution, {**SCHOOL, "outcome": o}).subject
        for o in ("located", "transferred", "left_uk", "whereabouts_unknown")
    }
    assert len(subjects) == 4


def test_half_termly_update_lists_each_case_in_plain_words_and_hides_escalation() -> None:
    updates = [
        {"reference": f"CME-{i}", "initials": "A.B.", "status": s.value}
        for i, s in enumerate(CaseStatus)
    ]
    out = render(
        Template.half_termly_update,
        {"school_name": "Test School", "updates": updates, "period": "Autumn 2 2026",
         "la_name": LA_NAME},
    )
    for i, _ in enumerate(CaseStatus):
        assert f"CME-{i} (pupil A.B.):" in out.body
    assert "safeguard" not in out.body.lower() and "escalat" not in out.body.lower()
    assert "Autumn 2 2026" in out.subject


def test_not_cme_signpost_names_the_team_and_contact() -> None:
    out = render(Template.not_cme_signpost, SAMPLES[Template.not_cme_signpost])
    assert "Reduced Hours Provision team (rhp@hants.example.gov.uk)" in out.body
    plain = render(Template.not_cme_signpost, {**SCHOOL, "reason": "not_compulsory_school_age"})
    assert "not of compulsory school age" in plain.body and "Inclusion Support" not in plain.body


def test_inter_la_carries_reference_initials_and_our_contact_only() -> None:
    out = render(
        Template.inter_la,
        {**SAMPLES[Template.inter_la], "team_contact": "cme@hants.example.gov.uk"},
    )
    assert "CME-2026-0042" in out.subject and "Z.Q." in out.body
    assert "cme@hants.example.gov.uk" in out.body
    assert "Test Primary School" not in out.body


def test_safeguarding_task_says_review_now_and_nothing_else() -> None:
    out = render(Template.safeguarding_task, {"reference": "CME-2026-0042", "rule": "safeguarding"})
    assert "URGENT" in out.subject and "review" in out.body and "now" in out.body
    assert "Z.Q." not in out.body


def test_acknowledgement_reminder_gives_the_due_date_in_words() -> None:
    out = render(
        Template.acknowledgement_reminder, {"reference": "CME-1", "due_date": date(2026, 12, 7)}
    )
    assert "Monday 7 December 2026" in out.body


def test_letters_carry_the_la_name_they_are_given() -> None:
    assert "Hampshire County Council" in render(Template.acknowledgement, SCHOOL).body
    other = render(Template.acknowledgement, {**SCHOOL, "la_name": "Test Borough Council"})
    assert "Test Borough Council" in other.body


def test_missing_school_actions_lists_each_action_in_words() -> None:
    codes = [a.value for a in SchoolAction]
    out = render(Template.missing_school_actions, {**SCHOOL, "missing_actions": codes})
    assert out.body.count("\n- ") == len(codes)
    assert "phone_parents" not in out.body


def test_validate_personalisation_normalises_to_json_safe_values() -> None:
    values = validate_personalisation(
        Template.acknowledgement_reminder, {"reference": " CME-1 ", "due_date": date(2026, 1, 5)}
    )
    assert values == {"reference": "CME-1", "due_date": "2026-01-05"}


def test_codes_cover_the_policy_and_model_enums() -> None:
    # A new team, reason or status in policy/ must get words here too.
    for team in policy.InclusionTeam:
        render(Template.not_cme_signpost, {**SCHOOL, "reason": "on_roll", "signpost_team": team})
    not_cme = {
        "not_compulsory_school_age",
        "reduced_hours_provision",
        "on_roll",
        "ehe_suitable",
        "ehe_unassessed",
        "alternative_provision",
    }
    assert not_cme <= {r.value for r in policy.ClassificationReason}
    for reason in not_cme | {"medical_absence"}:
        render(Template.not_cme_signpost, {**SCHOOL, "reason": reason})


def test_rendered_repr_hides_content() -> None:
    out = render(Template.acknowledgement, SCHOOL)
    assert "Z.Q." not in repr(out)


def test_unknown_template_is_rejected() -> None:
    with pytest.raises(InvalidPersonalisationError, match="unknown template"):
        render("letter_to_parents", {})


def test_initials_may_use_any_alphabet() -> None:
    out = render(Template.acknowledgement, {**SCHOOL, "initials": "É.Ł."})
    assert "(pupil É.Ł.)" in out.body
