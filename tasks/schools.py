"""School contacts: from a trusted list or an officer, never from whatever a referral says.

A school's contact decides where every acknowledgement, resolution and half-termly list of
its cases goes. So a referral may only *propose* one (recorded on its timeline and flagged on
the worklist, :mod:`tasks.intake`); the contact is set here, from the LA's schools list
(:func:`import_schools`, ``cme schools import FILE``) or by an officer
(:func:`set_contact`, ``cme schools set-contact``). Each change is a timeline line on the
school's open cases, saying who made it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from sqlmodel import Session, col, select

from models import CaseStatus, Referral, School, describe_validation_error, session_scope
from models.schemas import SchoolIn
from tasks._common import event

__all__ = ["SchoolsFileError", "SchoolsImport", "import_schools", "read_schools_file",
           "set_contact"]

#: The schools file's columns (a CSV export of the LA's list, or of Get Information about
#: Schools with these headers).
COLUMNS = ("urn", "name", "la_code", "email")
MAX_SCHOOLS_FILE_BYTES = 10 * 1024 * 1024


class SchoolsFileError(ValueError):
    """The schools file cannot be used; nothing was imported. The message says where."""


@dataclass
class SchoolsImport:
    """Counts only."""

    added: int = 0
    changed: int = 0
    unchanged: int = 0


def read_schools_file(path: Path) -> list[SchoolIn]:
    """Every row of a schools CSV file, validated; raises :class:`SchoolsFileError` listing
    the first problems (line and column, never a whole row) if any row is wrong."""
    if not path.is_file():
        raise SchoolsFileError(f"{path.name}: not a readable file")
    if path.stat().st_size > MAX_SCHOOLS_FILE_BYTES:
        raise SchoolsFileError(f"{path.name}: larger than "
                               f"{MAX_SCHOOLS_FILE_BYTES // (1024 * 1024)} MiB")
    problems: list[str] = []
    rows: dict[str, SchoolIn] = {}
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SchoolsFileError(f"{path.name}: missing column(s) {', '.join(missing)} "
                                   f"(the header must name {', '.join(COLUMNS)})")
        for row in reader:
            where = f"line {reader.line_num}"
            try:
                school = SchoolIn.model_validate(
                    {c: (row.get(c) or "").strip() for c in COLUMNS})
            except ValidationError as exc:
                problems += [f"{where}: {p}" for p in describe_validation_error(exc)]
                continue
            if school.urn in rows:
                problems.append(f"{where}: URN {school.urn} is listed twice")
            rows[school.urn] = school
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more"
                                           if len(problems) > 5 else "")
        raise SchoolsFileError(f"{path.name}: nothing imported: {shown}")
    return list(rows.values())


def _tell_open_cases(s: Session, school: School, text: str, actor: str) -> None:
    for rid in s.exec(select(Referral.id).where(
            Referral.school_id == school.id, col(Referral.status) != CaseStatus.CLOSED)):
        event(s, rid or 0, "school_contact", text, actor=actor)


def _apply(s: Session, school: School, name: str, email: str, source: str,
           actor: str) -> bool:
    """Set the contact; True if name or email changed. A quoted contact the new one settles
    (the same address) is cleared; one that still differs stays for an officer."""
    changed = (school.name, school.email.lower()) != (name, email.lower())
    school.name, school.email, school.contact_source = name, email, source
    if school.quoted_email is not None and school.quoted_email.lower() == email.lower():
        school.quoted_email = school.quoted_name = school.quoted_by_id = None
    if changed:
        _tell_open_cases(s, school, f"School URN {school.urn}'s contact changed to {email} "
                         f"({'the schools list' if source == 'trusted' else 'an officer'})",
                         actor)
    return changed


def import_schools(db_url: str, path: Path) -> SchoolsImport:
    """Load the LA's schools list: each school's name and contact become trusted (all rows
    or none: a file with a bad row changes nothing)."""
    rows = read_schools_file(path)
    out = SchoolsImport()
    with session_scope(db_url) as s:
        held = {x.urn: x for x in s.exec(select(School).where(
            col(School.urn).in_([r.urn for r in rows])))}
        for r in rows:
            school = held.get(r.urn)
            if school is None:
                s.add(School(urn=r.urn, name=r.name, la_code=r.la_code, email=str(r.email),
                             contact_source="trusted"))
                out.added += 1
                continue
            school.la_code = r.la_code
            if _apply(s, school, r.name, str(r.email), "trusted", "schools list"):
                out.changed += 1
            else:
                out.unchanged += 1
    return out


def set_contact(db_url: str, urn: str, *, email: str | None, name: str | None = None,
                keep: bool = False) -> School:
    """An officer sets a school's contact (``email``, optionally ``name``), or with ``keep``
    confirms the one held; either way the contact is verified and a referral's differing
    contact is settled. Raises ``LookupError`` for an unknown URN."""
    with session_scope(db_url) as s:
        school = s.exec(select(School).where(School.urn == urn)).first()
        if school is None:
            raise LookupError(f"no school with URN {urn} in the case database")
        if keep:
            school.contact_source = "officer"
            school.quoted_email = school.quoted_name = school.quoted_by_id = None
            _tell_open_cases(s, school, f"School URN {urn}'s contact confirmed by an officer "
                             "(a referral's different contact not applied)", "officer")
        else:
            assert email is not None
            _apply(s, school, name or school.name, email, "officer", "officer")
            school.quoted_email = school.quoted_name = school.quoted_by_id = None
        s.flush()
        s.expunge(school)
        return school
