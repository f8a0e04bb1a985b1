"""`cme import attendance FILE` and `cme attendance pending` (README, "PMOOE found from
attendance data")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cme.errors import CmeError

__all__ = ["import_attendance", "register"]

console = Console()
attendance_app = typer.Typer(help="Attendance data: pupils who met a PMOOE threshold.",
                             no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``cme attendance`` to the ``cme`` app (``cme import attendance`` lives in
    ``cme import``)."""
    app.add_typer(attendance_app, name="attendance")


def import_attendance(file: Path) -> None:
    """Run the attendance flow on ``file`` in this terminal and print the counts."""
    from cme.cli_run import _ensure_db, _print_counts, _quiet_prefect
    from tasks.attendance import AttendanceFileError

    if not file.is_file():
        raise CmeError(f"no such file: {file}")
    _quiet_prefect()
    _ensure_db()
    from flows.attendance import attendance

    try:
        counts = asyncio.run(attendance(path=str(file.resolve())))
    except AttendanceFileError as exc:
        raise CmeError(str(exc)) from None
    _print_counts("Attendance", counts)
    if counts.get("quarantined"):
        console.print("[yellow]Some rows were quarantined:[/yellow] see `cme intake rejected`.")
    if counts.get("details_needed"):
        console.print("[yellow]Some pupils need details:[/yellow] see `cme attendance pending`.")


@attendance_app.command("pending")
def pending_cmd() -> None:
    """Pupils who met a PMOOE threshold but could not be made a case, and what is missing.

    Shows UPNs: for the officer at a terminal only."""
    from sqlmodel import col, select

    from cme.cli import settings
    from cme.cli_cases import _database_errors
    from models import AttendancePupil, session_scope

    with _database_errors(), session_scope(settings().database_url) as s:
        rows = list(s.exec(select(AttendancePupil)
                           .where(col(AttendancePupil.details_needed).is_not(None))
                           .order_by(col(AttendancePupil.id))))
    t = Table(title="Attendance: details needed")
    for c in ("pupil", "UPN", "school URN", "condition", "met on", "missing"):
        t.add_column(c)
    for p in rows:
        t.add_row(f"ATT-{p.id}", escape(p.upn), p.school_urn, p.pmooe_reason or "—",
                  p.pmooe_on.isoformat() if p.pmooe_on else "—", escape(p.details_needed or ""))
    console.print(t)
