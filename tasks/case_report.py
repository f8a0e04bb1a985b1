"""The case report: everything an officer needs about one case, as markdown for the Prefect UI.

**The one place personal data appears** (docs/guidance.md, Data protection): the child's name,
date of birth, UPN and last known address, and the addresses agencies hold. It is rendered by
the Prefect UI, which turns markdown and some HTML into a page, so **every value that came
from a referral, an agency or an officer is escaped** by :func:`md_text`: it can add no table
row, code block, link, image or HTML of its own (``tests/e2e/test_browser_case_report.py``
proves it in Chromium). Dates and times are London time, as ``2 Dec 2026 07:00``.
"""

from __future__ import annotations

import html
import re
from datetime import date, datetime
from typing import Any

from sqlmodel import col, select

from models import (
    CaseEvent,
    Check,
    Child,
    Notification,
    Referral,
    SafeguardingConcern,
    School,
    session_scope,
)
from tasks.decisions import refuse_unless_open
from tasks.reports import (
    concern_summary,
    concerns_of,
    evidence_rows,
    evidence_school_urns,
    london_when,
)
from tasks.worklist import WHY_TEXT, case_items

__all__ = ["md_text", "render_case_report"]

# Markdown's punctuation that can start or end syntax (emphasis, links, images, code, tables,
# headings, lists, quotes, HTML); each is shown literally when escaped with a backslash.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>:=\"'$])")
# What a renderer would turn into a link by itself (GFM autolinks: a scheme, "www.", an
# e-mail address): a zero-width space inside each stops it, and shows nothing.
_AUTOLINK = re.compile(r"(?i)(://|www\.|@|javascript:|data:|vbscript:)")
_ZWSP = "\u200b"


def md_text(value: Any) -> str:
    """``value`` as literal text inside a markdown table cell or paragraph.

    One line (newlines and tabs become spaces, so no row can be forged); ``<``, ``>`` and
    ``&`` as HTML entities (no raw HTML); markdown punctuation backslash-escaped (no emphasis,
    code, link, image, heading or table syntax); autolink triggers broken by a zero-width
    space (no link from a scheme, ``www.`` or an e-mail address). ``None`` is an em dash.
    """
    if value is None or value == "":
        return "—"
    text = " ".join(str(value).split())
    text = _AUTOLINK.sub(lambda m: m.group(0)[0] + _ZWSP + m.group(0)[1:], text)
    text = html.escape(text, quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text)


def _when(value: datetime | date | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return london_when(value)
    return f"{value.day} {value:%b %Y}"


def _row(*cells: Any) -> str:
    return "| " + " | ".join(md_text(c) for c in cells) + " |"


def render_case_report(db_url: str, reference: str, *, today: date) -> str:
    """Markdown: the case, what each agency found, who raised each concern, the proposed
    decision and what to do next, the timeline, the checks and the messages."""
    with session_scope(db_url) as s:
        r = refuse_unless_open(
            s.exec(select(Referral).where(Referral.mendix_reference == reference)).first(),
            reference)
        child, school = s.get(Child, r.child_id), s.get(School, r.school_id)
        assert child is not None and school is not None
        events = s.exec(select(CaseEvent).where(CaseEvent.referral_id == r.id)
                        .order_by(col(CaseEvent.at), col(CaseEvent.id))).all()
        checks = s.exec(select(Check).where(Check.referral_id == r.id)
                        .order_by(col(Check.round), col(Check.connector))).all()
        notes = s.exec(select(Notification).where(Notification.referral_id == r.id)
                       .order_by(col(Notification.id))).all()
        raised = s.exec(select(SafeguardingConcern)
                        .where(SafeguardingConcern.referral_id == r.id)
                        .order_by(col(SafeguardingConcern.raised_at))).all()
        urns = evidence_school_urns(checks)
        school_names = {sc.urn: sc.name for sc in s.exec(
            select(School).where(col(School.urn).in_(list(urns))))} if urns else {}
        concerns = concerns_of(r, raised)
        todo = case_items(r, list(raised), today) if r.closed_at is None else []
        found = evidence_rows(checks, school_names)

    address = ", ".join(x for x in (child.address_line1, child.town, child.postcode) if x)
    lines = [
        f"# Case {md_text(r.mendix_reference)}",
        "",
        "*Contains personal data: for the CME team only. Do not copy into emails.*",
        "",
        "| | |", "|---|---|",
        _row("Child", f"{child.forename} {child.surname} (born {_when(child.dob)})"),
        _row("UPN", child.upn),
        _row("Last known address", address or None),
        _row("Referring school", f"{school.name} (URN {school.urn}, LA {school.la_code})"),
        _row("Kind", f"{r.kind.value} ({r.classification}: {r.classification_reason})"),
        _row("Status", r.status.value),
        _row("Outcome", r.outcome.value if r.outcome else None),
        _row("Proposed decision", (f"{r.proposed_outcome.value}, since "
                                   f"{_when(r.proposed_at)}: waiting for an officer")
             if r.proposed_outcome else None),
        _row("Officer's decision", r.confirmed_outcome.value if r.confirmed_outcome else None),
        _row("Safeguarding concern", concern_summary(
            concerns, closed_at=r.closed_at,
            closure_reason=r.closure_reason.value if r.closure_reason else None)),
        _row("Received", _when(r.received_at)),
        _row("Acknowledgement due", _when(r.acknowledgement_due)),
        _row("Acknowledged", _when(r.acknowledged_at) if r.acknowledged_at else "not yet"),
        _row("Tracing rounds", r.tracing_rounds),
        _row("Missing school actions", ", ".join(r.missing_actions) or "none"),
        "",
        "## What to do next",
        "",
    ]
    if todo:
        lines += [f"- **{md_text(WHY_TEXT[i.why])}** ({md_text(i.detail)}): {md_text(i.next_step)}"
                  for i in todo]
    else:
        lines.append("Nothing needs a person on this case now." if r.closed_at is None
                     else f"Closed on {md_text(_when(r.closed_at))}.")
    lines += ["", "## What the agencies found", ""]
    if found:
        lines += ["| round | agency | found | how they matched the child | LA | school | "
                  "address as held | departure | agency ref | when |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for f in found:
            if f.problem:
                lines.append(_row(f.round, f.agency, f"UNREADABLE: {f.problem}", None, None,
                                  None, None, None, f.agency_reference, _when(f.checked_at)))
                continue
            school_cell = (f"{f.school_urn} {f.school_name or ''}".strip()
                           if f.school_urn else None)
            movement = (f"left {_when(f.departure_date)} for {f.departure_country or '?'}"
                        if f.departure_date else
                        f"arrived {_when(f.arrival_date)}" if f.arrival_date else
                        f"CTF destination {f.ctf_destination}" if f.ctf_destination
                        else None)
            what = f.kind + (f" ({f.address_type})" if f.address_type else "") + (
                ", SAFEGUARDING CONCERN" if f.safeguarding else "")
            lines.append(_row(f.round, f"{f.agency} ({f.source or ''})".replace(" ()", ""),
                              what, f"{f.how_matched}, confidence {f.confidence or 0.0:.2f}",
                              f.la_code, school_cell, f.address, movement,
                              f.agency_reference, _when(f.checked_at)))
    else:
        lines.append("No agency has found anything yet.")
    lines += ["", "## Timeline", "", "| when | what | rule | by |", "|---|---|---|---|"]
    lines += [_row(_when(e.at), e.text, e.rule, e.actor) for e in events]
    lines += ["", "## Checks", "",
              "| round | agency | outcome | fields disclosed | agency ref | expected by | error |",
              "|---|---|---|---|---|---|---|"]
    lines += [_row(c.round, c.connector, c.outcome.value, ", ".join(c.fields_disclosed),
                   c.agency_reference, _when(c.expected_by), c.error_code) for c in checks]
    lines += ["", "## Notifications", "", "| template | to | status |", "|---|---|---|"]
    lines += [_row(n.template.value, n.recipient, n.status.value) for n in notes]
    return "\n".join(lines) + "\n"
