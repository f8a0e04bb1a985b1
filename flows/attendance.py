"""The ``attendance`` deployment: PMOOE found from attendance data (README, "PMOOE found
from attendance data"). Counts only leave the database: the artifact says how many marks,
pupils and cases, never who."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import acreate_table_artifact

from flows._config import dispatch_config
from flows.adhoc import form
from flows.settings import get_settings
from flows.worklist import refresh_worklist
from policy import london_date
from tasks.attendance import AttendanceConfig, AttendanceReport, assess_task, import_task
from tasks.dispatch import dispatch_task

__all__ = ["attendance", "attendance_config"]


def attendance_config() -> AttendanceConfig:
    s = get_settings()
    return AttendanceConfig(db_url=s.database_url, channel=s.notification_channel,
                            la_name=s.la_name)


@flow(name="attendance", persist_result=False)
async def attendance(
    path: str = form(..., "Attendance file", "The full path of the CSV of register marks on "
                     "the worker's disk (README, 'Attendance file'). Rows that cannot be read "
                     "are kept, with reasons, in `cme intake rejected`.", max_length=1000),
    today: date | None = form(None, "As of", "The day to assess as of (leave blank for "
                              "today)."),
) -> dict[str, Any]:
    """Import register marks, find pupils who meet a PMOOE threshold, open their cases, write
    to their schools and put them on the worklist."""
    day = today or london_date(datetime.now(UTC))
    cfg = attendance_config()
    report = AttendanceReport()
    report.add(import_task(str(Path(path)), cfg))
    report.add(assess_task(cfg, day))
    await dispatch_task(dispatch_config())
    counts = asdict(report)
    await acreate_table_artifact(
        key="attendance-summary",
        table=[{"result": k.replace("_", " "), "count": v} for k, v in counts.items()],
        description=f"Attendance data from {Path(path).name} (counts only).")
    await refresh_worklist(day)
    return counts
