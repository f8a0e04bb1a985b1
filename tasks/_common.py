"""Helpers shared by the tasks: bulk inserts that ignore duplicates, case events, names."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from models import CaseEvent, Child


def insert_ignoring_duplicates(session: Session, table: Table, rows: Sequence[dict[str, Any]]
                               ) -> int:
    """Insert ``rows``; rows that break a unique key are skipped. Returns how many were new.

    This is what makes a re-run batch harmless: the unique keys decide, not the caller.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    ins = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    result = session.execute(ins.values(list(rows)).on_conflict_do_nothing())
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def event(session: Session, referral_id: int, kind: str, text: str, *,
          rule: str | None = None, actor: str = "system") -> None:
    """Add a timeline line. ``text`` must never hold personal data (ids and codes only)."""
    session.add(CaseEvent(referral_id=referral_id, kind=kind, text=text, rule=rule, actor=actor))


def _initial(name: str) -> str:
    # The first letter, not the first character: "'t Hooft" is "T", and a name's first
    # character may be an apostrophe, a hyphen or a combining mark.
    for ch in name:
        if ch.isalpha():
            up = ch.upper()
            return up if len(up) == 1 and up.isalpha() else ch  # "ß".upper() is "SS"
    return ""


def initials(child: Child) -> str:
    """``Z.Q.`` — the most a notification may say about who the child is."""
    return "".join(f"{i}." for i in (_initial(child.forename), _initial(child.surname)) if i)


def match_key(surname: str, dob: date) -> str:
    """Key for linking a second referral of the same child when there is no UPN."""
    return f"{' '.join(surname.lower().split())}|{dob.isoformat()}"
