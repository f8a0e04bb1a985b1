"""``cme schools``: the trusted school contacts; ``cme duplicate``: settle a possible duplicate.

A school's contact comes from the LA's schools list or an officer, never from a referral
(README, "School contacts"); two referrals are one child automatically only on the same UPN
(README, "Referral file").
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from cme.errors import CmeError

__all__ = ["register"]

console = Console()
schools_app = typer.Typer(help="School contacts: load the LA's schools list, or set one.",
                          no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``cme schools`` and ``cme duplicate`` to the ``cme`` app."""
    app.add_typer(schools_app, name="schools")
    app.command("duplicate")(duplicate_cmd)


def _db_url() -> str:
    from cme.cli import settings

    return settings().database_url


@schools_app.command("import")
def schools_import(
    file: Path = typer.Argument(..., help="CSV with the header urn,name,la_code,email."),
) -> None:
    """Load the schools list: each school's name and contact become trusted. A file with any
    bad row changes nothing (the error names the lines)."""
    from models.migrate import upgrade
    from tasks.schools import SchoolsFileError, import_schools

    url = _db_url()
    upgrade(url)
    try:
        done = import_schools(url, file)
    except SchoolsFileError as exc:
        raise CmeError(str(exc)) from None
    console.print(f"Schools list loaded: {done.added} added, {done.changed} changed, "
                  f"{done.unchanged} unchanged.")


@schools_app.command("set-contact")
def schools_set_contact(
    urn: str = typer.Argument(..., help="The school's 6-digit URN."),
    email: str = typer.Option(None, "--email", help="The school's contact address."),
    name: str = typer.Option(None, "--name", help="The school's name, if it changed."),
    keep: bool = typer.Option(False, "--keep", help="Confirm the contact held (a referral's "
                              "different one is not applied)."),
) -> None:
    """An officer sets (or with --keep confirms) a school's contact."""
    from flows.settings import email_address
    from tasks.schools import set_contact

    if keep == (email is not None):
        raise CmeError("give either --email ADDRESS or --keep")
    if email is not None:
        try:
            email = email_address(email)
        except ValueError as exc:
            raise CmeError(f"--email: {exc}") from None
    try:
        school = set_contact(_db_url(), urn, email=email, name=name, keep=keep)
    except LookupError as exc:
        raise CmeError(str(exc)) from None
    console.print(f"School URN {school.urn}: contact {school.email} (set by an officer).")


def duplicate_cmd(
    reference: str = typer.Argument(..., help="The referral flagged as a possible duplicate."),
    same_child: bool = typer.Option(False, "--same-child", help="The same child: link this "
                                    "referral to the other case and close it."),
    different: bool = typer.Option(False, "--different-children", help="Different children: "
                                   "both cases go on."),
) -> None:
    """Settle a possible duplicate (same surname and date of birth, no matching UPN)."""
    from tasks.duplicates import DuplicateDecisionError, settle_possible_duplicate

    if same_child == different:
        raise CmeError("give either --same-child or --different-children")
    try:
        other = settle_possible_duplicate(_db_url(), reference, same_child=same_child)
    except DuplicateDecisionError as exc:
        raise CmeError(str(exc)) from None
    console.print(f"{reference}: " + (f"linked to {other} and closed" if same_child
                                       else f"a different child from {other}; both go on"))
