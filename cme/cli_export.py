"""``cme export child``: a child's data on request (README, "A child's data on request").

Officer-only and command-line only: the export is the child's whole record, so it is written
to files the officer alone can read and never published to the Prefect UI.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from cme.errors import CmeError

__all__ = ["register"]

console = Console()

export_app = typer.Typer(help="Exports for requests under UK GDPR (officer-only, files only).",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``cme export`` to the ``cme`` app."""
    app.add_typer(export_app, name="export")


@export_app.command("child")
def export_child_cmd(
    reference: str = typer.Argument(..., help="Any case reference of the child, e.g. "
                                    "CME-2026-000123; every case of that child is included."),
    out: Path = typer.Option(..., "--out", help="Folder to write to (created 0700; the files "
                             "are 0600)."),
) -> None:
    """Export every row held about a child and their referrals, as JSON and markdown."""
    from cme.cli import settings
    from cme.cli_cases import _database_errors
    from tasks.child_export import ChildNotFound, export_child, write_export

    s = settings()
    with _database_errors():
        try:
            export = export_child(s.database_url, reference.strip(),
                                  outbox_dir=str(s.outbox_dir))
        except ChildNotFound as exc:
            raise CmeError(str(exc)) from None
    try:
        paths = write_export(export, out)
    except OSError as exc:
        raise CmeError(f"cannot write the export to {out} ({exc.strerror})") from None
    counts = ", ".join(f"{name} {len(rows)}" for name, rows in export.tables.items())
    console.print(f"Exported the child on {escape(export.reference)} "
                  f"({len(export.references)} case(s)): {counts}")
    for p in paths:
        console.print(f"  {escape(str(p))}")
