"""Six nights of tracing against the sandbox served on a loopback port, each night with its
own faults (``faultkit.plan``), run once per test session and snapshotted for the tests.

Everything the tests look at is read when it happens (the database after each night, the
sandbox's request log, the CLI's audit output after the last night), so the tests do not
depend on the database staying untouched after the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from faultkit import (
    AGENCIES,
    CTF_RATE,
    NIGHTS,
    FaultRun,
    Night,
    Served,
    agency_faults,
    connector_env,
    night_env,
    plan,
    read_cases,
    read_checks,
    read_outbox,
    refusing_port,
    serve,
    slow_deferred_answers,
    subjects,
)
from sqlmodel import SQLModel

from models import get_engine

CHILDREN = 40
SEED = 23
START = date(2026, 11, 23)  # a Monday


def _empty(db_url: str) -> None:
    import models.tables  # noqa: F401 - registers the tables

    with get_engine(db_url).begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


def _cli_json(args: list[str], db_url: str) -> dict[str, Any]:
    from typer.testing import CliRunner

    from cme.cli import app

    result = CliRunner().invoke(app, args, env={"CME_DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


async def _summary_artifact(flow_run_id: Any) -> list[dict[str, Any]]:
    """The rows of the ``nightly-summary`` table artifact this flow run published."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["nightly-summary"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    if len(found) != 1:
        return []
    data = found[0].data
    rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else list(data or [])
    return rows


def _run_nights(served: Served, referrals_path: Path, db_url: str, base_env: dict[str, str],
                refused: str, mp: pytest.MonkeyPatch) -> tuple[dict[str, int], list[Night]]:
    from flows.intake import import_file
    from flows.nightly import nightly_tracing

    for key, value in night_env(base_env, {a: () for a in AGENCIES}, refused=refused).items():
        mp.setenv(key, value)
    intake = asyncio.run(import_file(str(referrals_path)))
    nights: list[Night] = []
    for n in range(NIGHTS):
        today = START + timedelta(days=n)
        kinds = plan(n)
        for key, value in night_env(base_env, kinds, refused=refused).items():
            mp.setenv(key, value)
        served.put_today(today)
        served.put_faults({a: agency_faults(k) for a, k in kinds.items()}, seed=100 + n)
        served.put_tap(ctf_rate=CTF_RATE if "malformed" in kinds["lpd"] else 0.0, seed=200 + n)
        served.clear_logs()
        before = read_cases(db_url)
        last_id = max((c.id for c in read_checks(db_url)), default=0)
        started = time.monotonic()
        state = asyncio.run(nightly_tracing(today=today, return_state=True))
        seconds = time.monotonic() - started
        summary = state.result() if state.is_completed() else {}
        artifact = asyncio.run(_summary_artifact(state.state_details.flow_run_id))
        nights.append(Night(
            number=n, today=today, kinds=kinds, before=before, after=read_cases(db_url),
            checks=read_checks(db_url, after_id=last_id), summary=summary,
            seen=served.seen(), exchanges=served.exchanges(), outbox=read_outbox(db_url),
            state=state.type.value, artifact=artifact, notes={"seconds": round(seconds, 1)},
        ))
    return intake, nights


#: The agencies' transports (CME_HTTP_TRANSPORT): every promise of the fault matrix holds on
#: each (issue 17: the resilience layer classifies failures the same on both).
TRANSPORTS = ("httpx", "aiohttp")


@pytest.fixture(scope="session", params=TRANSPORTS)
def fault_run(request: pytest.FixtureRequest, prefect_harness: None, db_url: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultRun]:
    from sandbox import generate_world, write_generated

    root = tmp_path_factory.mktemp(f"faults-{request.param}")
    world, referrals = generate_world(CHILDREN, SEED, today=START)
    world = slow_deferred_answers(world)
    paths = write_generated(world, referrals, root / "world")
    _empty(db_url)
    quiet = logging.getLogger("connectors")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # a warning per failed check: hundreds a night
    mp = pytest.MonkeyPatch()
    try:
        for key in list(os.environ):
            if key.startswith("CME_") and key != "CME_TEST_DATABASE_URL":
                mp.delenv(key)
        mp.setenv("CME_DATABASE_URL", db_url)
        mp.setenv("CME_HTTP_TRANSPORT", request.param)
        mp.setenv("CME_CONNECTORS", ",".join(AGENCIES))
        mp.setenv("CME_OUTBOX_DIR", str(root / "outbox"))
        mp.setenv("CME_NOTIFICATION_CHANNEL", "file")
        with refusing_port() as dead_port, \
                serve(paths["world"], log=root / "sandbox.log") as served:
            intake, nights = _run_nights(served, paths["referrals"], db_url,
                                         connector_env(served.base_url, world),
                                         f"http://127.0.0.1:{dead_port}", mp)
        people = subjects(db_url)
        audit = _cli_json(["audit", "disclosures", "--json"], db_url)
        refs = sorted({c["reference"] for c in audit["checks"]})
        by_ref = {ref: _cli_json(["audit", "disclosures", "--ref", ref, "--json"], db_url)
                  for ref in refs[:: max(1, len(refs) // 4)]}
    finally:
        mp.undo()
        quiet.setLevel(level)
    yield FaultRun(world, referrals, intake, nights, people, audit, by_ref)
