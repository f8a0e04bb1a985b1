"""Reopening a case through the deployed officer flows (issue 16, point 3): a real Prefect
server, a real worker, the sandbox agencies on a port — close, trace refused naming
``reopen-case``, reopen, trace again."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, select
from uikit import references_by_scenario, run

from models import CaseStatus, Referral, get_engine

pytestmark = pytest.mark.e2e


def _status(stack: Any, reference: str) -> tuple[CaseStatus, int]:
    with Session(get_engine(stack.db_url)) as s:
        r = s.exec(select(Referral).where(Referral.mendix_reference == reference)).one()
        return r.status, r.tracing_rounds


def test_an_officer_closes_reopens_and_traces_a_case_through_the_deployments(
        ui_stack: Any) -> None:
    from flows.adhoc import REOPEN_FLOW, CloseReason, ReopenReason

    reference = references_by_scenario(ui_stack)["nothing"][0]
    closed = run("close-case/close-case", {"reference": reference,
                                           "reason": CloseReason.returned_to_school.value})
    assert closed.state.is_completed(), closed.state
    assert _status(ui_stack, reference)[0] is CaseStatus.CLOSED

    refused = run("trace-referral/trace-referral", {"reference": reference})
    assert refused.state.is_failed()
    assert refused.state.message == (f"Case {reference} is closed: reopen it with "
                                     f"{REOPEN_FLOW} before tracing")

    # The flow the message names is deployed under that name; choices go as their words.
    reopened = run(f"{REOPEN_FLOW}/{REOPEN_FLOW}",
                   {"reference": f" {reference.lower()} ",
                    "reason": ReopenReason.missing_again.value,
                    "note": "school says absent again"})
    assert reopened.state.is_completed(), reopened.state
    assert reopened.name == f"reopen {reference}"
    status, rounds = _status(ui_stack, reference)
    assert status is CaseStatus.TRACING

    traced = run("trace-referral/trace-referral", {"reference": reference})
    assert traced.state.is_completed(), traced.state
    status, after = _status(ui_stack, reference)
    assert after == rounds + 1 and status is not CaseStatus.CLOSED


def test_reopening_a_case_that_is_open_fails_in_one_line(ui_stack: Any) -> None:
    from flows.adhoc import ReopenReason

    reference = references_by_scenario(ui_stack)["nothing"][1]
    before = _status(ui_stack, reference)
    flow_run = run("reopen-case/reopen-case",
                   {"reference": reference, "reason": ReopenReason.new_information.value})
    assert flow_run.state.is_failed()
    message = flow_run.state.message or ""
    assert message.startswith(f"Case {reference}: reopen is not allowed on ")
    assert message.endswith("only a closed case can be reopened")
    assert "\n" not in message and "Traceback" not in message
    assert _status(ui_stack, reference) == before
