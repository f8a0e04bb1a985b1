"""Retention: closed cases past the period are anonymised, everything else is left alone.

Synthetic people only. The core (`tasks.retention.apply_retention`) is tested with a fixed
``now``; the CLI with dates relative to the real clock.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import SQLModel, col, select

from cme.cli import app
from models import (
    CaseEvent,
    CaseOutcome,
    CaseStatus,
    Check,
    CheckOutcome,
    Child,
    ClosureReason,
    Notification,
    NotificationChannel,
    NotificationStatus,
    QuarantinedRecord,
    Referral,
    ReferralKind,
    School,
    Template,
    session_scope,
)
from tasks.retention import (
    REDACTED,
    RETENTION_EVENT,
    RetentionReport,
    apply_retention,
    retention_cutoff,
)
from tests.cli import clikit
from tests.cli.clikit import cli_env, runner

NOW = datetime(2033, 6, 1, 12, 0, tzinfo=UTC)  # cut-off for 6 years: 2027-06-01 12:00
YEARS = 6

OLD, RECENT, OPEN_OLD, REOPENED = ("CME-2026-000001", "CME-2032-000002", "CME-2019-000003",
                                   "CME-2020-000004")
SHARED_OLD, SHARED_OPEN = "CME-2025-000005", "CME-2033-000006"
SIBLING_OLD, SIBLING_RECENT = "CME-2026-000007", "CME-2031-000008"
UNDATED = "CME-2020-000009"


def utc(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 10, 0, tzinfo=UTC)


def _child(s: Any, forename: str, surname: str, dob: date, upn: str | None = None) -> Child:
    child = Child(
        upn=upn, forename=forename, surname=surname, former_surnames=[f"Old{surname}"],
        dob=dob, sex="F", nhs_number="9434765919", address_line1="7 Orchard Steps",
        town="Andover", postcode="SP10 1AA",
        parents=[{"name": f"Parent {surname}", "phone": "07700900456"}],
        match_key=f"{surname.lower()}|{dob.isoformat()}",
    )
    s.add(child)
    s.flush()
    return child


def _referral(s: Any, ref: str, school: School, child: Child, *, received: datetime,
              status: CaseStatus, closed: datetime | None = None,
              outcome: CaseOutcome | None = None) -> Referral:
    r = Referral(
        mendix_reference=ref, kind=ReferralKind.CME, school_id=school.id, child_id=child.id,
        received_at=received, acknowledgement_due=received.date() + timedelta(days=7),
        acknowledged_at=received + timedelta(days=2), status=status, outcome=outcome,
        closure_reason=ClosureReason.left_uk if closed else None, closed_at=closed,
        reason=f"{child.forename} stopped attending after half term",
        school_actions=[{"action": "phone_parents", "date": received.date().isoformat(),
                         "note": f"spoke to Parent {child.surname}"}],
        tracing_rounds=3,
    )
    s.add(r)
    s.flush()
    assert r.id is not None
    s.add_all([
        CaseEvent(referral_id=r.id, at=received, kind="received", text="referral received"),
        Check(referral_id=r.id, connector="other_la", connector_version="1.0", round=1,
              fields_disclosed=["upn", "surname", "dob"], outcome=CheckOutcome.FOUND,
              evidence={"address": "9 Harbour View", "postcode": "PO1 2AB"},
              agency_reference=f"OLA-{r.id}", checked_at=received + timedelta(days=3)),
        Check(referral_id=r.id, connector="lpd", connector_version="2.0", round=1,
              fields_disclosed=["upn"], outcome=CheckOutcome.NOT_FOUND,
              checked_at=received + timedelta(days=3)),
        Notification(referral_id=r.id, idempotency_key=f"ack:{ref}",
                     template=Template.acknowledgement, channel=NotificationChannel.file,
                     recipient=school.email, status=NotificationStatus.sent, attempts=1,
                     personalisation={"reference": ref, "initials": "Z.Q.",
                                      "due_date": "2026-01-12"},
                     created_at=received, sent_at=received + timedelta(hours=1)),
    ])
    return r


def seed(url: str, *, now: datetime = NOW) -> None:
    """Cases around the cut-off; ``now`` shifts every date (the CLI tests use the clock)."""
    shift = now - NOW

    def at(y: int, m: int, d: int) -> datetime:
        return utc(y, m, d) + shift

    with session_scope(url) as s:
        school = School(urn="850101", name="Hollowmere Junior", la_code="850",
                        email="office@hollowmere.example.org")
        s.add(school)
        s.flush()
        zeb = _child(s, "Zebedee", "Quillfeather", date(2014, 3, 17), upn="H801200001001")
        per = _child(s, "Perpetua", "Wintergreen", date(2013, 5, 2))
        ign = _child(s, "Ignatius", "Fernsby", date(2012, 11, 30))
        ros = _child(s, "Rosalind", "Pemberton", date(2011, 1, 9))
        mar = _child(s, "Marigold", "Thistlewood", date(2015, 7, 4))
        cor = _child(s, "Cornelius", "Ashgrove", date(2013, 2, 14))
        una = _child(s, "Una", "Dovecote", date(2012, 4, 1))
        closed = CaseStatus.CLOSED
        _referral(s, OLD, school, zeb, received=at(2025, 11, 3), status=closed,
                  closed=at(2026, 1, 10), outcome=CaseOutcome.LEFT_UK)
        _referral(s, RECENT, school, per, received=at(2032, 9, 6), status=closed,
                  closed=at(2032, 12, 1), outcome=CaseOutcome.ON_ROLL_ELSEWHERE)
        _referral(s, OPEN_OLD, school, ign, received=at(2019, 4, 1),
                  status=CaseStatus.WHEREABOUTS_UNKNOWN,
                  outcome=CaseOutcome.WHEREABOUTS_UNKNOWN)
        # closed long ago, then reopened: open now, so never touched whatever closed_at says
        _referral(s, REOPENED, school, ros, received=at(2020, 1, 6), status=CaseStatus.TRACING,
                  closed=at(2020, 3, 1))
        _referral(s, SHARED_OLD, school, mar, received=at(2025, 1, 6), status=closed,
                  closed=at(2025, 3, 1), outcome=CaseOutcome.RESIDENT_OTHER_LA)
        _referral(s, SHARED_OPEN, school, mar, received=at(2033, 5, 1),
                  status=CaseStatus.TRACING)
        _referral(s, SIBLING_OLD, school, cor, received=at(2026, 2, 2), status=closed,
                  closed=at(2026, 4, 1), outcome=CaseOutcome.ON_ROLL_ELSEWHERE)
        _referral(s, SIBLING_RECENT, school, cor, received=at(2031, 2, 2), status=closed,
                  closed=at(2031, 4, 1), outcome=CaseOutcome.LEFT_UK)
        _referral(s, UNDATED, school, una, received=at(2020, 2, 2), status=closed)
        s.add_all([
            QuarantinedRecord(source="old.jsonl", line_no=1, raw='{"forename": "Zebedee"}',
                              reasons=["child.dob: missing"], received_at=at(2026, 1, 5)),
            QuarantinedRecord(source="new.jsonl", line_no=2, raw='{"forename": "Perpetua"}',
                              reasons=["child.dob: missing"], received_at=at(2033, 5, 5)),
        ])


@pytest.fixture
def db(clean_db: str) -> str:
    seed(clean_db)
    return clean_db


TABLES: tuple[type[SQLModel], ...] = (School, Child, Referral, Check, CaseEvent, Notification,
                                      QuarantinedRecord)


def snapshot(url: str) -> dict[str, dict[int, dict[str, Any]]]:
    with session_scope(url) as s:
        return {
            # In id order: PostgreSQL returns an updated row after the others, so without an
            # order "the last event" was whichever row retention touched last.
            m.__name__: {r.id: r.model_dump()  # type: ignore[attr-defined]
                         for r in s.exec(select(m).order_by(m.id))}  # type: ignore[attr-defined]
            for m in TABLES
        }


def referral(url: str, ref: str) -> Referral:
    with session_scope(url) as s:
        return s.exec(select(Referral).where(Referral.mendix_reference == ref)).one()


def rows_of(snap: dict[str, dict[int, dict[str, Any]]], url: str, ref: str
            ) -> dict[str, list[dict[str, Any]]]:
    """Every row belonging to case ``ref`` (the case, its child, checks, events, messages)."""
    r = referral(url, ref)
    out = {"Referral": [snap["Referral"][r.id]], "Child": [snap["Child"][r.child_id]]}
    for table in ("Check", "CaseEvent", "Notification"):
        out[table] = [row for row in snap[table].values() if row["referral_id"] == r.id]
    return out


def aggregates(url: str) -> dict[str, Counter[Any]]:
    with session_scope(url) as s:
        refs = list(s.exec(select(Referral)))
        checks = list(s.exec(select(Check)))
    return {
        "outcome": Counter(str(r.outcome) for r in refs),
        "status": Counter(str(r.status) for r in refs),
        "kind_school": Counter((str(r.kind), r.school_id) for r in refs),
        "closure": Counter((str(r.closure_reason), r.closed_at) for r in refs),
        "checks": Counter((c.connector, str(c.outcome), tuple(c.fields_disclosed))
                          for c in checks),
    }


def run(url: str, *, now: datetime = NOW, dry_run: bool = False) -> RetentionReport:
    return apply_retention(url, now=now, years=YEARS, dry_run=dry_run)


# --------------------------------------------------------------------------- core


def test_old_closed_case_is_anonymised(db: str) -> None:
    report = run(db)
    r = referral(db, OLD)
    with session_scope(db) as s:
        child = s.get(Child, r.child_id)
        checks = list(s.exec(select(Check).where(Check.referral_id == r.id)))
        notes = list(s.exec(select(Notification).where(Notification.referral_id == r.id)))
        events = list(s.exec(select(CaseEvent).where(CaseEvent.referral_id == r.id)
                             .order_by(col(CaseEvent.id))))
    assert child is not None
    assert (child.forename, child.surname) == (REDACTED, REDACTED)
    assert child.dob == date(2014, 1, 1)  # birth year kept for age statistics
    assert child.upn is None and child.nhs_number is None and child.former_surnames == []
    assert (child.address_line1, child.town, child.postcode) == (None, None, None)
    assert child.parents == [] and child.match_key == f"redacted:{child.id}"
    # the case itself stays for the counts; its free text goes
    assert (r.status, r.outcome, r.closure_reason) == (
        CaseStatus.CLOSED, CaseOutcome.LEFT_UK, ClosureReason.left_uk)
    assert r.closed_at == utc(2026, 1, 10) and r.tracing_rounds == 3
    assert r.reason == ""
    assert r.school_actions == [{"action": "phone_parents", "date": "2025-11-03"}]
    assert all(c.evidence is None for c in checks)
    assert sorted((c.connector, c.fields_disclosed, c.agency_reference) for c in checks) == [
        ("lpd", ["upn"], None), ("other_la", ["upn", "surname", "dob"], f"OLA-{r.id}")]
    assert [n.personalisation for n in notes] == [{"reference": OLD}]
    assert events[-1].kind == RETENTION_EVENT and "retention" in events[-1].text
    assert "Zebedee" not in events[-1].text

    assert report.referrals_anonymised == 3  # OLD, SHARED_OLD, SIBLING_OLD
    assert report.children_anonymised == 1  # only Zebedee: the others are still in use
    assert report.children_kept_in_use == 2
    assert report.checks_cleared == 3 and report.notifications_minimised == 3
    assert report.quarantined_deleted == 1 and report.closed_without_date == 1
    assert report.already_anonymised == 0 and not report.dry_run
    assert report.cutoff == datetime(2027, 6, 1, 12, 0, tzinfo=UTC)


def test_recent_closed_and_open_cases_are_untouched(db: str) -> None:
    before = snapshot(db)
    run(db)
    after = snapshot(db)
    for ref in (RECENT, OPEN_OLD, REOPENED, SHARED_OPEN, SIBLING_RECENT, UNDATED):
        assert rows_of(after, db, ref) == rows_of(before, db, ref), ref


def test_child_shared_with_an_open_case_is_never_touched(db: str) -> None:
    shared_child = referral(db, SHARED_OPEN).child_id
    assert referral(db, SHARED_OLD).child_id == shared_child
    before = snapshot(db)["Child"][shared_child]
    run(db)
    assert snapshot(db)["Child"][shared_child] == before
    # the old case's own records are still past retention and are minimised
    old = rows_of(snapshot(db), db, SHARED_OLD)
    assert all(c["evidence"] is None for c in old["Check"])
    assert old["CaseEvent"][-1]["kind"] == RETENTION_EVENT


def test_child_is_anonymised_once_their_last_case_passes_retention(db: str) -> None:
    run(db)
    shared_child = referral(db, SHARED_OPEN).child_id
    with session_scope(db) as s:
        r = s.exec(select(Referral).where(Referral.mendix_reference == SHARED_OPEN)).one()
        r.status, r.outcome = CaseStatus.CLOSED, CaseOutcome.RESIDENT_OTHER_LA
        r.closed_at = utc(2033, 7, 1)
        s.add(r)
    assert run(db).children_anonymised == 0  # closed, but only just
    later = run(db, now=datetime(2039, 8, 1, tzinfo=UTC))
    assert later.referrals_anonymised >= 1
    assert snapshot(db)["Child"][shared_child]["surname"] == REDACTED


def test_aggregate_counts_are_unchanged(db: str) -> None:
    before = aggregates(db)
    report = run(db)
    assert report.referrals_anonymised > 0
    assert aggregates(db) == before


def test_old_quarantined_records_are_deleted_and_new_ones_kept(db: str) -> None:
    run(db)
    rows = list(snapshot(db)["QuarantinedRecord"].values())
    assert [r["source"] for r in rows] == ["new.jsonl"]


def test_dry_run_changes_nothing_and_counts_what_a_run_would_do(db: str) -> None:
    before = snapshot(db)
    dry = run(db, dry_run=True)
    assert snapshot(db) == before
    real = run(db)
    assert dry.dry_run and not real.dry_run
    fields = ("referrals_anonymised", "children_anonymised", "children_kept_in_use",
              "checks_cleared", "notifications_minimised", "quarantined_deleted")
    assert [getattr(dry, f) for f in fields] == [getattr(real, f) for f in fields]


def test_second_run_changes_nothing(db: str) -> None:
    run(db)
    once = snapshot(db)
    again = run(db)
    assert snapshot(db) == once
    assert (again.referrals_anonymised, again.children_anonymised, again.checks_cleared,
            again.notifications_minimised, again.quarantined_deleted) == (0, 0, 0, 0, 0)
    assert again.already_anonymised == 3


def test_cutoff_counts_calendar_years_from_closure() -> None:
    assert retention_cutoff(datetime(2030, 2, 28, tzinfo=UTC), 6) == datetime(
        2024, 2, 28, tzinfo=UTC)
    assert retention_cutoff(datetime(2028, 2, 29, tzinfo=UTC), 1) == datetime(
        2027, 2, 28, tzinfo=UTC)
    with pytest.raises(ValueError, match="aware"):
        retention_cutoff(datetime(2030, 1, 1), 6)
    with pytest.raises(ValueError, match="at least one year"):
        retention_cutoff(NOW, 0)


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def live_db(clean_db: str, workdir: Path) -> dict[str, str]:
    """The same cases, dated relative to the real clock, for the CLI."""
    seed(clean_db, now=datetime.now(UTC))
    return cli_env(clean_db, columns=200)


def cme(env: dict[str, str], *args: str) -> str:
    return clikit.cme(env, *args).stdout


def test_cli_dry_run_prints_counts_and_changes_nothing(live_db: dict[str, str]) -> None:
    url = live_db["CME_DATABASE_URL"]
    before = snapshot(url)
    out = cme(live_db, "retention", "apply", "--dry-run")
    assert "dry run" in out and "cases anonymised" in out and "6 years" in out
    assert snapshot(url) == before


def test_cli_apply_anonymises_and_reports(live_db: dict[str, str]) -> None:
    url = live_db["CME_DATABASE_URL"]
    report = json.loads(cme(live_db, "retention", "apply", "--json"))
    assert report["referrals_anonymised"] == 3 and report["children_anonymised"] == 1
    assert report["dry_run"] is False and report["years"] == 6
    assert snapshot(url)["Child"][referral(url, OLD).child_id]["forename"] == REDACTED
    again = cme(live_db, "retention", "apply")
    assert "cases already anonymised" in again
    assert json.loads(cme(live_db, "retention", "apply", "--json"))["referrals_anonymised"] == 0


def test_cli_years_option_and_setting(live_db: dict[str, str]) -> None:
    url = live_db["CME_DATABASE_URL"]
    # 1 year: SIBLING_RECENT (closed 2 years ago) joins OLD, SHARED_OLD and SIBLING_OLD, so
    # Cornelius's last case has passed too; RECENT (closed 6 months ago) stays
    one_year = json.loads(cme(live_db, "retention", "apply", "--dry-run", "--years", "1",
                              "--json"))
    assert one_year["years"] == 1
    assert one_year["referrals_anonymised"] == 4 and one_year["children_anonymised"] == 2
    # 8 years from the setting: only SHARED_OLD (closed 8 years 3 months ago)
    env = {**live_db, "CME_RETENTION_YEARS": "8"}
    eight = json.loads(cme(env, "retention", "apply", "--dry-run", "--json"))
    assert eight["years"] == 8 and eight["referrals_anonymised"] == 1
    assert referral(url, OLD).reason != ""  # dry runs, both


def test_cli_years_must_be_positive(live_db: dict[str, str]) -> None:
    result = runner.invoke(app, ["retention", "apply", "--years", "0"], env=live_db)
    assert result.exit_code != 0
