"""PMOOE found from attendance data (issue 19, part 2): `cme import attendance FILE`.

Every rule and its near miss from register marks alone; one case per pupil; a return closes
the case; bad rows are quarantined with reasons; memory does not grow with the file.
Synthetic pupils only.
"""

from __future__ import annotations

import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from models import (
    AttendanceMark,
    AttendancePupil,
    CaseEvent,
    CaseStatus,
    Child,
    ClosureReason,
    Notification,
    QuarantinedRecord,
    Referral,
    ReferralKind,
    School,
    Template,
    get_engine,
)
from tasks.attendance import (
    AttendanceFileError,
    assess_pupils,
    import_marks,
)
from tasks.school_updates import school_year_first_day
from tasks.worklist import Why, build_worklist
from tests.attendance.attkit import HEADER, marks, school_days, upn, write
from tests.la_configs import attendance_config

TODAY = date(2026, 3, 20)
SPRING = date(2026, 1, 5)  # a Monday


@pytest.fixture
def db(clean_db: str) -> str:
    with Session(get_engine(clean_db)) as s:
        s.add(School(urn="116001", name="Weirside Primary", la_code="850",
                     email="office@weirside.example.org"))
        s.commit()
    return clean_db


def run(db: str, path: Path, batch_size: int = 5000) -> dict[str, int]:
    cfg = attendance_config(db_url=db, batch_size=batch_size)
    report = import_marks(path, cfg)
    report.add(assess_pupils(cfg, TODAY))
    return vars(report)


def cases(db: str) -> dict[str, Referral]:
    with Session(get_engine(db)) as s:
        out = {}
        for r in s.exec(select(Referral)):
            child = s.get(Child, r.child_id)
            assert child is not None
            out[child.upn or ""] = r
        return out


def test_every_rule_met_from_marks_alone_makes_a_case_and_near_misses_none(
        db: str, tmp_path: Path) -> None:
    days = school_days(SPRING, 25)
    after_leave = school_days(SPRING, 12)
    first = school_year_first_day(date(2025, 10, 1))
    autumn = school_days(first, 3)
    rows = [
        # continuous absence: 40 sessions N/G/O (the 40th on day 20) ...
        *marks(upn(1), days[:20], "NG" * 10 + "O" * 20),
        # ... near miss: 39, then present, then 39 more
        *marks(upn(2), days[:25], "N" * 39 + "/" + "N" * 10),
        # ... a planned closure (#) does not break the run
        *marks(upn(3), days[:21], "N" * 20 + "##" + "N" * 20),
        # leave overrun: every session of the 10 school days after the leave is N
        *marks(upn(4), after_leave[2:], "N", leave_end=after_leave[1].isoformat()),
        # ... near miss: the 10th day has an explained absence (I)
        *marks(upn(5), after_leave[2:], "N" * 18 + "I", leave_end=after_leave[1].isoformat()),
        # transition no-show: entering Year 7, both sessions of the first day N
        *marks(upn(6), autumn, "NN////", year_group="7"),
        # ... near miss: PM present
        *marks(upn(7), autumn, "N/////", year_group="7"),
        # ... near miss: Year 8 is not a transition year
        *marks(upn(8), autumn, "NN////", year_group="8"),
        # 40 sessions N, but a child of 4 is not of compulsory school age: not PMOOE
        *marks(upn(10), days[:20], "N", dob="2021-09-01"),
    ]
    counts = run(db, write(tmp_path / "marks.csv", rows))
    found = cases(db)
    assert set(found) == {upn(1), upn(3), upn(4), upn(6)}
    assert found[upn(1)].classification_reason == "pmooe_continuous_absence"
    assert found[upn(3)].classification_reason == "pmooe_continuous_absence"
    assert found[upn(4)].classification_reason == "pmooe_leave_not_returned"
    assert found[upn(6)].classification_reason == "pmooe_transition_no_show"
    assert counts["cases_created"] == 4 and counts["pupils_assessed"] == 9
    assert counts["not_pmooe"] == 1
    for r in found.values():
        assert (r.kind, r.source, r.status) == (ReferralKind.PMOOE, "attendance",
                                                CaseStatus.RECEIVED)
        assert r.next_check_due is None
    assert found[upn(1)].mendix_reference.endswith(days[19].strftime("%Y%m%d"))


def test_the_school_is_told_and_the_officer_sees_it_on_the_worklist(
        db: str, tmp_path: Path) -> None:
    run(db, write(tmp_path / "m.csv", marks(upn(1), school_days(SPRING, 20), "N",
                                            forename="Zofia", surname="Quill")))
    ref = cases(db)[upn(1)].mendix_reference
    with Session(get_engine(db)) as s:
        n = s.exec(select(Notification)).one()
    assert (n.template, n.recipient) == (Template.pmooe_attendance,
                                         "office@weirside.example.org")
    assert n.personalisation["reference"] == ref and n.personalisation["initials"] == "Z.Q."
    assert upn(1) not in str(n.personalisation) and "Zofia" not in str(n.personalisation)
    items = [i for i in build_worklist(db, TODAY) if i.why is Why.attendance_pmooe]
    assert [i.reference for i in items] == [ref]
    assert upn(1) not in items[0].detail


def test_never_a_second_case_for_one_pupil(db: str, tmp_path: Path) -> None:
    days = school_days(SPRING, 25)
    path = write(tmp_path / "m.csv", marks(upn(1), days[:20], "N"))
    run(db, path)
    run(db, path)  # the same file again
    run(db, write(tmp_path / "m2.csv", marks(upn(1), days[20:25], "N")))  # and more absence
    assert len(cases(db)) == 1
    # A pupil whose child already has an open case (a school's referral) gets no second one.
    with Session(get_engine(db)) as s:
        child = Child(upn=upn(2), forename="A", surname="B", dob=date(2014, 1, 1),
                      match_key="b|2014-01-01")
        s.add(child)
        s.flush()
        s.add(Referral(mendix_reference="CME-2026-000050", kind=ReferralKind.CME,
                       school_id=s.exec(select(School.id)).one(), child_id=child.id,
                       received_at=datetime(2026, 1, 5, tzinfo=UTC),
                       acknowledgement_due=date(2026, 1, 12)))
        s.commit()
    counts = run(db, write(tmp_path / "m3.csv", marks(upn(2), days[:20], "N")))
    assert counts["already_open"] == 1 and counts["cases_created"] == 0
    with Session(get_engine(db)) as s:
        assert len(s.exec(select(Referral)).all()) == 2


def test_a_pupil_back_in_school_before_a_decision_is_recorded_and_the_case_closed(
        db: str, tmp_path: Path) -> None:
    days = school_days(SPRING, 25)
    run(db, write(tmp_path / "m.csv", [*marks(upn(1), days[:20], "N"),
                                       *marks(upn(2), days[:20], "N")]))
    with Session(get_engine(db)) as s:  # a concern on pupil 2's case: a person clears it
        r2 = s.exec(select(Referral).join(Child).where(Child.upn == upn(2))).one()
        r2.status = CaseStatus.ESCALATED
        s.add(r2)
        s.commit()
    counts = run(db, write(tmp_path / "back.csv", [*marks(upn(1), days[20:22], "N/"),
                                                   *marks(upn(2), days[20:22], "N/")]))
    assert (counts["returned_closed"], counts["returned_escalated"]) == (1, 1)
    found = cases(db)
    r1 = found[upn(1)]
    assert r1.status is CaseStatus.CLOSED
    assert r1.closure_reason is ClosureReason.returned_to_school
    assert found[upn(2)].status is CaseStatus.ESCALATED
    with Session(get_engine(db)) as s:
        texts = [e.text for e in s.exec(select(CaseEvent).where(CaseEvent.kind == "returned")
                                        .order_by(col(CaseEvent.referral_id)))]
    assert texts[0].startswith(f"The register shows the pupil back in school on "
                               f"{days[20].isoformat()}")
    assert "stays open" in texts[1]
    # The old absence does not open a new case; a new run of 40 sessions does.
    counts = run(db, write(tmp_path / "again.csv", marks(upn(1), days[22:25], "N")))
    assert counts["cases_created"] == 0
    later = school_days(days[24] + timedelta(days=1), 20)
    counts = run(db, write(tmp_path / "later.csv", marks(upn(1), later, "N")))
    assert counts["cases_created"] == 1


def test_bad_rows_are_quarantined_with_reasons_and_good_rows_kept(
        db: str, tmp_path: Path) -> None:
    good = list(marks(upn(1), school_days(SPRING, 2), "N"))
    bad_upn = upn(2)[:-1] + ("A" if upn(2)[-1] != "A" else "B")
    rows = [*good,
            [bad_upn, "116001", "2026-01-05", "AM", "N", "", "", "", "", ""],
            [upn(3), "11600", "2026-01-05", "AM", "N", "", "", "", "", ""],
            [upn(3), "116001", "31/02/2026", "AM", "N", "", "", "", "", ""],
            [upn(3), "116001", "2026-01-05", "EVE", "N", "", "", "", "", ""],
            [upn(3), "116001", "2026-01-05", "AM", "QQ", "", "", "", "", ""],
            [upn(3), "116001", "2026-01-05", "PM", "", "", "", "", "", ""]]  # no mark yet
    counts = run(db, write(tmp_path / "bad.csv", rows))
    assert (counts["rows"], counts["stored"], counts["quarantined"], counts["no_mark"]) == (
        10, 4, 5, 1)
    with Session(get_engine(db)) as s:
        kept = s.exec(select(QuarantinedRecord).order_by(col(QuarantinedRecord.line_no))).all()
        assert len(s.exec(select(AttendanceMark)).all()) == 4
    assert [q.line_no for q in kept] == [6, 7, 8, 9, 10]
    assert [q.reasons[0].split(":")[0] for q in kept] == ["upn", "urn", "date", "session",
                                                          "code"]
    assert all(q.source == "attendance:bad.csv" for q in kept)
    assert bad_upn in kept[0].raw and bad_upn not in " ".join(kept[0].reasons)


def test_a_reimported_file_keeps_one_quarantine_row_per_bad_line(
        db: str, tmp_path: Path) -> None:
    # The same quarantine as referral intake (tasks/quarantine.py): one row per line of a
    # source, so importing the file again, or again after a crash, adds none.
    rows = [*marks(upn(1), school_days(SPRING, 1), "N"),
            [upn(3), "11600", "2026-01-05", "AM", "N", "", "", "", "", ""],
            [upn(3), "116001", "2026-01-05", "AM", "QQ", "", "", "", "", ""]]
    path = write(tmp_path / "again.csv", rows)
    run(db, path)
    run(db, path, batch_size=1)
    with Session(get_engine(db)) as s:
        kept = s.exec(select(QuarantinedRecord).order_by(col(QuarantinedRecord.line_no))).all()
    assert [q.line_no for q in kept] == [4, 5]
    assert all(q.record_key and q.raw_sha256 for q in kept)


def test_a_file_without_a_required_column_is_refused_and_nothing_stored(
        db: str, tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", [[upn(1), "2026-01-05", "AM", "N"]],
                 header=["UPN", "Date", "Session", "Code"])
    with pytest.raises(AttendanceFileError, match="no column for urn"):
        run(db, path)
    with Session(get_engine(db)) as s:
        assert s.exec(select(AttendancePupil)).all() == []


def test_the_usual_mis_export_shape_is_accepted(db: str, tmp_path: Path) -> None:
    # A BOM, MIS-style headers in another order, UK dates, A/P sessions, extra columns.
    days = school_days(SPRING, 20)
    lines = ["\ufeffLegal Surname,Legal Forename,Date of Birth,UPN,School URN,"
             "Attendance Date,AM/PM,Mark,Reg Group"]
    for d in days:
        for sess in ("A", "P"):
            lines.append(f"Quill,Zofia,17/03/2014,{upn(9)},116001,{d:%d/%m/%Y},{sess},n,7Q")
    path = tmp_path / "sims.csv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    counts = run(db, path)
    assert counts["stored"] == 40 and counts["cases_created"] == 1
    with Session(get_engine(db)) as s:
        child = s.exec(select(Child)).one()
    assert (child.forename, child.surname, child.dob) == ("Zofia", "Quill", date(2014, 3, 17))


def test_a_pupil_who_cannot_be_made_a_case_is_listed_for_an_officer(
        db: str, tmp_path: Path) -> None:
    days = school_days(SPRING, 20)
    rows = [*marks(upn(1), days, "N", dob=""), *marks(upn(2), days, "N", urn="999999")]
    counts = run(db, write(tmp_path / "m.csv", rows))
    assert counts["details_needed"] == 2 and counts["cases_created"] == 0
    items = [i for i in build_worklist(db, TODAY) if i.why is Why.attendance_details]
    assert len(items) == 2
    assert all(upn(1) not in i.detail and upn(2) not in i.detail for i in items)
    assert any("date of birth" in i.detail for i in items)
    assert any("999999 is not known" in i.detail for i in items)
    # The school is added: the next run makes the case without a new file.
    with Session(get_engine(db)) as s:
        s.add(School(urn="999999", name="Elm", la_code="850", email="office@elm.example.org"))
        s.commit()
    assert assess_pupils(attendance_config(db_url=db), TODAY).cases_created == 1


def _peak_import(db: str, path: Path) -> int:
    tracemalloc.start()
    try:
        import_marks(path, attendance_config(db_url=db, batch_size=1000))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_marks(db: str, tmp_path: Path) -> None:
    days = school_days(date(2025, 9, 1), 190)

    def file(name: str, pupils: int) -> Path:
        return write(tmp_path / name, (row for n in range(pupils)
                                       for row in marks(upn(1000 + n), days, "/")))

    small = file("small.csv", 5)    # 1,900 marks
    large = file("large.csv", 30)   # 11,400 marks
    _peak_import(db, small)  # warm caches (imports, compiled statements)
    peak_small = _peak_import(db, small)
    peak_large = _peak_import(db, large)
    assert peak_large < peak_small * 1.5 + 512 * 1024, (peak_small, peak_large)


def test_header_list_is_what_the_readme_documents() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "### Attendance file" in readme
    for name in HEADER:
        assert f"`{name}`" in readme


def test_the_attendance_deployment_runs_the_flow_and_publishes_counts_only(
        db: str, tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import importlib

    import yaml
    from prefect.client.orchestration import get_client

    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "prefect.yaml").read_text())
    dep = next(d for d in spec["deployments"] if d["name"] == "attendance")
    file, name = dep["entrypoint"].split(":")
    module = file.removesuffix(".py").replace("/", ".")
    flow = getattr(importlib.import_module(module), name)
    monkeypatch.setenv("CME_DATABASE_URL", db)
    monkeypatch.setenv("CME_OUTBOX_DIR", str(tmp_path / "outbox"))
    path = write(tmp_path / "m.csv", marks(upn(1), school_days(SPRING, 20), "N",
                                           forename="Zofia", surname="Quill"))
    counts = asyncio.run(flow(path=str(path), today=TODAY))
    assert counts["cases_created"] == 1 and counts["stored"] == 40

    async def artifact() -> str:
        async with get_client() as client:
            a = await client.read_latest_artifacts()
            return str([x.data for x in a if x.key == "attendance-summary"])

    data = asyncio.run(artifact())
    assert "cases created" in data
    assert upn(1) not in data and "Zofia" not in data and "Quill" not in data
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1


def test_the_attendance_run_form_is_in_words() -> None:
    from prefect.utilities.callables import parameter_schema

    from flows.attendance import attendance

    props = parameter_schema(attendance.fn).model_dump()["properties"]
    assert {k: v["title"] for k, v in props.items()} == {"path": "Attendance file",
                                                         "today": "As of"}
    assert all(v.get("description") for v in props.values())


def test_retention_deletes_the_attendance_data_of_an_anonymised_child(
        db: str, tmp_path: Path) -> None:
    from tasks.retention import apply_retention

    run(db, write(tmp_path / "m.csv", [*marks(upn(1), school_days(SPRING, 20), "N"),
                                       *marks(upn(2), school_days(SPRING, 20), "N")]))
    with Session(get_engine(db)) as s:
        r1 = s.exec(select(Referral).join(Child).where(Child.upn == upn(1))).one()
        r1.status, r1.closed_at = CaseStatus.CLOSED, datetime(2026, 4, 1, tzinfo=UTC)
        s.add(r1)
        s.commit()
    apply_retention(db, now=datetime(2033, 6, 1, tzinfo=UTC), years=6)
    with Session(get_engine(db)) as s:
        left = s.exec(select(AttendancePupil.upn)).all()
        pupil_ids = set(s.exec(select(AttendanceMark.pupil_id)).all())
    assert left == [upn(2)]  # the open case's pupil is kept
    assert len(pupil_ids) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["import", "attendance"], "cme import attendance FILE"),
    (["import", "attendance", "no-such-marks.csv"], "no such file"),
])
def test_cme_import_attendance_says_what_is_wrong(args: list[str], message: str,
                                                  workdir: Path) -> None:
    from typer.testing import CliRunner

    from cme.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert message in str(result.exception)
