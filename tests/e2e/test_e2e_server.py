"""The UI path end to end through a real Prefect server: deployments run by a real worker
against the sandbox agencies served on a port, results read back from the case database."""

from __future__ import annotations

import email
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select
from uikit import BUILTINS, references_by_scenario, run

from models import Check, CheckOutcome, Notification, NotificationStatus, Referral, get_engine

pytestmark = pytest.mark.e2e


def _case(stack: Any, reference: str) -> tuple[Referral, list[Check], list[Notification]]:
    with Session(get_engine(stack.db_url), expire_on_commit=False) as s:
        r = s.exec(select(Referral).where(Referral.mendix_reference == reference)).one()
        checks = list(s.exec(select(Check).where(Check.referral_id == r.id)))
        notes = list(s.exec(select(Notification).where(Notification.referral_id == r.id)
                            .order_by(col(Notification.id))))
    return r, checks, notes


def _outbox_mentions(stack: Any, reference: str) -> list[str]:
    found = []
    for f in sorted(stack.outbox.glob("*.eml")):
        msg = email.message_from_bytes(f.read_bytes())
        body = msg.get_payload(decode=True)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        if reference in text or reference in str(msg["Subject"]):
            found.append(f.name)
    return found


def test_trace_referral_deployment_locates_a_child_on_roll_in_another_la(ui_stack: Any) -> None:
    reference = references_by_scenario(ui_stack)["on_roll_other_la"][0]

    flow_run = run("trace-referral/trace-referral", {"reference": reference})

    assert flow_run.state.is_completed(), flow_run.state
    r, checks, notes = _case(ui_stack, reference)
    # One check per enabled agency, each with the audit of the fields it was sent.
    assert sorted(c.connector for c in checks) == sorted(BUILTINS)
    assert all(c.fields_disclosed for c in checks)
    by_agency = {c.connector: c for c in checks}
    assert by_agency["other_la"].outcome is CheckOutcome.FOUND
    assert r.status.value == "located", (r.status, r.decision_rule)
    sent = [n for n in notes if n.status is NotificationStatus.sent]
    assert "resolution" in {n.template.value for n in sent}, [n.template for n in notes]
    assert _outbox_mentions(ui_stack, reference), "no message about the case in the outbox"


def test_record_agency_response_deployment_transfers_a_case(ui_stack: Any) -> None:
    reference = references_by_scenario(ui_stack)["dwp_deferred"][0]

    from flows.adhoc import Agency, AgencyAnswer

    # Through the API a choice is the words the officer's form shows (the codes work only
    # in-process), since the server checks parameters against the form's schema.
    flow_run = run("record-agency-response/record-agency-response",
                   {"reference": reference, "agency": Agency.dwp.value,
                    "answer": AgencyAnswer.found.value,
                    "la_code": "852", "agency_reference": "DWP-E2E-1"})

    assert flow_run.state.is_completed(), flow_run.state
    r, checks, notes = _case(ui_stack, reference)
    officer = [c for c in checks if c.run_id == "officer"]
    assert len(officer) == 1 and officer[0].connector == "dwp"
    assert officer[0].outcome is CheckOutcome.FOUND
    assert officer[0].agency_reference == "DWP-E2E-1"
    assert r.status.value == "transferred", (r.status, r.decision_rule)
    assert any(n.template.value == "inter_la" and n.status is NotificationStatus.sent
               for n in notes), [(n.template, n.status) for n in notes]


def test_nightly_deployment_runs_at_0130_london_time(ui_stack: Any) -> None:
    from prefect import get_client
    from prefect.client.schemas.schedules import CronSchedule

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("nightly-tracing/nightly")
    assert deployment.work_pool_name == "cme-process"
    assert len(deployment.schedules) == 1
    schedule = deployment.schedules[0].schedule
    assert isinstance(schedule, CronSchedule), schedule
    assert schedule.cron == "30 1 * * *"
    assert schedule.timezone == "Europe/London"
    assert deployment.schedules[0].active


def test_with_basic_auth_the_api_refuses_unauthenticated_calls(ui_stack: Any) -> None:
    url = f"{ui_stack.api_url}/deployments/filter"

    anonymous = httpx.post(url, json={}, timeout=10)
    wrong = httpx.post(url, json={}, auth=("cme-officer", "not-the-password"), timeout=10)
    officer = httpx.post(url, json={}, auth=ui_stack.http_auth(), timeout=10)

    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert officer.status_code == 200
    assert "trace-referral" in {d["name"] for d in officer.json()}
