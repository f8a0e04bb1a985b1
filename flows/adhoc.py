"""Flows a CME officer runs from the Prefect UI.

The forms are for officers, not programmers (issue 15): every field has a title and a
description in words; optional fields are simply left blank; choices read as the words an
officer uses (the codes still work, for scripts). A reference is trimmed and upper-cased; a
reference that is malformed or unknown ends the run at once, before any other work, as
**Failed** with a one-line message an officer understands and no traceback. Runs are named
after what they are: ``trace CME-2026-000123``, ``decide CME-…``, ``case report CME-…``.

Parameters are references, codes and choices — never a child's name, date of birth or
address (the UI shows parameters in plain text to every user). ``case-report`` is the one
place personal data appears: a markdown artifact visible only to users of the Prefect UI.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.states import Failed, State
from pydantic import Field, WithJsonSchema
from sqlalchemy import func
from sqlmodel import Session, select

from connectors import CheckEvidence, Evidence
from flows._config import dispatch_config, trace_config
from flows.nightly import run_nightly
from flows.settings import get_settings
from flows.worklist import refresh_worklist
from models import (
    CaseOutcome,
    CaseStatus,
    Check,
    CheckOutcome,
    ClosureReason,
    NotificationChannel,
    Referral,
    SafeguardingConcern,
    get_engine,
    session_scope,
)
from policy import london_date, reopened_status
from tasks import event
from tasks.case_report import render_case_report
from tasks.decisions import CaseRefused, Choice, apply_officer_decision
from tasks.dispatch import dispatch_task
from tasks.lifecycle import StatusChangeRefused, Transition, change_status
from tasks.tracing import OFFICER_RECORDED, decide_referrals, raise_concern

__all__ = ["REOPEN_FLOW", "case_report", "close_case", "decide_case", "normalise_reference",
           "record_agency_response", "reopen_case", "trace_referral"]

#: The officer's flow (and deployment) that reopens a closed case; named in refusals.
REOPEN_FLOW = "reopen-case"


class WordsEnum(StrEnum):
    """A choice whose value is the words an officer reads; its name is the code (and typing
    the code works too, for scripts and tests)."""

    @classmethod
    def _missing_(cls, value: object) -> WordsEnum | None:
        return cls.__members__.get(str(value).strip().lower())

    @property
    def code(self) -> str:
        return self.name


def choice_of(cls: type[WordsEnum], title: str = "", description: str = "") -> Any:
    """A type choosing one of ``cls``: the words inline in its own schema, so the UI shows
    the field's title and description, not the enum's class name and docstring."""
    schema: dict[str, Any] = {"type": "string", "enum": [m.value for m in cls]}
    if title:
        schema |= {"title": title, "description": description}
    return Annotated[cls, WithJsonSchema(schema)]


def form(default: Any, title: str, description: str, *, max_length: int | None = None) -> Any:
    """A form field with a title and a description in words (Prefect titles a parameter by
    its name unless the field's JSON schema says otherwise). ``...`` means required.

    Prefect keeps only a default field's description and JSON-schema extras, so
    ``max_length`` is a hint to the form (``maxLength``); the flows check lengths themselves.
    """
    extra: dict[str, Any] = {"title": title}
    if max_length is not None:
        extra["maxLength"] = max_length
    return Field(default, description=description, json_schema_extra=extra)


NOTE_MAX = 500


def note_problem(note: str) -> str | None:
    if len(note) > NOTE_MAX:
        return f"The note is too long: {NOTE_MAX} characters at most"
    return None


def reference_field() -> Any:
    return form(..., "Case reference", "The case's reference as on the referral form, e.g. "
                "CME-2026-000123. Copy it from the worklist (Artifacts → worklist). Never a "
                "child's name.", max_length=60)


def note_field() -> Any:
    return form("", "Note", "A short note for the case timeline. Do not type names, dates "
                "of birth or addresses.", max_length=NOTE_MAX)


Reference = str  # the flows' reference parameter: see reference_field()

_REFERENCE = re.compile(r"[A-Z0-9][A-Z0-9_\-/]{2,39}")


def normalise_reference(raw: object) -> str:
    """A reference as stored: trimmed and upper-cased."""
    return str(raw or "").strip().upper()


def _named(verb: str, *, agency_field: str | None = None) -> Callable[[], str]:
    """A run name from the reference (and the agency): ``trace CME-2026-000123``. A value
    that is not a reference's shape is not shown (it may be a name typed by mistake)."""

    def name() -> str:
        from prefect.runtime import flow_run

        params = flow_run.parameters or {}
        ref = normalise_reference(params.get("reference"))
        shown = ref if _REFERENCE.fullmatch(ref) else "(reference not valid)"
        if agency_field and params.get(agency_field):
            agency = _AGENCY_NAME.get(str(params[agency_field]), "an agency")
            return f"{verb} {agency} reply {shown}"
        return f"{verb} {shown}"

    return name


def refused(message: str) -> State:
    """End the run as Failed with ``message`` as its state message: no traceback."""
    get_run_logger().error(message)
    return Failed(message=message)


def check_case(s: Session, raw: str) -> tuple[Referral | None, str | None]:
    """The case ``raw`` names (trimmed, upper-cased), or None and a one-line reason."""
    ref = normalise_reference(raw)
    if not _REFERENCE.fullmatch(ref):
        # What was typed is not repeated: it may be a name typed in the wrong box.
        return None, ("That is not a case reference: a reference looks like CME-2026-000123 "
                      "— check the worklist")
    r = s.exec(select(Referral).where(Referral.mendix_reference == ref)).first()
    if r is None:
        return None, f"No case with reference {ref} — check the worklist"
    return r, None


def _today() -> date:
    return london_date(datetime.now(UTC))


# --- trace-referral ---------------------------------------------------------------------


class AgencyToAsk(WordsEnum):
    other_la = "Other local authorities"
    housing = "District and borough councils (housing, council tax)"
    lpd = "Lost Pupil Database (DfE)"
    dwp = "DWP (formal request)"
    border_force = "Border Force (formal request)"


AgencyToAskChoice = choice_of(AgencyToAsk)


@flow(name="trace-referral", flow_run_name=_named("trace"), persist_result=False)
async def trace_referral(
    reference: str = reference_field(),
    connectors: list[AgencyToAskChoice] = form(
        [], "Only these agencies", "Leave empty to ask every agency (the usual). A trace of "
        "some agencies only is not a round of tracing."),
    force: bool = form(True, "Ask again today", "Ask the agencies again even if they were "
                       "asked today."),
) -> dict[str, Any] | State:
    """Trace one case now, instead of waiting for the night: ask the agencies, apply the
    rulebook, send what it decides.

    Args:
        reference: The case's reference, e.g. CME-2026-000123.
        connectors: Only ask these agencies; empty asks every agency.
        force: Ask again even if the agencies were asked today.
    """
    with Session(get_engine(get_settings().database_url)) as s:
        r, why = check_case(s, reference)
        if r is None:
            return refused(why or "")
        if r.status is CaseStatus.CLOSED:
            return refused(f"Case {r.mendix_reference} is closed: reopen it with "
                           f"{REOPEN_FLOW} before tracing")
        ref = r.mendix_reference
    names = [AgencyToAsk(c).code for c in connectors] or None
    summary = await run_nightly(references=[ref], force=force, connectors=names, publish=False)
    if summary.get("claimed_elsewhere"):
        # Another run (tonight's, or another officer's trace) holds this case's round and is
        # asking the agencies now: asking them again would be a second request about the
        # same child in the same round (README, "One night at a time").
        return refused(f"Case {ref} is being traced by another run right now (tonight's "
                       "tracing or another officer's trace): nothing was asked twice. Its "
                       "answers will be on the case when that run ends — open the case "
                       "report then")
    return summary


# --- record-agency-response -------------------------------------------------------------


class Agency(WordsEnum):
    dwp = "DWP – Department for Work and Pensions"
    border_force = "Border Force"
    other_la = "Another local authority"
    housing = "A district or borough council (housing, council tax)"
    lpd = "Lost Pupil Database (DfE)"
    other = "Someone else"


AgencyChoice = choice_of(Agency)
_AGENCY_NAME = {**{a.value: a.name for a in Agency}, **{a.name: a.name for a in Agency}}


class AgencyAnswer(WordsEnum):
    found = "Found – they know where the child is"
    not_found = "Not found – they have no record of the child"


AnswerChoice = choice_of(AgencyAnswer)


class HowMatched(WordsEnum):
    """How the agency said it identified the child (issue 14: weighs the evidence)."""

    identifier = "By the UPN or NHS number"
    demographic = "By name and date of birth only (or they did not say)"


HowMatchedChoice = choice_of(HowMatched)


def _digits(value: str, n: int, what: str) -> str | None:
    v = value.strip()
    if not v:
        return None
    if not (len(v) == n and v.isascii() and v.isdigit()):
        raise CaseRefused(f"{what} must be {n} digits, e.g. {'852' if n == 3 else '116000'}")
    return v


def _a_date(value: str, what: str) -> date | None:
    v = value.strip()
    if not v:
        return None
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise CaseRefused(f"{what} must be a date like 2026-11-20 (year-month-day)") from None


@flow(name="record-agency-response", flow_run_name=_named("record", agency_field="agency"),
      persist_result=False)
async def record_agency_response(
    reference: str = reference_field(),
    agency: AgencyChoice = form(..., "Who answered", "The agency that replied."),
    answer: AnswerChoice = form(..., "Their answer", "Did they know where the child is?"),
    agency_reference: str = form("", "Their reference", "The agency's own reference for the "
                                 "enquiry, if it gave one.", max_length=80),
    la_code: str = form("", "LA code", "The local authority where the child lives or goes to "
                        "school: 3 digits, e.g. 852. Leave blank if not said.", max_length=3),
    school_urn: str = form("", "School URN", "The school the child is on roll at: its 6-digit "
                           "URN, e.g. 116000. Leave blank if not said.", max_length=6),
    departure_date: str = form("", "Departure date", "Border Force: the day the child left the "
                               "UK, like 2026-11-20. Leave blank if not said.", max_length=10),
    departure_country: str = form("", "Departure country", "Where the child went, if said.",
                                  max_length=60),
    safeguarding_concern: bool = form(False, "They raised a safeguarding concern",
                                      "Tick if the agency raised a safeguarding concern."),
    how_matched: HowMatchedChoice = form(
        HowMatched.demographic, "How they identified the child", "A match on name and date of "
        "birth only is a possible match: you confirm it with Decide case before any letter "
        "goes."),
) -> dict[str, Any] | State:
    """Record a reply an agency sent outside the system (DWP, Border Force, a letter or a
    call from another LA), then apply the rulebook. Addresses stay in the case file, not here.

    Args:
        reference: The case's reference, e.g. CME-2026-000123.
        agency: Who answered.
        answer: Did they know where the child is?
        agency_reference: The agency's own reference for the enquiry.
        la_code: The LA (3 digits) where the child lives or is on roll.
        school_urn: The URN (6 digits) of the school the child is on roll at.
        departure_date: The day the child left the UK (Border Force).
        departure_country: The country the child left for.
        safeguarding_concern: Tick if the agency raised a safeguarding concern.
        how_matched: How the agency identified the child.
    """
    settings = get_settings()
    today = _today()
    agency, answer = Agency(agency), AgencyAnswer(answer)
    with Session(get_engine(settings.database_url)) as s:
        r, why = check_case(s, reference)
        if r is None:
            return refused(why or "")
        ref = r.mendix_reference
    try:
        la, urn = _digits(la_code, 3, "The LA code"), _digits(school_urn, 6, "The school URN")
        left = _a_date(departure_date, "The departure date")
    except CaseRefused as exc:
        return refused(str(exc))
    evidence: list[Evidence] = []
    basis = "identifier" if HowMatched(how_matched) is HowMatched.identifier else "demographic"
    source = f"{agency.code} (recorded by an officer)"
    if answer is AgencyAnswer.found:
        if urn:
            evidence.append(Evidence(kind="on_roll", school_urn=urn, la_code=la, on_roll=True,
                                     date_seen=today, match_basis=basis, source=source))
        elif left:
            evidence.append(Evidence(kind="departure", departure_date=left,
                                     departure_country=departure_country.strip()[:60] or None,
                                     match_basis=basis, source=source))
        elif la:
            evidence.append(Evidence(kind="resident", la_code=la, date_seen=today,
                                     match_basis=basis, source=source))
        else:
            return refused("A 'found' answer needs what they found: a school URN, an LA "
                            "code or a departure date")
    with session_scope(settings.database_url) as s:
        r = s.exec(select(Referral).where(Referral.mendix_reference == ref)).one()
        last = s.exec(select(func.max(Check.round)).where(
            Check.referral_id == r.id, Check.connector == agency.code)).one()
        round_ = max(r.tracing_rounds + 1, (last or 0) + 1)
        s.add(Check(
            referral_id=r.id or 0, connector=agency.code, connector_version=OFFICER_RECORDED,
            round=round_, run_id="officer", fields_disclosed=[], traced_on=today,
            outcome=CheckOutcome.FOUND if evidence else CheckOutcome.NOT_FOUND,
            evidence=CheckEvidence.column(evidence),
            agency_reference=agency_reference.strip()[:80] or None,
        ))
        event(s, r.id or 0, "agency_response",
              f"Officer recorded a {answer.code} answer from {agency.code}", actor="officer")
        if safeguarding_concern:
            # The agency's concern, not the school's: it is recorded as the agency's.
            raise_concern(s, r, agency.code, settings.duty_inbox,
                          NotificationChannel(settings.notification_channel),
                          round_=round_, rule="safeguarding")
        rid = r.id or 0
        if r.tracing_rounds + 1 < round_:
            r.tracing_rounds = round_ - 1
    started = datetime.now(UTC)
    try:
        report = decide_referrals([rid], trace_config(today, settings))
    except StatusChangeRefused as exc:
        # The answer is recorded (its own transaction); the decision the graph refused is
        # not, and the officer is told in one line.
        return refused(str(exc))
    await dispatch_task(dispatch_config(settings))
    from flows.waiting import start_waiting

    await start_waiting(settings.database_url, started)
    await refresh_worklist(today)
    with Session(get_engine(settings.database_url)) as s:
        r = s.exec(select(Referral).where(Referral.mendix_reference == ref)).one()
        return {"reference": ref, "status": r.status.value,
                "rule": r.decision_rule, "decided": report.decided}


# --- decide-case ------------------------------------------------------------------------


class OfficerDecision(WordsEnum):
    """What an officer decides on a case (the ``decide-case`` form)."""

    confirm = "Confirm what the rulebook proposed"
    reject = "Reject the proposal and keep tracing (not this child, or more enquiries needed)"
    on_roll_elsewhere = "Another outcome: on roll at another school"
    resident_other_la = "Another outcome: living in another local authority's area"
    left_uk = "Another outcome: left the UK"
    whereabouts_unknown = ("Another outcome: whereabouts unknown, joint decision agreed with "
                           "the school")
    located_in_area = "Another outcome: living in our area, not on a school roll"


class DecisionReason(WordsEnum):
    """Why the officer decided so; its name (a code) goes to the timeline."""

    evidence_checked = "I checked the evidence and it is this child"
    confirmed_with_agency = "The agency confirmed it to me"
    joint_decision_with_school = "Joint decision agreed with the school (regulation 9(1)(h)/(i))"
    not_this_child = "The match is not this child"
    more_enquiries_needed = "More enquiries are needed first"
    other = "Other (say why in the note, without names or addresses)"


DecisionChoice = choice_of(OfficerDecision)
ReasonChoice = choice_of(DecisionReason)


async def officer_decides(reference: str, decision: OfficerDecision | str,
                          reason: DecisionReason | str, *, la_code: str = "", note: str = "",
                          expect_proposal: str | None = None) -> dict[str, Any] | State:
    """The body of ``decide-case`` (and of a waiting ``await-decision`` run once answered)."""
    settings = get_settings()
    with Session(get_engine(settings.database_url)) as s:
        r, why = check_case(s, reference)
        if r is None:
            return refused(why or "")
        ref = r.mendix_reference
    if problem := note_problem(note):
        return refused(problem)
    cfg = trace_config(_today(), settings)
    choice = Choice(OfficerDecision(decision).code)
    try:
        la = _digits(la_code, 3, "The LA code")
        done = apply_officer_decision(
            cfg, ref, choice, DecisionReason(reason).code, la_code=la, note=note.strip(),
            expect_proposal=CaseOutcome(expect_proposal) if expect_proposal else None)
    except (CaseRefused, StatusChangeRefused) as exc:
        return refused(str(exc))
    from flows.waiting import cancel_waiting

    await cancel_waiting(ref, why=f"Decided with {choice.value} ({DecisionReason(reason).code})")
    await dispatch_task(dispatch_config(settings))
    await refresh_worklist()
    return {"reference": ref, "status": done.status, "decision": choice.value,
            "notifications_queued": done.queued}


@flow(name="decide-case", flow_run_name=_named("decide"), persist_result=False)
async def decide_case(
    reference: str = reference_field(),
    decision: DecisionChoice = form(..., "Your decision", "What you decided on this case."),
    reason: ReasonChoice = form(..., "Why", "Why you decided so."),
    la_code: str = form("", "LA code", "Only for 'living in another local authority's area' "
                        "(or a school in another LA): that LA's 3-digit code, e.g. 852. "
                        "Otherwise leave blank.", max_length=3),
    note: str = note_field(),
) -> dict[str, Any] | State:
    """Decide what the rulebook left to a person: confirm its proposal (a possible match, or
    whereabouts unknown — the joint deletion decision with the school), reject it and keep
    tracing, or decide another outcome. The letters go only after this decision.

    Args:
        reference: The case's reference, e.g. CME-2026-000123.
        decision: Your decision on this case.
        reason: Why you decided so.
        la_code: For 'living in another local authority's area': that LA's 3-digit code.
        note: A short note for the timeline. Do not type names, dates of birth or addresses.
    """
    return await officer_decides(reference, decision, reason, la_code=la_code, note=note)


# --- close-case -------------------------------------------------------------------------


class CloseReason(WordsEnum):
    on_roll_elsewhere = "On roll at another school"
    transferred_to_other_la = "Another local authority has taken the case"
    left_uk = "Left the UK"
    returned_to_school = "Back at school"
    elective_home_education = "In suitable elective home education"
    deleted_from_roll_whereabouts_unknown = ("Deleted from roll by joint decision, whereabouts "
                                             "unknown")
    not_cme = "Not missing education"
    duplicate = "A duplicate of another case"
    safeguarding_handled = "Safeguarding concern dealt with (IARF sent or not needed)"
    other = "Other (say why in the note)"


CloseChoice = choice_of(CloseReason)


@flow(name="close-case", flow_run_name=_named("close"), persist_result=False)
async def close_case(
    reference: str = reference_field(),
    reason: CloseChoice = form(..., "Why close it", "Why the case is closed."),
    note: str = note_field(),
) -> dict[str, Any] | State:
    """Close a case: a person's decision (a case with a safeguarding concern closes only this
    way, and then needs a note saying what was done).

    Args:
        reference: The case's reference, e.g. CME-2026-000123.
        reason: Why the case is closed.
        note: A short note for the timeline. Do not type names, dates of birth or addresses.
    """
    settings = get_settings()
    reason = CloseReason(reason)
    with session_scope(settings.database_url) as s:
        r, why = check_case(s, reference)
        if r is None:
            return refused(why or "")
        ref = r.mendix_reference
        if problem := note_problem(note):
            return refused(problem)
        if r.status is CaseStatus.CLOSED:
            return {"reference": ref, "status": "closed", "changed": False}
        concerns = s.exec(select(SafeguardingConcern.id)
                          .where(SafeguardingConcern.referral_id == r.id)).first()
        if (concerns is not None or r.safeguarding_concern) and not note.strip():
            return refused(f"Case {ref} has a safeguarding concern: say in the note what was "
                            "done about it (e.g. IARF sent to Children's Services), then close")
        closure = (ClosureReason.other if reason is CloseReason.safeguarding_handled
                   else ClosureReason(reason.code))
        before = r.status.value
        change_status(s, r, Transition.CLOSE, closure_reason=closure, actor="officer",
                      line=("closed", f"Closed by an officer ({reason.code}); was {before}"
                            + (f". Note: {note.strip()}" if note.strip() else "")))
    await refresh_worklist()
    return {"reference": ref, "status": "closed", "changed": True}


# --- reopen-case ------------------------------------------------------------------------


class ReopenReason(WordsEnum):
    missing_again = "The child is missing education again"
    new_information = "New information: the case needs tracing again"
    closed_by_mistake = "The case was closed by mistake"
    other = "Other (say why in the note)"


ReopenChoice = choice_of(ReopenReason)


@flow(name="reopen-case", flow_run_name=_named("reopen"), persist_result=False)
async def reopen_case(
    reference: str = reference_field(),
    reason: ReopenChoice = form(..., "Why reopen it", "Why the case is opened again."),
    note: str = note_field(),
) -> dict[str, Any] | State:
    """Reopen a closed case: tracing resumes tonight (or now, with Trace one case). A case
    with a safeguarding concern on record reopens as escalated, for a person to act on.

    Args:
        reference: The case's reference, e.g. CME-2026-000123.
        reason: Why the case is opened again.
        note: A short note for the timeline. Do not type names, dates of birth or addresses.
    """
    settings = get_settings()
    reason = ReopenReason(reason)
    with session_scope(settings.database_url) as s:
        r, why = check_case(s, reference)
        if r is None:
            return refused(why or "")
        ref = r.mendix_reference
        if problem := note_problem(note):
            return refused(problem)
        if reason is ReopenReason.other and not note.strip():
            return refused("Say in the note why the case is reopened (no names, dates of "
                           "birth or addresses)")
        if r.duplicate_of_id is not None:
            # Two open cases for one child would trace the child twice (README, "The case
            # data model"): the case it was linked to carries the tracing.
            kept = s.get(Referral, r.duplicate_of_id)
            return refused(f"Case {ref} is a duplicate of case "
                           f"{kept.mendix_reference if kept else '(unknown)'}: reopen or "
                           "trace that case instead")
        concern = r.safeguarding_concern or s.exec(
            select(SafeguardingConcern.id)
            .where(SafeguardingConcern.referral_id == r.id)).first() is not None
        to = reopened_status(concern_recorded=concern)
        was = r.closure_reason.value if r.closure_reason else "no reason recorded"
        try:
            change_status(
                s, r, Transition.REOPEN, to=to, actor="officer", today=_today(),
                line=("reopened", f"Reopened by an officer ({reason.code}); it was closed "
                      f"({was}); tracing resumes"
                      + ("; a safeguarding concern is on record: escalated for a person"
                         if to is CaseStatus.ESCALATED else "")
                      + (f". Note: {note.strip()}" if note.strip() else "")))
        except StatusChangeRefused as exc:
            return refused(f"{exc}: only a closed case can be reopened")
    await refresh_worklist()
    return {"reference": ref, "status": to.value, "changed": True}


# --- case-report ------------------------------------------------------------------------


@flow(name="case-report", flow_run_name=_named("case report"), persist_result=False)
async def case_report(reference: str = reference_field()) -> str | State:
    """Publish the case as a markdown artifact on this run's Artifacts tab: the child, what
    each agency found, who raised each concern, the proposed decision and what to do next,
    the timeline, the checks and the messages. Personal data: for the CME team only.

    Args:
        reference: The case's reference, e.g. CME-2026-000123.
    """
    settings = get_settings()
    with Session(get_engine(settings.database_url)) as s:
        r, why = check_case(s, reference)
        if r is None:
            return refused(why or "")
        ref = r.mendix_reference
    md = render_case_report(settings.database_url, ref, today=_today())
    # No key, on purpose: the server copies a keyed artifact's data into the payload of a
    # `prefect.artifact-collection.created/updated` event, and that copy would sit in the
    # event feed (with its own retention) long after the artifact is gone.
    artifact_id = await acreate_markdown_artifact(markdown=md,
                                                  description=f"Case report {ref}")
    return str(artifact_id)

