"""The case tables.

One row model per table; import/API schemas live in :mod:`models.schemas`. Personal fields
carry ``repr=False`` so a row printed in a traceback or a log shows ids, not a child.

Integrity is kept by the database, not by hope:

- ``referral.mendix_reference`` is unique — a re-sent form is an update, never a second case;
- ``check`` is unique per ``(referral_id, connector, round)`` — a re-run night cannot
  record the same enquiry twice;
- ``notification.idempotency_key`` is unique — a school is never sent the same letter twice;
- ``school.urn`` is unique;
- ``runlock.name`` and ``roundclaim.referral_id`` are primary keys — one night holds the
  night, one run holds a referral's round (README, "One night at a time").
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Field, SQLModel

from models._tz import UTCDateTime, utcnow
from models.enums import (
    CaseOutcome,
    CaseStatus,
    CheckOutcome,
    ClosureReason,
    NotificationChannel,
    NotificationStatus,
    ReferralKind,
    Template,
)

__all__ = [
    "AttendanceMark",
    "AttendancePupil",
    "CaseEvent",
    "Check",
    "Child",
    "Notification",
    "QuarantinedRecord",
    "Referral",
    "RoundClaim",
    "RunLock",
    "SafeguardingConcern",
    "School",
    "SourceState",
]

# Naming convention so constraint names are identical on SQLite and PostgreSQL and
# Alembic batch migrations on SQLite can find them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _enum(enum_cls: type, length: int = 40) -> sa.Enum:
    # Non-native: a VARCHAR on both databases, so adding a value needs no ALTER TYPE.
    return sa.Enum(
        enum_cls,
        native_enum=False,
        length=length,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime(), **kw)


class School(SQLModel, table=True):
    """A referring school (not personal data)."""

    id: int | None = Field(default=None, primary_key=True)
    urn: str = Field(max_length=6, unique=True)
    name: str = Field(max_length=200)
    la_code: str = Field(max_length=3)
    email: str = Field(max_length=254)
    # Where name and email came from: "trusted" (the schools list, `cme schools import`),
    # "officer" (`cme schools set-contact`) or "referral" (the first referral from a school
    # not on the list: used, but unverified until an officer or the list confirms it).
    contact_source: str = Field(default="referral", max_length=12)
    # The latest referral contact that differed from the one held: recorded, never applied
    # (README, "School contacts"); cleared when an officer or the list settles it.
    quoted_name: str | None = Field(default=None, max_length=200)
    quoted_email: str | None = Field(default=None, max_length=254)
    # The referral that quoted it (no foreign key: school and referral would refer to each
    # other, a cycle neither database's table order can create).
    quoted_by_id: int | None = None


class Child(SQLModel, table=True):
    """A referred child. Every identifying field is hidden from ``repr``."""

    id: int | None = Field(default=None, primary_key=True)
    upn: str | None = Field(default=None, max_length=13, index=True, repr=False)
    forename: str = Field(max_length=100, repr=False)
    surname: str = Field(max_length=100, repr=False)
    former_surnames: list[str] = Field(default_factory=list, sa_type=JSON, repr=False)
    dob: date = Field(repr=False)
    sex: str | None = Field(default=None, max_length=1, repr=False)
    nhs_number: str | None = Field(default=None, max_length=10, repr=False)
    address_line1: str | None = Field(default=None, max_length=200, repr=False)
    town: str | None = Field(default=None, max_length=100, repr=False)
    postcode: str | None = Field(default=None, max_length=8, repr=False)
    parents: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON, repr=False)
    service_child: bool = False
    sen: bool = False
    # Used to link a second referral of the same child: lower(surname)|dob.
    match_key: str = Field(max_length=140, index=True, repr=False)

    def __str__(self) -> str:
        return f"Child(id={self.id})"


class Referral(SQLModel, table=True):
    """One school referral and the case that tracks it."""

    id: int | None = Field(default=None, primary_key=True)
    mendix_reference: str = Field(max_length=40, unique=True)
    kind: ReferralKind = Field(sa_type=_enum(ReferralKind, 8))
    reason: str = Field(default="", max_length=2000, repr=False)
    school_id: int = Field(foreign_key="school.id", index=True)
    child_id: int = Field(foreign_key="child.id", index=True)
    received_at: datetime = _ts()
    last_attended: date | None = None
    school_actions: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    missing_actions: list[str] = Field(default_factory=list, sa_type=JSON)
    safeguarding_concern: bool = False
    classification: str = Field(default="CME", max_length=10)
    classification_reason: str = Field(default="", max_length=60)
    acknowledgement_due: date
    acknowledged_at: datetime | None = _ts(default=None)
    status: CaseStatus = Field(default=CaseStatus.RECEIVED, sa_type=_enum(CaseStatus), index=True)
    outcome: CaseOutcome | None = Field(default=None, sa_type=_enum(CaseOutcome))
    decision_rule: str | None = Field(default=None, max_length=60)
    closure_reason: ClosureReason | None = Field(default=None, sa_type=_enum(ClosureReason))
    closed_at: datetime | None = _ts(default=None)
    next_check_due: date | None = Field(default=None, index=True)
    tracing_rounds: int = 0
    # What the rulebook proposed for an officer to decide (None: nothing waiting), since when,
    # and the keys (policy.finding_key) of the findings it rests on.
    proposed_outcome: CaseOutcome | None = Field(default=None, sa_type=_enum(CaseOutcome))
    proposed_at: datetime | None = _ts(default=None)
    proposal_findings: list[str] = Field(default_factory=list, sa_type=JSON)
    # What an officer decided (decide-case): the outcome, and the findings confirmed or
    # rejected as this child; rounds an officer set aside by rejecting "whereabouts unknown".
    confirmed_outcome: CaseOutcome | None = Field(default=None, sa_type=_enum(CaseOutcome))
    confirmed_findings: list[str] = Field(default_factory=list, sa_type=JSON)
    rejected_findings: list[str] = Field(default_factory=list, sa_type=JSON)
    rounds_set_aside: int = 0
    # What this referral's own form last said, one salted digest per updatable field
    # (tasks.intake._record_digest): a re-read form is compared with itself, not with a
    # child row another referral of the same child may have written. No values are kept.
    record_digest: dict[str, str] | None = Field(default=None, sa_type=JSON, repr=False)
    duplicate_of_id: int | None = Field(default=None, foreign_key="referral.id")
    # Where the case came from: "referral" (a school's form) or "attendance" (PMOOE found
    # in the LA's attendance data, README "PMOOE found from attendance data").
    source: str = Field(default="referral", max_length=20,
                        sa_column_kwargs={"server_default": "referral"})
    # Maybe the same child as that open case (same surname and date of birth, no matching
    # UPN): both are traced until an officer decides (`cme duplicate`); None when settled.
    possible_duplicate_of_id: int | None = Field(default=None, foreign_key="referral.id")
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class Check(SQLModel, table=True):
    """One enquiry of one agency about one referral in one tracing round.

    ``fields_disclosed`` is the audit of what left the LA: the names of the fields sent.
    """

    __table_args__ = (
        sa.UniqueConstraint("referral_id", "connector", "round", name="uq_check_referral_round"),
    )

    id: int | None = Field(default=None, primary_key=True)
    referral_id: int = Field(foreign_key="referral.id", index=True)
    connector: str = Field(max_length=60)
    connector_version: str = Field(max_length=20)
    round: int
    run_id: str | None = Field(default=None, max_length=64)
    fields_disclosed: list[str] = Field(default_factory=list, sa_type=JSON)
    outcome: CheckOutcome = Field(sa_type=_enum(CheckOutcome, 12))
    # What the agency found: written and read only through connectors.CheckEvidence (README,
    # "Evidence, stored and read typed"); this layer keeps JSON and does not know its shape.
    evidence: dict[str, Any] | None = Field(default=None, sa_type=JSON, repr=False)
    agency_reference: str | None = Field(default=None, max_length=80)
    expected_by: date | None = None
    error_kind: str | None = Field(default=None, max_length=20)
    error_code: str | None = Field(default=None, max_length=60)
    checked_at: datetime = _ts(default_factory=utcnow)
    # The day of the tracing run that asked (the night's London date): a round's day, for
    # counting at most one round a day. None on rows from before it was recorded.
    traced_on: date | None = None


class SafeguardingConcern(SQLModel, table=True):
    """A safeguarding concern on a case: who raised it and when. One per source per case, so
    one concern gets one task for a person however often it is repeated.

    ``source`` is ``school`` (the referral), a connector name (an agency flagged it in
    tracing) or an agency an officer recorded the answer of. No detail: the person looks at
    the case.
    """

    __table_args__ = (
        sa.UniqueConstraint("referral_id", "source", name="uq_safeguardingconcern_source"),
    )

    id: int | None = Field(default=None, primary_key=True)
    referral_id: int = Field(foreign_key="referral.id", index=True)
    source: str = Field(max_length=60)
    raised_at: datetime = _ts(default_factory=utcnow)
    round: int | None = None


class CaseEvent(SQLModel, table=True):
    """A line in a case's timeline. ``text`` is written by code and never holds personal data."""

    id: int | None = Field(default=None, primary_key=True)
    referral_id: int = Field(foreign_key="referral.id", index=True)
    at: datetime = _ts(default_factory=utcnow)
    kind: str = Field(max_length=40)
    rule: str | None = Field(default=None, max_length=60)
    text: str = Field(default="", max_length=2000)
    actor: str = Field(default="system", max_length=60)


class Notification(SQLModel, table=True):
    """An outbox row: written with the decision, sent later by the dispatcher."""

    id: int | None = Field(default=None, primary_key=True)
    referral_id: int | None = Field(default=None, foreign_key="referral.id", index=True)
    idempotency_key: str = Field(max_length=200, unique=True)
    template: Template = Field(sa_type=_enum(Template))
    channel: NotificationChannel = Field(sa_type=_enum(NotificationChannel, 10))
    recipient: str = Field(max_length=254)
    personalisation: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    status: NotificationStatus = Field(
        default=NotificationStatus.pending, sa_type=_enum(NotificationStatus, 10), index=True
    )
    attempts: int = 0
    next_attempt_at: datetime | None = _ts(default=None)
    provider_id: str | None = Field(default=None, max_length=120)
    last_error: str | None = Field(default=None, max_length=500)
    # When the first send was tried: transient failures are retried until
    # CME_NOTIFICATION_RETRY_DAYS after it (elapsed time, not a count of dispatches).
    first_attempt_at: datetime | None = _ts(default=None)
    created_at: datetime = _ts(default_factory=utcnow)
    sent_at: datetime | None = _ts(default=None)


class QuarantinedRecord(SQLModel, table=True):
    """An input record that could not be accepted, kept whole with the reasons."""

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=200)
    line_no: int | None = None
    mendix_reference: str | None = Field(default=None, max_length=40)
    raw: str = Field(sa_type=sa.Text, repr=False)
    # SHA-256 (hex) of the whole line as received: an oversized line is kept only as a
    # bounded excerpt in ``raw``, and this says which line it was.
    raw_sha256: str | None = Field(default=None, max_length=64)
    # One row per line of a source: a digest of (source, line number, raw_sha256). A
    # re-import or a re-run after a crash finds the row already there.
    record_key: str | None = Field(default=None, max_length=64, unique=True)
    reasons: list[str] = Field(default_factory=list, sa_type=JSON)
    received_at: datetime = _ts(default_factory=utcnow)


class SourceState(SQLModel, table=True):
    """Where an intake source got to (e.g. the Mendix feed's changed-date watermark)."""

    name: str = Field(primary_key=True, max_length=60)
    watermark: datetime | None = _ts(default=None)
    updated_at: datetime = _ts(default_factory=utcnow)


class RunLock(SQLModel, table=True):
    """A lock held in the case database (``nightly``: the night's tracing), so two runs on
    any number of machines never do the same work at once (README, "One night at a time").

    Taken with a conditional UPDATE (free, expired or its holder's process gone); held by
    renewing ``lease_until`` while the run lives; given back by clearing ``owner``.
    """

    name: str = Field(primary_key=True, max_length=40)
    owner: str | None = Field(default=None, max_length=64)  # the holding run's id
    host: str | None = Field(default=None, max_length=255)
    pid: int | None = None
    acquired_at: datetime | None = _ts(default=None)
    lease_until: datetime | None = _ts(default=None)


class RoundClaim(SQLModel, table=True):
    """A run's claim on one referral's tracing round: only the holder asks the agencies
    about that child and decides the round; the row is deleted when the run is done.

    A claim whose lease ran out, or whose process is gone, is taken over.
    """

    referral_id: int = Field(primary_key=True, foreign_key="referral.id")
    round: int
    owner: str = Field(max_length=64)
    host: str = Field(max_length=255)
    pid: int
    claimed_at: datetime = _ts(default_factory=utcnow)
    lease_until: datetime = _ts()


class AttendancePupil(SQLModel, table=True):
    """A pupil seen in attendance data (README, "PMOOE found from attendance data").

    One row per UPN: what the files said about the pupil (details only where the file gave
    them), where assessment got to, and the attendance case raised for the pupil, if any.
    """

    id: int | None = Field(default=None, primary_key=True)
    upn: str = Field(max_length=13, unique=True, repr=False)
    school_urn: str = Field(max_length=6)
    child_id: int | None = Field(default=None, foreign_key="child.id", index=True)
    forename: str | None = Field(default=None, max_length=100, repr=False)
    surname: str | None = Field(default=None, max_length=100, repr=False)
    dob: date | None = Field(default=None, repr=False)
    sex: str | None = Field(default=None, max_length=1, repr=False)
    leave_end: date | None = None
    # The first day of the school year in which the pupil enters Year 3 or Year 7.
    transition_start: date | None = None
    needs_assessment: bool = Field(default=False, index=True)
    # Marks before this day are not assessed again (a case was raised and closed since).
    watch_from: date | None = None
    case_id: int | None = Field(default=None, foreign_key="referral.id", index=True)
    # A threshold met, but no case could be made: what is missing (codes and URNs only).
    pmooe_reason: str | None = Field(default=None, max_length=30)
    pmooe_on: date | None = None
    details_needed: str | None = Field(default=None, max_length=200)
    updated_at: datetime = _ts(default_factory=utcnow)


class AttendanceMark(SQLModel, table=True):
    """One register mark of one pupil: the latest file's code for that session wins."""

    __table_args__ = (
        sa.UniqueConstraint("pupil_id", "day", "session", name="uq_attendancemark_session"),
    )

    id: int | None = Field(default=None, primary_key=True)
    pupil_id: int = Field(foreign_key="attendancepupil.id", index=True)
    day: date
    session: str = Field(max_length=2)
    code: str = Field(max_length=2)
    school_urn: str = Field(max_length=6)
