"""Classification as CME / PMOOE / NOT_CME and signposting (docs/guidance.md, Classification)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from policy import (
    Category,
    Classification,
    ClassificationReason,
    InclusionTeam,
    PmooeFinding,
    PmooeReason,
    classify,
    compulsory_school_age,
    signpost_for,
)

DOB = date(2015, 5, 5)  # Year 5 in 2025/26
ON = date(2026, 1, 15)
START, END = compulsory_school_age(DOB)
ABSENT = PmooeFinding(reason=PmooeReason.CONTINUOUS_ABSENCE, triggered_on=date(2026, 1, 9))


@pytest.mark.parametrize(
    ("kwargs", "category", "reason"),
    [
        # 1. not of compulsory school age beats everything
        (
            {"on": START - timedelta(days=1), "on_roll": False},
            "NOT_CME",
            "not_compulsory_school_age",
        ),
        ({"on": END + timedelta(days=1), "on_roll": False}, "NOT_CME", "not_compulsory_school_age"),
        (
            {"on": date(2020, 1, 1), "on_roll": True, "pmooe": ABSENT},
            "NOT_CME",
            "not_compulsory_school_age",
        ),
        ({"on": START, "on_roll": False}, "CME", "not_registered"),
        ({"on": END, "on_roll": False}, "CME", "not_registered"),
        # 2. on roll with reduced hours beats a PMOOE finding
        (
            {"on_roll": True, "reduced_hours": True, "pmooe": ABSENT},
            "NOT_CME",
            "reduced_hours_provision",
        ),
        ({"on_roll": True, "reduced_hours": True}, "NOT_CME", "reduced_hours_provision"),
        # 3. on roll with a finding
        ({"on_roll": True, "pmooe": ABSENT}, "PMOOE", "pmooe_continuous_absence"),
        (
            {"on_roll": True, "pmooe": PmooeFinding(PmooeReason.LEAVE_NOT_RETURNED, ON)},
            "PMOOE",
            "pmooe_leave_not_returned",
        ),
        (
            {"on_roll": True, "pmooe": PmooeFinding(PmooeReason.TRANSITION_NO_SHOW, ON)},
            "PMOOE",
            "pmooe_transition_no_show",
        ),
        # 4. on roll otherwise, whatever else is said
        ({"on_roll": True}, "NOT_CME", "on_roll"),
        ({"on_roll": True, "education_otherwise": "ehe_unsuitable"}, "NOT_CME", "on_roll"),
        # 5. not on roll, education otherwise
        ({"on_roll": False, "education_otherwise": "ehe_suitable"}, "NOT_CME", "ehe_suitable"),
        ({"on_roll": False, "education_otherwise": "ehe_unassessed"}, "NOT_CME", "ehe_unassessed"),
        (
            {"on_roll": False, "education_otherwise": "alternative_provision"},
            "NOT_CME",
            "alternative_provision",
        ),
        # 6. CME
        ({"on_roll": False, "education_otherwise": "ehe_unsuitable"}, "CME", "ehe_unsuitable"),
        ({"on_roll": False}, "CME", "not_registered"),
        # reduced hours and PMOOE only mean something for a child on roll
        ({"on_roll": False, "reduced_hours": True}, "CME", "not_registered"),
        ({"on_roll": False, "pmooe": ABSENT}, "CME", "not_registered"),
    ],
)
def test_classify(kwargs: dict[str, object], category: str, reason: str) -> None:
    args: dict[str, object] = {"dob": DOB, "on": ON, **kwargs}
    result = classify(**args)  # type: ignore[arg-type]
    assert (result.category, result.reason) == (category, reason)
    assert result.signpost == signpost_for(reason)


@pytest.mark.parametrize("value", ["ehe", "EHE_SUITABLE", "flexi_schooling", ""])
def test_unknown_education_otherwise_is_rejected(value: str) -> None:
    with pytest.raises(ValueError, match="unknown education_otherwise"):
        classify(dob=DOB, on=ON, on_roll=False, education_otherwise=value)


def test_unknown_education_otherwise_is_rejected_even_when_not_school_age() -> None:
    with pytest.raises(ValueError):
        classify(dob=DOB, on=date(2019, 1, 1), on_roll=False, education_otherwise="x")


@pytest.mark.parametrize(
    ("reason", "team"),
    [
        ("on_roll", "attendance_support"),
        ("reduced_hours_provision", "reduced_hours_provision"),
        ("ehe_suitable", "elective_home_education"),
        ("ehe_unassessed", "elective_home_education"),
        ("alternative_provision", None),
        ("not_compulsory_school_age", None),
        ("not_registered", None),
        ("ehe_unsuitable", None),
        ("pmooe_continuous_absence", None),
    ],
)
def test_signpost_for(reason: str, team: str | None) -> None:
    assert signpost_for(reason) == team


def test_signpost_for_unknown_reason() -> None:
    with pytest.raises(ValueError, match="unknown classification reason"):
        signpost_for("lost")


def test_every_reason_has_a_defined_signpost_and_teams_are_the_five_in_domain() -> None:
    for reason in ClassificationReason:
        signpost_for(reason)
    assert {t.value for t in InclusionTeam} == {
        "attendance_support",
        "medical_referrals",
        "reduced_hours_provision",
        "elective_home_education",
        "legal_intervention",
    }


def test_classification_is_frozen_and_compares_with_strings() -> None:
    result = classify(dob=DOB, on=ON, on_roll=False)
    assert isinstance(result, Classification)
    assert result.category == "CME" and result.category is Category.CME
    with pytest.raises(AttributeError):
        result.category = Category.NOT_CME  # type: ignore[misc]
