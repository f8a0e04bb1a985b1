"""The package's public surface: names, typing marker, purity, citations."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import policy

POLICY_DIR = Path(policy.__file__).parent

FIXED_API = [
    "upn_check_letter",
    "is_valid_upn",
    "upn_problem",
    "compulsory_school_age",
    "is_compulsory_school_age",
    "year_group",
    "add_working_days",
    "is_working_day",
    "acknowledgement_due",
    "assess_pmooe",
    "PmooeFinding",
    "classify",
    "Classification",
    "signpost_for",
    "decide",
    "CaseFacts",
    "CheckResult",
    "Decision",
    "Action",
    "ActionKind",
    "CaseStatus",
    "CaseOutcome",
    "next_check_due",
]

# Standard library modules and third-party packages policy/ may import: no I/O, no Prefect.
ALLOWED_IMPORTS = {
    "__future__",
    "calendar",
    "collections",
    "dataclasses",
    "datetime",
    "enum",
    "functools",
    "hashlib",
    "holidays",
    "policy",
    "typing",
    "zoneinfo",
}


def test_all_lists_exactly_what_exists() -> None:
    assert sorted(policy.__all__) == sorted(set(policy.__all__))
    for name in policy.__all__:
        assert hasattr(policy, name), name


@pytest.mark.parametrize("name", FIXED_API)
def test_fixed_name_is_exported(name: str) -> None:
    assert name in policy.__all__


def test_signatures_fixed_by_the_issue() -> None:
    assert str(inspect.signature(policy.assess_pmooe)).startswith(
        "(marks: 'Iterable[Mark]', *, leave_end: 'date | None' = None, "
        "transition_start: 'date | None' = None)"
    )
    params = inspect.signature(policy.classify).parameters
    assert list(params) == ["dob", "on", "on_roll", "education_otherwise", "reduced_hours", "pmooe"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    decide_params = inspect.signature(policy.decide).parameters
    assert list(decide_params)[:4] == ["case", "results", "today", "min_rounds"]
    assert decide_params["min_rounds"].default == 3
    # Issue 14 added the automatic set and the match threshold, keyword-only like min_rounds.
    assert list(decide_params)[4:] == ["automatic", "match_threshold"]
    assert all(decide_params[n].kind is inspect.Parameter.KEYWORD_ONLY
               for n in ("min_rounds", "automatic", "match_threshold"))


def test_py_typed_marker_is_present() -> None:
    assert (POLICY_DIR / "py.typed").is_file()


@pytest.mark.parametrize("path", sorted(POLICY_DIR.glob("*.py")), ids=lambda p: p.name)
def test_policy_imports_nothing_that_does_io(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
        else:
            continue
        assert roots <= ALLOWED_IMPORTS, f"{path.name} imports {roots - ALLOWED_IMPORTS}"


@pytest.mark.parametrize(
    "name",
    [
        "upn_check_letter",
        "is_valid_upn",
        "compulsory_school_age",
        "is_compulsory_school_age",
        "year_group",
        "add_working_days",
        "is_working_day",
        "acknowledgement_due",
        "assess_pmooe",
        "classify",
        "decide",
    ],
)
def test_each_rule_cites_the_guidance(name: str) -> None:
    # Issue 16: the project's own docs/guidance.md, never a file outside the repository.
    doc = getattr(policy, name).__doc__ or ""
    assert "docs/guidance.md" in doc and "DOMAIN.md" not in doc
