"""The sandbox served by uvicorn on a loopback port answers every built-in connector
correctly for a generated world, over real HTTP (and real faults: resets, timeouts)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from cme.cli_connectors import app as connectors_cli
from connectors import (
    Outcome,
    load_enabled,
    run_connector,
    run_deferred_poll,
    run_deferred_submit,
)
from sandbox import (
    AgencyFaults,
    FaultProfile,
    Sandbox,
    connector_env,
    connector_settings,
    generate_world,
    subject_for,
)

WORLD, _ = generate_world(30, seed=9)
SCEN = {c.id: c.scenario for c in WORLD.children}
SUBJECTS = [subject_for(c) for c in WORLD.children]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Sandbox, str]]:
    sb = Sandbox(WORLD)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(sb.app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/_sandbox/today").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    yield sb, base
    server.should_exit = True
    thread.join(timeout=5)


async def test_every_builtin_answers_correctly_over_real_http(
        served: tuple[Sandbox, str], monkeypatch: pytest.MonkeyPatch) -> None:
    sb, base = served
    for key, value in connector_env(base, world=WORLD).items():
        monkeypatch.setenv(key, value)
    connectors = load_enabled(["other_la", "housing", "lpd", "dwp", "border_force"])
    found: dict[str, set[str]] = {}
    for conn in connectors:
        if not conn.deferred:
            outs = await run_connector(conn, SUBJECTS)
        else:
            filed = await run_deferred_submit(conn, SUBJECTS)
            assert {o.outcome for o in filed} == {Outcome.PENDING}
            sb.today = WORLD.today.fromordinal(WORLD.today.toordinal() + 1)
            outs = await run_deferred_poll(
                conn, [(o.subject_reference, o.result.agency_reference) for o in filed])
            sb.today = WORLD.today
        assert {o.outcome for o in outs} <= {Outcome.FOUND, Outcome.NOT_FOUND}, conn.name
        found[conn.name] = {SCEN[o.subject_reference] for o in outs
                            if o.outcome is Outcome.FOUND}
    assert found == {
        "other_la": {"on_roll_other_la", "resident_other_la", "safeguarding"},
        "housing": {"housing_in_area"},
        "lpd": {"on_roll_other_la", "safeguarding", "left_uk", "lpd_xxx_only"},
        "dwp": {"dwp_deferred"},
        "border_force": {"left_uk"},
    }


def test_cme_connectors_check_probes_the_served_agencies(
        served: tuple[Sandbox, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, base = served
    env = {**connector_env(base, world=WORLD),
           "CME_CONNECTORS": "other_la,housing,lpd,dwp,border_force", "COLUMNS": "200"}
    result = CliRunner().invoke(connectors_cli, ["check"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.count("ok") >= 5


async def test_real_network_faults_are_classified(served: tuple[Sandbox, str]) -> None:
    sb, base = served
    sb.set_faults(FaultProfile(agencies={
        "lpd": AgencyFaults(truncated_rate=1.0),
        "dwp": AgencyFaults(timeout_rate=1.0, timeout_seconds=2),
    }))
    try:
        st = connector_settings(base, world=WORLD, max_attempts=2, backoff_initial=0.0,
                                timeout=0.2, connect_timeout=0.5)
        from connectors.builtin import DWPConnector, LPDConnector

        (lpd,) = await run_connector(LPDConnector(st["lpd"]), SUBJECTS[:1])
        # a body cut short of its Content-Length is a broken connection: transient
        assert (lpd.result.error_kind, lpd.http_calls) == ("transient", 2)
        (dwp,) = await run_deferred_submit(DWPConnector(st["dwp"]), SUBJECTS[:1])
        assert (dwp.result.error_code, dwp.http_calls) == ("timeout", 2)
    finally:
        sb.set_faults(FaultProfile())
