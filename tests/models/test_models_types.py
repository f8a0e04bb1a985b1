"""Validated identifier types: bad values are refused, naming the field, never echoing data."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ValidationError

from models import (
    UPN,
    URN,
    ChildIn,
    LACode,
    Postcode,
    ReferralIn,
    describe_validation_error,
)


class Ids(BaseModel):
    upn: UPN | None = None
    urn: URN | None = None
    la: LACode | None = None
    postcode: Postcode | None = None


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("upn", " h801200001001 ", "H801200001001"),
        ("upn", "G80120000101A", "G80120000101A"),
        ("urn", "116000", "116000"),
        ("la", "850", "850"),
        ("postcode", "so238uj", "SO23 8UJ"),
        ("postcode", "GU14 7JF", "GU14 7JF"),
        ("postcode", "w1a1aa", "W1A 1AA"),
    ],
)
def test_valid_identifiers_are_normalised(field: str, value: str, expected: str) -> None:
    assert getattr(Ids(**{field: value}), field) == expected


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("upn", "H801200001002", "check letter"),
        ("upn", "H8012000010", "13"),
        ("upn", "I801200001001", "UPN"),
        ("urn", "11600", "6 digits"),
        ("urn", "11600X", "6 digits"),
        ("la", "85", "3 digits"),
        ("la", "8500", "3 digits"),
        ("postcode", "GU51", "postcode"),
        ("postcode", "12345", "postcode"),
    ],
)
def test_invalid_identifier_is_refused_naming_the_field(
    field: str, value: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Ids(**{field: value})
    problems = describe_validation_error(info.value)
    assert len(problems) == 1
    assert problems[0].startswith(f"{field}:")
    assert message in problems[0]
    assert value not in problems[0]


def _referral_record(**child_overrides: object) -> dict[str, object]:
    child = {
        "upn": "H801200001001",
        "forename": "Zebedee",
        "surname": "Quillfeather",
        "dob": "2015-02-28",
        "address": {"line1": "1 Synthetic Row", "town": "Winchester", "postcode": "SO23 8UJ"},
    }
    child.update(child_overrides)
    return {
        "mendix_reference": "CME-2026-000001",
        "kind": "CME",
        "received_at": "2026-11-28T10:00:00+00:00",
        "school": {
            "urn": "116000",
            "name": "Test Primary",
            "la_code": "850",
            "email": "office@school.example.org",
        },
        "child": child,
    }


def test_referral_with_bad_upn_names_the_field_and_hides_the_record() -> None:
    record = _referral_record(upn="H801200001002")
    with pytest.raises(ValidationError) as info:
        ReferralIn.model_validate(record)
    problems = describe_validation_error(info.value)
    assert (
        len(problems) == 1 and problems[0].startswith("child.upn: not a valid UPN")
    )
    text = str(info.value) + json.dumps(problems)
    for personal in ("Quillfeather", "Zebedee", "H801200001002", "2015-02-28", "Synthetic"):
        assert personal not in text


def test_referral_lists_missing_school_actions() -> None:
    r = ReferralIn.model_validate(
        _referral_record()
        | {"school_actions": [{"action": "phone_parents", "date": "2026-11-20"}]}
    )
    assert r.missing_actions() == ["email_letter_or_visit", "contact_other_schools", "ask_peers"]


def test_dob_after_referral_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        ReferralIn.model_validate(_referral_record(dob="2027-01-01"))
    assert "date of birth is after" in describe_validation_error(info.value)[0]


def test_child_schema_hides_personal_fields_in_repr() -> None:
    c = ChildIn(forename="Zebedee", surname="Quillfeather", dob="2015-02-28")  # type: ignore[arg-type]
    assert "Zebedee" not in repr(c) and "Quillfeather" not in repr(c)
