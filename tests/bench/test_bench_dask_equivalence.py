"""The nightly flow on prefect-dask's DaskTaskRunner leaves exactly the database the default
thread runner leaves, for the same world (issue 7, scale-out).

Two nights (so deferred DWP / Border Force answers arrive and are polled) over a small
generated world, in chunks of 7 so that several lanes and decisions overlap, once per task
runner on the same (emptied) database; then every referral, check, timeline line and outbox
row is compared, less ids, timestamps and run ids.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, SQLModel, col, select

pytest.importorskip("prefect_dask")

BUILTINS = "other_la,housing,lpd,dwp,border_force"
TODAY = date(2026, 11, 23)  # a Monday
NIGHTS = 2
CHUNK = 7


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[Any]:
    """One LocalCluster for the module (two worker processes): started once, reused by
    both nights through ``CME_DASK_ADDRESS``."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=3, processes=True,
                      dashboard_address=None) as cluster:
        yield cluster


def _empty(db_url: str) -> None:
    import models.tables  # noqa: F401
    from models import get_engine

    with get_engine(db_url).begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


def _import(db_url: str, referrals: Path, outbox: Path) -> None:
    from tasks.dispatch import dispatch_outbox
    from tasks.intake import ingest_records, read_jsonl
    from tests.la_configs import dispatch_config, intake_config

    cfg = intake_config(db_url=db_url, channel="file", signpost_contacts={})
    ingest_records(list(read_jsonl(referrals)), source=referrals.name, cfg=cfg)
    asyncio.run(dispatch_outbox(dispatch_config(db_url=db_url, channel="file",
                                                channel_options={"outbox_dir": outbox})))


_RANDOM_REF = re.compile(r"-N\d{8}$")  # the sandbox's reference for an unmatched person


def _state(db_url: str) -> dict[str, Any]:
    from models import CaseEvent, Check, Notification, Referral, get_engine

    with Session(get_engine(db_url)) as s:
        refs = {r.id: r.mendix_reference for r in s.exec(select(Referral))}
        referrals = sorted(
            (r.mendix_reference, r.status.value, getattr(r.outcome, "value", None),
             r.decision_rule, r.tracing_rounds, r.next_check_due, r.acknowledged_at is None)
            for r in s.exec(select(Referral))
        )
        checks = sorted(
            (refs[c.referral_id], c.connector, c.round, c.outcome.value, repr(c.evidence),
             _RANDOM_REF.sub("-N*", c.agency_reference or ""), c.expected_by, c.error_kind,
             c.error_code, tuple(c.fields_disclosed or ()))
            for c in s.exec(select(Check))
        )
        events = sorted(
            (refs[e.referral_id], e.kind, e.text, e.rule or "")
            for e in s.exec(select(CaseEvent).order_by(col(CaseEvent.id)))
        )
        notes = sorted(
            (n.idempotency_key, n.template.value, n.recipient, n.status.value,
             refs.get(n.referral_id, ""))
            for n in s.exec(select(Notification))
        )
    return {"referrals": referrals, "checks": checks, "events": events,
            "notifications": notes}


def _nights(runner: str, dask_address: str | None, outbox: Path) -> list[dict[str, Any]]:
    from flows._config import task_runner
    from flows.nightly import nightly_tracing
    from flows.settings import Settings

    settings = Settings(task_runner=runner, dask_address=dask_address, max_workers=3)
    flow = nightly_tracing.with_options(task_runner=task_runner(settings))
    os.environ["CME_OUTBOX_DIR"] = str(outbox)
    return [asyncio.run(flow(today=TODAY + timedelta(days=n), chunk_size=CHUNK))
            for n in range(NIGHTS)]


def test_dask_runner_leaves_the_same_database_as_the_thread_runner(
    prefect_harness: None, clean_db: str, tmp_path: Path, dask_cluster: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect_dask import DaskTaskRunner

    from flows._config import task_runner
    from flows.settings import Settings
    from sandbox import clear_sandboxes, generate_world, write_generated

    world, referrals = generate_world(40, 5, today=TODAY)
    paths = write_generated(world, referrals, tmp_path / "world")
    for key in list(os.environ):
        if key.startswith("CME_") and key != "CME_TEST_DATABASE_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("CME_DATABASE_URL", clean_db)
    monkeypatch.setenv("CME_SANDBOX_WORLD", str(paths["world"]))
    monkeypatch.setenv("CME_CONNECTORS", BUILTINS)
    monkeypatch.setenv("CME_NOTIFICATION_CHANNEL", "file")
    monkeypatch.setenv("CME_OUTBOX_DIR", str(tmp_path / "outbox"))
    assert isinstance(task_runner(Settings(task_runner="dask")), DaskTaskRunner)

    states, summaries = {}, {}
    for runner in ("thread", "dask"):
        _empty(clean_db)
        clear_sandboxes()
        _import(clean_db, paths["referrals"], tmp_path / f"intake-{runner}")
        address = dask_cluster.scheduler_address if runner == "dask" else None
        summaries[runner] = _nights(runner, address, tmp_path / f"outbox-{runner}")
        states[runner] = _state(clean_db)

    ran_on_dask = {name for name in dask_cluster.scheduler.task_prefixes}
    assert {"trace_chunk", "decide_chunk"} <= ran_on_dask, ran_on_dask
    thread, dask = states["thread"], states["dask"]
    assert thread["checks"], "the thread run traced nothing"
    assert any(c[3] in ("found", "not_found") and c[1] in ("dwp", "border_force")
               for c in thread["checks"]), "no deferred answer arrived on night two"
    for table in ("referrals", "checks", "events", "notifications"):
        assert dask[table] == thread[table], f"{table} differ between the task runners"
    for a, b in zip(summaries["thread"], summaries["dask"], strict=True):
        assert (a["task_runs"], a["decided"], a["statuses"]) == \
            (b["task_runs"], b["decided"], b["statuses"])
    sent = {r: sorted(p.name for p in (tmp_path / f"outbox-{r}").glob("*.eml"))
            for r in ("thread", "dask")}
    assert len(sent["dask"]) == len(sent["thread"]) > 0
