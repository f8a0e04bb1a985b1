"""The case report (issue 15, point 6; issue 18, point 9): the evidence an officer needs, in
London time, with every free-text value shown literally — it adds no row, code block, link,
image or HTML of its own. Parsed here with a CommonMark + GFM-tables parser; the same report
is rendered in Chromium by ``tests/e2e/test_browser_case_report.py``."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from markdown_it import MarkdownIt
from sqlmodel import Session

from models import (
    CaseEvent,
    CaseStatus,
    Check,
    CheckOutcome,
    Child,
    Referral,
    ReferralKind,
    SafeguardingConcern,
    School,
    get_engine,
)
from tasks.case_report import md_text, render_case_report

HOSTILE = [
    "1 Row\n| Safeguarding concern | no |\n| Status | closed |",
    "Flat 2 ``` \nswallow the rest",
    '<img src="http://evil.example/x.png"> and <script>alert(1)</script>',
    "![pixel](http://evil.example/p.png) [click](javascript:alert(1))",
    "www.evil.example and https://evil.example/a and someone@evil.example",
    "**bold** _em_ # heading > quote - list 1. item ~~strike~~ `code` $x$",
    "&amp; &#x3C;b&#x3E; \\| pipe",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_free_text_renders_as_the_same_literal_text_and_nothing_else(text: str) -> None:
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parseInline(md_text(text))[0].children or []
    kinds = {t.type for t in tokens}
    assert kinds <= {"text", "softbreak", "text_special"}, kinds
    shown = "".join(t.content for t in tokens).replace("\u200b", "")
    assert shown == " ".join(text.split())


def test_a_cell_cannot_add_a_row() -> None:
    md = MarkdownIt("commonmark").enable("table")
    table = "| | |\n|---|---|\n| Address | " + md_text(HOSTILE[0]) + " |\n"
    rows = [t for t in md.parse(table) if t.type == "tr_open"]
    assert len(rows) == 2  # the header row and one row


@pytest.fixture
def hostile_case(clean_db: str) -> str:
    with Session(get_engine(clean_db)) as s:
        school = School(urn="116000", name="Bad | School <b>x</b>", la_code="850",
                        email="office@school.example.org")
        other = School(urn="125111", name="New School [x](http://evil.example)",
                       la_code="936", email="o@new.example.org")
        child = Child(forename="Zebedee", surname="Quill|feather", dob=date(2015, 2, 28),
                      upn="H801200001001", address_line1=HOSTILE[0], town=HOSTILE[2],
                      postcode="SO23 8UJ", match_key="x")
        s.add_all([school, other, child])
        s.flush()
        r = Referral(mendix_reference="CME-2026-000321", kind=ReferralKind.CME,
                     school_id=school.id or 0, child_id=child.id or 0,
                     received_at=datetime(2026, 12, 2, 7, 0, tzinfo=UTC),
                     acknowledgement_due=date(2026, 12, 9), status=CaseStatus.ESCALATED)
        s.add(r)
        s.flush()
        s.add(Check(referral_id=r.id or 0, connector="other_la", connector_version="1",
                    round=1, outcome=CheckOutcome.FOUND, agency_reference="LA936-7",
                    checked_at=datetime(2026, 12, 2, 1, 30, tzinfo=UTC),
                    evidence={"items": [
                        {"kind": "on_roll", "school_urn": "125111", "la_code": "936",
                         "match_basis": "identifier", "confidence": 0.97},
                        {"kind": "resident", "la_code": "936", "address": HOSTILE[3],
                         "postcode": "GU1 1AA", "match_basis": "demographic",
                         "safeguarding": True}]}))
        s.add(SafeguardingConcern(referral_id=r.id or 0, source="other_la",
                                  raised_at=datetime(2026, 12, 2, 1, 31, tzinfo=UTC)))
        s.add(CaseEvent(referral_id=r.id or 0, kind="closed", actor="officer",
                        text="Note: " + HOSTILE[1]))
        s.commit()
    return clean_db


def _shown(md: str) -> str:
    """The report as an officer reads it: rendered, tags stripped, zero-width spaces gone."""
    import html
    import re

    rendered = MarkdownIt("commonmark").enable("table").render(md)
    return html.unescape(re.sub(r"<[^>]+>", " ", rendered)).replace("\u200b", "")


def test_the_report_shows_what_each_agency_found_and_who_raised_the_concern(
        hostile_case: str) -> None:
    md = render_case_report(hostile_case, "CME-2026-000321", today=date(2026, 12, 2))
    found = _shown(md.split("## What the agencies found")[1].split("## Timeline")[0])
    assert "125111 New School" in found and "LA936-7" in found  # school by name, agency ref
    assert "identifier, confidence 0.97" in found and "demographic" in found
    assert "GU1 1AA" in found  # the address as the agency holds it
    shown = _shown(md)
    assert "raised by agency other_la on 2 Dec 2026 01:31" in shown  # who, and when (London)
    assert "a person must act" in shown
    assert "2 Dec 2026 07:00" in shown  # received: 07:00 UTC is 07:00 GMT in December
    assert "Safeguarding concern" in _shown(md.split("## What to do next")[1].split("##")[0])


def test_the_report_keeps_its_shape_whatever_the_free_text_says(hostile_case: str) -> None:
    md = render_case_report(hostile_case, "CME-2026-000321", today=date(2026, 12, 2))
    parser = MarkdownIt("commonmark").enable("table")
    tokens = parser.parse(md)
    facts_rows = 0
    in_first_table = False
    for t in tokens:
        if t.type == "table_open" and facts_rows == 0:
            in_first_table = True
        if in_first_table and t.type == "tr_open":
            facts_rows += 1
        if t.type == "table_close":
            in_first_table = False
            if facts_rows:
                break
    assert facts_rows == 1 + 15  # the header row and the fifteen facts
    inline = [c for t in tokens if t.type == "inline" for c in (t.children or [])]
    kinds = {c.type for c in inline}
    assert not kinds & {"image", "link_open", "html_inline", "code_inline"}, kinds
    assert not any(t.type in ("html_block", "fence", "code_block") for t in tokens)
    # facts, found, timeline, checks, messages
    assert sum(t.type == "table_open" for t in tokens) == 5
