"""Intake: validate, classify, de-duplicate and store school referrals.

Every record ends in exactly one of: a new case, an update to an existing case (same Mendix
reference), a new referral linked to the child's open case (same child again), a kept
not-CME referral (the school is told why and signposted), or the quarantine table with the
reasons. Nothing is dropped: ``IntakeReport.received`` equals the sum of the others.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import ValidationError
from sqlmodel import Session, col, select

import policy
from models import (
    CaseOutcome,
    CaseStatus,
    Child,
    ClosureReason,
    NotificationChannel,
    Referral,
    ReferralIn,
    ReferralKind,
    School,
    Template,
    describe_validation_error,
    session_scope,
)
from notifications import keys
from tasks._common import event, initials, match_key, queue_message
from tasks.import_files import (
    EXCERPT_BYTES,
    OversizedLine,
    read_lines,
)
from tasks.lifecycle import Transition, change_status
from tasks.quarantine import quarantine
from tasks.school_updates import school_year_first_day
from tasks.tracing import raise_concern

__all__ = ["IntakeConfig", "IntakeReport", "ingest_batch", "ingest_records", "read_jsonl"]

#: A child's open case is one in any status but closed (policy.OPEN_STATUSES).
OPEN_STATUSES = tuple(st for st in CaseStatus if st in policy.OPEN_STATUSES)
MAX_RECORD_BYTES = 256 * 1024


@dataclass(frozen=True)
class IntakeConfig:
    """What intake needs from the settings (plain values: tasks receive no settings objects)."""

    db_url: str
    channel: str = "file"
    #: CME_DUTY_INBOX and CME_LA_NAME: no defaults, they come from the settings only.
    duty_inbox: str = field(kw_only=True)
    la_name: str = field(kw_only=True)
    signpost_contacts: dict[str, str] = field(default_factory=dict)


@dataclass
class IntakeReport:
    received: int = 0
    created: int = 0
    updated: int = 0
    duplicates_linked: int = 0
    not_cme: int = 0
    quarantined: int = 0
    unchanged: int = 0
    missing_actions_flagged: int = 0
    safeguarding: int = 0
    # Created cases that may be a child already open (also counted in ``created``).
    possible_duplicates: int = 0

    def add(self, other: IntakeReport) -> None:
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)

    @property
    def accounted(self) -> int:
        return (self.created + self.updated + self.duplicates_linked + self.not_cme
                + self.quarantined + self.unchanged)


def read_jsonl(path: Path) -> Iterator[tuple[int, str | OversizedLine]]:
    """``(line number, text)`` for each non-blank line; undecodable bytes are kept as U+FFFD,
    and a byte-order mark at the start of the file (as Windows tools write) is dropped. A
    line over :data:`MAX_RECORD_BYTES` is an :class:`OversizedLine`, never read whole (see
    :func:`tasks.import_files.read_lines`)."""
    with path.open("rb") as fh:
        yield from read_lines(fh, max_line_bytes=MAX_RECORD_BYTES)


def _loose_reference(raw: str) -> str | None:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    ref = data.get("mendix_reference") if isinstance(data, dict) else None
    return ref if isinstance(ref, str) else None


_EXCERPT_REFERENCE = re.compile(r'"mendix_reference"\s*:\s*"([A-Za-z0-9-]{1,40})"')


def _excerpt_reference(excerpt: str) -> str | None:
    """The reference in an oversized record's excerpt, where its first bytes carry it, so the
    kept record is still tied to its case (the record itself is never parsed)."""
    m = _EXCERPT_REFERENCE.search(excerpt)
    return m.group(1) if m else None


def _parse(raw: str) -> tuple[ReferralIn | None, list[str]]:
    if len(raw.encode("utf-8", errors="replace")) > MAX_RECORD_BYTES:
        return None, [f"(record): larger than {MAX_RECORD_BYTES // 1024} KiB"]
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        where = f" at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        return None, [f"(record): not valid JSON{where}"]
    if not isinstance(data, dict):
        return None, ["(record): expected a JSON object"]
    try:
        return ReferralIn.model_validate(data), []
    except ValidationError as exc:
        return None, describe_validation_error(exc)
    except (RecursionError, ValueError, TypeError):
        return None, ["(record): could not be read"]


def _classify(rec: ReferralIn) -> tuple[str, str, str | None]:
    """(category, reason code, Inclusion Support team or None).

    The day is the London date the referral was received (as for the acknowledgement
    clock). With register marks, the transition rule applies from the first day of that
    school year for a pupil entering Year 3 or Year 7 (docs/guidance.md, PMOOE 3).
    """
    on = policy.london_date(rec.received_at)
    if rec.medical_absence and rec.on_roll:
        return "NOT_CME", "medical_absence", "medical_referrals"
    finding: policy.PmooeFinding | None = None
    if rec.attendance:
        finding = policy.assess_pmooe(
            [(m.date, m.session, m.code) for m in rec.attendance], leave_end=rec.leave_end,
            transition_start=policy.transition_start(rec.child.dob, school_year_first_day(on)),
        )
    elif rec.kind is ReferralKind.PMOOE and rec.on_roll:
        # The school asserts the trigger on its form; without the register we take its word.
        finding = policy.PmooeFinding(reason="continuous_absence", triggered_on=on)
    c = policy.classify(
        dob=rec.child.dob,
        on=on,
        on_roll=rec.on_roll,
        education_otherwise=rec.education_otherwise.value if rec.education_otherwise else None,
        reduced_hours=rec.reduced_hours,
        pmooe=finding,
    )
    team = policy.signpost_for(c.reason)
    return str(c.category), str(c.reason), str(team) if team else None


def _school_for(session: Session, rec: ReferralIn) -> tuple[School, str | None, bool]:
    """The referring school; a timeline line when its contact is unverified or not the one
    the referral gives; and whether the referral's contact differed from the one held
    (README, "School contacts").

    A referral never changes a school's contact: it comes from the schools list or an
    officer, so one mistaken or forged form cannot redirect every later letter about that
    school's children. A school never seen before (and not on the list) takes the
    referral's contact, so its acknowledgement can go, marked unverified for an officer.
    """
    school = session.exec(select(School).where(School.urn == rec.school.urn)).first()
    if school is None:
        school = School(urn=rec.school.urn, name=rec.school.name, la_code=rec.school.la_code,
                        email=str(rec.school.email), contact_source="referral")
        session.add(school)
        session.flush()
        return school, (f"School URN {school.urn} is not on the schools list: its contact is "
                        "taken from this referral, unverified (an officer checks it)"), False
    email, name = str(rec.school.email), rec.school.name
    differs = [what for what, held, quoted in (("email", school.email.lower(), email.lower()),
                                               ("name", school.name, name)) if held != quoted]
    if not differs:
        return school, None, False
    school.quoted_email, school.quoted_name = email, name
    return school, (f"This referral gives school URN {school.urn} a different "
                    f"{' and '.join(differs)} ({email}) from the contact held "
                    f"({school.contact_source}): not applied; an officer checks it"), True


def _open_case_of(session: Session, child_ids: list[int]) -> Referral | None:
    if not child_ids:
        return None
    return session.exec(
        select(Referral)
        .where(col(Referral.child_id).in_(child_ids), col(Referral.duplicate_of_id).is_(None),
               col(Referral.status).in_(OPEN_STATUSES))
        .order_by(col(Referral.id))
    ).first()


def _same_or_possible(session: Session, rec: ReferralIn) -> tuple[Referral | None,
                                                                  Referral | None]:
    """(the child's open case, to link to; an open case of possibly the same child).

    Only the same UPN makes the same child (docs/guidance.md, Identifiers). Two children can
    share a surname and a date of birth — twins with different forenames, or strangers — so
    that is only a *possible* duplicate, for an officer, and both are traced meanwhile.
    """
    if rec.child.upn:
        same = list(session.exec(select(Child.id).where(Child.upn == rec.child.upn)))
        open_case = _open_case_of(session, [i for i in same if i is not None])
        if open_case is not None:
            return open_case, None
    key = match_key(rec.child.surname, rec.child.dob)
    alike = [i for i in session.exec(select(Child.id).where(Child.match_key == key))
             if i is not None]
    return None, _open_case_of(session, alike)


def _new_child(rec: ReferralIn) -> Child:
    c = rec.child
    return Child(
        upn=c.upn, forename=c.forename, surname=c.surname, former_surnames=c.former_surnames,
        dob=c.dob, sex=c.sex, nhs_number=c.nhs_number, address_line1=c.address.line1,
        town=c.address.town, postcode=c.address.postcode,
        parents=[p.model_dump(mode="json") for p in rec.parents],
        service_child=rec.service_child, sen=c.sen, match_key=match_key(c.surname, c.dob),
    )


_UPDATABLE = ("reason", "last_attended", "safeguarding_concern", "school_actions", "parents",
              "child.address", "on_roll", "education_otherwise", "reduced_hours")


def _record_values(rec: ReferralIn) -> dict[str, Any]:
    addr = rec.child.address
    return {
        "reason": rec.reason,
        "last_attended": rec.last_attended.isoformat() if rec.last_attended else None,
        "school_actions": [a.model_dump(mode="json") for a in rec.school_actions],
        "parents": [p.model_dump(mode="json") for p in rec.parents],
        "child.address": [addr.line1, addr.town, addr.postcode],
    }


def _record_digest(rec: ReferralIn) -> dict[str, str]:
    """One digest per updatable field of what this form says, salted with its reference:
    the next copy of the form is compared with this one, never with a child row another
    referral of the same child wrote (the cause of false "school sent an update" events)."""
    salt = rec.mendix_reference.encode("utf-8")
    return {
        name: hashlib.sha256(salt + b"\x00" + json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")).hexdigest()
        for name, value in _record_values(rec).items()
    }


def _changed_since_stored(referral: Referral, child: Child, rec: ReferralIn,
                          digest: dict[str, str]) -> set[str]:
    if referral.record_digest is not None:
        return {f for f, d in digest.items() if referral.record_digest.get(f) != d}
    # Stored before digests were kept: compare with the rows, but a linked referral's child
    # row holds what the first referral said, so child fields are not its own to compare.
    new = _record_values(rec)
    changed = {f for f, v in (("reason", referral.reason),
                              ("last_attended", referral.last_attended.isoformat()
                               if referral.last_attended else None),
                              ("school_actions", referral.school_actions)) if new[f] != v}
    if referral.duplicate_of_id is None:
        if new["parents"] != child.parents:
            changed.add("parents")
        if new["child.address"] != [child.address_line1, child.town, child.postcode]:
            changed.add("child.address")
    return changed


def _apply_update(session: Session, referral: Referral, rec: ReferralIn, cfg: IntakeConfig,
                  report: IntakeReport) -> None:
    """A re-sent form: record what changed as events (field names only), never a new case.

    "Changed" means changed since this referral's own last form: an identical re-import is
    ``unchanged`` and writes no event."""
    child = session.get(Child, referral.child_id)
    assert child is not None
    digest = _record_digest(rec)
    differs = _changed_since_stored(referral, child, rec, digest)
    if referral.record_digest != digest:
        referral.record_digest = digest
    changed: list[str] = []
    if "reason" in differs:
        referral.reason = rec.reason
        changed.append("reason")
    if "last_attended" in differs:
        referral.last_attended = rec.last_attended
        changed.append("last_attended")
    if "school_actions" in differs:
        referral.school_actions = [a.model_dump(mode="json") for a in rec.school_actions]
        referral.missing_actions = rec.missing_actions()
        changed.append("school_actions")
    if "parents" in differs:
        child.parents = [p.model_dump(mode="json") for p in rec.parents]
        changed.append("parents")
    if "child.address" in differs:
        addr = rec.child.address
        child.address_line1, child.town, child.postcode = addr.line1, addr.town, addr.postcode
        changed.append("child.address")
    if rec.safeguarding_concern and not referral.safeguarding_concern:
        referral.safeguarding_concern = True
        changed.append("safeguarding_concern")
        _raise_safeguarding(session, referral, cfg, report)
    if not changed:
        report.unchanged += 1
        return
    referral.updated_at = datetime.now(UTC)
    event(session, referral.id or 0, "school_update",
          f"The school sent an update; changed: {', '.join(changed)}")
    report.updated += 1


def _raise_safeguarding(session: Session, referral: Referral, cfg: IntakeConfig,
                        report: IntakeReport) -> None:
    """The school's concern goes to a person: the case is escalated (a closed one reopens
    as escalated: a concern is never decided away) and the duty inbox gets one task."""
    # raise_concern writes the concern's own timeline line; a closed case also gets one
    # saying it was reopened.
    reopened = ("reopened", "Reopened: the school raised a safeguarding concern on a closed "
                "case") if referral.status is CaseStatus.CLOSED else None
    change_status(session, referral, Transition.RAISE_CONCERN, line=reopened,
                  rule="safeguarding")
    raise_concern(session, referral, "school", cfg.duty_inbox, NotificationChannel(cfg.channel))
    report.safeguarding += 1


def _ingest_one(session: Session, source: str, line_no: int | None, raw: str | OversizedLine,
                cfg: IntakeConfig, report: IntakeReport) -> None:
    if isinstance(raw, str) and len(raw) > MAX_RECORD_BYTES // 4:  # e.g. from the Mendix feed
        data = raw.encode("utf-8", errors="replace")
        if len(data) > MAX_RECORD_BYTES:
            raw = OversizedLine(data[:EXCERPT_BYTES].decode("utf-8", errors="replace"),
                                hashlib.sha256(data).hexdigest(), len(data), MAX_RECORD_BYTES)
    if isinstance(raw, OversizedLine):
        # Refused before parsing; only a bounded excerpt and the whole line's hash are kept.
        quarantine(session, source, line_no, raw.excerpt, [raw.reason()],
                    _excerpt_reference(raw.excerpt), raw_sha256=raw.sha256)
        report.quarantined += 1
        return
    rec, problems = _parse(raw)
    if rec is None:
        quarantine(session, source, line_no, raw, problems, _loose_reference(raw))
        report.quarantined += 1
        return
    existing = session.exec(
        select(Referral).where(Referral.mendix_reference == rec.mendix_reference)
    ).first()
    if existing is not None:
        _apply_update(session, existing, rec, cfg, report)
        return
    try:
        category, reason, team = _classify(rec)
    except ValueError as exc:  # e.g. an unknown attendance code; the message names the code
        quarantine(session, source, line_no, raw, [f"attendance: {exc}"], rec.mendix_reference)
        report.quarantined += 1
        return

    school, contact_note, contact_differs = _school_for(session, rec)
    open_case, possible = _same_or_possible(session, rec)
    # Every referral keeps the child as its school described them, linked or not: a second
    # school's details are never discarded.
    child = _new_child(rec)
    session.add(child)
    session.flush()
    ref = rec.mendix_reference
    received = rec.received_at.astimezone(UTC)
    referral = Referral(
        mendix_reference=ref,
        kind=rec.kind,
        reason=rec.reason,
        school_id=school.id or 0,
        child_id=child.id or 0,
        received_at=received,
        last_attended=rec.last_attended,
        school_actions=[a.model_dump(mode="json") for a in rec.school_actions],
        missing_actions=rec.missing_actions(),
        safeguarding_concern=rec.safeguarding_concern,
        record_digest=_record_digest(rec),
        classification=category,
        classification_reason=reason,
        acknowledgement_due=policy.acknowledgement_due(rec.received_at),
        next_check_due=policy.london_date(rec.received_at),
    )
    session.add(referral)
    session.flush()
    rid = referral.id or 0
    event(session, rid, "received",
          f"Referral received from school URN {school.urn}; classified {category} ({reason})")
    if contact_note:
        event(session, rid, "school_contact", contact_note)
    if contact_differs:
        school.quoted_by_id = rid
    # The LA's name from the settings (CME_LA_NAME), not the templates' fallback.
    common = {"reference": ref, "initials": initials(child), "school_name": school.name,
              "la_name": cfg.la_name}
    channel = NotificationChannel(cfg.channel)
    queue_message(
        session, referral_id=rid, template=Template.acknowledgement, recipient=school.email,
        personalisation={**common, "due_date": referral.acknowledgement_due.isoformat()},
        channel=channel, idempotency_key=keys.acknowledgement(ref),
    )

    if category == "NOT_CME":
        referral.outcome = CaseOutcome.NOT_CME
        referral.next_check_due = None  # not missing education: never traced
        if rec.safeguarding_concern:
            # Never decided away: a person looks at the concern, and closes the case.
            event(session, rid, "not_cme",
                  f"Not CME/PMOOE ({reason}), but the school raised a safeguarding concern: "
                  f"the case stays open for a person; school signposted to {team or 'no team'}")
            _raise_safeguarding(session, referral, cfg, report)
        else:
            change_status(session, referral, Transition.CLOSE_BY_RULE,
                          closure_reason=ClosureReason.not_cme,
                          line=("not_cme", f"Not CME/PMOOE ({reason}); school signposted to "
                                f"{team or 'no team'}"))
        personalisation: dict[str, Any] = {**common, "reason": reason}
        if team:
            personalisation["signpost_team"] = team
            personalisation["signpost_contact"] = cfg.signpost_contacts.get(team, cfg.duty_inbox)
        queue_message(
            session, referral_id=rid, template=Template.not_cme_signpost,
            recipient=school.email, personalisation=personalisation, channel=channel,
            idempotency_key=keys.not_cme(ref),
        )
        report.not_cme += 1
        return

    if open_case is not None:
        referral.duplicate_of_id = open_case.id
        change_status(session, referral, Transition.CLOSE_BY_RULE,
                      closure_reason=ClosureReason.duplicate,
                      line=("duplicate", f"Same child as open case "
                            f"{open_case.mendix_reference}; linked to it"))
        event(session, open_case.id or 0, "duplicate_linked",
              f"Another referral {ref} received for this child (school URN {school.urn})")
        if rec.safeguarding_concern and not open_case.safeguarding_concern:
            open_case.safeguarding_concern = True
            _raise_safeguarding(session, open_case, cfg, report)
        report.duplicates_linked += 1
        return
    if possible is not None:
        referral.possible_duplicate_of_id = possible.id
        event(session, rid, "possible_duplicate",
              f"Possibly the same child as open case {possible.mendix_reference} (same surname "
              "and date of birth, no matching UPN): both are traced until an officer decides")
        event(session, possible.id or 0, "possible_duplicate",
              f"Referral {ref} may be the same child (same surname and date of birth, no "
              "matching UPN): both are traced until an officer decides")
        report.possible_duplicates += 1

    if referral.missing_actions:
        event(session, rid, "missing_school_actions",
              "School actions missing: " + ", ".join(referral.missing_actions))
        queue_message(
            session, referral_id=rid, template=Template.missing_school_actions,
            recipient=school.email,
            personalisation={**common, "missing_actions": list(referral.missing_actions)},
            channel=channel, idempotency_key=keys.missing_information(ref),
        )
        report.missing_actions_flagged += 1
    if rec.safeguarding_concern:
        _raise_safeguarding(session, referral, cfg, report)
    report.created += 1


def ingest_records(records: Iterable[tuple[int | None, str | OversizedLine]], *, source: str,
                   cfg: IntakeConfig) -> IntakeReport:
    """Ingest ``(line number, raw JSON)`` records in one transaction; see the module doc.

    Each record runs in a savepoint, so one bad record (even one the database refuses) is
    quarantined without undoing the others.
    """
    report = IntakeReport()
    with session_scope(cfg.db_url) as session:
        for line_no, raw in records:
            report.received += 1
            # Counted only once the savepoint is committed: a record the database refuses
            # at commit is quarantined, not counted twice.
            outcome = IntakeReport()
            nested = session.begin_nested()
            try:
                _ingest_one(session, source, line_no, raw, cfg, outcome)
                nested.commit()
            except Exception as exc:  # noqa: BLE001 - keep the record, say what went wrong
                nested.rollback()
                text = raw.excerpt if isinstance(raw, OversizedLine) else raw
                quarantine(session, source, line_no, text,
                            [f"(record): could not be stored ({type(exc).__name__})"],
                            _loose_reference(text),
                            raw_sha256=raw.sha256 if isinstance(raw, OversizedLine) else None)
                report.quarantined += 1
            else:
                report.add(outcome)
    return report


@task(name="ingest-batch", cache_policy=NO_CACHE, persist_result=False)
def ingest_batch(records: list[tuple[int | None, str | OversizedLine]], source: str,
                 cfg: IntakeConfig) -> IntakeReport:
    """Prefect task: one batch of raw records (a few hundred) into the case database."""
    return ingest_records(records, source=source, cfg=cfg)
