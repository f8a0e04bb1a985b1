"""Compulsory school age and year groups.

Encodes docs/guidance.md, *Compulsory school age* and *Year group*: when compulsory school age
starts and ends, and the year group. A 29 February birthday falls on 1 March in non-leap
years (issue 3).
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta

__all__ = ["compulsory_school_age", "is_compulsory_school_age", "year_group"]

_FRIDAY = 4


def _birthday_in(dob: date, year: int) -> date:
    """The child's birthday in ``year``; 29 February becomes 1 March in a non-leap year."""
    if dob.month == 2 and dob.day == 29 and not calendar.isleap(year):
        return date(year, 3, 1)
    return dob.replace(year=year)


def _age_on(dob: date, on: date) -> int:
    """Completed years of age on ``on`` (negative if ``on`` is before birth)."""
    years = on.year - dob.year
    if on < _birthday_in(dob, on.year):
        years -= 1
    return years


def _last_friday_of_june(year: int) -> date:
    last = date(year, 6, 30)
    return last - timedelta(days=(last.weekday() - _FRIDAY) % 7)


def compulsory_school_age(dob: date) -> tuple[date, date]:
    """Return the first and last day of compulsory school age for a child born on ``dob``.

    docs/guidance.md, Compulsory school age / Year group:

    - "compulsory school age starts | the first of 31 Dec, 31 Mar, 31 Aug falling on or after
      the 5th birthday";
    - "compulsory school age ends | the last Friday in June of the school year (1 Sep-31 Aug)
      in which the child turns 16".

    Both days are inclusive (see :func:`is_compulsory_school_age`).
    """
    fifth = _birthday_in(dob, dob.year + 5)
    # 31 Dec is always on or after any day of its year, so the start is in the same year.
    start = min(
        day
        for day in (date(fifth.year, 3, 31), date(fifth.year, 8, 31), date(fifth.year, 12, 31))
        if day >= fifth
    )
    sixteenth = _birthday_in(dob, dob.year + 16)
    # The school year running 1 Sep Y to 31 Aug Y+1 has its June in Y+1.
    june_year = sixteenth.year + 1 if sixteenth.month >= 9 else sixteenth.year
    return start, _last_friday_of_june(june_year)


def is_compulsory_school_age(dob: date, on: date) -> bool:
    """True iff a child born on ``dob`` is of compulsory school age on ``on`` (ends inclusive).

    docs/guidance.md, Compulsory school age / Year group, "compulsory school age starts/ends"; see
    :func:`compulsory_school_age`.
    """
    start, end = compulsory_school_age(dob)
    return start <= on <= end


def year_group(dob: date, on: date) -> int:
    """Return the national curriculum year group on ``on``: 0 Reception, 1-13, negative before.

    docs/guidance.md, Year group: "age on 31 August before the school year, less four"
    (4 -> Reception, a -> Year (a - 4)). The school year containing ``on`` runs 1 Sep-31 Aug.
    The result is not capped: a young person past Year 13 gets 14 or more.
    """
    school_year_start = on.year if on.month >= 9 else on.year - 1
    return _age_on(dob, date(school_year_start, 8, 31)) - 4
