"""Issue 16, point 4, over the real database (SQLite here; PostgreSQL in CI through
``CME_TEST_DATABASE_URL``): a check's evidence is stored and read back through
``connectors.CheckEvidence`` by every writer (tracing, carrying a formal answer into the next
round) and every reader (the rulebook, the case report, ``cme case``, the decision form). A
row that does not read is a clear problem where it is shown and an error for the rulebook —
never a crash, never "nothing found".
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from connectors import CheckEvidence, Evidence
from models import (
    CaseStatus,
    Check,
    CheckOutcome,
    Child,
    Referral,
    ReferralKind,
    School,
    get_engine,
)

TODAY = date(2026, 3, 2)
REF = "CME-2026-000416"
STREET = "14 Quillon Terrace"
#: As a writer with a misspelt key would store it: today nothing notices, and the reader
#: that looks up ``match_basis`` by key finds nothing and reads "not said".
MISSPELT = {"items": [{"kind": "on_roll", "school_urn": "125111", "la_code": "936",
                       "matchbasis": "identifier", "address": STREET}]}


def _case(db_url: str, *checks: Check) -> int:
    with Session(get_engine(db_url)) as s:
        school = School(urn="116000", name="Brambleford Primary", la_code="850",
                        email="office@school.example.org")
        child = Child(forename="Zebedee", surname="Quill", dob=date(2015, 2, 28),
                      upn="H801200001001", postcode="SO23 8UJ", match_key="x")
        s.add_all([school, child])
        s.flush()
        r = Referral(mendix_reference=REF, kind=ReferralKind.CME, school_id=school.id or 0,
                     child_id=child.id or 0, received_at=datetime(2026, 1, 12, tzinfo=UTC),
                     acknowledgement_due=date(2026, 1, 19), status=CaseStatus.TRACING,
                     tracing_rounds=1)
        s.add(r)
        s.flush()
        for c in checks:
            c.referral_id = r.id or 0
            s.add(c)
        s.commit()
        return r.id or 0


def _check(connector: str, evidence: object, **kw: object) -> Check:
    return Check(referral_id=0, connector=connector, connector_version="1", round=1,
                 outcome=CheckOutcome.FOUND, checked_at=datetime(2026, 3, 1, 1, tzinfo=UTC),
                 evidence=evidence, **kw)


ITEMS = (
    Evidence(kind="on_roll", school_urn="125111", la_code="936", on_roll=True,
             date_seen=date(2026, 3, 1), match_basis="identifier", confidence=0.97),
    Evidence(kind="resident", address=STREET, postcode="GU1 1AA", la_code="936",
             match_basis="demographic", safeguarding=True),
    Evidence(kind="departure", departure_date=date(2026, 2, 1), departure_country="PL"),
)


def test_evidence_round_trips_through_the_database(clean_db: str) -> None:
    _case(clean_db, _check("other_la", CheckEvidence.column(ITEMS)))
    with Session(get_engine(clean_db)) as s:
        (chk,) = s.exec(select(Check)).all()
    assert CheckEvidence.read(chk.evidence).items == ITEMS


def test_a_misspelt_key_is_shown_as_a_problem_not_read_as_not_said(clean_db: str) -> None:
    from tasks.reports import case_detail

    _case(clean_db, _check("other_la", MISSPELT, agency_reference="LA936-7"),
          _check("housing", CheckEvidence.column(ITEMS[1:2])))
    d = case_detail(clean_db, REF, today=TODAY, show_personal=True)
    bad = [e for e in d.evidence if e.agency == "other_la"]
    assert len(bad) == 1 and bad[0].kind == "unreadable"
    assert bad[0].problem and "items.0.matchbasis" in bad[0].problem
    assert STREET not in bad[0].problem
    assert bad[0].agency_reference == "LA936-7"
    good = [e for e in d.evidence if e.agency == "housing"]
    assert [(e.kind, e.problem, e.address) for e in good] == [
        ("resident", None, f"{STREET}, GU1 1AA")]
    hidden = case_detail(clean_db, REF, today=TODAY)
    assert all(e.address is None for e in hidden.evidence)


def test_the_case_report_and_the_decision_form_say_the_evidence_does_not_read(
        clean_db: str) -> None:
    from flows.waiting import _evidence_lines
    from tasks.case_report import render_case_report

    _case(clean_db, _check("other_la", MISSPELT))
    md = render_case_report(clean_db, REF, today=TODAY)
    found = md.split("## What the agencies found")[1].split("## Timeline")[0]
    assert "UNREADABLE" in found and "matchbasis" in found and STREET not in found
    with Session(get_engine(clean_db)) as s:
        r = s.exec(select(Referral)).one()
        (line,) = _evidence_lines(s, r)
    assert "does not read" in line and "matchbasis" in line
    assert "matched on names (not said)" not in line


def test_the_rulebook_reads_an_unreadable_answer_as_an_error_not_as_found(
        clean_db: str) -> None:
    import policy
    from tasks.tracing import policy_results

    _case(clean_db, _check("other_la", MISSPELT), _check("housing", CheckEvidence.column(ITEMS)))
    with Session(get_engine(clean_db)) as s:
        checks = {c.connector: c for c in s.exec(select(Check))}
    (bad,) = policy_results(checks["other_la"], frozenset())
    assert bad.outcome is policy.CheckOutcome.ERROR and bad.school_urn is None
    good = policy_results(checks["housing"], frozenset())
    assert [r.outcome for r in good] == [policy.CheckOutcome.FOUND] * 3
    assert {r.school_urn for r in good} >= {"125111"}


@pytest.fixture
def sandbox_world(tmp_path: Path) -> str:
    from sandbox import generate_world, write_generated

    world, referrals = generate_world(5, 3, today=TODAY)
    return str(write_generated(world, referrals, tmp_path)["world"])


@pytest.mark.parametrize("readable", [True, False], ids=["readable", "unreadable"])
def test_a_formal_answer_carried_into_the_next_round_goes_through_the_model(
        clean_db: str, sandbox_world: str, readable: bool) -> None:
    from tasks.tracing import UNREADABLE_EVIDENCE, trace_referrals
    from tests.la_configs import trace_config

    stored = CheckEvidence.column(ITEMS[2:]) if readable else MISSPELT
    rid = _case(clean_db, _check("border_force", stored, agency_reference="BF-1"))
    cfg = trace_config(db_url=clean_db, connectors=("border_force",), today=TODAY,
                       run_id="run-evidence", sandbox_world=sandbox_world)
    report = asyncio.run(trace_referrals("border_force", [rid], cfg))
    assert report.asked == 0  # carried: nothing sent to the agency
    with Session(get_engine(clean_db)) as s:
        carried = s.exec(select(Check).where(Check.round == 2)
                         .order_by(col(Check.id))).one()
    assert carried.fields_disclosed == [] and carried.agency_reference == "BF-1"
    if readable:
        assert carried.outcome is CheckOutcome.FOUND
        assert CheckEvidence.read(carried.evidence).items == ITEMS[2:]
    else:
        # Not decided on: the next round asks about the same enquiry again.
        assert carried.outcome is CheckOutcome.ERROR and carried.evidence is None
        assert carried.error_code == UNREADABLE_EVIDENCE


def test_a_formal_answer_from_before_a_reopening_is_not_carried_the_agency_is_asked_again(
        clean_db: str, sandbox_world: str) -> None:
    """A child found missing again is traced afresh: Border Force's answer about where the
    child went last time must not decide this time (README, *A case's life*)."""
    from models import CaseEvent
    from tasks.tracing import trace_referrals
    from tests.la_configs import trace_config

    rid = _case(clean_db, _check("border_force", CheckEvidence.column(ITEMS[2:]),
                                 agency_reference="BF-1"))
    with Session(get_engine(clean_db)) as s:
        s.add(CaseEvent(referral_id=rid, kind="reopened", text="Reopened by an officer",
                        actor="officer", at=datetime(2026, 3, 1, 9, tzinfo=UTC)))
        s.commit()
    cfg = trace_config(db_url=clean_db, connectors=("border_force",), today=TODAY,
                       run_id="run-reopened", sandbox_world=sandbox_world)
    report = asyncio.run(trace_referrals("border_force", [rid], cfg))
    assert report.asked == 1  # a new request, not the old answer carried
    with Session(get_engine(clean_db)) as s:
        fresh = s.exec(select(Check).where(Check.round == 2)).one()
    assert fresh.fields_disclosed != [] and fresh.agency_reference != "BF-1"
