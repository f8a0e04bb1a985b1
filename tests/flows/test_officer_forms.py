"""The Prefect UI builds an officer's run form from each flow's parameter schema: every field
must say what to type in words, optional fields are simply blank, choices read as words, and
a reference that is wrong ends the run at once with a message an officer understands."""

from __future__ import annotations

import asyncio
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
