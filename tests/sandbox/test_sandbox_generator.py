"""The synthetic world generator."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

from typer.testing import CliRunner

from cme.cli_sandbox import app
from policy import is_valid_upn
from sandbox import SCENARIOS, World, generate_world, load_world


def test_same_seed_same_world_and_all_scenarios_present() -> None:
    a, ra = generate_world(60, seed=11)
    b, rb = generate_world(60, seed=11)
    assert a == b and ra == rb
    assert generate_world(60, seed=12)[1] != ra
    assert set(Counter(c.scenario for c in a.children)) == set(SCENARIOS)


def test_referrals_match_the_world_and_have_the_documented_shape() -> None:
    world, refs = generate_world(40, seed=3)
    assert len(refs) == 41  # one duplicate referral of the same child
    refs_by_upn = Counter(r["child"]["upn"] for r in refs)
    assert max(refs_by_upn.values()) == 2
    assert len({r["mendix_reference"] for r in refs}) == len(refs)
    assert world.referrals == refs
    by_upn = {c.upn: c for c in world.children}
    for r in refs:
        assert set(r) == {"mendix_reference", "kind", "received_at", "school", "child",
                          "parents", "reason", "last_attended", "on_roll",
                          "education_otherwise", "reduced_hours", "school_actions",
                          "safeguarding_concern", "service_child", "changed_at"}
        child = by_upn[r["child"]["upn"]]
        assert r["child"]["surname"] == child.surname
        assert r["child"]["address"]["postcode"] == child.postcode
        assert r["school"]["la_code"] == "850" and len(r["school"]["urn"]) == 6
        assert r["mendix_reference"].startswith("CME-2026-")
        assert r["received_at"] <= r["changed_at"]
        valid = is_valid_upn(r["child"]["upn"])
        assert valid == (child.scenario != "malformed_upn")
        assert r["child"]["upn"][1:4] == "850"
        assert r["reduced_hours"] == (child.scenario == "rhp")


def test_cli_generate_writes_world_and_jsonl(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "--children", "15", "--seed", "2",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    world = load_world(tmp_path / "world.json")
    lines = (tmp_path / "referrals.jsonl").read_text().splitlines()
    assert len(world.children) == 15 and len(lines) == 16
    assert json.loads(lines[0])["mendix_reference"] == "CME-2026-000001"


def test_example_world_and_schemas_are_valid_and_current() -> None:
    root = Path(__file__).resolve().parents[2] / "sandbox" / "worlds"
    World.model_validate_json((root / "example.json").read_text())
    schema = json.loads((root / "world.schema.json").read_text())
    assert schema == json.loads(json.dumps(World.model_json_schema()))


def test_a_national_scale_world_has_enough_distinct_schools_to_draw_from() -> None:
    # 50,000 children once asked for 3,333 schools from 2,400 establishment numbers, and
    # the generator looped for ever looking for a free one.
    from sandbox._generator import MAX_SCHOOLS, _Gen, school_count

    assert school_count(200) == 13 and school_count(10_000) == 666
    assert school_count(50_000) == MAX_SCHOOLS
    schools = _Gen(7, date(2026, 3, 2)).schools(school_count(50_000))
    assert len({s.estab for s in schools}) == len(schools) == MAX_SCHOOLS
    assert len({s.urn for s in schools}) == MAX_SCHOOLS
