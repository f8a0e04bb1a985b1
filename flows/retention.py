"""Monthly retention: anonymise closed cases past the retention period."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.artifacts import acreate_table_artifact

from flows.settings import get_settings
from tasks.retention import apply_retention

__all__ = ["retention"]


@flow(name="retention", persist_result=False)
async def retention(dry_run: bool = False) -> dict[str, Any]:
    """Anonymise closed cases older than CME_RETENTION_YEARS after closure (counts kept)."""
    s = get_settings()
    report = apply_retention(s.database_url, now=datetime.now(UTC), years=s.retention_years,
                             dry_run=dry_run)
    counts = asdict(report) if is_dataclass(report) else dict(vars(report))
    await acreate_table_artifact(
        key="retention-summary",
        table=[{"item": k, "value": str(v)} for k, v in counts.items()],
        description="Retention run (counts only).",
    )
    return counts
