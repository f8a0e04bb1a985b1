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

from cme.errors import CmeError
from cme.settings import get_settings
from flows._config import dispatch_config, trace_config
from flows.nightly import run_nightly
from models import (
    CaseEvent,
    CaseStatus,
    Check,
    CheckOutcome,
    Child,
    ClosureReason,
    Notification,
    Referral,
    School,
    get_engine,
    session_scope,
)
from policy import london_date
from tasks._common import event
from tasks.dispatch import dispatch_task
from tasks.tracing import decide_referrals

__all__ = ["case_report", "close_case", "record_agency_response", "trace_referral"]

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
    """
    settings = get_settings()
    today = _today()
    evidence: list[dict[str, Any]] = []
    if answer is AgencyAnswer.found:
        if school_urn:
            evidence.append({"kind": "on_roll", "school_urn": school_urn, "la_code": la_code,
                             "on_roll": True, "date_seen": today.isoformat(),
                             "safeguarding": safeguarding_concern})
        elif departure_date:
            evidence.append({"kind": "departure", "departure_date": departure_date.isoformat(),
                             "departure_country": departure_country,
                             "safeguarding": safeguarding_concern})
        elif la_code:
            evidence.append({"kind": "resident", "la_code": la_code,
                             "date_seen": today.isoformat(),
                             "safeguarding": safeguarding_concern})
        else:
            raise CmeError("a 'found' answer needs a school URN, an LA code or a departure date")
    with session_scope(settings.database_url) as s:
        r = _referral(s, reference)
        last = s.exec(select(func.max(Check.round)).where(
            Check.referral_id == r.id, Check.connector == agency.value)).one()
        round_ = max(r.tracing_rounds + 1, (last or 0) + 1)
        s.add(Check(
            referral_id=r.id or 0, connector=agency.value, connector_version="officer",
            round=round_, run_id="officer", fields_disclosed=[],
            outcome=CheckOutcome.FOUND if evidence else CheckOutcome.NOT_FOUND,
            evidence={"items": evidence} if evidence else None,
            agency_reference=agency_reference,
        ))
        if safeguarding_concern and not r.safeguarding_concern:
            r.safeguarding_concern = True
        event(s, r.id or 0, "agency_response",
              f"Officer recorded a {answer.value} answer from {agency.value}", actor="officer")
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
        f"| Safeguarding concern | {'YES' if r.safeguarding_concern else 'no'} |",
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
