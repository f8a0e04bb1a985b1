"""PMOOE found from attendance data (README, "PMOOE found from attendance data").

Two steps, each safe to run again:

1. :func:`import_marks` streams a CSV of register marks into ``attendancepupil`` and
   ``attendancemark`` in batches (memory does not grow with the file), keeping every row it
   cannot accept in the quarantine table with its reasons, as referral intake does. A mark
   for a session already held replaces it (a school corrected its register). Every pupil
   touched is flagged for assessment.
2. :func:`assess_pupils` runs the PMOOE rules of ``policy`` (docs/guidance.md, PMOOE) on each
   flagged pupil's marks. A pupil who meets one and has no open case gets a PMOOE case
   (``source = "attendance"``), a letter to the school asking for its enquiries, and a line on
   the officer's worklist. A pupil never gets a second case while one is open. A pupil whose
   register shows them back in school before the case is decided has the return recorded and
   the case closed with that reason — unless a safeguarding concern is open on it, which a
   person clears (docs/guidance.md, Safeguarding).

A pupil who meets a threshold but cannot be made a case (no date of birth held, or a school
the pipeline does not know) is kept with what is missing, and listed on the worklist.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

import policy
from models import (
    AttendanceMark,
    AttendancePupil,
    CaseEvent,
    CaseOutcome,
    CaseStatus,
    Child,
    ClosureReason,
    NotificationChannel,
    Referral,
    ReferralKind,
    School,
    Template,
    session_scope,
)
from notifications import keys
from tasks._common import event, initials, match_key, queue_message
from tasks.intake import OPEN_STATUSES
from tasks.lifecycle import Transition, change_status
from tasks.quarantine import quarantine
from tasks.school_updates import school_year_first_day

__all__ = [
    "COLUMNS",
    "AttendanceConfig",
    "AttendanceFileError",
    "AttendanceReport",
    "assess_pupils",
    "assess_task",
    "import_marks",
    "import_task",
]

#: Each field of the file and the header names accepted for it (compared without case,
#: spaces or punctuation: "Legal Surname", "legal_surname" and "LEGALSURNAME" are one).
COLUMNS: dict[str, tuple[str, ...]] = {
    "upn": ("upn", "pupilupn", "uniquepupilnumber"),
    "urn": ("urn", "schoolurn", "establishmenturn"),
    "date": ("date", "markdate", "attendancedate", "sessiondate"),
    "session": ("session", "ampm", "sessionampm", "amorpm"),
    "code": ("code", "mark", "attendancecode", "attendancemark", "markcode"),
    "leave_end": ("leaveend", "leaveenddate", "leaveofabsenceend", "leaveofabsenceenddate"),
    "year_group": ("yeargroup", "ncyear", "ncyeargroup", "nationalcurriculumyear"),
    "forename": ("forename", "legalforename", "firstname"),
    "surname": ("surname", "legalsurname", "lastname"),
    "dob": ("dob", "dateofbirth"),
    "sex": ("sex", "gender"),
}
REQUIRED = ("upn", "urn", "date", "session", "code")
#: A session with one of these in the code column has no mark yet (MIS exports leave it so).
NO_MARK = frozenset({"", "-"})
_SESSIONS = {"AM": "AM", "A": "AM", "MORNING": "AM", "PM": "PM", "P": "PM", "AFTERNOON": "PM"}
_URN = re.compile(r"\d{6}")
_BACK_IN_SCHOOL = policy.PRESENT_CODES | policy.APPROVED_OFF_SITE_CODES
_PAGE = 200


class AttendanceFileError(ValueError):
    """The file cannot be read as attendance marks at all (nothing was stored)."""


@dataclass(frozen=True)
class AttendanceConfig:
    """What the attendance steps need from the settings (plain values)."""

    db_url: str
    channel: str = "file"
    #: CME_LA_NAME: no default, it comes from the settings only.
    la_name: str = field(kw_only=True)
    batch_size: int = 5000


@dataclass
class AttendanceReport:
    """Counts only. ``rows`` = ``stored`` + ``no_mark`` + ``quarantined``."""

    rows: int = 0
    stored: int = 0
    no_mark: int = 0
    quarantined: int = 0
    pupils_assessed: int = 0
    cases_created: int = 0
    already_open: int = 0
    not_pmooe: int = 0
    returned_closed: int = 0
    returned_escalated: int = 0
    details_needed: int = 0

    def add(self, other: AttendanceReport) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def _key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def _header_map(header: list[str]) -> dict[str, int]:
    alias = {a: name for name, names in COLUMNS.items() for a in names}
    found: dict[str, int] = {}
    for i, h in enumerate(header):
        name = alias.get(_key(h))
        if name and name not in found:
            found[name] = i
    missing = [n for n in REQUIRED if n not in found]
    if missing:
        raise AttendanceFileError(
            "the attendance file has no column for " + ", ".join(missing)
            + " (README, 'Attendance file')")
    return found


@lru_cache(maxsize=4096)
def _upn_problem(value: str) -> str | None:
    # A file holds each pupil's UPN and each date hundreds of times: check each once.
    return policy.upn_problem(value)


@lru_cache(maxsize=4096)
def _date(text: str) -> date:
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return date.fromisoformat(text)
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text)
    if m:
        return date(int(m[3]), int(m[2]), int(m[1]))
    raise ValueError("not a date (YYYY-MM-DD or DD/MM/YYYY)")


@dataclass(frozen=True, slots=True)
class _Row:
    upn: str
    urn: str
    day: date
    session: str
    code: str | None
    details: dict[str, Any]


def _parse(values: list[str], cols: dict[str, int]) -> tuple[_Row | None, list[str]]:
    """One CSV row: the mark, or the reasons it cannot be taken (field names, never values)."""
    def get(name: str) -> str:
        i = cols.get(name)
        return values[i].strip() if i is not None and i < len(values) else ""

    problems: list[str] = []
    upn = get("upn").upper()
    if (problem := _upn_problem(upn)) is not None:
        problems.append(f"upn: {problem}")
    urn = get("urn")
    if not _URN.fullmatch(urn):
        problems.append("urn: must be 6 digits")
    day: date | None = None
    try:
        day = _date(get("date"))
    except ValueError as exc:
        problems.append(f"date: {exc}")
    session = _SESSIONS.get(get("session").upper())
    if session is None:
        problems.append("session: must be AM or PM")
    code: str | None = get("code").upper()
    if code in NO_MARK:
        code = None
    elif code not in policy.ATTENDANCE_CODES:
        problems.append("code: not an attendance code (docs/guidance.md, PMOOE)")
    details: dict[str, Any] = {}
    for name in ("leave_end", "dob"):
        if get(name):
            try:
                details[name] = _date(get(name))
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
    if get("year_group"):
        yg = get("year_group").upper()
        if yg in ("R", "N1", "N2"):
            details["year_group"] = 0
        elif yg.isdigit() and int(yg) <= 14:
            details["year_group"] = int(yg)
        else:
            problems.append("year_group: not a year group (R or 1-14)")
    for name, size in (("forename", 100), ("surname", 100)):
        if get(name):
            details[name] = get(name)[:size]
    if get("sex"):
        sex = get("sex").upper()[:1]
        if sex in ("M", "F"):
            details["sex"] = sex
    if problems or day is None or session is None:
        return None, problems
    return _Row(upn, urn, day, session, code, details), []


def _insert(session: Session, table: sa.Table) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


class _Pupils:
    """UPN → pupil id, created on first sight. The cache is dropped when it grows large, so
    memory stays bounded however many pupils a file holds."""

    LIMIT = 50_000

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def resolve(self, session: Session, rows: list[_Row]) -> dict[str, int]:
        if len(self.ids) > self.LIMIT:
            self.ids.clear()
        table = AttendancePupil.__table__  # type: ignore[attr-defined]
        wanted = {r.upn: r.urn for r in rows}
        unknown = [u for u in wanted if u not in self.ids]
        for i in range(0, len(unknown), 500):
            part = unknown[i:i + 500]
            # executemany with one compiled statement: a multi-row VALUES is compiled
            # afresh for every batch, which cost more than the writes.
            session.execute(_insert(session, table).on_conflict_do_nothing(),
                            [{"upn": u, "school_urn": wanted[u], "needs_assessment": True,
                              "updated_at": datetime.now(UTC)} for u in part])
            for pid, upn in session.execute(sa.select(table.c.id, table.c.upn)
                                            .where(table.c.upn.in_(part))):
                self.ids[upn] = pid
        return self.ids


def _store(session: Session, rows: list[_Row], pupils: _Pupils) -> None:
    ids = pupils.resolve(session, rows)
    per_pupil: dict[str, dict[str, Any]] = {}
    marks: dict[tuple[int, date, str], dict[str, Any]] = {}
    for r in rows:
        d = per_pupil.setdefault(r.upn, {"school_urn": r.urn})
        d["school_urn"] = r.urn
        for k, v in r.details.items():
            if k == "year_group":
                if v in policy.TRANSITION_YEARS:
                    d["transition_start"] = school_year_first_day(r.day)
            else:
                d[k] = v
        if r.code is not None:
            pid = ids[r.upn]
            marks[(pid, r.day, r.session)] = {"pupil_id": pid, "day": r.day,
                                              "session": r.session, "code": r.code,
                                              "school_urn": r.urn}
    table = AttendancePupil.__table__  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    optional = ("forename", "surname", "dob", "sex", "leave_end", "transition_start")
    stmt = sa.update(table).where(table.c.id == sa.bindparam("pid")).values(
        school_urn=sa.bindparam("b_school_urn"), needs_assessment=True,
        updated_at=sa.bindparam("b_updated_at"),
        **{k: sa.func.coalesce(sa.bindparam(f"b_{k}", type_=table.c[k].type), table.c[k])
           for k in optional})
    session.execute(stmt, [
        {"pid": ids[upn], "b_school_urn": d["school_urn"], "b_updated_at": now,
         **{f"b_{k}": d.get(k) for k in optional}}
        for upn, d in per_pupil.items()])
    if marks:
        mtable = AttendanceMark.__table__  # type: ignore[attr-defined]
        ins = _insert(session, mtable)
        session.execute(ins.on_conflict_do_update(
            index_elements=["pupil_id", "day", "session"],
            set_={"code": ins.excluded.code, "school_urn": ins.excluded.school_urn}),
            list(marks.values()))


def _read_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    # utf-8-sig: Excel and most MIS tools write a byte-order mark; bad bytes become U+FFFD
    # so one mangled name does not stop the file.
    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        for values in reader:
            if any(v.strip() for v in values):
                yield reader.line_num, values


def import_marks(path: Path, cfg: AttendanceConfig) -> AttendanceReport:
    """Stream ``path`` (README, "Attendance file") into the database, one transaction per
    batch of ``cfg.batch_size`` rows. Raises :class:`AttendanceFileError` (nothing stored)
    for a file without the required columns."""
    report = AttendanceReport()
    rows = _read_rows(path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise AttendanceFileError("the attendance file is empty") from None
    cols = _header_map(header)
    pupils = _Pupils()
    source = f"attendance:{path.name}"[:200]
    batch: list[_Row] = []
    bad: list[tuple[int, str, list[str]]] = []  # (line number, raw row, reasons)

    def flush() -> None:
        with session_scope(cfg.db_url) as s:
            if batch:
                _store(s, batch, pupils)
            for line_no, raw, reasons in bad:
                quarantine(s, source, line_no, raw, reasons)
        batch.clear()
        bad.clear()

    for line_no, values in rows:
        report.rows += 1
        row, problems = _parse(values, cols)
        if row is None:
            report.quarantined += 1
            bad.append((line_no, json.dumps(values, ensure_ascii=False), problems))
        else:
            if row.code is None:
                report.no_mark += 1
            else:
                report.stored += 1
            batch.append(row)
        if len(batch) + len(bad) >= cfg.batch_size:
            flush()
    flush()
    return report


# --------------------------------------------------------------------------- assessment


def _open_case(session: Session, child_id: int) -> Referral | None:
    return session.exec(select(Referral).where(
        Referral.child_id == child_id, col(Referral.duplicate_of_id).is_(None),
        col(Referral.status).in_(OPEN_STATUSES)).order_by(col(Referral.id))).first()


def _returned(session: Session, p: AttendancePupil, case: Referral, cfg: AttendanceConfig,
              report: AttendanceReport) -> None:
    """Record a pupil back in school before their case is decided, and close the case."""
    if case.confirmed_outcome is not None or p.pmooe_on is None:
        return
    back = session.exec(select(AttendanceMark.day).where(
        AttendanceMark.pupil_id == p.id, AttendanceMark.day > p.pmooe_on,
        col(AttendanceMark.code).in_(sorted(_BACK_IN_SCHOOL)))
        .order_by(col(AttendanceMark.day))).first()
    if back is None:
        return
    rid = case.id or 0
    if case.status is CaseStatus.ESCALATED:
        seen = session.exec(select(CaseEvent.id).where(CaseEvent.referral_id == rid,
                                                       CaseEvent.kind == "returned")).first()
        if seen is None:
            event(session, rid, "returned",
                  f"The register shows the pupil back in school on {back.isoformat()}; the "
                  "case stays open: a safeguarding concern is for a person to clear",
                  rule="attendance_return")
            report.returned_escalated += 1
        return
    change_status(session, case, Transition.CLOSE_BY_RULE,
                  closure_reason=ClosureReason.returned_to_school, rule="attendance_return",
                  line=("returned", f"The register shows the pupil back in school on "
                        f"{back.isoformat()}; case closed"))
    case.outcome = CaseOutcome.RETURNED_TO_SCHOOL
    p.watch_from = back
    report.returned_closed += 1


def _assess_one(session: Session, p: AttendancePupil, cfg: AttendanceConfig, today: date,
                report: AttendanceReport) -> None:
    case = session.get(Referral, p.case_id) if p.case_id else None
    if case is not None and case.status is not CaseStatus.CLOSED:
        _returned(session, p, case, cfg, report)
        return  # never a second case while one is open
    if case is not None and p.watch_from is None and case.closed_at is not None:
        # Closed by an officer: only marks after that day can make a new case.
        p.watch_from = policy.london_date(case.closed_at) + timedelta(days=1)
    q = select(AttendanceMark.day, AttendanceMark.session, AttendanceMark.code).where(
        AttendanceMark.pupil_id == p.id)
    if p.watch_from is not None:
        q = q.where(AttendanceMark.day >= p.watch_from)
    marks = [(d, s_, c) for d, s_, c in session.exec(q)]
    leave_end = p.leave_end
    if leave_end is not None and p.watch_from is not None and leave_end < p.watch_from:
        leave_end = None
    start = p.transition_start
    if start is not None and p.watch_from is not None and start < p.watch_from:
        start = None
    finding = policy.assess_pmooe(marks, leave_end=leave_end, transition_start=start)
    if finding is None:
        p.pmooe_reason = p.pmooe_on = p.details_needed = None
        return
    child = session.get(Child, p.child_id) if p.child_id else None
    if child is None:
        child = session.exec(select(Child).where(Child.upn == p.upn)
                             .order_by(col(Child.id))).first()
    if child is not None:
        p.child_id = child.id
        if _open_case(session, child.id or 0) is not None:
            p.details_needed = None
            report.already_open += 1
            return
    school = session.exec(select(School).where(School.urn == p.school_urn)).first()
    missing = []
    if school is None:
        missing.append(f"school URN {p.school_urn} is not known to the pipeline")
    if child is None and p.dob is None:
        missing.append("the pupil's date of birth")
    p.pmooe_reason, p.pmooe_on = finding.reason.value, finding.triggered_on
    if missing or school is None:
        p.details_needed = "; ".join(missing)
        report.details_needed += 1
        return
    dob = child.dob if child is not None else p.dob
    assert dob is not None
    # The same classification as a school's referral (docs/guidance.md, Who is who): a
    # pupil below or above compulsory school age on the day is not missing out on education.
    c = policy.classify(dob=dob, on=finding.triggered_on, on_roll=True, pmooe=finding)
    if c.category is not policy.Category.PMOOE:
        p.pmooe_reason = p.pmooe_on = p.details_needed = None
        report.not_pmooe += 1
        return
    if child is None:
        assert p.dob is not None
        child = Child(upn=p.upn, forename=p.forename or "", surname=p.surname or "",
                      dob=p.dob, sex=p.sex, match_key=match_key(p.surname or "", p.dob))
        session.add(child)
        session.flush()
        p.child_id = child.id
    now = datetime.now(UTC)
    ref = f"ATT-{p.id}-{finding.triggered_on:%Y%m%d}"
    referral = Referral(
        mendix_reference=ref, kind=ReferralKind.PMOOE, source="attendance",
        school_id=school.id or 0, child_id=child.id or 0, received_at=now,
        classification=str(c.category), classification_reason=str(c.reason),
        # Nothing to acknowledge: no school sent a form. Not traced by the night either: the
        # pupil is on the school's roll, and the school's enquiries come first.
        acknowledgement_due=today, acknowledged_at=now, next_check_due=None,
    )
    session.add(referral)
    session.flush()
    rid = referral.id or 0
    event(session, rid, "received",
          f"PMOOE found from attendance data: {finding.reason.value} met on "
          f"{finding.triggered_on.isoformat()} at school URN {school.urn}; the school is "
          "asked for its enquiries", rule=finding.reason.value)
    personalisation: dict[str, Any] = {
        "reference": ref, "school_name": school.name, "pmooe_reason": finding.reason.value,
        "met_on": finding.triggered_on.isoformat(), "la_name": cfg.la_name}
    if initials(child).count(".") == 2:
        personalisation["initials"] = initials(child)
    # A message that cannot be queued costs only itself, never the case (README, Guarantees).
    queue_message(session, referral_id=rid, template=Template.pmooe_attendance,
                  recipient=school.email, personalisation=personalisation,
                  channel=NotificationChannel(cfg.channel),
                  idempotency_key=keys.pmooe_attendance(ref))
    p.case_id, p.details_needed = rid, None
    report.cases_created += 1


def assess_pupils(cfg: AttendanceConfig, today: date) -> AttendanceReport:
    """Assess every pupil flagged by :func:`import_marks`, a page at a time (one transaction
    per page; one savepoint per pupil, so one pupil that cannot be assessed is listed for a
    person and the others go on)."""
    report = AttendanceReport()
    with session_scope(cfg.db_url) as s:
        # Pupils waiting for details are looked at again: the school or the details may
        # have been added since.
        s.execute(sa.update(AttendancePupil.__table__)  # type: ignore[attr-defined]
                  .where(AttendancePupil.__table__.c.details_needed.is_not(None))  # type: ignore[attr-defined]
                  .values(needs_assessment=True))
    while True:
        with session_scope(cfg.db_url) as s:
            page = list(s.exec(select(AttendancePupil)
                               .where(col(AttendancePupil.needs_assessment).is_(True))
                               .order_by(col(AttendancePupil.id)).limit(_PAGE)))
            if not page:
                return report
            for p in page:
                report.pupils_assessed += 1
                outcome = AttendanceReport()
                nested = s.begin_nested()
                try:
                    _assess_one(s, p, cfg, today, outcome)
                    p.needs_assessment = False
                    nested.commit()
                except Exception as exc:  # noqa: BLE001 - list the pupil for a person
                    nested.rollback()
                    p.needs_assessment = False
                    p.details_needed = f"could not be assessed ({type(exc).__name__})"
                    report.details_needed += 1
                else:
                    report.add(outcome)


@task(name="import-attendance", cache_policy=NO_CACHE, persist_result=False)
def import_task(path: str, cfg: AttendanceConfig) -> AttendanceReport:
    """Prefect task: :func:`import_marks` (the path is a file on the worker's disk)."""
    return import_marks(Path(path), cfg)


@task(name="assess-attendance", cache_policy=NO_CACHE, persist_result=False)
def assess_task(cfg: AttendanceConfig, today: date) -> AttendanceReport:
    """Prefect task: :func:`assess_pupils`."""
    return assess_pupils(cfg, today)
