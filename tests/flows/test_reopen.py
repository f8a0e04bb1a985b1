"""Reopening a closed case (issue 16, point 3): an officer's flow on the real Prefect harness;
``trace-referral`` on a closed case names it; tracing resumes; a concern goes to a person;
every status write goes through the one lifecycle module."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_decisions import TODAY, Hand
from test_officer_forms import (
    test_choices_read_as_words as _choices_read_as_words,
)
from test_officer_forms import (
    test_every_field_has_a_title_in_words_not_its_parameter_name as _titled,
)
from test_officer_forms import (
    test_every_form_field_is_described_for_an_officer as _described,
)
from test_officer_forms import (
    test_no_regular_expressions_and_no_null_toggles_in_the_forms as _no_patterns,
)

from flows.adhoc import REOPEN_FLOW, reopen_case
from models import CaseStatus, ClosureReason

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def hand(prefect_harness: None, clean_db: str, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Hand:
    return Hand(tmp_path, clean_db, monkeypatch)


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def _close(ref: str, note: str = "") -> None:
    from flows.adhoc import close_case

    _run(close_case(reference=ref, reason=ClosureReason.other, note=note or "settled"))


def _reopen(ref: str, reason: str = "missing_again", note: str = "", **kw: Any):  # type: ignore[no-untyped-def]
    from flows.adhoc import ReopenReason

    return _run(reopen_case(reference=ref, reason=ReopenReason[reason], note=note,
                            return_state=True, **kw))


def _trace(ref: str):  # type: ignore[no-untyped-def]
    from flows.adhoc import trace_referral

    return _run(trace_referral(reference=ref, return_state=True))


def test_the_reopen_form_is_in_words_like_the_other_officer_flows() -> None:
    for check in (_described, _titled, _no_patterns, _choices_read_as_words):
        check(reopen_case)


def test_reopen_case_is_deployed_like_the_other_officer_flows() -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    (dep,) = [d for d in spec["deployments"] if d["name"] == REOPEN_FLOW]
    assert dep["entrypoint"] == "flows/adhoc.py:reopen_case"
    assert "worklist" in dep["description"] and dep["work_pool"]
    assert reopen_case.name == REOPEN_FLOW


def test_a_closed_case_is_reopened_and_tracing_resumes(hand: Hand) -> None:
    ref = hand.add(21)
    hand.start()
    hand.night()
    _close(ref)
    closed = hand.case(ref)
    assert closed.status is CaseStatus.CLOSED and closed.next_check_due is None

    # trace-referral names the flow that reopens a case, and that flow exists.
    state = _trace(ref)
    assert state.is_failed()
    assert state.message == (f"Case {ref} is closed: reopen it with {REOPEN_FLOW} before "
                             "tracing")
    assert REOPEN_FLOW in state.message and reopen_case.name == REOPEN_FLOW

    # Typed as an officer might: lower case, spaces around it.
    state = _reopen(f"  {ref.lower()} ", note="school rang: absent again")
    assert state.is_completed(), state.message
    result = state.result()
    assert result == {"reference": ref, "status": "tracing", "changed": True}
    r = hand.case(ref)
    assert r.status is CaseStatus.TRACING
    assert r.closed_at is None and r.closure_reason is None and r.outcome is None
    assert r.next_check_due is not None and r.next_check_due <= TODAY
    (line,) = hand.events(ref, "reopened")
    assert line.actor == "officer" and "missing_again" in line.text
    assert "it was closed (other)" in line.text
    assert "school rang: absent again" in line.text

    # The run is named after what it is, with the reference only.
    from prefect.client.orchestration import get_client

    async def name() -> str:
        async with get_client() as client:
            run = await client.read_flow_run(state.state_details.flow_run_id)
            return run.name

    assert _run(name()) == f"reopen {ref}"

    # Tracing resumes: an officer's trace now runs, and the rulebook decides a new round.
    rounds = r.tracing_rounds
    state = _trace(ref)
    assert state.is_completed(), state.message
    after = hand.case(ref)
    assert after.tracing_rounds == rounds + 1 and after.status is not CaseStatus.CLOSED
    assert hand.events(ref, "decision")[-1].text.startswith(f"Round {rounds + 1}")


def test_a_case_with_a_safeguarding_concern_reopens_escalated_for_a_person(hand: Hand) -> None:
    ref = hand.add(22, referral={"safeguarding_concern": True})
    hand.start()
    _close(ref, note="IARF sent to Children's Services")
    assert hand.case(ref).status is CaseStatus.CLOSED
    state = _reopen(ref, "new_information")
    assert state.is_completed(), state.message
    assert hand.case(ref).status is CaseStatus.ESCALATED
    assert "escalated for a person" in hand.events(ref, "reopened")[-1].text
    # The rulebook keeps it there: a concern is never decided away.
    hand.night()
    assert hand.case(ref).status is CaseStatus.ESCALATED


def test_reopening_an_open_case_fails_with_one_line_and_changes_nothing(hand: Hand) -> None:
    ref = hand.add(23)
    hand.start()
    hand.night()
    before = hand.case(ref)
    state = _reopen(ref)
    assert state.is_failed()
    a = "an" if before.status.value[0] in "aeiou" else "a"
    assert state.message == (f"Case {ref}: reopen is not allowed on {a} "
                             f"{before.status.value} case (only closed): only a closed case "
                             "can be reopened")
    assert "Traceback" not in state.message and "\n" not in state.message
    after = hand.case(ref)
    assert (after.status, after.updated_at) == (before.status, before.updated_at)
    assert hand.events(ref, "reopened") == []


def test_a_reason_is_required_and_other_needs_a_note(hand: Hand) -> None:
    ref = hand.add(24)
    hand.start()
    _close(ref)
    state = _run(reopen_case(reference=ref, return_state=True))  # type: ignore[call-arg]
    assert state.is_failed() and hand.case(ref).status is CaseStatus.CLOSED
    state = _reopen(ref, "other")
    assert state.is_failed() and "Say in the note why" in state.message
    assert hand.case(ref).status is CaseStatus.CLOSED
    assert _reopen(ref, "other", note="closed in error by the team").is_completed()


def test_a_duplicate_is_not_reopened_its_case_carries_the_tracing(hand: Hand) -> None:
    first = hand.add(25)
    upn = hand.children[-1]["upn"]
    second = hand.add(26, referral={"child": {"upn": upn}})
    hand.start()
    assert hand.case(second).status is CaseStatus.CLOSED
    state = _reopen(second)
    assert state.is_failed()
    assert state.message == (f"Case {second} is a duplicate of case {first}: reopen or trace "
                             "that case instead")
    assert hand.case(second).status is CaseStatus.CLOSED


def test_an_unknown_reference_fails_at_once(hand: Hand) -> None:
    hand.start()
    state = _reopen(" cme-2026-00001 ")
    assert state.is_failed()
    assert state.message == "No case with reference CME-2026-00001 — check the worklist"


def test_an_illegal_change_in_an_officers_flow_is_one_line_and_changes_nothing(
        hand: Hand) -> None:
    from sqlmodel import Session, select

    from flows.adhoc import Agency, AgencyAnswer, record_agency_response
    from models import Referral, get_engine

    ref = hand.add(27)
    hand.start()
    hand.night()
    # A case left escalated with no concern on record (data from before concerns were kept):
    # the rulebook would take it back to tracing, which only a person may do.
    with Session(get_engine(hand.db_url)) as s:
        r = s.exec(select(Referral).where(Referral.mendix_reference == ref)).one()
        r.status = CaseStatus.ESCALATED
        s.add(r)
        s.commit()
    decisions = len(hand.events(ref, "decision"))
    state = _run(record_agency_response(reference=ref, agency=Agency.lpd,
                                        answer=AgencyAnswer.not_found, return_state=True))
    assert state.is_failed()
    assert state.message.startswith(f"Case {ref}: record_decision cannot take an escalated "
                                    "case to ")
    assert "\n" not in state.message and "Traceback" not in state.message
    assert hand.case(ref).status is CaseStatus.ESCALATED
    assert len(hand.events(ref, "decision")) == decisions


# --- one place writes a case's status -----------------------------------------------------

CODE = ("flows", "tasks", "models", "notifications", "cme", "sandbox")


def _status_writes(path: Path) -> list[str]:
    """Every assignment to ``<x>.status`` and every ``status=CaseStatus...`` keyword."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            if (isinstance(t, ast.Attribute) and t.attr == "status"
                    and not (isinstance(t.value, ast.Name) and t.value.id == "self")):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
        # A row built or updated with a status: Referral(status=...), update(...).values(...).
        if isinstance(node, ast.Call) and (ast.unparse(node.func) == "Referral"
                                           or ast.unparse(node.func).endswith(".values")):
            if any(k.arg == "status" and "CaseStatus" in ast.unparse(k.value)
                   for k in node.keywords):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_only_the_lifecycle_module_writes_a_cases_status() -> None:
    writes = [w for d in CODE for p in sorted((REPO / d).rglob("*.py"))
              for w in _status_writes(p)]
    assert writes and all(w.startswith("tasks/lifecycle.py:") for w in writes), writes
