"""Intake flows: referrals from a JSON Lines file or the Mendix OData feed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact

from flows import _progress
from flows._config import dispatch_config, intake_config
from flows.settings import get_settings
from flows.worklist import refresh_worklist
from policy import LONDON
from tasks import mendix_transport as _environment_mendix_transport
from tasks.dispatch import dispatch_task
from tasks.import_files import OversizedLine, open_import_file, read_lines
from tasks.intake import MAX_RECORD_BYTES, IntakeReport, ingest_batch
from tasks.odata import feed_breaker, fetch_mendix_changes, save_watermark

__all__ = ["import_file", "intake", "intake_records"]

BATCH = 500


Record = tuple[int | None, str | OversizedLine]


def _batches(records: Iterable[Record], size: int) -> Iterable[list[Record]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


def intake_records(records: Iterable[Record], *, source: str) -> IntakeReport:
    """Ingest records in batches of a few hundred (one task run per batch)."""
    cfg = intake_config()
    total = IntakeReport()
    for batch in _batches(records, BATCH):
        total.add(ingest_batch(batch, source, cfg))
        _progress.report(advance=len(batch))
    return total


async def _publish(report: IntakeReport, source: str) -> None:
    rows = [{"result": k, "count": v} for k, v in vars(report).items()]
    await acreate_table_artifact(key="intake-summary", table=rows,
                                 description=f"Intake from {source} (counts only).")


def _from_deployment() -> bool:
    from prefect.runtime import deployment

    try:
        return bool(deployment.id)
    except Exception:  # noqa: BLE001 - outside a run: not from a deployment
        return False


def _read_file(path: str, *, confined: bool) -> Iterable[Record]:
    """The records of a referral file, in bounded memory; the file checks are made (and a
    refused file raises ImportFileError, one line) before the first record is read."""
    s = get_settings()
    fh = open_import_file(path, import_dir=s.import_dir, max_bytes=s.import_max_mb * 1024 * 1024,
                          confined=confined)

    def records() -> Iterable[Record]:
        with fh:
            yield from read_lines(fh, max_line_bytes=MAX_RECORD_BYTES)

    return records()


@flow(name="import-referrals-file", persist_result=False)
async def import_file(path: str) -> dict[str, int]:
    """Import referrals from a JSON Lines file an operator named (``cme import``, ``cme
    demo``): any regular file, size-capped. Not deployed; run from a deployment all the
    same, it is confined to CME_IMPORT_DIR like the ``intake`` flow."""
    p = Path(path)
    report = intake_records(_read_file(path, confined=_from_deployment()), source=p.name)
    await dispatch_task(dispatch_config())
    await _publish(report, p.name)
    await refresh_worklist()
    return vars(report)


#: The Mendix feed's circuit breaker, kept for the life of this process: a service that keeps
#: failing is left alone for a while rather than called every quarter of an hour.
_MENDIX_BREAKER = feed_breaker()


def mendix_transport() -> httpx.AsyncBaseTransport | None:
    """The agency environment's Mendix feed (the demo's sandbox), or None: the real service."""
    s = get_settings()
    return _environment_mendix_transport(
        s.agency_environment, str(s.sandbox_world) if s.sandbox_world else None)


def _intake_name() -> str:
    return f"intake {datetime.now(UTC).astimezone(LONDON):%Y-%m-%d %H:%M}"


@flow(name="intake", flow_run_name=_intake_name, persist_result=False)
async def intake(file: str | None = None) -> dict[str, Any]:
    """Take in new and changed referrals: from the Mendix OData feed (when configured)
    and/or a JSON Lines file in the import folder (CME_IMPORT_DIR; ``file`` is a name in
    it, and nothing outside it is read); then send the acknowledgements."""
    logger = get_run_logger()
    settings = get_settings()
    total = IntakeReport()
    if file:
        total.add(intake_records(_read_file(file, confined=True), source=Path(file).name))
    if settings.mendix_base_url:
        records, newest = await fetch_mendix_changes(settings, transport=mendix_transport(),
                                                     breaker=_MENDIX_BREAKER)
        total.add(intake_records(records, source="mendix"))
        if newest is not None:
            save_watermark(settings.database_url, newest)
    logger.info("intake: %d received, %d new, %d updated, %d quarantined", total.received,
                total.created, total.updated, total.quarantined)
    await dispatch_task(dispatch_config(settings))
    await _publish(total, "mendix" if not file else Path(file).name)
    await refresh_worklist()
    return vars(total)
