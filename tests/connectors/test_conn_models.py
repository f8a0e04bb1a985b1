"""The subject, minimised query and result models."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from connectors import Evidence, Outcome, Result, TraceSubject, build_query
from connectors.builtin import LPDConnector, OtherLAConnector
from connectors.testing import DEFAULT_SUBJECT


def test_subject_repr_shows_no_personal_data() -> None:
    text = repr(DEFAULT_SUBJECT) + str(DEFAULT_SUBJECT)
    for value in ("Quillonia", "Brackenthwaite", "2014", "SO23", "H801200001001", "Tamarisk"):
        assert value not in text
    assert "CME-2026-999001" in text


def test_query_holds_only_declared_fields_and_hides_values() -> None:
    q = build_query(DEFAULT_SUBJECT, OtherLAConnector)
    assert q.declared == frozenset({"forename", "surname", "dob", "upn"})
    assert q.postcode is None and q.nhs_number is None  # undeclared read as None
    assert "Quillonia" not in repr(q)


def test_query_reports_only_the_fields_read() -> None:
    q = build_query(DEFAULT_SUBJECT, LPDConnector)
    assert q.accessed == frozenset()
    assert q.payload("upn") == {"upn": "H801200001001"}
    assert q.accessed == frozenset({"upn"})
    q.postcode  # noqa: B018 - undeclared: not disclosed
    assert q.accessed == frozenset({"upn"})


def test_query_payload_renders_dates_and_skips_empty_fields() -> None:
    subject = DEFAULT_SUBJECT.model_copy(update={"upn": None})
    q = build_query(subject, LPDConnector)
    assert q.payload("upn", "forename", "dob") == {"forename": "Quillonia", "dob": "2014-05-17"}
    assert q.accessed == frozenset({"forename", "dob"})


def test_query_is_read_only() -> None:
    q = build_query(DEFAULT_SUBJECT, LPDConnector)
    with pytest.raises(AttributeError):
        q.upn = "x"


@pytest.mark.parametrize("kwargs", [
    {"outcome": "found"},
    {"outcome": "pending", "expected_by": date(2026, 3, 5)},
    {"outcome": "pending", "agency_reference": "R1"},
    {"outcome": "error"},
    {"outcome": "error", "error_kind": "transient"},
    {"outcome": "not_found", "error_kind": "transient", "error_code": "x"},
    {"outcome": "not_found", "evidence": [{"kind": "ctf", "ctf_destination": "XXX",
                                           "ctf_destination_la": "XXX"}]},
], ids=["found-no-evidence", "pending-no-ref", "pending-no-date", "error-no-kind",
        "error-no-code", "not-found-with-error", "not-found-with-evidence"])
def test_impossible_results_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Result.model_validate(kwargs)


@pytest.mark.parametrize("kwargs", [
    {"kind": "on_roll"}, {"kind": "departure"}, {"kind": "ctf"}, {"kind": "resident"},
    {"kind": "on_roll", "school_urn": "12345"}, {"kind": "address", "la_code": "85"},
])
def test_evidence_needs_the_facts_of_its_kind(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Evidence.model_validate(kwargs)


def test_valid_results_and_helpers() -> None:
    ev = Evidence(kind="ctf", ctf_destination="MMM", ctf_destination_la="MMM",
                  ctf_destination_establishment="MMMM", safeguarding=True)
    r = Result.found(ev)
    assert r.outcome is Outcome.FOUND and ev.abroad and not ev.destination_unknown
    assert r.safeguarding
    assert Result.pending("DWP-1", date(2026, 3, 9)).outcome is Outcome.PENDING
    assert Result.error("transient", "timeout", "x").error_kind == "transient"
    assert "SO23" not in repr(Evidence(kind="address", postcode="SO23 8ZZ"))


def test_subject_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        TraceSubject(reference="R", favourite_colour="red")  # type: ignore[call-arg]
