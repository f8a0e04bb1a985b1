"""Intake rules: updates, duplicates, not-CME signposting, quarantine, nothing dropped."""

from __future__ import annotations

import copy
import json
from datetime import date

import pytest
from sqlmodel import Session, select

from models import (
    CaseEvent,
    CaseStatus,
    Child,
    Notification,
    QuarantinedRecord,
    Referral,
    get_engine,
)
from tasks.intake import ingest_records
from tests.la_configs import intake_config
from tests.referral_records import CHILD_WITH_UPN_AND_ADDRESS, referral_record

BASE = referral_record("CME-2026-900001", received_at="2026-11-28T10:00:00+00:00",
                       child=CHILD_WITH_UPN_AND_ADDRESS)


def rec(**changes: object) -> dict[str, object]:
    r = copy.deepcopy(BASE)
    for k, v in changes.items():
        if "." in k:
            a, b = k.split(".")
            r[a][b] = v  # type: ignore[index]
        else:
            r[k] = v
    return r


def ingest(db: str, *records: dict[str, object] | str):  # type: ignore[no-untyped-def]
    lines = [(i, r if isinstance(r, str) else json.dumps(r)) for i, r in enumerate(records, 1)]
    return ingest_records(lines, source="test.jsonl", cfg=intake_config(db_url=db))


def test_new_referral_is_a_case_with_due_date_and_acknowledgement(clean_db: str) -> None:
    report = ingest(clean_db, rec())
    assert report.created == 1 and report.accounted == report.received == 1
    with Session(get_engine(clean_db)) as s:
        r = s.exec(select(Referral)).one()
        # Saturday 28 Nov 2026 → treated as Monday 30 Nov → due Monday 7 Dec (docs/guidance.md).
        assert r.acknowledgement_due == date(2026, 12, 7)
        assert r.status is CaseStatus.RECEIVED and r.classification == "CME"
        notes = s.exec(select(Notification)).all()
        assert [n.template.value for n in notes] == ["acknowledgement"]
        assert "Quillfeather" not in json.dumps(notes[0].personalisation)
        assert notes[0].personalisation["initials"] == "Z.Q."


def test_same_mendix_reference_is_an_update_not_a_second_case(clean_db: str) -> None:
    ingest(clean_db, rec())
    report = ingest(clean_db, rec(reason="Now believed to be in Portsmouth"),
                    rec(reason="Now believed to be in Portsmouth"))
    assert (report.updated, report.unchanged, report.created) == (1, 1, 0)
    with Session(get_engine(clean_db)) as s:
        assert len(s.exec(select(Referral)).all()) == 1
        texts = [e.text for e in s.exec(select(CaseEvent)).all()]
        assert any("changed: reason" in t for t in texts)
        assert not any("Portsmouth" in t for t in texts)  # field names only, not content


def test_update_raising_safeguarding_escalates(clean_db: str) -> None:
    ingest(clean_db, rec())
    ingest(clean_db, rec(safeguarding_concern=True))
    with Session(get_engine(clean_db)) as s:
        r = s.exec(select(Referral)).one()
        assert r.status is CaseStatus.ESCALATED and r.safeguarding_concern
        assert {n.template.value for n in s.exec(select(Notification))} >= {"safeguarding_task"}


def test_second_referral_with_the_same_upn_is_linked_to_the_open_case(clean_db: str) -> None:
    second = rec(mendix_reference="CME-2026-900002", **{"child.forename": "Zeb"})
    report = ingest(clean_db, rec(), second)
    assert report.created == 1 and report.duplicates_linked == 1
    with Session(get_engine(clean_db)) as s:
        first, dup = s.exec(select(Referral).order_by(Referral.id)).all()  # type: ignore[arg-type]
        assert dup.duplicate_of_id == first.id and dup.status is CaseStatus.CLOSED
        assert first.status is not CaseStatus.CLOSED
        # The second school's account of the child is kept with its referral.
        assert s.get(Child, dup.child_id).forename == "Zeb"  # type: ignore[union-attr]
        assert s.get(Child, first.child_id).forename == "Zebedee"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("changes", "reason", "team"),
    [
        ({"child.dob": "2008-01-01"}, "not_compulsory_school_age", None),
        ({"on_roll": True, "reduced_hours": True}, "reduced_hours_provision",
         "reduced_hours_provision"),
        ({"education_otherwise": "ehe_suitable"}, "ehe_suitable", "elective_home_education"),
        ({"on_roll": True, "medical_absence": True}, "medical_absence", "medical_referrals"),
    ],
)
def test_not_cme_is_kept_closed_and_the_school_signposted(
    clean_db: str, changes: dict[str, object], reason: str, team: str | None
) -> None:
    report = ingest(clean_db, rec(**changes))
    assert report.not_cme == 1
    with Session(get_engine(clean_db)) as s:
        r = s.exec(select(Referral)).one()
        assert r.status is CaseStatus.CLOSED and r.classification_reason == reason
        sign = [n for n in s.exec(select(Notification)) if n.template.value == "not_cme_signpost"]
        assert len(sign) == 1
        assert sign[0].personalisation.get("signpost_team") == team


def test_pmooe_with_register_marks_is_assessed_by_policy(clean_db: str) -> None:
    days = [date(2026, 10, d) for d in (1, 2, 5, 6, 7, 8, 9, 12, 13, 14, 15, 16, 19, 20, 21,
                                        22, 23, 26, 27, 28)]
    marks = [{"date": d.isoformat(), "session": s, "code": "O"} for d in days
             for s in ("AM", "PM")]
    report = ingest(clean_db, rec(kind="PMOOE", on_roll=True, attendance=marks))
    assert report.created == 1
    with Session(get_engine(clean_db)) as s:
        assert s.exec(select(Referral)).one().classification_reason == "pmooe_continuous_absence"
    # One present mark in the run: no trigger, so on roll and attending → not CME.
    marks[10]["code"] = "/"
    report = ingest(clean_db, rec(mendix_reference="CME-2026-900009", kind="PMOOE",
                                  on_roll=True, attendance=marks,
                                  **{"child.upn": "G80120000101A"}))
    assert report.not_cme == 1


def test_missing_school_actions_are_flagged_and_the_school_told(clean_db: str) -> None:
    report = ingest(clean_db, rec(school_actions=[{"action": "phone_parents",
                                                   "date": "2026-11-20"}]))
    assert report.missing_actions_flagged == 1
    with Session(get_engine(clean_db)) as s:
        r = s.exec(select(Referral)).one()
        assert r.missing_actions == ["email_letter_or_visit", "contact_other_schools",
                                     "ask_peers"]
        assert "missing_school_actions" in {n.template.value
                                            for n in s.exec(select(Notification))}


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps(rec(**{"child.upn": "H801200001002"})), "child.upn"),
        (json.dumps(rec(**{"school.urn": "12"})), "school.urn"),
        (json.dumps(rec(kind="OTHER")), "kind"),
        (json.dumps(rec(attendance=[{"date": "2026-10-01", "session": "AM", "code": "ZZ"}])),
         "attendance"),
    ],
)
def test_bad_records_are_quarantined_whole_with_reasons(clean_db: str, raw: str,
                                                        expect: str) -> None:
    report = ingest(clean_db, raw, rec(mendix_reference="CME-2026-900003"))
    assert report.quarantined == 1 and report.created == 1
    assert report.accounted == report.received == 2
    with Session(get_engine(clean_db)) as s:
        q = s.exec(select(QuarantinedRecord)).one()
        assert q.raw == raw and q.line_no == 1
        assert any(expect in reason for reason in q.reasons), q.reasons
        for reason in q.reasons:
            assert "Quillfeather" not in reason and "H801200001002" not in reason
