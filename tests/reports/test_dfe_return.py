"""The termly DfE return (issue 19, part 1): counts worked out by hand for a known world.

Census date 2026-10-01, autumn term from 2026-09-01 (flows/data/dfe_return.json). Synthetic
children only.
"""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from cme.cli import app
from models import (
    CaseStatus,
    Child,
    ClosureReason,
    Referral,
    ReferralKind,
    School,
    get_engine,
)
from tasks.dfe_return import NOT_RECORDED, build_return, load_spec

CENSUS = date(2026, 10, 1)
NOT_ON_ROLL = "Not on roll and not receiving suitable education otherwise"
EHE = "Elective home education assessed as unsuitable"


def at(day: str) -> datetime:
    return datetime.fromisoformat(day + "T10:00:00").replace(tzinfo=UTC)


def seed(db: str) -> None:
    with Session(get_engine(db)) as s:
        school = School(urn="116001", name="Weirside", la_code="850", email="o@w.example.org")
        s.add(school)
        s.flush()

        def case(ref: str, received: str, *, dob: str = "2015-05-01", sex: str | None = "F",
                 reason: str = "not_registered", closed: str | None = None,
                 why: ClosureReason | None = None, kind: ReferralKind = ReferralKind.CME,
                 classification: str = "CME", status: CaseStatus | None = None,
                 **kw: Any) -> Referral:
            child = Child(forename="T", surname=ref, dob=date.fromisoformat(dob), sex=sex,
                          match_key=ref)
            s.add(child)
            s.flush()
            r = Referral(mendix_reference=ref, kind=kind, school_id=school.id or 0,
                         child_id=child.id or 0, received_at=at(received),
                         acknowledgement_due=date(2026, 1, 1), classification=classification,
                         classification_reason=reason,
                         status=status or (CaseStatus.CLOSED if closed else CaseStatus.TRACING),
                         closed_at=at(closed) if closed else None, closure_reason=why, **kw)
            s.add(r)
            s.flush()
            return r

        a = case("A", "2026-09-10")                                   # 21 days, Year 7
        case("B", "2026-06-01", dob="2012-01-10", sex="M", reason="ehe_unsuitable")  # Year 10
        case("C", "2026-10-02")                                       # after the census date
        case("D", "2026-05-01", closed="2026-09-30", why=ClosureReason.on_roll_elsewhere)
        case("E", "2026-03-01", dob="2016-02-01", sex=None, closed="2026-10-01",
             why=ClosureReason.on_roll_elsewhere)                     # closed ON the census day
        case("F", "2026-09-15", reason="")                            # no reason recorded
        case("G", "2026-09-12", duplicate_of_id=a.id)                 # linked duplicate of A
        case("H", "2026-09-12", classification="NOT_CME", reason="on_roll",
             closed="2026-09-12", why=ClosureReason.not_cme)
        case("I", "2026-09-12", kind=ReferralKind.PMOOE, classification="PMOOE",
             reason="pmooe_continuous_absence")
        case("J", "2026-09-05", status=CaseStatus.CLOSED)             # closed, no closing date
        case("K", "2026-02-01", closed="2026-08-20", why=ClosureReason.left_uk)  # before term
        s.commit()


@pytest.fixture
def world(clean_db: str) -> str:
    seed(clean_db)
    return clean_db


def test_counts_match_the_hand_worked_figures(world: str) -> None:
    ret = build_return(world, CENSUS)
    assert ret.term_start == date(2026, 9, 1)
    got = {(m, c): n for m, c, n in ret.rows}
    assert got[("cme_on_census_date", "")] == 4                  # A, B, E, F
    assert got[("time_missing", "Less than 4 weeks")] == 2        # A 21 days, F 16 days
    assert got[("time_missing", "4 weeks to less than 12 weeks")] == 0
    assert got[("time_missing", "12 weeks to less than 26 weeks")] == 1   # B 122 days
    assert got[("time_missing", "26 weeks or more")] == 1         # E 214 days
    assert got[("primary_reason", NOT_ON_ROLL)] == 2              # A, E
    assert got[("primary_reason", EHE)] == 1                      # B
    assert got[("primary_reason", NOT_RECORDED)] == 1             # F
    assert (got[("sex", "Female")], got[("sex", "Male")], got[("sex", NOT_RECORDED)]) == (
        2, 1, 1)
    assert (got[("year_group", "Year 6")], got[("year_group", "Year 7")],
            got[("year_group", "Year 10")]) == (1, 2, 1)
    assert got[("identified_during_term", "")] == 2               # A, F (C is after)
    assert got[("stopped_during_term", "")] == 1                  # D (K closed before term)
    assert got[("stopped_reason", "Registered at a school")] == 1


def test_a_child_who_became_cme_after_the_census_date_is_not_counted(world: str) -> None:
    before = build_return(world, CENSUS).count("cme_on_census_date")
    after = build_return(world, date(2026, 10, 2)).count("cme_on_census_date")
    assert (before, after) == (4, 4)  # C arrives on the 2nd, E closed on the 1st leaves


def test_a_case_closed_the_day_before_is_not_counted_and_on_the_day_is(world: str) -> None:
    # D closed 2026-09-30: counted on the 30th, not on the 1st; E closed on the 1st: counted.
    assert build_return(world, date(2026, 9, 30)).count("cme_on_census_date") == 5  # +D, -C
    ret = build_return(world, CENSUS)
    assert ret.count("sex", NOT_RECORDED) == 1  # E, closed on the census day, is counted


def test_cases_that_cannot_be_counted_cleanly_are_listed_by_reference(world: str) -> None:
    problems = dict(build_return(world, CENSUS).problems)
    assert set(problems) == {"E", "F", "J"}
    assert "sex" in problems["E"] and "primary reason" in problems["F"]
    assert "conflicting status" in problems["J"]


def test_the_data_file_says_it_is_not_verified_and_maps_only_known_codes() -> None:
    from models import ClosureReason as CR
    from policy import ClassificationReason

    spec = load_spec()
    assert spec.verified is False and "NOT VERIFIED" in spec.note
    assert set(spec.stopped_reason) <= {c.value for c in CR}
    assert set(spec.primary_reason) <= {c.value for c in ClassificationReason}
    days = [b["min_days"] for b in spec.bands]
    assert days == sorted(days) and days[0] == 0 and spec.bands[-1]["max_days"] is None


def test_an_edited_mapping_table_changes_the_counts(world: str) -> None:
    import json
    from importlib import resources

    raw = json.loads(resources.files("flows.data").joinpath("dfe_return.json").read_text())
    raw["primary_reason"]["not_registered"] = "Awaiting a school place"
    ret = build_return(world, CENSUS, load_spec(json.dumps(raw)))
    assert ret.count("primary_reason", "Awaiting a school place") == 2


def test_cli_writes_the_counts_and_the_validation_list(world: str, tmp_path: Path) -> None:
    out = tmp_path / "return.csv"
    result = CliRunner().invoke(app, ["report", "dfe-return", "--census-date", "2026-10-01",
                                      "--out", str(out)], env={"CME_DATABASE_URL": world})
    assert result.exit_code == 0, result.output
    assert "not verified" in result.output
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["measure", "category", "count"]
    assert ["cme_on_census_date", "", "4"] in rows
    problems = list(csv.reader((tmp_path / "return-validation.csv").open()))
    assert sorted(r[0] for r in problems[1:]) == ["E", "F", "J"]
    text = out.read_text()
    assert "T," not in text and "2015-05-01" not in text  # counts only


def test_the_dfe_return_deployment_publishes_counts_only(
        world: str, prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from prefect.client.orchestration import get_client

    from flows.dfe_return import dfe_return

    monkeypatch.setenv("CME_DATABASE_URL", world)
    result = asyncio.run(dfe_return(census_date=CENSUS))
    assert result["cases_to_fix"] == 3

    async def artifact() -> Any:
        async with get_client() as client:
            return [a for a in await client.read_latest_artifacts() if a.key == "dfe-return"]

    [a] = asyncio.run(artifact())
    assert "'count': 4" in str(a.data) or '"count": 4' in str(a.data)
    assert "NOT verified" in (a.description or "")
