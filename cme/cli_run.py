"""`cme import`, `cme run ...` and `cme demo`: run the flows from a terminal.

Without a Prefect server these run in Prefect's ephemeral mode (a few seconds to start);
with ``PREFECT_API_URL`` set they report to that server like any other run.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cme.errors import CmeError

console = Console()
run_app = typer.Typer(help="Run a flow now, in this terminal.", no_args_is_help=True)

BUILTINS = ["other_la", "housing", "lpd", "dwp", "border_force"]


@contextmanager
def _progress_bar(label: str, total: int | None = None) -> Iterator[None]:
    from flows import set_progress_hook

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        task_id = bar.add_task(label, total=total)

        def hook(total: int | None = None, advance: int = 0) -> None:
            if total is not None:
                bar.update(task_id, total=total)
            if advance:
                bar.advance(task_id, advance)

        set_progress_hook(hook)
        try:
            yield
        finally:
            set_progress_hook(None)


def _quiet_prefect() -> None:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # The ephemeral server's telemetry heartbeat races its own SQLite start-up and prints a
    # scary traceback; nothing here needs it.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _ensure_db() -> None:
    from cme.cli import settings
    from models.migrate import upgrade

    upgrade(settings().database_url)


def import_cmd(
    file: Path = typer.Argument(..., help="A JSON Lines file: one referral per line "
                                "(see README, 'Referral file'); or the word `attendance`."),
    marks: Path = typer.Argument(None, help="After `attendance`: a CSV of register marks "
                                 "(README, 'Attendance file').", show_default=False),
) -> None:
    """Import school referrals from a file, or (`cme import attendance FILE`) register marks;
    bad records are kept in quarantine.

    Any regular file you can read (at most CME_IMPORT_MAX_MB); the Prefect UI's intake flow
    reads only files in CME_IMPORT_DIR."""
    if str(file) == "attendance":
        if marks is None:
            raise CmeError("say which file: cme import attendance FILE")
        from cme.cli_attendance import import_attendance

        import_attendance(marks)
        return
    if marks is not None:
        raise CmeError("one referral file at a time (for register marks: "
                       "cme import attendance FILE)")
    from cme.cli import settings
    from tasks.import_files import open_import_file

    s = settings()
    # Checked here too, so a refused file is one line before Prefect starts.
    with open_import_file(file, import_dir=s.import_dir, max_bytes=s.import_max_mb << 20,
                          confined=False) as fh:
        total = _count_lines(fh)
    _quiet_prefect()
    _ensure_db()
    from flows.intake import import_file

    with _progress_bar("Importing referrals", total):
        counts = asyncio.run(import_file(str(file.resolve())))
    _print_counts("Intake", counts)
    if counts.get("quarantined"):
        console.print("[yellow]Some records were quarantined:[/yellow] see `cme intake rejected`.")


def _count_lines(fh: Any) -> int:
    """Lines in the file, for the progress bar: counted in 1 MiB pieces, never a whole line."""
    n, last = 0, b"\n"
    while piece := fh.readline(1 << 20):
        n += piece.endswith(b"\n")
        last = piece
    return n + (not last.endswith(b"\n"))


def _print_counts(title: str, counts: dict[str, Any]) -> None:
    t = Table(title=title)
    t.add_column("result")
    t.add_column("count", justify="right")
    for k, v in counts.items():
        t.add_row(k.replace("_", " "), str(v))
    console.print(t)


@run_app.command("nightly")
def run_nightly_cmd(
    today: str = typer.Option(None, help="Trace as of this date (YYYY-MM-DD); default today."),
    chunk_size: int = typer.Option(None, help="Referrals per task (default CME_CHUNK_SIZE)."),
) -> None:
    """Run the nightly tracing flow now."""
    from cme.cli import settings

    s = settings()
    if not s.connectors:
        raise CmeError("no connectors enabled: set CME_CONNECTORS (e.g. "
                       "other_la,housing,lpd,dwp,border_force)")
    _quiet_prefect()
    _ensure_db()
    from flows.nightly import nightly_tracing

    day = _date(today)
    with _progress_bar("Tracing"):
        summary = asyncio.run(nightly_tracing(today=day, chunk_size=chunk_size))
    _print_summary(summary)


@run_app.command("school-updates")
def run_updates_cmd(
    today: str = typer.Option(None, help="As of this date (YYYY-MM-DD); default today."),
) -> None:
    """Send this half-term's updates to schools and overdue-acknowledgement reminders."""
    _quiet_prefect()
    _ensure_db()
    from flows.school_updates import school_updates

    out = asyncio.run(school_updates(today=_date(today)))
    _print_counts("School updates", {k: v for k, v in out.items() if k != "dispatched"})


def _date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CmeError(f"not a date (YYYY-MM-DD): {value}") from None


def _print_summary(summary: dict[str, Any]) -> None:
    t = Table(title=f"Night of {summary['today']}")
    t.add_column("section")
    t.add_column("item")
    t.add_column("count", justify="right")
    for conn, outs in sorted(summary["checks_by_connector"].items()):
        for o, n in sorted(outs.items()):
            t.add_row("checks", f"{conn} / {o}", str(n))
    for k, n in sorted(summary["statuses"].items()):
        t.add_row("cases decided", k, str(n))
    for k, n in sorted(summary["errors"].items()):
        t.add_row("errors", k, str(n))
    for k, n in sorted(summary["dispatched"].items()):
        t.add_row("notifications", k, str(n))
    t.add_row("acknowledgement SLA", "overdue, not acknowledged",
              str(summary["ack_sla_breaches"]))
    t.add_row("run", "Prefect task runs", str(summary["task_runs"]))
    console.print(t)


def demo_cmd(
    children: int = typer.Option(200, "--children", min=1, max=100_000,
                                 help="Synthetic referrals to generate."),
    seed: int = typer.Option(7, "--seed", help="Seed: the same seed gives the same world."),
    nights: int = typer.Option(2, "--nights", min=1, max=60,
                               help="Nights of tracing to run (deferred answers need 2+)."),
) -> None:
    """The whole system on synthetic data, here: generate referrals and a simulated world,
    import them, trace for some nights against the in-process sandbox agencies, send the
    notifications to ./outbox, and summarise. Leaves cme.db and outbox/ behind."""
    started = time.perf_counter()
    here = Path.cwd()
    world_dir = here / "sandbox-world"

    from policy import london_date
    from sandbox import generate_world, write_generated

    today = london_date(datetime.now(UTC))
    console.print(f"[bold]CME demo[/bold]: {children} synthetic referrals, seed {seed}, "
                  f"{nights} night(s), in {here}")
    world, referrals = generate_world(children, seed, today=today)
    paths = write_generated(world, referrals, world_dir)
    os.environ["CME_SANDBOX_WORLD"] = str(paths["world"])
    os.environ.setdefault("CME_CONNECTORS", ",".join(BUILTINS))
    os.environ.setdefault("CME_NOTIFICATION_CHANNEL", "file")
    if "PREFECT_API_URL" not in os.environ:
        # Keep the demo's run history beside its database, not in the user's ~/.prefect.
        os.environ.setdefault("PREFECT_HOME", str(here / ".prefect"))
    _quiet_prefect()
    _ensure_db()
    from flows.intake import import_file
    from flows.nightly import nightly_tracing

    with _progress_bar("Importing referrals", len(referrals)):
        intake = asyncio.run(import_file(str(paths["referrals"])))
    _print_counts("Intake", intake)
    for n in range(nights):
        day = today + timedelta(days=n)
        with _progress_bar(f"Night {n + 1} ({day.isoformat()})"):
            asyncio.run(nightly_tracing(today=day))
    _demo_summary(time.perf_counter() - started)
    console.print(
        "\nNext:\n"
        "  [bold]cme cases[/bold]             every case, its status and outcome\n"
        "  [bold]cme case REF[/bold]          one case's timeline and checks\n"
        "  [bold]cme outbox[/bold]            the messages sent to schools (also ./outbox/*.eml)\n"
        "  [bold]cme ui up[/bold]             the Prefect UI for officers (README, 'The UI path')"
    )


def _demo_summary(wall: float) -> None:
    from sqlalchemy import func
    from sqlmodel import Session, col, select

    from cme.cli import settings
    from models import Check, Notification, Referral, get_engine

    with Session(get_engine(settings().database_url)) as s:
        cases = s.exec(select(Referral.status, Referral.outcome, func.count())
                       .group_by(col(Referral.status), col(Referral.outcome))).all()
        checks = s.exec(select(Check.connector, Check.outcome, func.count())
                        .group_by(col(Check.connector), col(Check.outcome))).all()
        notes = s.exec(select(Notification.template, Notification.status, func.count())
                       .group_by(col(Notification.template), col(Notification.status))).all()
        acks = s.exec(select(Referral.acknowledgement_due, Referral.acknowledged_at)
                      .where(Referral.classification != "NOT_CME")).all()
    t = Table(title="Cases by status and outcome")
    t.add_column("status")
    t.add_column("outcome")
    t.add_column("cases", justify="right")
    for st, out, n in sorted(cases, key=lambda r: (str(r[0]), str(r[1]))):
        t.add_row(st.value, out.value if out else "—", str(n))
    console.print(t)
    t = Table(title="Checks by agency and outcome")
    t.add_column("agency")
    t.add_column("outcome")
    t.add_column("checks", justify="right")
    for c, o, n in sorted(checks, key=lambda r: (r[0], str(r[1]))):
        t.add_row(c, o.value, str(n))
    console.print(t)
    t = Table(title="Notifications by template")
    t.add_column("template")
    t.add_column("status")
    t.add_column("count", justify="right")
    for tpl, st, n in sorted(notes, key=lambda r: (str(r[0]), str(r[1]))):
        t.add_row(tpl.value, st.value, str(n))
    console.print(t)
    from policy import london_date

    met = sum(1 for due, at in acks if at is not None and london_date(at) <= due)
    missed = sum(1 for due, at in acks if at is None or london_date(at) > due)
    console.print(f"Acknowledgement SLA (5 working days): [green]{met} met[/green], "
                  f"[red]{missed} missed or not yet sent[/red]")
    console.print(f"Wall time: {wall:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("import")(import_cmd)
    app.command("demo")(demo_cmd)
    app.add_typer(run_app, name="run")


__all__ = ["register"]
