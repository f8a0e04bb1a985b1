"""The in-process sandbox: every built-in connector answered correctly for a generated
world; deferred answers follow the world clock; the request log; faults; Mendix OData."""

from __future__ import annotations

import base64
from collections import Counter
from datetime import timedelta

import httpx
import pytest

from connectors import Outcome, run_connector, run_deferred_poll, run_deferred_submit
from connectors.builtin import (
    BorderForceConnector,
    DWPConnector,
    HousingConnector,
    LPDConnector,
    OtherLAConnector,
)
from sandbox import (
    AgencyFaults,
    FaultProfile,
    Sandbox,
    asgi_transport,
    connector_settings,
    generate_world,
    subject_for,
)

WORLD, REFERRALS = generate_world(40, seed=5)
SUBJECTS = [subject_for(c) for c in WORLD.children]
SCEN = {c.id: c.scenario for c in WORLD.children}
SETTINGS = connector_settings(world=WORLD)

EXPECT_FOUND = {
    "other_la": {"on_roll_other_la", "resident_other_la", "safeguarding"},
    "housing": {"housing_in_area"},
    "lpd": {"on_roll_other_la", "safeguarding", "left_uk", "lpd_xxx_only"},
    "dwp": {"dwp_deferred"},
    "border_force": {"left_uk"},
}


def found_scenarios(outcomes: list) -> set[str]:
    return {SCEN[o.subject_reference] for o in outcomes if o.outcome is Outcome.FOUND}


@pytest.mark.parametrize("cls", [OtherLAConnector, HousingConnector, LPDConnector])
async def test_immediate_connectors_find_exactly_the_right_children(cls: type) -> None:
    sb = Sandbox(WORLD)
    conn = cls(SETTINGS[cls.name])
    outs = await run_connector(conn, SUBJECTS, transport=asgi_transport(sb))
    assert all(o.outcome in (Outcome.FOUND, Outcome.NOT_FOUND) for o in outs)
    assert found_scenarios(outs) == EXPECT_FOUND[cls.name]
    for o in outs:
        if o.outcome is Outcome.FOUND:
            kid = next(c for c in WORLD.children if c.id == o.subject_reference)
            ev = o.result.evidence[0]
            if cls is OtherLAConnector:
                assert ev.la_code == kid.other_la[0].la_code
                assert ev.safeguarding == (kid.scenario == "safeguarding")
            if cls is LPDConnector:
                assert ev.ctf_destination_la == kid.lpd[0].dest_la


@pytest.mark.parametrize("cls", [DWPConnector, BorderForceConnector])
async def test_deferred_answers_arrive_after_the_world_clock_moves(cls: type) -> None:
    sb = Sandbox(WORLD)
    conn = cls(SETTINGS[cls.name])
    tr = asgi_transport(sb)
    filed = await run_deferred_submit(conn, SUBJECTS, transport=tr)
    assert {o.outcome for o in filed} == {Outcome.PENDING}
    assert all(o.result.expected_by == WORLD.today + timedelta(days=5) for o in filed)
    enquiries = [(o.subject_reference, o.result.agency_reference) for o in filed]
    same_day = await run_deferred_poll(conn, enquiries, transport=tr)
    assert {o.outcome for o in same_day} == {Outcome.PENDING}
    sb.advance(1)
    next_day = await run_deferred_poll(conn, enquiries, transport=tr)
    assert Counter(o.outcome for o in next_day).keys() <= {Outcome.FOUND, Outcome.NOT_FOUND}
    assert found_scenarios(next_day) == EXPECT_FOUND[cls.name]
    assert all(o.disclosed_fields == () for o in next_day)
    assert all(o.result.agency_reference for o in next_day)


async def test_request_log_records_exactly_the_disclosed_fields() -> None:
    sb = Sandbox(WORLD)
    tr = asgi_transport(sb)
    for cls in (OtherLAConnector, HousingConnector, LPDConnector):
        conn = cls(SETTINGS[cls.name])
        outs = await run_connector(conn, SUBJECTS[:5], transport=tr)
        seen = sb.requests_to(cls.name)
        assert seen
        disclosed = set().union(*(set(o.disclosed_fields) for o in outs))
        assert set().union(*(r.field_names for r in seen)) == disclosed <= conn.fields
        assert all(r.query == {} for r in seen)  # nothing personal in query strings
    lpd_fields = {r.field_names for r in sb.requests_to("lpd")}
    assert lpd_fields == {frozenset({"upn"})}


async def test_faults_outage_errors_and_concurrency_cap() -> None:
    faults = FaultProfile(seed=1, agencies={
        "lpd": AgencyFaults(outage=True),
        "housing": AgencyFaults(error_rates={503: 1.0}),
        "other_la": AgencyFaults(rate_limit_rate=1.0, retry_after=999),
    })
    sb = Sandbox(WORLD, faults)
    tr = asgi_transport(sb)
    (lpd,) = await run_connector(LPDConnector(SETTINGS["lpd"]), SUBJECTS[:1], transport=tr,
                                 sleep=_nosleep)
    assert (lpd.result.error_kind, lpd.result.error_code) == ("transient", "http_503")
    (la,) = await run_connector(OtherLAConnector(SETTINGS["other_la"]), SUBJECTS[:1],
                                transport=tr, sleep=_nosleep)
    assert la.result.error_code == "rate_limited"


async def test_malformed_and_truncated_bodies_are_permanent_errors() -> None:
    sb = Sandbox(WORLD, FaultProfile(agencies={"lpd": AgencyFaults(malformed_rate=1.0),
                                               "other_la": AgencyFaults(truncated_rate=1.0)}))
    tr = asgi_transport(sb)
    (lpd,) = await run_connector(LPDConnector(SETTINGS["lpd"]), SUBJECTS[:1], transport=tr)
    assert lpd.result.error_code == "malformed_response"
    la = OtherLAConnector(SETTINGS["other_la"].model_copy(update={"las": {
        "852": "http://sandbox/la/852"}}))
    (out,) = await run_connector(la, SUBJECTS[:1], transport=tr)
    assert out.result.error_kind == "permanent"


async def test_timeout_fault_is_a_transient_timeout() -> None:
    sb = Sandbox(WORLD, FaultProfile(agencies={"lpd": AgencyFaults(timeout_rate=1.0,
                                                                   timeout_seconds=5)}))
    conn = LPDConnector(SETTINGS["lpd"].model_copy(update={"timeout": 0.05,
                                                           "connect_timeout": 0.05,
                                                           "max_attempts": 2}))
    (out,) = await run_connector(conn, SUBJECTS[:1], transport=asgi_transport(sb),
                                 sleep=_nosleep)
    assert (out.result.error_code, out.http_calls) == ("timeout", 2)


async def _nosleep(_: float) -> None:
    return None


def _auth(user: str = "mendix", password: str = "sandbox") -> dict[str, str]:  # noqa: S107
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_mendix_odata_filter_order_paging_and_auth() -> None:
    sb = Sandbox(WORLD)
    async with httpx.AsyncClient(transport=asgi_transport(sb), base_url="http://sandbox") as c:
        assert (await c.get("/mendix/odata/Referrals")).status_code == 401
        assert (await c.get("/mendix/odata/Referrals",
                            headers=_auth(password="x"))).status_code == 401
        changed = sorted(r["changed_at"] for r in REFERRALS)
        mark = changed[9]
        params = {"$filter": f"ChangedDate gt {mark}", "$orderby": "ChangedDate asc",
                  "$top": "10", "$count": "true"}
        got: list[dict] = []
        url: str | None = "/mendix/odata/Referrals"
        first = True
        while url:
            resp = await c.get(url, params=params if first else None, headers=_auth())
            first = False
            assert resp.status_code == 200
            body = resp.json()
            assert body["@odata.count"] == len(changed) - 10
            got += body["value"]
            url = body.get("@odata.nextLink")
        assert [g["ChangedDate"] for g in got] == changed[10:]
        assert {"mendix_reference", "child", "school", "ID"} <= set(got[0])
        bad = await c.get("/mendix/odata/Referrals", params={"$filter": "Name eq 'x'"},
                          headers=_auth())
        assert bad.status_code == 400
        assert len(sb.requests_to("mendix")) >= 3


async def test_control_plane_moves_the_clock_and_serves_the_log() -> None:
    sb = Sandbox(WORLD)
    async with httpx.AsyncClient(transport=asgi_transport(sb), base_url="http://sandbox") as c:
        assert (await c.post("/_sandbox/advance", params={"days": 2})).json()["today"] == str(
            WORLD.today + timedelta(days=2))
        await c.put("/_sandbox/today", json={"today": "2026-04-01"})
        assert str(sb.clock) == "2026-04-01"
        await c.post("/lpd/s2s/v1/lost-pupils/search", json={"upn": "X"})
        log = (await c.get("/_sandbox/requests")).json()
        assert log[-1]["fields"] == {"upn": "X"} and log[-1]["agency"] == "lpd"
        await c.put("/_sandbox/faults", json={"agencies": {"lpd": {"outage": True}}})
        assert (await c.get("/lpd/s2s/v1/health")).status_code == 503
