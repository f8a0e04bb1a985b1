"""Retention: anonymise closed cases once the retention period after closure has passed.

docs/guidance.md, Data protection: "retention is finite" (``CME_RETENTION_YEARS``, default 6 years,
counted from ``closed_at``). We **anonymise rather than delete** so the aggregate counts the
DfE termly return and the team's own reporting need (referrals by kind, school, outcome,
closure reason, dates received/acknowledged/closed, tracing rounds, which agencies were asked)
survive, while nothing left identifies a child.

For each referral that is ``closed`` with ``closed_at`` before the cut-off and not yet
anonymised:

- ``Referral.reason`` (the school's free text) is emptied and each school action keeps only
  its kind and date (the free-text ``note`` goes); kind, status, outcome, dates, school,
  classification and decision rule stay;
- each ``Check.evidence`` (addresses, dates seen...) becomes ``NULL``; the agency, round,
  outcome, agency reference and ``fields_disclosed`` stay — the disclosure audit is a
  record of what the LA did, not of who the child is;
- each ``Notification.personalisation`` becomes ``{"reference": ...}``;
- a ``retention_anonymised`` case event is added (this is also what makes a re-run a no-op).

Its ``Child`` row is anonymised only when **every** referral of that child is closed and past
the cut-off — a child also referred in an open (or recently closed) case is never touched:
names become ``REDACTED``, the date of birth 1 January of the birth year (age bands still
work), UPN, NHS number, former surnames, address, postcode and parents are cleared, and
``match_key`` becomes ``redacted:<id>`` so intake can never link a new referral to it. Sex and
the service-child/SEN flags stay for aggregate statistics.

``QuarantinedRecord`` rows received before the cut-off are deleted: their ``raw`` may hold
anything and they have no aggregate use.

Open cases are never touched. ``dry_run`` does the same work inside a transaction that is
rolled back, so its counts are exactly what a real run would do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import (
    AttendanceMark,
    AttendancePupil,
    CaseEvent,
    CaseStatus,
    Check,
    Child,
    Notification,
    QuarantinedRecord,
    Referral,
    get_engine,
)
from tasks.lifecycle import Transition, change_status

__all__ = ["REDACTED", "RETENTION_EVENT", "RetentionReport", "apply_retention",
           "retention_cutoff"]

REDACTED = "REDACTED"
#: The case-event kind written when a case is anonymised; its presence marks the case done.
RETENTION_EVENT = "retention_anonymised"
ACTOR = "retention"


@dataclass(frozen=True)
class RetentionReport:
    """What a retention run did (or, with ``dry_run``, would do). Counts only."""

    cutoff: datetime
    years: int
    dry_run: bool
    referrals_anonymised: int
    children_anonymised: int
    children_kept_in_use: int
    checks_cleared: int
    notifications_minimised: int
    quarantined_deleted: int
    already_anonymised: int
    closed_without_date: int


def retention_cutoff(now: datetime, years: int) -> datetime:
    """``now`` minus ``years`` calendar years (29 February falls back to the 28th)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if years < 1:
        raise ValueError("the retention period must be at least one year")
    try:
        return now.replace(year=now.year - years)
    except ValueError:
        return now.replace(year=now.year - years, day=28)


def apply_retention(db_url: str, *, now: datetime, years: int, dry_run: bool = False
                    ) -> RetentionReport:
    """Anonymise closed cases whose ``closed_at`` is more than ``years`` before ``now``.

    Idempotent: a second run with the same arguments changes nothing. One transaction: a
    failure leaves the database as it was.
    """
    cutoff = retention_cutoff(now, years)
    with Session(get_engine(db_url), expire_on_commit=False) as session:
        try:
            report = _apply(session, now=now, cutoff=cutoff, years=years, dry_run=dry_run)
            if dry_run:
                session.rollback()
            else:
                session.commit()
        except BaseException:
            session.rollback()
            raise
    return report


def _past_retention(cutoff: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(col(Referral.status) == CaseStatus.CLOSED,
                   col(Referral.closed_at).is_not(None),
                   col(Referral.closed_at) < cutoff)


def _apply(session: Session, *, now: datetime, cutoff: datetime, years: int, dry_run: bool
           ) -> RetentionReport:
    done_ids = select(CaseEvent.referral_id).where(CaseEvent.kind == RETENTION_EVENT)
    due = list(session.exec(
        select(Referral)
        .where(_past_retention(cutoff), col(Referral.id).not_in(done_ids))
        .order_by(col(Referral.id))
    ))
    already = int(session.exec(
        select(sa.func.count()).select_from(Referral)
        .where(_past_retention(cutoff), col(Referral.id).in_(done_ids))
    ).one())
    undated = int(session.exec(
        select(sa.func.count()).select_from(Referral)
        .where(col(Referral.status) == CaseStatus.CLOSED, col(Referral.closed_at).is_(None))
    ).one())

    checks_cleared = notifications_minimised = 0
    for referral in due:
        assert referral.id is not None
        checks_cleared += _clear_checks(session, referral.id)
        notifications_minimised += _minimise_notifications(session, referral)
        referral.reason = ""
        referral.record_digest = None
        referral.school_actions = [
            {k: v for k, v in a.items() if k in ("action", "date")}
            for a in referral.school_actions
        ]
        change_status(session, referral, Transition.ANONYMISE, actor=ACTOR, at=now,
                      line=(RETENTION_EVENT, f"anonymised under retention policy (closed "
                            f"more than {years} years ago)"))
        session.add(referral)

    children_anonymised = children_kept = 0
    for child_id in sorted({r.child_id for r in due}):
        # The child row is shared by every referral of this child: it may only go when
        # none of them is open or still inside its retention period.
        in_use = session.exec(
            select(sa.func.count()).select_from(Referral)
            .where(col(Referral.child_id) == child_id, sa.not_(_past_retention(cutoff)))
        ).one()
        if in_use:
            children_kept += 1
            continue
        child = session.get(Child, child_id)
        upn = child.upn if child is not None else None
        if child is not None and _anonymise_child(child):
            session.add(child)
            children_anonymised += 1
            _forget_attendance(session, child_id, upn)

    old_quarantine = select(QuarantinedRecord.id).where(
        col(QuarantinedRecord.received_at) < cutoff)
    quarantined = len(session.exec(old_quarantine).all())
    if quarantined:
        session.execute(sa.delete(QuarantinedRecord).where(
            col(QuarantinedRecord.received_at) < cutoff))
    session.flush()

    return RetentionReport(
        cutoff=cutoff, years=years, dry_run=dry_run,
        referrals_anonymised=len(due), children_anonymised=children_anonymised,
        children_kept_in_use=children_kept, checks_cleared=checks_cleared,
        notifications_minimised=notifications_minimised, quarantined_deleted=quarantined,
        already_anonymised=already, closed_without_date=undated,
    )


def _clear_checks(session: Session, referral_id: int) -> int:
    checks = session.exec(
        select(Check).where(Check.referral_id == referral_id, col(Check.evidence).is_not(None))
    ).all()
    n = 0
    for check in checks:
        if check.evidence is None:  # a JSON null stored by an older writer
            continue
        check.evidence = None
        session.add(check)
        n += 1
    return n


def _minimise_notifications(session: Session, referral: Referral) -> int:
    keep = {"reference": referral.mendix_reference}
    n = 0
    for note in session.exec(select(Notification).where(Notification.referral_id == referral.id)):
        if note.personalisation != keep:
            note.personalisation = dict(keep)
            session.add(note)
            n += 1
    return n


def _forget_attendance(session: Session, child_id: int, upn: str | None) -> None:
    """Delete the attendance data held about an anonymised child (README, "PMOOE found from
    attendance data"): the pupil row names them and the marks are theirs."""
    cond = col(AttendancePupil.child_id) == child_id
    if upn:
        cond = sa.or_(cond, col(AttendancePupil.upn) == upn)
    ids = list(session.exec(select(AttendancePupil.id).where(cond)))
    if ids:
        session.execute(sa.delete(AttendanceMark).where(col(AttendanceMark.pupil_id).in_(ids)))
        session.execute(sa.delete(AttendancePupil).where(col(AttendancePupil.id).in_(ids)))


def _anonymise_child(child: Child) -> bool:
    """Strip ``child`` of everything that identifies them; ``False`` if already done."""
    key = f"redacted:{child.id}"
    if child.match_key == key:
        return False
    child.forename = child.surname = REDACTED
    child.dob = date(child.dob.year, 1, 1)
    child.upn = None
    child.nhs_number = None
    child.former_surnames = []
    child.address_line1 = child.town = child.postcode = None
    child.parents = []
    child.match_key = key
    return True
