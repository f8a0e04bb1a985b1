"""The Prefect UI builds an officer's run form from each flow's parameter schema: every field
must say what to type, and a reference must be checked before any flow code runs."""

from __future__ import annotations

import pytest
from prefect.utilities.callables import parameter_schema

from flows.adhoc import (
    case_report,
    close_case,
    decide_case,
    record_agency_response,
    trace_referral,
)

OFFICER_FLOWS = [trace_referral, record_agency_response, decide_case, close_case, case_report]


@pytest.mark.parametrize("flow", OFFICER_FLOWS, ids=lambda f: f.name)
def test_every_form_field_is_described_for_an_officer(flow) -> None:  # type: ignore[no-untyped-def]
    props = parameter_schema(flow.fn).model_dump()["properties"]
    undescribed = [name for name, p in props.items() if not p.get("description")]
    assert props and undescribed == []


@pytest.mark.parametrize("flow", OFFICER_FLOWS, ids=lambda f: f.name)
def test_reference_field_refuses_free_text(flow) -> None:  # type: ignore[no-untyped-def]
    ref = parameter_schema(flow.fn).model_dump()["properties"]["reference"]
    assert ref["pattern"] == r"^[A-Za-z0-9_\-/]+$" and ref["maxLength"] == 40
