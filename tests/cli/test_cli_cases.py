"""Operator commands: `cme cases`, `cme case`, `cme outbox`, `cme intake rejected`,
`cme audit disclosures` — against a seeded database, synthetic people only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

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
    NotificationStatus,
    QuarantinedRecord,
    Referral,
    ReferralKind,
    School,
    Template,
    session_scope,
)
from tests.cli.clikit import cli_env, cme

# Synthetic people only: distinctive values that must never leak into list output.
FORENAME, SURNAME = "Zebedee", "Quillfeather"
DOB = date(2014, 3, 17)
UPN = "H801200001001"
POSTCODE = "SO23 8UJ"
STREET = "12 Lantern Row"
PARENT = "Ottoline Quillfeather"
OTHER_FORENAME, OTHER_SURNAME = "Perpetua", "Wintergreen"
RAW_CANARY = "Bartholomew Snapdragon"

OPEN_REF, CLOSED_REF, OVERDUE_REF = "CME-2025-000101", "CME-2025-000102", "CME-2025-000103"
T = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)


def seed(url: str) -> None:
    with session_scope(url) as s:
        school = School(urn="850001", name="Brambleford Primary", la_code="850",
                        email="office@brambleford.example.org")
        other = School(urn="850002", name="Copperbeech Academy", la_code="850",
                       email="admin@copperbeech.example.org")
        s.add_all([school, other])
        s.flush()
        zeb = Child(upn=UPN, forename=FORENAME, surname=SURNAME, dob=DOB, sex="M",
                    postcode=POSTCODE, address_line1=STREET, town="Winchester",
                    parents=[{"name": PARENT, "phone": "07700900123"}],
                    match_key=f"{SURNAME.lower()}|{DOB.isoformat()}")
        per = Child(forename=OTHER_FORENAME, surname=OTHER_SURNAME, dob=date(2012, 9, 1),
                    match_key=f"{OTHER_SURNAME.lower()}|2012-09-01")
        s.add_all([zeb, per])
        s.flush()
        open_case = Referral(
            mendix_reference=OPEN_REF, kind=ReferralKind.CME, school_id=school.id,
            child_id=zeb.id, received_at=T, acknowledgement_due=date(2025, 3, 10),
            acknowledged_at=datetime(2025, 3, 4, 12, tzinfo=UTC), status=CaseStatus.TRACING,
            missing_actions=["ask_peers"], safeguarding_concern=True,
            decision_rule="keep_tracing", next_check_due=date(2025, 3, 11), tracing_rounds=2,
            reason=f"{FORENAME} has not attended since February",
        )
        closed_case = Referral(
            mendix_reference=CLOSED_REF, kind=ReferralKind.PMOOE, school_id=other.id,
            child_id=per.id, received_at=datetime(2025, 1, 6, 9, tzinfo=UTC),
            acknowledgement_due=date(2025, 1, 13),
            acknowledged_at=datetime(2025, 1, 15, 9, tzinfo=UTC),
            status=CaseStatus.CLOSED, outcome=CaseOutcome.ON_ROLL_ELSEWHERE,
            closure_reason=ClosureReason.on_roll_elsewhere,
            closed_at=datetime(2025, 2, 1, tzinfo=UTC), tracing_rounds=1,
        )
        overdue_case = Referral(
            mendix_reference=OVERDUE_REF, kind=ReferralKind.CME, school_id=other.id,
            child_id=per.id, received_at=datetime(2025, 2, 3, 9, tzinfo=UTC),
            acknowledgement_due=date(2025, 2, 10), status=CaseStatus.RECEIVED,
        )
        s.add_all([open_case, closed_case, overdue_case])
        s.flush()
        s.add_all([
            CaseEvent(referral_id=open_case.id, at=T, kind="received",
                      text="referral received from school 850001"),
            CaseEvent(referral_id=open_case.id, at=datetime(2025, 3, 5, tzinfo=UTC),
                      kind="decision", rule="keep_tracing", text="round 1: nothing found yet"),
            CaseEvent(referral_id=open_case.id, at=datetime(2025, 3, 4, 12, tzinfo=UTC),
                      kind="acknowledged", text="acknowledgement queued"),
            Check(referral_id=open_case.id, connector="other_la", connector_version="1.2",
                  round=1, fields_disclosed=["upn", "surname", "dob"],
                  outcome=CheckOutcome.NOT_FOUND, checked_at=datetime(2025, 3, 5, tzinfo=UTC)),
            Check(referral_id=open_case.id, connector="lpd", connector_version="2.0", round=1,
                  fields_disclosed=["upn"], outcome=CheckOutcome.FOUND,
                  evidence={"address": STREET, "postcode": POSTCODE},
                  agency_reference="LPD-77", checked_at=datetime(2025, 3, 5, tzinfo=UTC)),
            Check(referral_id=open_case.id, connector="housing", connector_version="1.0",
                  round=2, fields_disclosed=[], outcome=CheckOutcome.ERROR,
                  error_kind="circuit_open", error_code="breaker",
                  checked_at=datetime(2025, 3, 6, tzinfo=UTC)),
            Check(referral_id=closed_case.id, connector="other_la", connector_version="1.2",
                  round=1, fields_disclosed=["surname", "dob", "postcode"],
                  outcome=CheckOutcome.FOUND, checked_at=datetime(2025, 1, 20, tzinfo=UTC)),
            Notification(referral_id=open_case.id, idempotency_key=f"ack:{OPEN_REF}",
                         template=Template.acknowledgement, channel=NotificationChannel.file,
                         recipient="office@brambleford.example.org",
                         personalisation={"reference": OPEN_REF, "initials": "Z.Q."},
                         status=NotificationStatus.sent, attempts=1,
                         sent_at=datetime(2025, 3, 4, 12, tzinfo=UTC)),
            Notification(referral_id=open_case.id, idempotency_key=f"missing:{OPEN_REF}",
                         template=Template.missing_school_actions,
                         channel=NotificationChannel.smtp,
                         recipient="office@brambleford.example.org",
                         personalisation={"reference": OPEN_REF},
                         status=NotificationStatus.failed, attempts=3,
                         next_attempt_at=datetime(2025, 3, 7, tzinfo=UTC),
                         last_error="SMTP 451 try later"),
            Notification(referral_id=overdue_case.id, idempotency_key=f"ack:{OVERDUE_REF}",
                         template=Template.acknowledgement, channel=NotificationChannel.file,
                         recipient="admin@copperbeech.example.org",
                         personalisation={"reference": OVERDUE_REF}),
            QuarantinedRecord(source="referrals-2025-03-03.jsonl", line_no=7,
                              mendix_reference="CME-2025-000999",
                              raw=json.dumps({"child": {"forename": RAW_CANARY}}),
                              reasons=["child.upn: check letter is wrong"],
                              received_at=T),
            QuarantinedRecord(source="odata", raw="{not json",
                              reasons=["not valid JSON"], received_at=T),
        ])


@pytest.fixture
def seeded(clean_db: str, workdir: Path) -> dict[str, str]:
    seed(clean_db)
    return cli_env(clean_db, columns=250)


def cme_subprocess(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CME_")}
    base.update(env)
    return subprocess.run(
        [sys.executable, "-c", "from cme.cli import main; main()", *args], cwd=cwd, env=base,
        capture_output=True, text=True, timeout=120,
    )


PERSONAL = (FORENAME, SURNAME, UPN, DOB.isoformat(), "17/03/2014", POSTCODE, STREET, PARENT,
            OTHER_FORENAME, OTHER_SURNAME, RAW_CANARY)


def assert_no_personal_data(text: str) -> None:
    for value in PERSONAL:
        assert value not in text, f"personal data {value!r} in output"


# --------------------------------------------------------------------------- cme cases


def test_cases_lists_every_case_with_sla_state(seeded: dict[str, str]) -> None:
    out = cme(seeded, "cases").stdout
    for ref in (OPEN_REF, CLOSED_REF, OVERDUE_REF):
        assert ref in out
    assert "overdue" in out and "met" in out and "late" in out
    assert "850001" in out and "on_roll_elsewhere" in out
    assert "3 cases" in out


def test_cases_json_is_one_array_with_the_case_fields(seeded: dict[str, str]) -> None:
    rows = json.loads(cme(seeded, "cases", "--json").stdout)
    assert isinstance(rows, list) and len(rows) == 3
    by_ref = {r["reference"]: r for r in rows}
    assert by_ref[OPEN_REF] == {
        "reference": OPEN_REF, "kind": "CME", "status": "tracing", "outcome": None,
        "school_urn": "850001", "received_on": "2025-03-03", "acknowledgement_due": "2025-03-10",
        "acknowledged_on": "2025-03-04", "acknowledgement": "met",
        "next_check_due": "2025-03-11", "tracing_rounds": 2, "closed_on": None,
    }
    assert by_ref[OVERDUE_REF]["acknowledgement"] == "overdue"
    assert by_ref[CLOSED_REF]["acknowledgement"] == "late"
    assert by_ref[CLOSED_REF]["closed_on"] == "2025-02-01"
    # newest referral first
    assert [r["reference"] for r in rows] == [OPEN_REF, OVERDUE_REF, CLOSED_REF]


def test_cases_never_show_personal_data(seeded: dict[str, str]) -> None:
    assert_no_personal_data(cme(seeded, "cases").stdout)
    assert_no_personal_data(cme(seeded, "cases", "--json").stdout)


@pytest.mark.parametrize(("status", "expected"), [
    ("closed", {CLOSED_REF}),
    ("tracing", {OPEN_REF}),
    ("open", {OPEN_REF, OVERDUE_REF}),
    ("escalated", set()),
])
def test_cases_status_filter(seeded: dict[str, str], status: str, expected: set[str]) -> None:
    rows = json.loads(cme(seeded, "cases", "--status", status, "--json").stdout)
    assert {r["reference"] for r in rows} == expected


def test_cases_limit_says_how_many_are_hidden(seeded: dict[str, str]) -> None:
    out = cme(seeded, "cases", "--limit", "1").stdout
    assert OPEN_REF in out and CLOSED_REF not in out
    assert "1 of 3" in out and "--limit 0" in out
    assert len(json.loads(cme(seeded, "cases", "--limit", "2", "--json").stdout)) == 2


def test_unknown_status_is_one_line_listing_the_valid_ones(seeded: dict[str, str],
                                                           workdir: Path) -> None:
    out = cme_subprocess(seeded, "cases", "--status", "lost", cwd=workdir)
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "'lost'" in lines[0] and "awaiting_response" in lines[0] and "open" in lines[0]
    assert out.stdout == ""


def test_cases_on_an_unmigrated_database_is_one_clear_line(workdir: Path) -> None:
    out = cme_subprocess({"CME_DATABASE_URL": f"sqlite:///{workdir}/empty.db",
                          "COLUMNS": "250"}, "cases", cwd=workdir)
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cme db upgrade" in lines[0], out.stderr
    assert "Traceback" not in out.stderr


# --------------------------------------------------------------------------- cme case


def test_case_shows_facts_timeline_checks_and_notifications(seeded: dict[str, str]) -> None:
    out = cme(seeded, "case", OPEN_REF).stdout
    for expected in ("Z.Q.", "tracing", "keep_tracing", "ask_peers", "YES",
                     "Brambleford Primary", "850001", "round 1: nothing found yet",
                     "other_la", "upn, surname, dob", "LPD-77", "circuit_open/breaker",
                     "missing_school_actions", "office@brambleford.example.org", "failed"):
        assert expected in out, expected
    # initials only: no names, identifiers, address or evidence
    assert_no_personal_data(out)


def test_case_json_has_the_timeline_in_order(seeded: dict[str, str]) -> None:
    d = json.loads(cme(seeded, "case", OPEN_REF, "--json").stdout)
    assert d["reference"] == OPEN_REF and d["child_initials"] == "Z.Q."
    assert d["safeguarding_concern"] is True and d["missing_actions"] == ["ask_peers"]
    assert [e["kind"] for e in d["timeline"]] == ["received", "acknowledged", "decision"]
    assert [(c["connector"], c["round"]) for c in d["checks"]] == [
        ("lpd", 1), ("other_la", 1), ("housing", 2)]
    lpd = d["checks"][0]
    assert lpd["fields_disclosed"] == ["upn"] and lpd["agency_reference"] == "LPD-77"
    assert "evidence" not in lpd
    assert {(n["template"], n["status"], n["attempts"]) for n in d["notifications"]} == {
        ("acknowledgement", "sent", 1), ("missing_school_actions", "failed", 3)}
    assert_no_personal_data(json.dumps(d))


def test_case_help_points_to_the_case_report_artifact(seeded: dict[str, str]) -> None:
    out = cme(seeded, "case", "--help").stdout
    assert "initials" in out and "case-report" in out


def test_unknown_reference_is_one_line_and_exit_1(seeded: dict[str, str],
                                                  workdir: Path) -> None:
    for args in (["case", "CME-1999-000000"], ["case", "CME-1999-000000", "--json"],
                 ["audit", "disclosures", "--ref", "CME-1999-000000"]):
        out = cme_subprocess(seeded, *args, cwd=workdir)
        assert out.returncode == 1, args
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert lines == ["Error: no case with reference CME-1999-000000"], out.stderr
        assert out.stdout == ""


# --------------------------------------------------------------------------- cme outbox


def test_outbox_lists_rows_and_counts_by_status(seeded: dict[str, str]) -> None:
    out = cme(seeded, "outbox").stdout
    assert "SMTP 451 try later" in out and OVERDUE_REF in out
    assert "pending 1" in out and "sent 1" in out and "failed 1" in out and "sending 0" in out


def test_outbox_json_and_status_filter(seeded: dict[str, str]) -> None:
    box = json.loads(cme(seeded, "outbox", "--json", "--status", "failed").stdout)
    assert box["by_status"] == {"pending": 1, "sending": 0, "sent": 1, "failed": 1}
    (row,) = box["notifications"]
    assert row["reference"] == OPEN_REF and row["template"] == "missing_school_actions"
    assert row["channel"] == "smtp" and row["attempts"] == 3
    assert row["next_attempt_at"].startswith("2025-03-07")
    assert "personalisation" not in row


def test_outbox_unknown_status_is_refused(seeded: dict[str, str], workdir: Path) -> None:
    out = cme_subprocess(seeded, "outbox", "--status", "lost", cwd=workdir)
    assert out.returncode == 1 and "pending, sending, sent, failed" in out.stderr


# --------------------------------------------------------------------------- intake rejected


def test_intake_rejected_hides_the_raw_record_by_default(seeded: dict[str, str]) -> None:
    out = cme(seeded, "intake", "rejected").stdout
    assert "check letter is wrong" in out and "CME-2025-000999" in out
    assert "referrals-2025-03-03.jsonl" in out and "not valid JSON" in out
    assert RAW_CANARY not in out
    rows = json.loads(cme(seeded, "intake", "rejected", "--json").stdout)
    assert len(rows) == 2 and all("raw" not in r for r in rows)
    assert {r["line_no"] for r in rows} == {7, None}
    assert RAW_CANARY not in json.dumps(rows)


def test_intake_rejected_show_raw_is_explicit(seeded: dict[str, str]) -> None:
    assert RAW_CANARY in cme(seeded, "intake", "rejected", "--show-raw").stdout
    rows = json.loads(cme(seeded, "intake", "rejected", "--show-raw", "--json").stdout)
    assert any(RAW_CANARY in (r["raw"] or "") for r in rows)


# --------------------------------------------------------------------------- audit


def test_audit_disclosures_lists_fields_per_check_and_per_agency(
        seeded: dict[str, str]) -> None:
    out = cme(seeded, "audit", "disclosures").stdout
    assert "upn, surname, dob" in out and "surname, dob, postcode" in out
    audit = json.loads(cme(seeded, "audit", "disclosures", "--json").stdout)
    assert len(audit["checks"]) == 4
    summary = {s["connector"]: s for s in audit["summary"]}
    assert summary["other_la"] == {"connector": "other_la", "checks": 2, "disclosures": 2,
                                   "referrals": 2, "fields": ["dob", "postcode", "surname", "upn"],
                                   "versions": ["1.2"]}
    assert summary["lpd"]["fields"] == ["upn"]
    # nothing was sent to housing: the circuit was open
    assert summary["housing"]["disclosures"] == 0 and summary["housing"]["fields"] == []
    assert_no_personal_data(json.dumps(audit))


def test_audit_disclosures_for_one_case(seeded: dict[str, str]) -> None:
    audit = json.loads(cme(seeded, "audit", "disclosures", "--ref", CLOSED_REF, "--json").stdout)
    assert [(c["reference"], c["connector"], c["connector_version"], c["round"])
            for c in audit["checks"]] == [(CLOSED_REF, "other_la", "1.2", 1)]
    assert audit["checks"][0]["checked_at"].startswith("2025-01-20")
    assert audit["summary"][0]["fields"] == ["dob", "postcode", "surname"]
