"""School updates: half-termly reports to referring schools; overdue-acknowledgement
reminders to the duty inbox."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from prefect import flow, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE

from flows._config import dispatch_config
from flows.settings import get_settings
from policy import london_date
from tasks.dispatch import dispatch_task
from tasks.school_updates import queue_school_updates

__all__ = ["school_updates"]

queue_updates_task = task(name="queue-school-updates", cache_policy=NO_CACHE,
                          persist_result=False)(queue_school_updates)


@flow(name="school-updates", persist_result=False)
async def school_updates(today: date | None = None) -> dict[str, Any]:
    """Send each school one update per half-term on its open cases (a re-run in the same
    half-term sends nothing new), and remind the duty inbox of overdue acknowledgements."""
    s = get_settings()
    today = today or london_date(datetime.now(UTC))
    out = queue_updates_task(s.database_url, today, channel=s.notification_channel,
                             duty_inbox=s.duty_inbox, la_name=s.la_name)
    out["dispatched"] = await dispatch_task(dispatch_config(s))
    await acreate_table_artifact(
        key="school-updates-summary",
        table=[{"item": k, "value": str(v)} for k, v in out.items()],
        description=f"School updates for {today.isoformat()} (counts only).",
    )
    return out
