"""The nightly tracing run: every due referral through every enabled agency, then decide,
dispatch, and publish a PII-free summary.

Task runs per night: chunks × (connectors + 1) + 1 — O(chunks), not O(referrals).

Each agency is a *lane*: its chunks go one after another (so its concurrency cap holds for
the whole night, in any task runner), and the lanes run side by side, so a quick agency never
waits for a slow one. A chunk is decided as soon as every agency has answered for it, while
the lanes go on. The task runner is ``CME_TASK_RUNNER`` (read when this module is imported):
with the thread pool the tracing tasks run in the flow's own event loop and decisions in the
pool; with Dask every task is submitted to the cluster. Tasks receive ids and plain config.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy import func
from sqlmodel import Session, col, select

from flows import _progress
from flows._config import dispatch_config, task_runner, trace_config
from flows.settings import get_settings
from models import Notification, NotificationStatus, Referral, get_engine, locks
from policy import london_date
from tasks.dispatch import dispatch_task
from tasks.errors import PipelineError
from tasks.tracing import (
    ChunkReport,
    DecideReport,
    TraceConfig,
    chunked,
    decide_chunk,
    select_due,
    trace_chunk,
)

__all__ = ["NightInProgress", "nightly_tracing", "run_nightly"]


class NightInProgress(PipelineError):
    """Another nightly run holds the night: this one traced nothing."""


async def run_nightly(today: date | None = None, *, chunk_size: int | None = None,
                      references: list[str] | None = None, force: bool = False,
                      connectors: list[str] | None = None,
                      publish: bool = True) -> dict[str, Any]:
    """The body of the nightly flow (also used by ``trace-referral`` for one reference).

    One night at a time (README, "One night at a time"): the night holds the ``nightly``
    lock in the case database, and a second night started meanwhile raises
    :class:`NightInProgress` having asked no one anything. Every run — a night, or an
    officer's trace (``references``) — claims each referral's round before asking about it
    and traces only what it claimed: ``claimed_elsewhere`` in the summary counts the
    referrals another run was tracing (it asks the agencies about those, once).
    """
    settings = get_settings()
    started = datetime.now(UTC)
    today = today or london_date(started)
    cfg = trace_config(today, settings, connectors)
    night = references is None
    owner = cfg.run_id
    if night:
        took, holder = locks.acquire_lock(cfg.db_url, locks.NIGHT, owner)
        if not took:
            raise NightInProgress(
                f"another nightly run is tracing ({holder.describe()}): this one did "
                "nothing. If that run died on another machine, a night can start once its "
                "lease has run out")
    try:
        with locks.Heartbeat(cfg.db_url, owner, locks.NIGHT if night else None):
            return await _night(cfg, today, started, chunk_size or settings.chunk_size,
                                references, force, publish, settings)
    finally:
        locks.release_claims(cfg.db_url, owner)
        if night:
            locks.release_lock(cfg.db_url, locks.NIGHT, owner)


async def _night(cfg: TraceConfig, today: date, started: datetime, size: int,
                 references: list[str] | None, force: bool, publish: bool,
                 settings: Any) -> dict[str, Any]:
    due = select_due(cfg.db_url, today, references=references, force=force)
    # Claimed before anyone is asked: a referral another run is tracing is its to ask about.
    ids = locks.claim_rounds(cfg.db_url, due, cfg.run_id)
    chunks = chunked(ids, size)
    logger = get_run_logger()
    logger.info("tracing %d referrals in %d chunks with %d connectors", len(ids), len(chunks),
                len(cfg.connectors))
    if len(ids) < len(due):
        logger.warning("%d due referrals are being traced by another run right now: "
                       "left to it", len(due) - len(ids))
    _progress.report(total=len(ids), advance=0)

    phases: dict[str, float] = {}  # seconds per step: where a slow night spent its time
    clock = time.perf_counter()
    chunk_reports, decide_reports = await _trace_and_decide(chunks, cfg)
    locks.release_claims(cfg.db_url, cfg.run_id)
    phases["trace_and_decide"], clock = time.perf_counter() - clock, time.perf_counter()

    dispatched = await dispatch_task(dispatch_config(settings))
    phases["dispatch"], clock = time.perf_counter() - clock, time.perf_counter()
    summary = _summarise(cfg.db_url, today, len(ids), chunk_reports, decide_reports, dispatched)
    summary["claimed_elsewhere"] = len(due) - len(ids)
    # Each new decision for a person waits in the UI as a suspended run, and the worklist
    # shows everything that needs a person (flows/waiting.py, flows/worklist.py).
    from flows.waiting import start_waiting
    from flows.worklist import refresh_worklist

    summary["waiting_for_an_officer"] = await start_waiting(cfg.db_url, started)
    phases["waiting_runs"], clock = time.perf_counter() - clock, time.perf_counter()
    summary["worklist"] = await refresh_worklist(today)
    phases["worklist"] = time.perf_counter() - clock
    summary["phases_s"] = {k: round(v, 2) for k, v in phases.items()}
    if publish:
        await _publish(summary)
    logger.info("nightly run finished: %d decided, %d notifications sent",
                summary["decided"], dispatched.get("sent", 0))
    return summary


async def _outcome(future: PrefectFuture[Any]) -> Any:
    """Wait for a submitted task without blocking the flow's event loop; its result."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def wake(_: object) -> None:
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

    future.add_done_callback(wake)
    await done
    return await asyncio.to_thread(future.result)


def _runs_in_this_process() -> bool:
    """True when the flow's task runner is a thread pool in this process.

    Then the tracing tasks run in the flow's own event loop: one loop for every agency's HTTP
    cost the same CPU as a loop per pool thread (README, "Performance") with fewer threads
    taking turns at the GIL. With Dask they are submitted and run wherever the cluster puts
    them. Decisions are always submitted.
    """
    ctx = FlowRunContext.get()
    return ctx is None or isinstance(ctx.task_runner, ThreadPoolTaskRunner)


async def _trace_and_decide(chunks: list[list[int]], cfg: TraceConfig
                            ) -> tuple[list[ChunkReport], list[DecideReport]]:
    waiting = [len(cfg.connectors)] * len(chunks)
    decisions: dict[int, PrefectFuture[DecideReport]] = {}

    def answered(n: int) -> None:
        waiting[n] -= 1
        if waiting[n] <= 0:
            decisions[n] = decide_chunk.submit(chunks[n], cfg, chunk_no=n)
            _progress.report(advance=len(chunks[n]))

    inline = _runs_in_this_process()

    async def lane(name: str) -> list[ChunkReport]:
        reports = []
        for n, chunk in enumerate(chunks):
            if inline:
                reports.append(await trace_chunk(name, chunk, cfg, chunk_no=n))
            else:
                reports.append(await _outcome(trace_chunk.submit(name, chunk, cfg, chunk_no=n)))
            answered(n)
        return reports

    if not cfg.connectors:  # nothing to ask: every chunk goes straight to its decision
        for n in range(len(chunks)):
            answered(n)
    lanes = await asyncio.gather(*(lane(name) for name in cfg.connectors))
    decided = [await _outcome(decisions[n]) for n in sorted(decisions)]
    return [r for reports in lanes for r in reports], decided


def _summarise(db_url: str, today: date, selected: int, chunks: list[ChunkReport],
               decides: list[DecideReport], dispatched: dict[str, int]) -> dict[str, Any]:
    by_connector: dict[str, Counter[str]] = {}
    errors: Counter[str] = Counter()
    for c in chunks:
        by_connector.setdefault(c.connector, Counter()).update(c.outcomes)
        errors.update({f"{c.connector}: {k}": v for k, v in c.errors.items()})
    statuses: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    for d in decides:
        statuses.update(d.statuses)
        rules.update(d.rules)
    with Session(get_engine(db_url)) as s:
        breaches = s.exec(
            select(func.count()).select_from(Referral).where(
                col(Referral.acknowledged_at).is_(None),
                Referral.acknowledgement_due < today,
                Referral.classification != "NOT_CME",
            )
        ).one()
        outbox = dict(s.exec(select(Notification.status, func.count())
                             .group_by(col(Notification.status))).all())
    return {
        "today": today.isoformat(),
        "selected": selected,
        "decided": sum(d.decided for d in decides),
        "task_runs": len(chunks) + len(decides) + 1,
        "checks_by_connector": {k: dict(v) for k, v in by_connector.items()},
        "statuses": dict(statuses),
        "rules": dict(rules),
        "errors": dict(errors),
        "ack_sla_breaches": int(breaches),
        "dispatched": dispatched,
        "outbox": {str(getattr(k, "value", k)): int(v) for k, v in outbox.items()},
        "pending_notifications": int(outbox.get(NotificationStatus.pending, 0)),
    }


async def _publish(summary: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = []
    for connector, outcomes in sorted(summary["checks_by_connector"].items()):
        for outcome, n in sorted(outcomes.items()):
            rows.append({"section": "checks", "name": f"{connector} / {outcome}", "count": n})
    for status, n in sorted(summary["statuses"].items()):
        rows.append({"section": "cases decided", "name": status, "count": n})
    for rule, n in sorted(summary["rules"].items()):
        rows.append({"section": "rule fired", "name": rule, "count": n})
    for err, n in sorted(summary["errors"].items()):
        rows.append({"section": "errors", "name": err, "count": n})
    for k, n in sorted(summary["dispatched"].items()):
        rows.append({"section": "notifications", "name": k, "count": n})
    rows.append({"section": "acknowledgement SLA", "name": "overdue, not acknowledged",
                 "count": summary["ack_sla_breaches"]})
    rows.append({"section": "run", "name": "referrals traced", "count": summary["selected"]})
    rows.append({"section": "run", "name": "due, left to another run tracing them",
                 "count": summary.get("claimed_elsewhere", 0)})
    rows.append({"section": "for a person", "name": "cases on the worklist (Artifacts → "
                 "worklist)", "count": summary.get("worklist", 0)})
    rows.append({"section": "for a person", "name": "decisions waiting as suspended runs "
                 "(Runs → Suspended)", "count": summary.get("waiting_for_an_officer", 0)})
    await acreate_table_artifact(
        key="nightly-summary", table=rows,
        description=f"Nightly tracing summary for {summary['today']} (counts only).",
    )


def _night_name() -> str:
    from prefect.runtime import flow_run

    today = (flow_run.parameters or {}).get("today")
    return f"nightly {today or london_date(datetime.now(UTC))}"


@flow(name="nightly-tracing", flow_run_name=_night_name, log_prints=False, persist_result=False,
      task_runner=task_runner())
async def nightly_tracing(today: date | None = None, chunk_size: int | None = None
                          ) -> dict[str, Any]:
    """Trace every referral that is due: ask each enabled agency, record the answers,
    apply the rulebook, send the notifications, publish a summary.

    Leave the parameters empty for the normal nightly run.
    """
    return await run_nightly(today, chunk_size=chunk_size)
