"""Read-only views of the case database for the ``cme`` CLI and, later, Prefect artifacts.

Every function takes the database URL, reads, and returns plain dataclasses (``to_jsonable``
turns them into JSON-ready dicts). Nothing here writes.

What may appear where (docs/guidance.md, Data protection):

- :func:`list_cases`, :func:`list_outbox`, :func:`list_quarantined` (without ``include_raw``)
  and :func:`disclosure_audit` hold **no personal data**: references, codes, dates, counts,
  school URNs and school email addresses only;
- :func:`case_detail` adds the child's **initials**, the most an officer's terminal shows;
  full details are in the ``case-report`` flow's artifact;
- ``list_quarantined(..., include_raw=True)`` returns the rejected record as received, which
  may hold anything: callers ask for it explicitly.

A reference that does not exist raises :class:`CaseNotFound`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum, StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from connectors import CheckEvidence
from models import (
    CaseEvent,
    CaseStatus,
    Check,
    Child,
    Notification,
    NotificationStatus,
    QuarantinedRecord,
    Referral,
    SafeguardingConcern,
    School,
    session_scope,
)
from policy import LONDON, london_date

__all__ = [
    "OPEN",
    "AcknowledgementState",
    "CaseDetail",
    "CaseEventRow",
    "CaseNotFound",
    "CaseSummary",
    "CheckRow",
    "ConcernRow",
    "ConnectorDisclosures",
    "DisclosureAudit",
    "DisclosureRow",
    "EvidenceRow",
    "NotificationRow",
    "Outbox",
    "QuarantineRow",
    "acknowledgement_state",
    "case_detail",
    "concern_summary",
    "concerns_of",
    "count_cases",
    "disclosure_audit",
    "evidence_rows",
    "evidence_school_urns",
    "list_cases",
    "list_outbox",
    "list_quarantined",
    "london_when",
    "to_jsonable",
]

#: Pseudo-status accepted by :func:`list_cases`: every case not ``closed``.
OPEN = "open"


class CaseNotFound(LookupError):
    """No referral has the Mendix reference asked for."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        super().__init__(f"no case with reference {reference}")


class AcknowledgementState(StrEnum):
    """Where a referral stands against the 5-working-day acknowledgement duty."""

    met = "met"  # acknowledged on or before the due date
    late = "late"  # acknowledged, but after the due date
    due = "due"  # not yet acknowledged, due date not passed
    overdue = "overdue"  # not acknowledged and the due date has passed


def acknowledgement_state(due: date, acknowledged_at: datetime | None, today: date
                          ) -> AcknowledgementState:
    """The acknowledgement SLA state on ``today`` (a Europe/London date)."""
    if acknowledged_at is not None:
        on = london_date(acknowledged_at)
        return AcknowledgementState.met if on <= due else AcknowledgementState.late
    return AcknowledgementState.overdue if today > due else AcknowledgementState.due


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class CaseSummary:
    """One line of the case list. No personal data."""

    reference: str
    kind: str
    status: str
    outcome: str | None
    school_urn: str
    received_on: date
    acknowledgement_due: date
    acknowledged_on: date | None
    acknowledgement: str
    next_check_due: date | None
    tracing_rounds: int
    closed_on: date | None


def _status_filter(status: str | None) -> Any:
    if status is None:
        return None
    if status == OPEN:
        return col(Referral.status) != CaseStatus.CLOSED
    return col(Referral.status) == CaseStatus(status)


def count_cases(db_url: str, *, status: str | None = None) -> int:
    """How many cases :func:`list_cases` would return with no limit."""
    query = select(sa.func.count()).select_from(Referral)
    where = _status_filter(status)
    if where is not None:
        query = query.where(where)
    with session_scope(db_url) as session:
        return int(session.exec(query).one())


def list_cases(db_url: str, *, today: date, status: str | None = None,
               limit: int | None = None) -> list[CaseSummary]:
    """Cases, newest referral first; ``status`` is a :class:`CaseStatus` value or ``"open"``."""
    query = (
        select(Referral, School.urn)
        .join(School, col(School.id) == col(Referral.school_id))
        .order_by(col(Referral.received_at).desc(), col(Referral.id).desc())
    )
    where = _status_filter(status)
    if where is not None:
        query = query.where(where)
    if limit:
        query = query.limit(limit)
    with session_scope(db_url) as session:
        rows = session.exec(query).all()
    return [
        CaseSummary(
            reference=r.mendix_reference,
            kind=str(r.kind),
            status=str(r.status),
            outcome=_str(r.outcome),
            school_urn=urn,
            received_on=london_date(r.received_at),
            acknowledgement_due=r.acknowledgement_due,
            acknowledged_on=london_date(r.acknowledged_at) if r.acknowledged_at else None,
            acknowledgement=acknowledgement_state(
                r.acknowledgement_due, r.acknowledged_at, today).value,
            next_check_due=r.next_check_due,
            tracing_rounds=r.tracing_rounds,
            closed_on=london_date(r.closed_at) if r.closed_at else None,
        )
        for r, urn in rows
    ]


@dataclass(frozen=True)
class CaseEventRow:
    at: datetime
    kind: str
    rule: str | None
    text: str
    actor: str


@dataclass(frozen=True)
class CheckRow:
    connector: str
    connector_version: str
    round: int
    outcome: str
    checked_at: datetime
    fields_disclosed: list[str]
    agency_reference: str | None
    expected_by: date | None
    error_kind: str | None
    error_code: str | None


@dataclass(frozen=True)
class EvidenceRow:
    """One piece of evidence an agency gave, as the case report and ``cme case`` show it.

    ``address`` (the address the agency holds, with town and postcode) is personal data.
    ``problem`` is set, and the facts are empty, when the check's stored evidence does not
    read (connectors.CheckEvidence): the row says so instead of showing nothing.
    """

    round: int
    agency: str
    checked_at: datetime
    agency_reference: str | None
    kind: str
    source: str | None = None
    how_matched: str | None = None
    confidence: float | None = None
    la_code: str | None = None
    school_urn: str | None = None
    school_name: str | None = None
    address: str | None = None
    address_type: str | None = None
    date_seen: date | None = None
    departure_date: date | None = None
    arrival_date: date | None = None
    departure_country: str | None = None
    ctf_destination: str | None = None
    safeguarding: bool = False
    problem: str | None = None


@dataclass(frozen=True)
class ConcernRow:
    """A safeguarding concern: who raised it (``school`` or an agency's name) and when."""

    source: str
    raised_by: str
    raised_at: datetime


def _raised_by(source: str) -> str:
    return "the referring school" if source == "school" else f"agency {source}"


def concerns_of(referral: Referral, rows: Sequence[SafeguardingConcern]) -> list[ConcernRow]:
    """Every concern on a case, oldest first: the recorded ones, and the school's flag even
    where no row records it (a case from before concerns were recorded)."""
    out = [ConcernRow(c.source, _raised_by(c.source), c.raised_at) for c in rows]
    if referral.safeguarding_concern and not any(c.source == "school" for c in out):
        out.insert(0, ConcernRow("school", _raised_by("school"), referral.received_at))
    return out


def concern_summary(concerns: Sequence[ConcernRow], *, closed_at: datetime | None,
                    closure_reason: str | None) -> str:
    """What an officer reads about safeguarding on a case: who raised each concern and when,
    and whether a person must still act (open) or a person closed the case."""
    if not concerns:
        return "no"
    who = "; ".join(f"raised by {c.raised_by} on {_long_when(c.raised_at)}" for c in concerns)
    if closed_at is not None:
        return (f"{who}. Closed by an officer on {_long_when(closed_at)}"
                + (f" ({closure_reason})" if closure_reason else ""))
    return f"YES, {who}: a person must act"


def _long_when(at: datetime) -> str:
    return london_when(at)


def london_when(at: datetime) -> str:
    """``2 Dec 2026 07:00``: an instant as an officer reads it, in London time."""
    local = at.astimezone(LONDON)
    return f"{local.day} {local:%b %Y %H:%M}"


@dataclass(frozen=True)
class NotificationRow:
    id: int
    reference: str | None
    template: str
    channel: str
    recipient: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None
    created_at: datetime


@dataclass(frozen=True)
class CaseDetail:
    """One case as an officer's terminal shows it: the child appears as initials only."""

    reference: str
    kind: str
    status: str
    outcome: str | None
    decision_rule: str | None
    classification: str
    classification_reason: str
    closure_reason: str | None
    missing_actions: list[str]
    safeguarding_concern: bool  # any concern: the school's or an agency's
    school_urn: str
    school_name: str
    child_initials: str
    child_anonymised: bool
    received_at: datetime
    acknowledgement_due: date
    acknowledged_at: datetime | None
    acknowledgement: str
    next_check_due: date | None
    tracing_rounds: int
    closed_at: datetime | None
    duplicate_of: str | None
    proposed_outcome: str | None = None
    proposed_at: datetime | None = None
    confirmed_outcome: str | None = None
    concerns: list[ConcernRow] = field(default_factory=list)
    safeguarding: str = "no"
    #: What each agency found (tasks.reports.evidence_rows). Personal data (the addresses
    #: agencies hold) is left out unless asked for: see ``case_detail(show_personal=...)``.
    evidence: list[EvidenceRow] = field(default_factory=list)
    timeline: list[CaseEventRow] = field(default_factory=list)
    checks: list[CheckRow] = field(default_factory=list)
    notifications: list[NotificationRow] = field(default_factory=list)


def _initials(child: Child) -> str:
    first, last = child.forename.strip()[:1], child.surname.strip()[:1]
    return f"{first.upper() or '?'}.{last.upper() or '?'}."


def case_detail(db_url: str, reference: str, *, today: date,
                show_personal: bool = False) -> CaseDetail:
    """The facts, timeline, checks, notifications and evidence of the case ``reference``.

    The evidence is what each agency found (LA, school, departure, agency reference, how it
    matched the child), as in the case report; the addresses agencies hold only with
    ``show_personal``.
    """
    with session_scope(db_url) as session:
        referral = session.exec(
            select(Referral).where(Referral.mendix_reference == reference)
        ).first()
        if referral is None or referral.id is None:
            raise CaseNotFound(reference)
        school = session.get(School, referral.school_id)
        child = session.get(Child, referral.child_id)
        assert school is not None and child is not None  # foreign keys guarantee both
        duplicate_of = None
        if referral.duplicate_of_id is not None:
            original = session.get(Referral, referral.duplicate_of_id)
            duplicate_of = original.mendix_reference if original else None
        events = session.exec(
            select(CaseEvent).where(CaseEvent.referral_id == referral.id)
            .order_by(col(CaseEvent.at), col(CaseEvent.id))
        ).all()
        checks = session.exec(
            select(Check).where(Check.referral_id == referral.id)
            .order_by(col(Check.round), col(Check.connector), col(Check.id))
        ).all()
        notes = session.exec(
            select(Notification).where(Notification.referral_id == referral.id)
            .order_by(col(Notification.created_at), col(Notification.id))
        ).all()
        concerns = concerns_of(referral, session.exec(
            select(SafeguardingConcern).where(SafeguardingConcern.referral_id == referral.id)
            .order_by(col(SafeguardingConcern.raised_at), col(SafeguardingConcern.id))).all())
        urns = evidence_school_urns(checks)
        names = {sc.urn: sc.name for sc in session.exec(
            select(School).where(col(School.urn).in_(list(urns))))} if urns else {}
        evidence = evidence_rows(checks, names)
        if not show_personal:
            # The addresses agencies hold are the personal data of evidence (EvidenceRow).
            evidence = [dataclasses.replace(e, address=None) for e in evidence]
        return CaseDetail(
            reference=referral.mendix_reference,
            kind=str(referral.kind),
            status=str(referral.status),
            outcome=_str(referral.outcome),
            decision_rule=referral.decision_rule,
            classification=referral.classification,
            classification_reason=referral.classification_reason,
            closure_reason=_str(referral.closure_reason),
            missing_actions=list(referral.missing_actions),
            safeguarding_concern=referral.safeguarding_concern or bool(concerns),
            school_urn=school.urn,
            school_name=school.name,
            child_initials=_initials(child),
            child_anonymised=child.match_key.startswith("redacted:"),
            received_at=referral.received_at,
            acknowledgement_due=referral.acknowledgement_due,
            acknowledged_at=referral.acknowledged_at,
            acknowledgement=acknowledgement_state(
                referral.acknowledgement_due, referral.acknowledged_at, today).value,
            next_check_due=referral.next_check_due,
            tracing_rounds=referral.tracing_rounds,
            closed_at=referral.closed_at,
            duplicate_of=duplicate_of,
            proposed_outcome=_str(referral.proposed_outcome),
            proposed_at=referral.proposed_at,
            confirmed_outcome=_str(referral.confirmed_outcome),
            concerns=concerns,
            safeguarding=concern_summary(concerns, closed_at=referral.closed_at,
                                         closure_reason=_str(referral.closure_reason)),
            evidence=evidence,
            timeline=[CaseEventRow(at=e.at, kind=e.kind, rule=e.rule, text=e.text,
                                   actor=e.actor) for e in events],
            checks=[_check_row(c) for c in checks],
            notifications=[_notification_row(n, referral.mendix_reference) for n in notes],
        )


def _check_row(c: Check) -> CheckRow:
    return CheckRow(
        connector=c.connector, connector_version=c.connector_version, round=c.round,
        outcome=str(c.outcome), checked_at=c.checked_at,
        fields_disclosed=list(c.fields_disclosed), agency_reference=c.agency_reference,
        expected_by=c.expected_by, error_kind=c.error_kind, error_code=c.error_code,
    )


def _notification_row(n: Notification, reference: str | None) -> NotificationRow:
    assert n.id is not None
    return NotificationRow(
        id=n.id, reference=reference, template=str(n.template), channel=str(n.channel),
        recipient=n.recipient, status=str(n.status), attempts=n.attempts,
        next_attempt_at=n.next_attempt_at, sent_at=n.sent_at, last_error=n.last_error,
        created_at=n.created_at,
    )


def evidence_school_urns(checks: Iterable[Check]) -> set[str]:
    """The URNs of the schools the agencies named in these checks' evidence."""
    return {e.school_urn for c in checks for e in CheckEvidence.read(c.evidence).items
            if e.school_urn}


def evidence_rows(checks: Iterable[Check], school_names: dict[str, str]) -> list[EvidenceRow]:
    """What each agency found, one row per piece of evidence (personal data: the addresses
    agencies hold), read through connectors.CheckEvidence; a check whose stored evidence
    does not read gives one row with its ``problem``. ``school_names``: URN → school name,
    where the school is known."""
    out: list[EvidenceRow] = []
    for c in checks:
        stored = CheckEvidence.read(c.evidence)
        if stored.problem:
            out.append(EvidenceRow(round=c.round, agency=c.connector, checked_at=c.checked_at,
                                   agency_reference=c.agency_reference, kind="unreadable",
                                   problem=stored.problem))
        for e in stored.items:
            out.append(EvidenceRow(
                round=c.round, agency=c.connector, checked_at=c.checked_at,
                agency_reference=c.agency_reference, kind=e.kind, source=e.source,
                how_matched=e.match_basis or "not said (read as demographic)",
                confidence=e.confidence, la_code=e.la_code, school_urn=e.school_urn,
                school_name=school_names.get(e.school_urn or ""),
                address=", ".join(x for x in (e.address, e.town, e.postcode) if x) or None,
                address_type=e.address_type, date_seen=e.date_seen,
                departure_date=e.departure_date if e.kind == "departure" else None,
                arrival_date=e.departure_date if e.kind == "arrival" else None,
                departure_country=e.departure_country,
                ctf_destination=e.ctf_destination, safeguarding=e.safeguarding,
            ))
    return out


# --------------------------------------------------------------------------- outbox


@dataclass(frozen=True)
class Outbox:
    """Outbox rows (newest first, possibly limited) and the count of *all* rows by status."""

    notifications: list[NotificationRow]
    by_status: dict[str, int]


def list_outbox(db_url: str, *, status: str | None = None, limit: int | None = None) -> Outbox:
    """Notification rows with their case reference; ``status`` a NotificationStatus value."""
    query = (
        select(Notification, Referral.mendix_reference)
        .join(Referral, col(Referral.id) == col(Notification.referral_id), isouter=True)
        .order_by(col(Notification.created_at).desc(), col(Notification.id).desc())
    )
    if status is not None:
        query = query.where(col(Notification.status) == NotificationStatus(status))
    if limit:
        query = query.limit(limit)
    with session_scope(db_url) as session:
        rows = session.exec(query).all()
        counts = session.exec(
            select(Notification.status, sa.func.count()).group_by(col(Notification.status))
        ).all()
    by_status = {s.value: 0 for s in NotificationStatus}
    by_status.update({str(s): int(n) for s, n in counts})
    return Outbox(notifications=[_notification_row(n, ref) for n, ref in rows],
                  by_status=by_status)


# --------------------------------------------------------------------------- quarantine


@dataclass(frozen=True)
class QuarantineRow:
    """A rejected input record. ``raw`` is ``None`` unless it was asked for explicitly."""

    id: int
    source: str
    line_no: int | None
    mendix_reference: str | None
    reasons: list[str]
    received_at: datetime
    raw: str | None = None


def list_quarantined(db_url: str, *, include_raw: bool = False, limit: int | None = None
                     ) -> list[QuarantineRow]:
    """Quarantined records, newest first. ``include_raw`` adds the record as received."""
    query = select(QuarantinedRecord).order_by(
        col(QuarantinedRecord.received_at).desc(), col(QuarantinedRecord.id).desc())
    if limit:
        query = query.limit(limit)
    with session_scope(db_url) as session:
        rows = session.exec(query).all()
    out = []
    for q in rows:
        assert q.id is not None
        out.append(QuarantineRow(
            id=q.id, source=q.source, line_no=q.line_no, mendix_reference=q.mendix_reference,
            reasons=list(q.reasons), received_at=q.received_at,
            raw=q.raw if include_raw else None,
        ))
    return out


# --------------------------------------------------------------------------- disclosures


@dataclass(frozen=True)
class DisclosureRow:
    """What one check sent to one agency: field names, never values."""

    reference: str
    connector: str
    connector_version: str
    round: int
    checked_at: datetime
    outcome: str
    fields_disclosed: list[str]
    run_id: str | None


@dataclass(frozen=True)
class ConnectorDisclosures:
    """Per agency: how many checks disclosed anything, about how many cases, which fields."""

    connector: str
    checks: int
    disclosures: int
    referrals: int
    fields: list[str]
    versions: list[str]


@dataclass(frozen=True)
class DisclosureAudit:
    checks: list[DisclosureRow]
    summary: list[ConnectorDisclosures]


def disclosure_audit(db_url: str, *, reference: str | None = None) -> DisclosureAudit:
    """Every recorded disclosure (all cases, or the case ``reference``) and a per-agency sum.

    A check whose ``fields_disclosed`` is empty (e.g. refused by an open circuit before
    anything was sent) counts as a check but not as a disclosure.
    """
    query = (
        select(Check, Referral.mendix_reference)
        .join(Referral, col(Referral.id) == col(Check.referral_id))
        .order_by(col(Check.checked_at), col(Check.id))
    )
    with session_scope(db_url) as session:
        if reference is not None:
            found = session.exec(
                select(Referral.id).where(Referral.mendix_reference == reference)).first()
            if found is None:
                raise CaseNotFound(reference)
            query = query.where(col(Check.referral_id) == found)
        rows = session.exec(query).all()
    checks = [
        DisclosureRow(
            reference=ref, connector=c.connector, connector_version=c.connector_version,
            round=c.round, checked_at=c.checked_at, outcome=str(c.outcome),
            fields_disclosed=list(c.fields_disclosed), run_id=c.run_id,
        )
        for c, ref in rows
    ]
    return DisclosureAudit(checks=checks, summary=_summarise(checks))


def _summarise(checks: Sequence[DisclosureRow]) -> list[ConnectorDisclosures]:
    acc: dict[str, dict[str, Any]] = {}
    for c in checks:
        a = acc.setdefault(c.connector, {"checks": 0, "disclosures": 0, "refs": set(),
                                         "fields": set(), "versions": set()})
        a["checks"] += 1
        a["versions"].add(c.connector_version)
        if c.fields_disclosed:
            a["disclosures"] += 1
            a["refs"].add(c.reference)
            a["fields"].update(c.fields_disclosed)
    return [
        ConnectorDisclosures(connector=name, checks=a["checks"], disclosures=a["disclosures"],
                             referrals=len(a["refs"]), fields=sorted(a["fields"]),
                             versions=sorted(a["versions"]))
        for name, a in sorted(acc.items())
    ]


# --------------------------------------------------------------------------- helpers


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def to_jsonable(value: Any) -> Any:
    """Dataclasses, dates, enums, lists and dicts → JSON-ready values (ISO 8601 dates)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value
