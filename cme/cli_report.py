"""`cme report dfe-return`: the termly CME return to the DfE (README, "The termly DfE
return"). Counts only; the validation list names cases by reference."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cme.errors import CmeError

__all__ = ["register", "write_return_csv"]

console = Console()
report_app = typer.Typer(help="Returns and reports (counts only).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``cme report`` to the ``cme`` app."""
    app.add_typer(report_app, name="report")


def write_return_csv(path: Path, rows: list[tuple[str, str, int]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["measure", "category", "count"])
        w.writerows(rows)


@report_app.command("dfe-return")
def dfe_return_cmd(
    census_date: str = typer.Option(..., "--census-date", help="The census date, YYYY-MM-DD."),
    out: Path = typer.Option(None, "--out", help="Write the counts to this CSV file, and the "
                             "validation list beside it (FILE-validation.csv)."),
) -> None:
    """The termly CME return as at a census date, and the cases to fix before it is sent."""
    from cme.cli import settings
    from cme.cli_cases import _database_errors
    from tasks.dfe_return import build_return

    try:
        census = date.fromisoformat(census_date)
    except ValueError:
        raise CmeError("--census-date must be a date, YYYY-MM-DD") from None
    with _database_errors():
        ret = build_return(settings().database_url, census)
    if not ret.verified:
        console.print("[yellow]The DfE categories in flows/data/dfe_return.json are not "
                      "verified against the DfE's guide: check them before you submit.[/yellow]")
    if out is not None:
        write_return_csv(out, ret.rows)
        problems = out.with_name(out.stem + "-validation.csv")
        with problems.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["reference", "problem"])
            w.writerows(ret.problems)
        console.print(f"Wrote {escape(str(out))} and {escape(str(problems))}")
    counts = Table(title=f"CME return as at {census.isoformat()} (term from "
                         f"{ret.term_start.isoformat()})")
    for c in ("measure", "category", "count"):
        counts.add_column(c)
    for measure, category, n in ret.rows:
        counts.add_row(measure, escape(category), str(n))
    console.print(counts)
    t = Table(title=f"Cases to fix before the return ({len(ret.problems)})")
    t.add_column("reference")
    t.add_column("problem")
    for ref, why in ret.problems:
        t.add_row(escape(ref), escape(why))
    console.print(t)
