"""The Prefect UI builds an officer's run form from each flow's parameter schema: every field
must say what to type in words, optional fields are simply blank, choices read as words, and
a reference that is wrong ends the run at once with a message an officer understands."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from prefect.utilities.callables import parameter_schema

from flows.adhoc import (
    case_report,
    close_case,
    decide_case,
    normalise_reference,
    record_agency_response,
    trace_referral,
)
from flows.waiting import DecisionForm, await_decision
from flows.worklist import worklist

OFFICER_FLOWS = [trace_referral, record_agency_response, decide_case, close_case, case_report,
                 await_decision, worklist]


def _props(flow) -> dict:  # type: ignore[no-untyped-def]
    return parameter_schema(flow.fn).model_dump()["properties"]


@pytest.mark.parametrize("flow", OFFICER_FLOWS, ids=lambda f: f.name)
def test_every_form_field_is_described_for_an_officer(flow) -> None:  # type: ignore[no-untyped-def]
    props = _props(flow)
    undescribed = [name for name, p in props.items() if not p.get("description")]
    assert undescribed == []


@pytest.mark.parametrize("flow", OFFICER_FLOWS, ids=lambda f: f.name)
def test_every_field_has_a_title_in_words_not_its_parameter_name(flow) -> None:  # type: ignore[no-untyped-def]
    for name, p in _props(flow).items():
        title = p.get("title", "")
        assert title and title != name and "_" not in title, (name, title)
        assert title[0].isupper(), (name, title)


@pytest.mark.parametrize("flow", OFFICER_FLOWS, ids=lambda f: f.name)
def test_no_regular_expressions_and_no_null_toggles_in_the_forms(flow) -> None:  # type: ignore[no-untyped-def]
    text = str(_props(flow))
    assert "pattern" not in text  # the UI would show the expression as the error message
    assert "'null'" not in text and "anyOf" not in text  # optional fields are simply blank


@pytest.mark.parametrize("flow", OFFICER_FLOWS, ids=lambda f: f.name)
def test_choices_read_as_words(flow) -> None:  # type: ignore[no-untyped-def]
    for name, p in _props(flow).items():
        for value in p.get("enum", []) + p.get("items", {}).get("enum", []):
            assert " " in value and not re.fullmatch(r"[a-z_]+", value), (name, value)


def test_the_waiting_runs_form_is_in_words_too() -> None:
    schema = DecisionForm.model_json_schema()
    assert "$defs" not in schema  # inline: the UI shows these titles, not class names
    titles = {n: p["title"] for n, p in schema["properties"].items()}
    assert titles == {"decision": "Your decision", "reason": "Why", "la_code": "LA code",
                      "note": "Note"}


def _resume_form_schema() -> dict:  # type: ignore[type-arg]
    """The schema Prefect saves for the UI when a waiting run suspends (``RunInput.asave``)
    of the form ``await-decision`` suspends with."""
    from prefect._internal.pydantic.v2_schema import create_v2_schema

    from flows.waiting import decision_form

    form = decision_form("## Case CME-2026-000123: the rulebook proposes …")
    return create_v2_schema(form.__name__, model_base=form)


def test_the_resume_form_of_a_waiting_run_reads_in_words_once_filled_in() -> None:
    schema = _resume_form_schema()
    text = json.dumps(schema)
    # Pre-filling must not turn a choice into "OfficerDecision (Optional)": each field keeps
    # its own title and description, inline, and no class name is anywhere the UI looks.
    for class_name in ("OfficerDecision", "DecisionReason", "DecisionForm", "$ref",
                       "definitions", "Optional", "anyOf", "null"):
        assert class_name not in text, class_name
    props = schema["properties"]
    assert {n: p["title"] for n, p in props.items()} == {
        "decision": "Your decision", "reason": "Why", "la_code": "LA code", "note": "Note"}
    assert all(p.get("description") for p in props.values()), props
    # The two answers are pre-selected but still required (the UI adds "(Optional)" to a
    # field the schema does not require); the LA code and the note may stay blank.
    assert sorted(schema["required"]) == ["decision", "reason"]
    assert props["decision"]["default"] == "Confirm what the rulebook proposed"
    assert props["reason"]["default"] == "I checked the evidence and it is this child"
    assert schema["title"] == "Your decision"


def test_the_prefilled_resume_form_still_accepts_the_answers_and_refuses_strangers() -> None:
    from pydantic import ValidationError

    from flows.adhoc import DecisionReason, OfficerDecision
    from flows.waiting import decision_form

    form = decision_form("…")
    answer = form(decision=OfficerDecision.reject.value, reason="not_this_child")
    assert answer.decision is OfficerDecision.reject
    assert answer.reason is DecisionReason.not_this_child
    assert form().decision is OfficerDecision.confirm  # Resume without touching the form
    with pytest.raises(ValidationError):
        form(decision="Delete everything")
    with pytest.raises(TypeError, match="no field"):
        form.with_initial_data(description="…", child_name="x")


def test_the_reference_field_says_what_a_reference_looks_like() -> None:
    ref = _props(case_report)["reference"]
    assert ref["title"] == "Case reference" and "CME-2026-000123" in ref["description"]
    assert ref["maxLength"] <= 60


@pytest.mark.parametrize(("typed", "stored"), [
    ("cme-2026-000123", "CME-2026-000123"), ("  CME-2026-000123 \t", "CME-2026-000123"),
])
def test_references_are_trimmed_and_upper_cased(typed: str, stored: str) -> None:
    assert normalise_reference(typed) == stored


def test_choices_take_the_code_too_for_scripts() -> None:
    from flows.adhoc import Agency, OfficerDecision

    assert Agency("dwp") is Agency.dwp and Agency(Agency.dwp.value) is Agency.dwp
    assert OfficerDecision("confirm").code == "confirm"


# --- clear, fast failures -------------------------------------------------------------------


def _state(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@pytest.mark.parametrize("flow", [trace_referral, case_report, close_case, decide_case],
                         ids=lambda f: f.name)
def test_an_unknown_reference_fails_at_once_with_one_line_an_officer_understands(
        flow, prefect_harness: None, clean_db: str,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_DATABASE_URL", clean_db)
    extra = {"close-case": {"reason": "other"},
             "decide-case": {"decision": "confirm", "reason": "other"}}.get(flow.name, {})
    state = _state(flow(reference=" cme-2026-00001 ", **extra, return_state=True))
    assert state.is_failed()
    assert state.message == "No case with reference CME-2026-00001 — check the worklist"
    assert "Traceback" not in state.message and "\n" not in state.message


def test_a_malformed_reference_is_refused_without_repeating_what_was_typed(
        prefect_harness: None, clean_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_DATABASE_URL", clean_db)
    state = _state(case_report(reference="Zebedee Quillfeather", return_state=True))
    assert state.is_failed() and "not a case reference" in state.message
    assert "Zebedee" not in state.message


def test_run_names_say_what_a_run_is(prefect_harness: None, clean_db: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client

    monkeypatch.setenv("CME_DATABASE_URL", clean_db)
    state = _state(case_report(reference="cme-2026-000777", return_state=True))

    async def name() -> str:
        async with get_client() as client:
            run = await client.read_flow_run(state.state_details.flow_run_id)
            return run.name

    assert asyncio.run(name()) == "case report CME-2026-000777"
    state = _state(case_report(reference="Zebedee Quillfeather", return_state=True))
    assert asyncio.run(name()) == "case report (reference not valid)"
