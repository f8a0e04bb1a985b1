"""Round trips and integrity rules of the case tables, on SQLite and (in CI) PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from models import (
    CaseEvent,
    CaseOutcome,
    CaseStatus,
    Check,
    CheckOutcome,
    Child,
    DuplicateError,
    Notification,
    NotificationChannel,
    QuarantinedRecord,
    Referral,
    ReferralKind,
    School,
    Template,
    integrity_errors_explained,
)

# Synthetic people only.
SYNTHETIC_NAME = "Zebedee"
SYNTHETIC_SURNAME = "Quillfeather"


def _school(s: Session, urn: str = "116000") -> School:
    school = School(urn=urn, name="Test Primary", la_code="850", email="office@school.example.org")
    s.add(school)
    s.flush()
    return school


def _child(s: Session) -> Child:
    child = Child(
        upn="H801200001001",
        forename=SYNTHETIC_NAME,
        surname=SYNTHETIC_SURNAME,
        former_surnames=["Oldname"],
        dob=date(2015, 2, 28),
        sex="F",
        postcode="SO23 8UJ",
        address_line1="1 Synthetic Row",
        parents=[{"name": "Parent Quillfeather", "relationship": "mother"}],
        match_key=f"{SYNTHETIC_SURNAME.lower()}|2015-02-28",
    )
    s.add(child)
    s.flush()
    return child


def _referral(s: Session, ref: str = "CME-2026-000001") -> Referral:
    school, child = _school(s), _child(s)
    r = Referral(
        mendix_reference=ref,
        kind=ReferralKind.CME,
        school_id=school.id,
        child_id=child.id,
        received_at=datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
        acknowledgement_due=date(2026, 12, 7),
        school_actions=[{"action": "phone_parents", "date": "2026-11-20"}],
    )
    s.add(r)
    s.flush()
    return r


def test_every_table_round_trips(session: Session) -> None:
    r = _referral(session)
    check = Check(
        referral_id=r.id,
        connector="lpd",
        connector_version="1.0",
        round=1,
        run_id="run-1",
        fields_disclosed=["dob", "surname", "upn"],
        outcome=CheckOutcome.FOUND,
        evidence={"ctf_destination": "MMM"},
    )
    event = CaseEvent(referral_id=r.id, kind="decision", rule="left_uk", text="Left the UK")
    note = Notification(
        referral_id=r.id,
        idempotency_key="ack:CME-2026-000001",
        template=Template.acknowledgement,
        channel=NotificationChannel.file,
        recipient="office@school.example.org",
        personalisation={"reference": "CME-2026-000001", "initials": "Z.Q."},
    )
    q = QuarantinedRecord(source="file.jsonl", line_no=3, raw='{"x": 1}', reasons=["x: bad"])
    session.add_all([check, event, note, q])
    session.commit()
    session.expunge_all()

    got = session.exec(select(Referral)).one()
    assert got.mendix_reference == "CME-2026-000001"
    assert got.kind is ReferralKind.CME
    assert got.status is CaseStatus.RECEIVED
    assert got.received_at == datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert got.received_at.tzinfo is not None
    assert got.school_actions == [{"action": "phone_parents", "date": "2026-11-20"}]
    child = session.get(Child, got.child_id)
    assert child is not None and child.former_surnames == ["Oldname"]
    assert child.dob == date(2015, 2, 28)
    c = session.exec(select(Check)).one()
    assert c.outcome is CheckOutcome.FOUND and c.fields_disclosed == ["dob", "surname", "upn"]
    assert c.evidence == {"ctf_destination": "MMM"}
    assert session.exec(select(CaseEvent)).one().rule == "left_uk"
    n = session.exec(select(Notification)).one()
    assert n.personalisation["initials"] == "Z.Q." and n.status.value == "pending"
    assert session.exec(select(QuarantinedRecord)).one().reasons == ["x: bad"]


def test_status_and_outcome_update_round_trip(session: Session) -> None:
    r = _referral(session)
    r.status = CaseStatus.WHEREABOUTS_UNKNOWN
    r.outcome = CaseOutcome.WHEREABOUTS_UNKNOWN
    session.commit()
    session.expunge_all()
    got = session.exec(select(Referral)).one()
    assert got.status is CaseStatus.WHEREABOUTS_UNKNOWN
    assert got.outcome is CaseOutcome.WHEREABOUTS_UNKNOWN


def test_aware_timestamps_are_stored_as_the_same_instant(session: Session) -> None:
    r = _referral(session)
    bst = timezone(timedelta(hours=1))
    r.acknowledged_at = datetime(2026, 6, 1, 9, 30, tzinfo=bst)
    session.commit()
    session.expunge_all()
    got = session.exec(select(Referral)).one()
    assert got.acknowledged_at == datetime(2026, 6, 1, 8, 30, tzinfo=UTC)


def test_naive_timestamp_is_refused(session: Session) -> None:
    school, child = _school(session), _child(session)
    session.add(
        Referral(
            mendix_reference="CME-NAIVE",
            kind=ReferralKind.CME,
            school_id=school.id,
            child_id=child.id,
            received_at=datetime(2026, 11, 28, 10, 0),
            acknowledgement_due=date(2026, 12, 7),
        )
    )
    with pytest.raises(Exception, match="naive datetime"):
        session.flush()


def test_duplicate_mendix_reference_is_a_clear_error(session: Session) -> None:
    r = _referral(session)
    session.commit()
    with pytest.raises(DuplicateError, match="Mendix reference already exists") as info:
        with integrity_errors_explained(session):
            session.add(
                Referral(
                    mendix_reference=r.mendix_reference,
                    kind=ReferralKind.PMOOE,
                    school_id=r.school_id,
                    child_id=r.child_id,
                    received_at=datetime(2026, 11, 29, tzinfo=UTC),
                    acknowledgement_due=date(2026, 12, 7),
                )
            )
    assert SYNTHETIC_SURNAME not in str(info.value)


def test_duplicate_notification_key_is_a_clear_error(session: Session) -> None:
    r = _referral(session)

    def note() -> Notification:
        return Notification(
            referral_id=r.id,
            idempotency_key="resolution:CME-2026-000001:located",
            template=Template.resolution,
            channel=NotificationChannel.file,
            recipient="office@school.example.org",
        )

    session.add(note())
    session.commit()
    with pytest.raises(DuplicateError, match="will not be sent twice"):
        with integrity_errors_explained(session):
            session.add(note())


def test_second_check_for_same_round_is_a_clear_error(session: Session) -> None:
    r = _referral(session)

    def check(round_: int) -> Check:
        return Check(
            referral_id=r.id,
            connector="housing",
            connector_version="1.0",
            round=round_,
            outcome=CheckOutcome.NOT_FOUND,
        )

    session.add(check(1))
    session.commit()
    session.add(check(2))  # a new round is fine
    session.commit()
    with pytest.raises(DuplicateError, match="already checked .* in this tracing round"):
        with integrity_errors_explained(session):
            session.add(check(1))


def test_duplicate_school_urn_is_a_clear_error(session: Session) -> None:
    _school(session)
    session.commit()
    with pytest.raises(DuplicateError, match="school with this URN"):
        with integrity_errors_explained(session):
            _school(session)


def test_personal_fields_never_appear_in_repr_or_str(session: Session) -> None:
    child = _child(session)
    for text in (repr(child), str(child)):
        for secret in (SYNTHETIC_NAME, SYNTHETIC_SURNAME, "H801200001001", "2015", "SO23"):
            assert secret not in text, text
    check = Check(
        referral_id=1,
        connector="housing",
        connector_version="1",
        round=1,
        outcome=CheckOutcome.FOUND,
        evidence={"address": "1 Synthetic Row"},
    )
    assert "Synthetic Row" not in repr(check)


def test_foreign_keys_are_enforced(session: Session) -> None:
    session.add(
        CaseEvent(referral_id=999_999, kind="note", text="orphan")
    )
    with pytest.raises(Exception):  # noqa: B017 - driver-specific IntegrityError
        session.flush()
