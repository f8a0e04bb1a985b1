"""A child's data on request: ``cme export child REF --out DIR`` (issue 19, part 3).

The completeness test introspects the data model: every table holding a child id or a
referral id must be in the export, and the seeded world puts a row of this child in each.
Synthetic people only.
"""

from __future__ import annotations

import json
import stat
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, SQLModel
from typer.testing import CliRunner

from cme.cli import app
from models import (
    AttendanceMark,
    AttendancePupil,
    CaseEvent,
    CaseStatus,
    Check,
    CheckOutcome,
    Child,
    Notification,
    NotificationChannel,
    QuarantinedRecord,
    Referral,
    ReferralKind,
    RoundClaim,
    SafeguardingConcern,
    School,
    Template,
    get_engine,
)
from tasks.child_export import (
    EXPORTED_TABLES,
    IncompleteExportError,
    child_tables,
    export_child,
    unexported_tables,
)

REF, DUP_REF, OTHER_REF = "CME-2026-000101", "CME-2026-000102", "CME-2026-000201"
UPN, OTHER_UPN = "A850200001002", "B850200001003"
T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
runner = CliRunner()


def _child(s: Session, forename: str, surname: str, upn: str) -> Child:
    c = Child(upn=upn, forename=forename, surname=surname, dob=date(2014, 3, 17), sex="F",
              postcode="SO23 8UJ", address_line1="4 Weir Lane",
              parents=[{"name": f"Parent {surname}"}],
              match_key=f"{surname.lower()}|2014-03-17")
    s.add(c)
    s.flush()
    return c


def _referral(s: Session, ref: str, school: School, child: Child, **kw: Any) -> Referral:
    r = Referral(mendix_reference=ref, kind=ReferralKind.CME, school_id=school.id or 0,
                 child_id=child.id or 0, received_at=T, acknowledgement_due=date(2026, 3, 9),
                 reason="Family *said* <b>moving</b>", **kw)
    s.add(r)
    s.flush()
    return r


def seed(db_url: str) -> None:
    with Session(get_engine(db_url)) as s:
        school = School(urn="116001", name="Weirside Primary", la_code="850",
                        email="office@weirside.example.org")
        s.add(school)
        s.flush()
        child = _child(s, "Zofia", "Quill", UPN)
        other = _child(s, "Otto", "Marsh", OTHER_UPN)
        r = _referral(s, REF, school, child, safeguarding_concern=True,
                      status=CaseStatus.ESCALATED)
        dup = _referral(s, DUP_REF, school, child, duplicate_of_id=r.id)
        o = _referral(s, OTHER_REF, school, other)
        for ref_ in (r, o):
            s.add(Check(referral_id=ref_.id or 0, connector="lpd", connector_version="1.0",
                        round=1, fields_disclosed=["upn", "surname", "dob"],
                        outcome=CheckOutcome.NOT_FOUND, checked_at=T))
            s.add(CaseEvent(referral_id=ref_.id or 0, kind="received", text="received", at=T))
            s.add(SafeguardingConcern(referral_id=ref_.id or 0, source="school", raised_at=T))
            # A run asking the agencies about this case right now holds its round.
            s.add(RoundClaim(referral_id=ref_.id or 0, round=2, owner="run-1", host="here",
                             pid=1, claimed_at=T, lease_until=T))
            s.add(Notification(referral_id=ref_.id, idempotency_key=f"ack:{ref_.mendix_reference}",
                               template=Template.acknowledgement,
                               channel=NotificationChannel.file, recipient=school.email,
                               personalisation={"reference": ref_.mendix_reference}))
        s.add(CaseEvent(referral_id=dup.id or 0, kind="duplicate", text="linked", at=T))
        # One message about several cases: it belongs in the export of each.
        s.add(Notification(referral_id=None, idempotency_key="ht:116001:2026-sp1",
                           template=Template.half_termly_update,
                           channel=NotificationChannel.file, recipient=school.email,
                           personalisation={"school_name": school.name, "updates": [
                               {"reference": REF, "initials": "Z.Q.", "status": "tracing"}]}))
        s.add(Notification(referral_id=None, idempotency_key="ht:116001:2026-sp2",
                           template=Template.half_termly_update,
                           channel=NotificationChannel.file, recipient=school.email,
                           personalisation={"school_name": school.name, "updates": [
                               {"reference": OTHER_REF, "initials": "O.M.",
                                "status": "tracing"}]}))
        s.add(QuarantinedRecord(source="referrals.jsonl", line_no=3, mendix_reference=REF,
                                raw='{"child": "Zofia"}', reasons=["child.dob: missing"]))
        s.add(QuarantinedRecord(source="referrals.jsonl", line_no=4, mendix_reference=OTHER_REF,
                                raw='{"child": "Otto"}', reasons=["child.dob: missing"]))
        # A register mark that could not be read: no reference, only the UPN in the row.
        s.add(QuarantinedRecord(source="attendance:marks.csv", line_no=9,
                                raw=f'["{UPN}", "116001", "2026-03-02", "AM", "QQ"]',
                                reasons=["code: not an attendance code"]))
        s.add(QuarantinedRecord(source="attendance:marks.csv", line_no=10,
                                raw=f'["{OTHER_UPN}", "116001", "2026-03-02", "AM", "QQ"]',
                                reasons=["code: not an attendance code"]))
        for c, ref_ in ((child, r), (other, o)):
            p = AttendancePupil(upn=c.upn or "", school_urn="116001", child_id=c.id,
                                case_id=ref_.id)
            s.add(p)
            s.flush()
            s.add(AttendanceMark(pupil_id=p.id or 0, day=date(2026, 3, 2), session="AM",
                                 code="N", school_urn="116001"))
        s.commit()


@pytest.fixture
def seeded(clean_db: str, workdir: Path) -> str:
    seed(clean_db)
    return clean_db


def test_every_table_holding_a_child_id_or_referral_id_is_exported(seeded: str) -> None:
    holding = child_tables()
    # The data model as it stands: if this set grows, the export must read the new table.
    assert {"child", "referral", "check", "caseevent", "notification", "safeguardingconcern",
            "attendancepupil"} <= holding
    assert unexported_tables() == [], "tables with a child's data missing from the export"
    export = export_child(seeded, REF)
    for name in holding | set(EXPORTED_TABLES):
        assert export.tables.get(name), f"no row of table {name} in the export"


def test_a_new_table_with_a_child_id_and_not_exported_is_caught() -> None:
    md = sa.MetaData()
    for table in SQLModel.metadata.tables.values():
        table.to_metadata(md)
    sa.Table("homevisit", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("who", sa.Integer, sa.ForeignKey("child.id")))
    sa.Table("phonecall", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("referral_id", sa.Integer))
    assert unexported_tables(md) == ["homevisit", "phonecall"]


def test_export_refuses_while_a_table_is_not_exported(seeded: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.child_export as mod

    monkeypatch.setattr(mod, "EXPORTED_TABLES",
                        {k: v for k, v in EXPORTED_TABLES.items() if k != "check"})
    with pytest.raises(IncompleteExportError, match="check"):
        mod.export_child(seeded, REF)


def test_export_holds_this_child_and_all_their_cases_and_nobody_else(seeded: str) -> None:
    export = export_child(seeded, DUP_REF)  # any of the child's references finds them all
    assert sorted(export.references) == [REF, DUP_REF]
    text = json.dumps(export.to_json())
    assert "Zofia" in text and UPN in text
    assert "Otto" not in text and OTHER_UPN not in text and OTHER_REF not in text
    checks = export.tables["check"]
    assert [(c["connector"], c["fields_disclosed"], c["checked_at"][:10]) for c in checks] == [
        ("lpd", ["upn", "surname", "dob"], "2026-03-02")]
    keys = sorted(n["idempotency_key"] for n in export.tables["notification"])
    assert keys == [f"ack:{REF}", "ht:116001:2026-sp1"]
    assert len(export.tables["caseevent"]) == 2
    assert [m["code"] for m in export.tables["attendancemark"]] == ["N"]
    assert sorted(q["line_no"] for q in export.tables["quarantinedrecord"]) == [3, 9]
    assert any("case-report" in p and "Artifacts" in p for p in export.places)


def test_cli_writes_json_and_markdown_readable_by_the_officer_only(seeded: str,
                                                                    workdir: Path) -> None:
    out = workdir / "sar"
    result = runner.invoke(app, ["export", "child", REF, "--out", str(out)],
                           env={"CME_DATABASE_URL": seeded})
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"child-{REF}.json", f"child-{REF}.md"]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    data = json.loads(files[0].read_text())
    assert data["tables"]["child"][0]["forename"] == "Zofia"
    md = files[1].read_text()
    assert "## Checks with other agencies" in md and "## Where this child's data lives" in md
    # Stored free text shows as written, not as markup.
    assert "<b>" not in md and "\\<b\\>moving\\</b\\>" in md


def test_cli_existing_folder_is_made_private(seeded: str, workdir: Path) -> None:
    out = workdir / "shared"
    out.mkdir(mode=0o755)
    result = runner.invoke(app, ["export", "child", REF, "--out", str(out)],
                           env={"CME_DATABASE_URL": seeded})
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o700


def test_cli_unknown_reference_is_refused_and_writes_nothing(seeded: str, workdir: Path) -> None:
    result = runner.invoke(app, ["export", "child", "CME-2026-999999", "--out",
                                 str(workdir / "x")], env={"CME_DATABASE_URL": seeded})
    assert result.exit_code != 0
    assert not (workdir / "x").exists()
