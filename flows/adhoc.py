"""Flows a CME officer runs from the Prefect UI.

Parameters are references, codes and choices — never a child's name, date of birth or
address (the UI shows parameters in plain text to every user). ``case-report`` is the one
place personal data appears: a markdown artifact visible only to users of the Prefect UI.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact
from pydantic import Field
from sqlalchemy import func
from sqlmodel import Session, col, select

import policy
from cme.errors import CmeError
from cme.settings import get_settings
from connectors import Evidence
from flows._config import dispatch_config, trace_config
from flows.nightly import run_nightly
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
    Referral,
    SafeguardingConcern,
    School,
    get_engine,
    session_scope,
)
from policy import london_date
from tasks._common import event
from tasks.dispatch import dispatch_task
from tasks.reports import concern_summary, concerns_of
from tasks.tracing import (
    OFFICER_RECORDED,
    case_facts,
    decide_referrals,
    latest_results,
    raise_concern,
    record_decision,
)

__all__ = ["case_report", "close_case", "decide_case", "record_agency_response",
           "trace_referral"]

Reference = Annotated[
    str,
    Field(description="The referral's Mendix reference, e.g. CME-2026-000123 (never a name).",
          min_length=3, max_length=40, pattern=r"^[A-Za-z0-9_\-/]+$"),
]


class Agency(StrEnum):
    dwp = "dwp"
    border_force = "border_force"
    other_la = "other_la"
    housing = "housing"
    lpd = "lpd"
    other = "other"


class AgencyAnswer(StrEnum):
    found = "found"
    not_found = "not_found"


class HowMatched(StrEnum):
    """How the agency said it identified the child (issue 14: weighs the evidence)."""

    identifier = "By the UPN or NHS number"
    demographic = "By name and date of birth only (or not said)"


class OfficerDecision(StrEnum):
    """What an officer decides on a case (the ``decide-case`` form)."""

    confirm = "Confirm what the rulebook proposed"
    reject = "Reject the proposal and keep tracing (not this child, or more enquiries needed)"
    on_roll_elsewhere = "Another outcome: on roll at another school"
    resident_other_la = "Another outcome: living in another local authority's area"
    left_uk = "Another outcome: left the UK"
    whereabouts_unknown = ("Another outcome: whereabouts unknown, joint decision agreed with "
                           "the school")
    located_in_area = "Another outcome: living in our area, not on a school roll"


class DecisionReason(StrEnum):
    """Why the officer decided so; its name (a code) goes to the timeline."""

    evidence_checked = "I checked the evidence and it is this child"
    confirmed_with_agency = "The agency confirmed it to me"
    joint_decision_with_school = "Joint decision agreed with the school (regulation 9(1)(h)/(i))"
    not_this_child = "The match is not this child"
    more_enquiries_needed = "More enquiries are needed first"
    other = "Other (say why in the note, without names or addresses)"


_OUTCOME_OF: dict[OfficerDecision, CaseOutcome] = {
    OfficerDecision.on_roll_elsewhere: CaseOutcome.ON_ROLL_ELSEWHERE,
    OfficerDecision.resident_other_la: CaseOutcome.RESIDENT_OTHER_LA,
    OfficerDecision.left_uk: CaseOutcome.LEFT_UK,
    OfficerDecision.whereabouts_unknown: CaseOutcome.WHEREABOUTS_UNKNOWN,
    OfficerDecision.located_in_area: CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL,
}


def _referral(s: Session, reference: str) -> Referral:
    r = s.exec(select(Referral).where(Referral.mendix_reference == reference)).first()
    if r is None:
        raise CmeError(f"no case with reference {reference}")
    return r


def _today() -> date:
    return london_date(datetime.now(UTC))


@flow(name="trace-referral", persist_result=False)
async def trace_referral(
    reference: Reference,
    connectors: Annotated[
        list[str] | None,
        Field(description="Only ask these agencies (e.g. lpd, housing). Empty: every "
              "enabled agency."),
    ] = None,
    force: Annotated[
        bool, Field(description="Trace now even if this round's checks were already made.")
    ] = True,
) -> dict[str, Any]:
    """Trace one referral now: ask the agencies, apply the rulebook, notify.

    Args:
        reference: The case's Mendix reference, as on the referral (e.g. CME-2026-0042).
        connectors: Only ask these agencies (e.g. lpd, housing). Empty: every enabled agency.
        force: Trace now even if this round's checks were already made.
    """
    with Session(get_engine(get_settings().database_url)) as s:
        r = _referral(s, reference)
        if r.status is CaseStatus.CLOSED:
            raise CmeError(f"case {reference} is closed; reopen it before tracing")
    return await run_nightly(references=[reference], force=force, connectors=connectors,
                             publish=False)


@flow(name="record-agency-response", persist_result=False)
async def record_agency_response(
    reference: Reference,
    agency: Annotated[Agency, Field(description="Who answered.")],
    answer: Annotated[AgencyAnswer, Field(description="Did they know where the child is?")],
    agency_reference: Annotated[
        str | None, Field(description="The agency's own reference for the enquiry.",
                          max_length=80)] = None,
    la_code: Annotated[
        str | None, Field(description="LA (3 digits) where the child lives or is on roll.",
                          pattern=r"^\d{3}$")] = None,
    school_urn: Annotated[
        str | None, Field(description="URN (6 digits) of the school the child is on roll at.",
                          pattern=r"^\d{6}$")] = None,
    departure_date: Annotated[
        date | None, Field(description="Recorded departure from the UK (Border Force).")
    ] = None,
    departure_country: Annotated[
        str | None, Field(description="Country of departure's destination.", max_length=60)
    ] = None,
    safeguarding_concern: Annotated[
        bool, Field(description="The agency raised a safeguarding concern.")] = False,
    how_matched: Annotated[
        HowMatched, Field(description="How the agency identified the child. A match on name "
                          "and date of birth only is a possible match you confirm with "
                          "decide-case before any letter goes.")] = HowMatched.demographic,
) -> dict[str, Any]:
    """Record a reply an agency sent outside the system (DWP, Border Force, a letter from
    another LA), then apply the rulebook. Addresses stay in the case file, not here.

    Args:
        reference: The case's Mendix reference, as on the referral (e.g. CME-2026-0042).
        agency: Who answered.
        answer: Did they know where the child is?
        agency_reference: The agency's own reference for the enquiry.
        la_code: LA (3 digits) where the child lives or is on roll.
        school_urn: URN (6 digits) of the school the child is on roll at.
        departure_date: Recorded departure from the UK (Border Force).
        departure_country: The country the child left for.
        safeguarding_concern: Tick if the agency raised a safeguarding concern.
        how_matched: How the agency identified the child (UPN / NHS number, or names and
            date of birth only).
    """
    settings = get_settings()
    today = _today()
    evidence: list[Evidence] = []
    basis = "identifier" if how_matched is HowMatched.identifier else "demographic"
    if answer is AgencyAnswer.found:
        if school_urn:
            evidence.append(Evidence(kind="on_roll", school_urn=school_urn, la_code=la_code,
                                     on_roll=True, date_seen=today, match_basis=basis,
                                     source=f"{agency.value} (recorded by an officer)"))
        elif departure_date:
            evidence.append(Evidence(kind="departure", departure_date=departure_date,
                                     departure_country=departure_country, match_basis=basis,
                                     source=f"{agency.value} (recorded by an officer)"))
        elif la_code:
            evidence.append(Evidence(kind="resident", la_code=la_code, date_seen=today,
                                     match_basis=basis,
                                     source=f"{agency.value} (recorded by an officer)"))
        else:
            raise CmeError("a 'found' answer needs a school URN, an LA code or a departure date")
    with session_scope(settings.database_url) as s:
        r = _referral(s, reference)
        last = s.exec(select(func.max(Check.round)).where(
            Check.referral_id == r.id, Check.connector == agency.value)).one()
        round_ = max(r.tracing_rounds + 1, (last or 0) + 1)
        s.add(Check(
            referral_id=r.id or 0, connector=agency.value, connector_version=OFFICER_RECORDED,
            round=round_, run_id="officer", fields_disclosed=[], traced_on=today,
            outcome=CheckOutcome.FOUND if evidence else CheckOutcome.NOT_FOUND,
            evidence={"items": [e.model_dump(mode="json") for e in evidence]}
            if evidence else None,
            agency_reference=agency_reference,
        ))
        event(s, r.id or 0, "agency_response",
              f"Officer recorded a {answer.value} answer from {agency.value}", actor="officer")
        if safeguarding_concern:
            # The agency's concern, not the school's: it is recorded as the agency's.
            raise_concern(s, r, agency.value, settings.duty_inbox,
                          NotificationChannel(settings.notification_channel),
                          round_=round_, rule="safeguarding")
        rid = r.id or 0
        if r.tracing_rounds + 1 < round_:
            r.tracing_rounds = round_ - 1
    cfg = trace_config(today, settings)
    report = decide_referrals([rid], cfg)
    await dispatch_task(dispatch_config(settings))
    with Session(get_engine(settings.database_url)) as s:
        r = _referral(s, reference)
        return {"reference": reference, "status": r.status.value,
                "rule": r.decision_rule, "decided": report.decided}


@flow(name="decide-case", persist_result=False)
async def decide_case(
    reference: Reference,
    decision: Annotated[OfficerDecision, Field(description="Your decision on this case.")],
    reason: Annotated[DecisionReason, Field(description="Why you decided so.")],
    la_code: Annotated[
        str | None, Field(description="Only for 'living in another local authority's area' or "
                          "a school in another LA: that LA's 3-digit code, e.g. 852.",
                          pattern=r"^\d{3}$")] = None,
    note: Annotated[
        str, Field(description="A short note for the timeline. Do not type names, dates of "
                   "birth or addresses.", max_length=500)] = "",
) -> dict[str, Any]:
    """Decide what the rulebook left to a person: confirm its proposal (e.g. whereabouts
    unknown: the joint deletion decision with the school; or a possible match), reject it and
    keep tracing, or decide another outcome. The letters go only after this decision.

    Args:
        reference: The case's Mendix reference, as on the referral (e.g. CME-2026-000123).
        decision: Your decision on this case.
        reason: Why you decided so.
        la_code: For 'living in another local authority's area': that LA's 3-digit code.
        note: A short note for the timeline. Do not type names, dates of birth or addresses.
    """
    settings = get_settings()
    today = _today()
    cfg = trace_config(today, settings)
    channel = NotificationChannel(settings.notification_channel)
    ref = reference.strip().upper()
    with session_scope(settings.database_url) as s:
        r = _referral(s, ref)
        child, school = s.get(Child, r.child_id), s.get(School, r.school_id)
        assert child is not None and school is not None
        if r.status is CaseStatus.CLOSED:
            raise CmeError(f"case {ref} is closed; nothing to decide")
        concerns = set(s.exec(select(SafeguardingConcern.source)
                              .where(SafeguardingConcern.referral_id == r.id)))
        if r.status is CaseStatus.ESCALATED or concerns or r.safeguarding_concern:
            raise CmeError(f"case {ref} has a safeguarding concern: a person deals with that "
                           "first, and closes the case with close-case")
        checks = s.exec(select(Check).where(Check.referral_id == r.id)).all()
        facts = case_facts(r, school, checks, cfg, concerns)
        proposed = policy.CaseOutcome(r.proposed_outcome.value) if r.proposed_outcome else None
        if decision in (OfficerDecision.confirm, OfficerDecision.reject) and proposed is None:
            raise CmeError(f"nothing is proposed on case {ref}: choose an outcome instead")
        if decision is OfficerDecision.reject:
            if r.decision_rule == policy.Rule.WHEREABOUTS_UNKNOWN.value:
                # The rounds so far are set aside: the rulebook proposes again only after
                # min_rounds more rounds with no whereabouts.
                r.rounds_set_aside += facts.rounds
            else:
                r.rejected_findings = sorted({*r.rejected_findings, *r.proposal_findings})
            d = policy.Decision(status=policy.CaseStatus.TRACING, outcome=None,
                                rule=policy.Rule.OFFICER_DECISION)
        else:
            proposal = policy.decide(facts, latest_results(checks, cfg), today,
                                     min_rounds=cfg.min_rounds,
                                     automatic=cfg.automatic_outcomes,
                                     match_threshold=cfg.match_threshold)
            outcome = proposed if decision is OfficerDecision.confirm else _OUTCOME_OF[decision]
            assert outcome is not None
            if decision is OfficerDecision.confirm and proposal.proposed is not proposed:
                raise CmeError(f"the evidence on case {ref} has changed since the rulebook "
                               f"proposed {proposed.value}: read the case report and decide "
                               "again")
            las = [la_code] if la_code else [
                a.la_code for a in proposal.on_confirm
                if a.kind is policy.ActionKind.NOTIFY_OTHER_LA and a.la_code]
            try:
                d = policy.officer_decision(facts, outcome, la_codes=las)
            except ValueError as exc:
                raise CmeError(f"case {ref}: {exc}; give the LA code") from None
            r.confirmed_outcome = CaseOutcome(outcome.value)
            if outcome is proposed:
                r.confirmed_findings = sorted({*r.confirmed_findings, *proposal.findings})
        event(s, r.id or 0, "officer_decision",
              f"Officer's decision: {decision.name} (reason: {reason.name})"
              + (f". Note: {note}" if note else ""), rule="officer_decision", actor="officer")
        record_decision(s, r, child, school, d, cfg, channel, heading="Officer's decision",
                        actor="officer")
        status = r.status.value
    await dispatch_task(dispatch_config(settings))
    return {"reference": ref, "status": status, "decision": decision.name}


@flow(name="close-case", persist_result=False)
async def close_case(
    reference: Reference,
    reason: Annotated[ClosureReason, Field(description="Why the case is closed.")],
    note: Annotated[
        str, Field(description="A short note for the timeline. Do not type names, dates of "
                   "birth or addresses.", max_length=500)] = "",
) -> dict[str, Any]:
    """Close a case (a person's decision: escalated cases close only this way).

    Args:
        reference: The case's Mendix reference, as on the referral (e.g. CME-2026-0042).
        reason: Why the case is closed.
        note: A short note for the timeline. Do not type names, dates of birth or addresses.
    """
    settings = get_settings()
    with session_scope(settings.database_url) as s:
        r = _referral(s, reference)
        if r.status is CaseStatus.CLOSED:
            return {"reference": reference, "status": "closed", "changed": False}
        before = r.status.value
        r.status = CaseStatus.CLOSED
        r.closure_reason = reason
        r.closed_at = datetime.now(UTC)
        r.next_check_due = None
        event(s, r.id or 0, "closed",
              f"Closed by an officer ({reason.value}); was {before}"
              + (f". Note: {note}" if note else ""), actor="officer")
    return {"reference": reference, "status": "closed", "changed": True}


def render_case_report(db_url: str, reference: str) -> str:
    """Markdown: the case with its timeline. Holds personal data — UI users only."""
    with Session(get_engine(db_url)) as s:
        r = _referral(s, reference)
        child = s.get(Child, r.child_id)
        school = s.get(School, r.school_id)
        assert child is not None and school is not None
        events = s.exec(select(CaseEvent).where(CaseEvent.referral_id == r.id)
                        .order_by(col(CaseEvent.at), col(CaseEvent.id))).all()
        checks = s.exec(select(Check).where(Check.referral_id == r.id)
                        .order_by(col(Check.round), col(Check.connector))).all()
        notes = s.exec(select(Notification).where(Notification.referral_id == r.id)
                       .order_by(col(Notification.id))).all()
        concerns = concerns_of(r, s.exec(select(SafeguardingConcern)
                                         .where(SafeguardingConcern.referral_id == r.id)
                                         .order_by(col(SafeguardingConcern.id))).all())
    safeguarding = concern_summary(concerns, closed_at=r.closed_at,
                                   closure_reason=r.closure_reason.value
                                   if r.closure_reason else None)
    lines = [
        f"# Case {r.mendix_reference}",
        "",
        "*Contains personal data: for the CME team only. Do not copy into emails.*",
        "",
        "| | |", "|---|---|",
        f"| Child | {child.forename} {child.surname} (DOB {child.dob.isoformat()}) |",
        f"| UPN | {child.upn or '—'} |",
        f"| Last known address | {child.address_line1 or '—'}, {child.town or ''} "
        f"{child.postcode or ''} |",
        f"| Referring school | {school.name} (URN {school.urn}, LA {school.la_code}) |",
        f"| Kind | {r.kind.value} ({r.classification}: {r.classification_reason}) |",
        f"| Status | {r.status.value} |",
        f"| Outcome | {r.outcome.value if r.outcome else '—'} |",
        f"| Safeguarding concern | {safeguarding} |",
        f"| Acknowledgement due | {r.acknowledgement_due.isoformat()} |",
        f"| Acknowledged | {r.acknowledged_at.isoformat() if r.acknowledged_at else 'not yet'} |",
        f"| Tracing rounds | {r.tracing_rounds} |",
        f"| Missing school actions | {', '.join(r.missing_actions) or 'none'} |",
        "", "## Timeline", "", "| when | what | rule | by |", "|---|---|---|---|",
    ]
    lines += [f"| {e.at:%Y-%m-%d %H:%M} | {e.text} | {e.rule or ''} | {e.actor} |"
              for e in events]
    lines += ["", "## Checks", "",
              "| round | agency | outcome | fields disclosed | agency ref | error |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {c.round} | {c.connector} | {c.outcome.value} | "
              f"{', '.join(c.fields_disclosed)} | {c.agency_reference or ''} | "
              f"{c.error_code or ''} |" for c in checks]
    lines += ["", "## Notifications", "", "| template | to | status |", "|---|---|---|"]
    lines += [f"| {n.template.value} | {n.recipient} | {n.status.value} |" for n in notes]
    return "\n".join(lines) + "\n"


@flow(name="case-report", persist_result=False)
async def case_report(reference: Reference) -> str:
    """Publish the case and its timeline as a markdown artifact (personal data: UI only),
    on the run's Artifacts tab; returns the artifact's id.

    Args:
        reference: The case's Mendix reference, as on the referral (e.g. CME-2026-0042).
    """
    md = render_case_report(get_settings().database_url, reference)
    # No key, on purpose: the server copies a keyed artifact's data into the payload of a
    # `prefect.artifact-collection.created/updated` event, and that copy would sit in the
    # event feed (with its own retention) long after the artifact is gone.
    artifact_id = await acreate_markdown_artifact(markdown=md,
                                                  description=f"Case report {reference}")
    return str(artifact_id)
