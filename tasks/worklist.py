"""The officer's worklist: every case that needs a person, why, since when, and what next.

Read-only. References, codes and agency references only — no names, dates of birth or
addresses — because the worklist is published as an artifact that everyone with access to
the Prefect UI can read (docs/guidance.md, Data protection). Most urgent first: a
safeguarding concern before an overdue acknowledgement before a decision waiting for an
officer, and so on (:data:`URGENCY`); within one kind, the oldest first.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import (
    AttendancePupil,
    CaseOutcome,
    CaseStatus,
    Check,
    CheckOutcome,
    Notification,
    NotificationStatus,
    QuarantinedRecord,
    Referral,
    SafeguardingConcern,
    School,
    session_scope,
)
from policy import LONDON
from tasks._common import NOT_QUEUED

__all__ = ["URGENCY", "WHY_TEXT", "WorkItem", "Why", "build_worklist", "case_items"]


class Why(StrEnum):
    """Why a case needs a person (a code; :data:`WHY_TEXT` says it in words)."""

    safeguarding = "safeguarding"
    acknowledgement_overdue = "acknowledgement_overdue"
    message_failed = "message_failed"
    message_not_queued = "message_not_queued"
    decision_proposed = "decision_proposed"
    possible_match = "possible_match"
    possible_duplicate = "possible_duplicate"
    conflicting_evidence = "conflicting_evidence"
    located_in_area = "located_in_area"
    attendance_pmooe = "attendance_pmooe"
    attendance_details = "attendance_details"
    deferred_overdue = "deferred_overdue"
    school_contact_differs = "school_contact_differs"
    school_contact_unverified = "school_contact_unverified"
    quarantined = "quarantined"


#: Most urgent first.
URGENCY: tuple[Why, ...] = tuple(Why)

WHY_TEXT: dict[Why, str] = {
    Why.safeguarding: "Safeguarding concern",
    Why.acknowledgement_overdue: "Acknowledgement overdue",
    Why.message_failed: "Message not sent",
    Why.message_not_queued: "A message could not be queued",
    Why.decision_proposed: "Decision waiting for an officer",
    Why.possible_match: "Possible match to confirm",
    Why.possible_duplicate: "Possibly the same child as another case",
    Why.conflicting_evidence: "Conflicting evidence",
    Why.located_in_area: "Living in our area, not on roll",
    Why.attendance_pmooe: "PMOOE found in attendance data",
    Why.attendance_details: "PMOOE in attendance data: details needed",
    Why.deferred_overdue: "Agency reply overdue",
    Why.school_contact_differs: "A referral gave a different school contact",
    Why.school_contact_unverified: "School contact unverified",
    Why.quarantined: "Referral could not be read",
}

_PROPOSAL_TEXT: dict[str, str] = {
    CaseOutcome.WHEREABOUTS_UNKNOWN: "whereabouts unknown: agree the joint deletion decision "
    "with the school, then Decide case: confirm (or reject to keep tracing)",
    CaseOutcome.ON_ROLL_ELSEWHERE: "on roll at another school: check, then Decide case",
    CaseOutcome.RESIDENT_OTHER_LA: "living in another LA: check, then Decide case",
    CaseOutcome.LEFT_UK: "left the UK: check, then Decide case",
    CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL: "living in our area: check, then Decide case",
}


@dataclass(frozen=True)
class WorkItem:
    """One line of the worklist. ``detail`` and ``next_step`` hold codes, agency names and
    agency references only; ``reference`` is None for a record too broken to carry one."""

    why: Why
    reference: str | None
    since: datetime
    detail: str
    next_step: str

    @property
    def urgency(self) -> int:
        return URGENCY.index(self.why) + 1


def _at(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=LONDON).astimezone(UTC)


def case_items(r: Referral, raised: list[SafeguardingConcern], today: date,
               others: dict[int, str] | None = None) -> list[WorkItem]:
    """What one open case needs from a person (without its overdue agency replies, its
    messages not queued and its school's contact). ``others``: references by referral id,
    to name the case a possible duplicate may be."""
    others = others or {}
    ref = r.mendix_reference
    items: list[WorkItem] = []
    if raised or r.safeguarding_concern or r.status is CaseStatus.ESCALATED:
        who = ", ".join(
            ("the school" if c.source == "school" else c.source) for c in raised
        ) or "the school"
        items.append(WorkItem(
            Why.safeguarding, ref, raised[0].raised_at if raised else r.received_at,
            f"raised by {who}",
            "Decide on an IARF to Children's Services (or the police); when done, "
            "Close case with a reason and a note"))
    if r.acknowledged_at is None and r.acknowledgement_due < today and (
            r.classification != "NOT_CME"):
        items.append(WorkItem(
            Why.acknowledgement_overdue, ref, _at(r.acknowledgement_due),
            f"was due {r.acknowledgement_due:%d %b %Y}",
            "Send the acknowledgement to the school today (check the outbox)"))
    if r.status is CaseStatus.ESCALATED:
        return items  # the concern comes first; nothing else is decided meanwhile
    since = r.proposed_at or r.updated_at
    if r.proposed_outcome is not None and r.outcome is CaseOutcome.POSSIBLE_MATCH:
        items.append(WorkItem(
            Why.possible_match, ref, since,
            f"an agency matched on names and date of birth only; proposed "
            f"{r.proposed_outcome.value}",
            "Read the case report, check with the agency that it is this child, then "
            "Decide case: confirm or reject"))
    elif r.proposed_outcome is not None:
        items.append(WorkItem(
            Why.decision_proposed, ref, since, f"proposed {r.proposed_outcome.value}",
            _PROPOSAL_TEXT.get(r.proposed_outcome, "Decide case")))
    elif r.outcome is CaseOutcome.CONFLICTING_EVIDENCE:
        items.append(WorkItem(
            Why.conflicting_evidence, ref, r.updated_at,
            "agencies disagree (schools, LAs or addresses)",
            "Read the case report, find out which is right, then Decide case"))
    elif r.outcome is CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL:
        items.append(WorkItem(
            Why.located_in_area, ref, r.updated_at, "found living in our area, not on roll",
            "Contact the family and admissions; Close case once the child is on roll"))
    elif r.source == "attendance":
        # README, "PMOOE found from attendance data": the school was asked for its enquiries.
        items.append(WorkItem(
            Why.attendance_pmooe, ref, r.received_at,
            f"{r.classification_reason} in the register; the school was asked for its "
            "enquiries",
            "Follow up the school's enquiries; if the pupil is still missing, Trace case or "
            "Decide case (a return on the register closes it by itself)"))
    if r.possible_duplicate_of_id is not None:
        other = others.get(r.possible_duplicate_of_id, "another case")
        items.append(WorkItem(
            Why.possible_duplicate, ref, r.created_at,
            f"same surname and date of birth as {other}, no matching UPN; both are traced",
            f"Compare the two case reports; then `cme duplicate {ref} --same-child` (links it "
            f"to {other} and closes this one) or `--different-children`"))
    return items


#: Open cases read at a time by :func:`build_worklist`.
CASE_PAGE = 500


def _case_page(s: Session, page: list[int], today: date, refs_by_id: dict[int, str],
               overdue: list[WorkItem]) -> list[WorkItem]:
    """The work items of one page of open cases (ids ascending); a deferred enquiry past its
    expected-by date is added to ``overdue``, in (case, agency) order."""
    cases = list(s.exec(select(Referral).where(col(Referral.id).in_(page))
                        .order_by(col(Referral.id))))
    by_id = {r.id: r for r in cases}
    concerns: dict[int, list[SafeguardingConcern]] = defaultdict(list)
    for c in s.exec(select(SafeguardingConcern)
                    .where(col(SafeguardingConcern.referral_id).in_(page))
                    .order_by(col(SafeguardingConcern.raised_at))):
        concerns[c.referral_id].append(c)
    # The columns the worklist reads, not whole checks: their evidence is most of a row, and
    # an officer's trace refreshes the county's worklist (issue 17).
    latest: dict[tuple[int, str], Any] = {}
    for chk in s.execute(sa.select(col(Check.referral_id), col(Check.connector), col(Check.outcome),
                                   col(Check.expected_by), col(Check.agency_reference))
                         .where(col(Check.referral_id).in_(page))
                         .order_by(col(Check.round), col(Check.id))):
        latest[(chk.referral_id, chk.connector)] = chk
    items: list[WorkItem] = []
    for r in cases:
        items += case_items(r, concerns.get(r.id or 0, []), today, refs_by_id)
    for (rid, connector), chk in sorted(latest.items()):
        if (chk.outcome is CheckOutcome.PENDING and chk.expected_by is not None
                and chk.expected_by < today and by_id[rid].status is not CaseStatus.ESCALATED):
            overdue.append(WorkItem(
                Why.deferred_overdue, by_id[rid].mendix_reference, _at(chk.expected_by),
                f"{connector} reply expected by {chk.expected_by:%d %b %Y}; their reference "
                f"{chk.agency_reference or 'not given'}",
                f"Chase {connector}, quoting their reference; Record agency response when "
                "it comes"))
    return items


def build_worklist(db_url: str, today: date) -> list[WorkItem]:
    """Every case that needs a person on ``today`` (a London date), most urgent first."""
    items: list[WorkItem] = []
    with session_scope(db_url) as s:
        refs_by_id = {rid: ref for rid, ref
                      in s.exec(select(Referral.id, Referral.mendix_reference)) if rid is not None}
        open_ids = [rid for rid in s.exec(select(Referral.id).where(
            col(Referral.status) != CaseStatus.CLOSED, col(Referral.duplicate_of_id).is_(None))
            .order_by(col(Referral.id))) if rid is not None]
        # A page of open cases at a time, with their concerns and checks: the whole county's
        # checks at once held hundreds of MB at the end of a night (issue 17) and ran past
        # SQLite's limit on bound parameters.
        overdue: list[WorkItem] = []
        for start in range(0, len(open_ids), CASE_PAGE):
            page = open_ids[start:start + CASE_PAGE]
            items += _case_page(s, page, today, refs_by_id, overdue)
            s.expunge_all()
        items += overdue
        known_refs = set(refs_by_id.values())
        not_queued = list(s.exec(select(Notification).where(
            col(Notification.status) == NotificationStatus.failed,
            col(Notification.idempotency_key).endswith(NOT_QUEUED))))
        queued_since = set(s.exec(select(Notification.idempotency_key).where(
            col(Notification.idempotency_key).in_(
                [n.idempotency_key.removesuffix(NOT_QUEUED) for n in not_queued]))))
        schools = list(s.exec(select(School).where(
            (col(School.contact_source) == "referral") | col(School.quoted_email).is_not(None))))
        # Each school's first referral (the one that brought its contact) and the quoting one.
        first_referral: dict[int, tuple[str, datetime]] = {}
        quoting: dict[int, tuple[str, datetime]] = {}
        quoted_by = {x.quoted_by_id for x in schools if x.quoted_by_id is not None}
        for rid_, sid, ref, at in s.exec(
                select(Referral.id, Referral.school_id, Referral.mendix_reference,
                       Referral.received_at)
                .where(col(Referral.school_id).in_([x.id for x in schools]))
                .order_by(col(Referral.id).desc())):
            first_referral[sid] = (ref, at)
            if rid_ in quoted_by:
                quoting[sid] = (ref, at)
        quarantined = list(s.exec(select(QuarantinedRecord)
                                  .order_by(col(QuarantinedRecord.received_at))))
        stuck = list(s.exec(select(AttendancePupil)
                            .where(col(AttendancePupil.details_needed).is_not(None))
                            .order_by(col(AttendancePupil.id))))
        failed_messages = list(s.exec(
            select(Referral.mendix_reference, Notification.template, Notification.created_at)
            .join(Referral, col(Referral.id) == Notification.referral_id)
            .where(Notification.status == NotificationStatus.failed,
                   # a message that could not even be queued has its own line below
                   ~col(Notification.idempotency_key).endswith(NOT_QUEUED))
            .order_by(col(Notification.created_at))))

    # A message given up (an outage longer than the retry period, a refused address, or an
    # outcome nobody can know) needs a person: README, "When messages keep failing".
    unsent: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for case_ref, template, created in failed_messages:
        unsent[case_ref].append((str(template), created))
    for case_ref, notes in unsent.items():
        items.append(WorkItem(
            Why.message_failed, case_ref, notes[0][1],
            f"{len(notes)} message(s) not sent: " + ", ".join(sorted({t for t, _ in notes})),
            "Check why in the outbox (cme outbox --status failed); when the cause is fixed, "
            f"cme outbox retry --ref {case_ref}"))
    for n in not_queued:
        if n.idempotency_key.removesuffix(NOT_QUEUED) in queued_since:
            continue  # queued since: the cause was fixed
        items.append(WorkItem(
            Why.message_not_queued, refs_by_id.get(n.referral_id or 0), n.created_at,
            f"{n.template.value} to {n.recipient}: {n.last_error or 'no reason recorded'}",
            "Correct the address (a CME_* setting, or the school's contact with `cme schools "
            "set-contact`); the message is queued at the case's next decision, or send it by "
            "hand"))
    for school in schools:
        sid = school.id or 0
        ref_, since = quoting.get(sid) or first_referral.get(sid) or (None, _at(today))
        if school.quoted_email is not None:
            items.append(WorkItem(
                Why.school_contact_differs, ref_, since,
                f"school URN {school.urn}: a referral gives {school.quoted_email}, we hold "
                f"{school.email} ({school.contact_source})",
                f"Check with the school; then `cme schools set-contact {school.urn} --email "
                "ADDRESS`, or `--keep` to keep the one held"))
    # Schools not on the schools list: one line for them all, about schools, not about any
    # case (a line per school, under each school's first referral, crowded the cases out).
    unverified = sorted((s_ for s_ in schools if s_.contact_source == "referral"),
                        key=lambda s_: s_.urn)
    if unverified:
        since = min((first_referral[x.id or 0][1] for x in unverified
                     if (x.id or 0) in first_referral), default=_at(today))
        urns = ", ".join(x.urn for x in unverified[:10]) + (
            f" and {len(unverified) - 10} more" if len(unverified) > 10 else "")
        items.append(WorkItem(
            Why.school_contact_unverified, None, since,
            f"{len(unverified)} school(s) not on the schools list, their contacts taken from "
            f"their first referrals: URN {urns}",
            "Import the LA's schools list (`cme schools import FILE`), or check each contact "
            "(e.g. in Get Information about Schools) and `cme schools set-contact URN --email "
            "ADDRESS` (or `--keep`)"))
    waiting: dict[str | None, list[QuarantinedRecord]] = defaultdict(list)
    for q in quarantined:
        if q.mendix_reference is None or q.mendix_reference not in known_refs:
            waiting[q.mendix_reference].append(q)
    for ref_, rows in waiting.items():
        reasons = sorted({reason for q in rows for reason in q.reasons})
        items.append(WorkItem(
            Why.quarantined, ref_, rows[0].received_at,
            f"{len(rows)} record(s) kept: " + "; ".join(reasons[:3])
            + (" …" if len(reasons) > 3 else ""),
            "Ask the school to correct the referral and send it again (cme intake rejected)"))
    for p in stuck:
        # No case yet, so no reference: the pupil's number in the attendance data, which
        # `cme attendance pending` turns into the UPN for the officer at a terminal.
        items.append(WorkItem(
            Why.attendance_details, None, p.updated_at,
            f"pupil ATT-{p.id} at school URN {p.school_urn}: {p.pmooe_reason or 'assessment'}"
            f"; missing: {p.details_needed}",
            "Run `cme attendance pending`, add what is missing (the school, or the pupil's "
            "details in the next attendance file), then run the attendance deployment again"))
    return sorted(items, key=lambda i: (i.urgency, i.since, i.reference or ""))
