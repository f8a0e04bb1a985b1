"""Synthetic register marks for the attendance tests and the bench (synthetic pupils only)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from pathlib import Path

from policy import upn_check_letter

HEADER = ["UPN", "URN", "Date", "Session", "Code", "Leave End", "Year Group", "Forename",
          "Surname", "DOB"]


def upn(n: int) -> str:
    """A valid synthetic UPN (LA 850, school 2000, serial ``n``)."""
    body = f"85020{n:07d}"
    return upn_check_letter(body) + body


def school_days(start: date, n: int) -> list[date]:
    """``n`` weekdays from ``start`` on."""
    days, d = [], start
    while len(days) < n:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    return days


def marks(pupil: str, days: Iterable[date], codes: str | list[str], *, urn: str = "116001",
          **extra: str) -> Iterator[list[str]]:
    """Rows for ``pupil``: each day's AM then PM, codes taken in turn (a str: one per
    character; a list: one per item), the extra columns on every row."""
    seq = list(codes)
    i = 0
    for d in days:
        for session in ("AM", "PM"):
            yield [pupil, urn, d.isoformat(), session, seq[min(i, len(seq) - 1)],
                   extra.get("leave_end", ""), extra.get("year_group", ""),
                   extra.get("forename", "Test"), extra.get("surname", "Pupil"),
                   extra.get("dob", "2014-03-17")]
            i += 1


def write(path: Path, rows: Iterable[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path
