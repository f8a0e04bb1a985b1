"""This LA's code, name and duty inbox come from the settings only (issue 16, point 6; README,
Configuration): no production module outside ``flows/settings.py`` writes them, the configs
the tasks receive have no default for them, and a night configured for another LA treats
that LA as home."""

from __future__ import annotations

import ast
import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

import policy
from flows._config import trace_config
from flows.settings import Settings
from models import Referral, School
from tasks.attendance import AttendanceConfig
from tasks.dispatch import DispatchConfig
from tasks.intake import IntakeConfig
from tasks.tracing import TraceConfig, case_facts

ROOT = Path(__file__).resolve().parents[2]
#: The production packages. The simulator (sandbox/) and the connector conformance kit
#: (connectors/testing.py) are fixtures: their synthetic world is set in one LA on purpose.
PACKAGES = ("cme", "flows", "tasks", "connectors", "notifications", "models", "policy")
FIXTURES = {Path("flows/settings.py"), Path("connectors/testing.py")}
LA_SETTINGS = ("home_la", "la_name", "duty_inbox")


def _default(name: str) -> str:
    value = Settings.model_fields[name].default
    assert isinstance(value, str)
    return value


def _string_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant in the module that is not a docstring."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_no_production_module_writes_the_la_code_name_or_duty_inbox() -> None:
    home_la, la_name, duty_inbox = (_default(n) for n in LA_SETTINGS)
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel in FIXTURES:
                continue
            for line, text in _string_literals(ast.parse(path.read_text(encoding="utf-8"))):
                if text.strip() == home_la or la_name in text or duty_inbox in text:
                    found.append(f"{rel}:{line}: {text!r}")
    assert not found, "set in the settings only (flows/settings.py):\n" + "\n".join(found)


def test_policy_holds_no_home_la_of_its_own() -> None:
    assert not hasattr(policy, "HOME_LA")
    with pytest.raises(TypeError, match="home_la"):
        policy.CaseFacts(reference="R", school_urn="116000", received=date(2026, 1, 12),
                         school_la="850")  # type: ignore[call-arg]


@pytest.mark.parametrize(("config", "given"), [
    (TraceConfig, {"db_url": "sqlite://", "connectors": (), "today": date(2026, 3, 2),
                   "run_id": "r"}),
    (IntakeConfig, {"db_url": "sqlite://"}),
    (AttendanceConfig, {"db_url": "sqlite://"}),
    (DispatchConfig, {"db_url": "sqlite://", "channel": "file", "channel_options": {}}),
])
def test_the_tasks_configs_have_no_default_la(config: type, given: dict[str, object]) -> None:
    fields = {f.name: f for f in dataclasses.fields(config)}
    for name in ("home_la", "la_name", "duty_inbox", "sender_name"):
        if name in fields:
            assert fields[name].default is dataclasses.MISSING, (config.__name__, name)
    with pytest.raises(TypeError):
        config(**given)


def _decision(settings: Settings, school_la: str) -> policy.Decision:
    """The rulebook's decision, on facts built as a night builds them from ``settings``, for
    a referral from a school in ``school_la`` whose child the housing records put in LA 116."""
    cfg = trace_config(date(2026, 3, 2), settings)
    referral = Referral(mendix_reference="CME-2026-900201", kind="CME", school_id=1,
                        child_id=1, received_at=datetime(2026, 1, 12, 10, tzinfo=UTC),
                        acknowledgement_due=date(2026, 1, 14))
    school = School(urn="116000", name="Test Primary", la_code=school_la,
                    email="office@school.example.org")
    facts = case_facts(referral, school, [], cfg)
    housing = policy.CheckResult(connector="housing", outcome=policy.CheckOutcome.FOUND,
                                 address_key="k-1", postcode="SO23 8UJ", la_code="116",
                                 match_basis=policy.MatchBasis.IDENTIFIER)
    return policy.decide(facts, [housing], today=date(2026, 3, 2))


def test_a_night_configured_for_another_la_treats_that_la_as_home(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'unused.db'}"
    ours = Settings(_env_file=None, database_url=db, home_la="116",  # type: ignore[call-arg]
                    la_name="Testshire Council", duty_inbox="duty@testshire.example.org")
    at_home = _decision(ours, school_la="116")
    assert at_home.outcome is policy.CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL
    assert not [a for a in at_home.actions if a.kind is policy.ActionKind.NOTIFY_OTHER_LA]
    # The same evidence, for the LA the settings name by default: LA 116 is another LA.
    default = Settings(_env_file=None, database_url=db)  # type: ignore[call-arg]
    elsewhere = _decision(default, school_la=default.home_la)
    assert elsewhere.outcome is policy.CaseOutcome.RESIDENT_OTHER_LA
    assert [a.la_code for a in elsewhere.actions
            if a.kind is policy.ActionKind.NOTIFY_OTHER_LA] == ["116"]
