"""Working days deadline.

Encodes docs/guidance.md, *Working days*: "working day", the due date, and
"acknowledges every referral within 5 working days". Working days are **never**
school days (docs/guidance.md, *Working days*): school days come from registers
(``_pmooe``).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

__all__ = [
    "ACKNOWLEDGEMENT_WORKING_DAYS",
    "LONDON",
    "acknowledgement_due",
    "add_working_days",
    "bank_holidays",
    "is_working_day",
    "london_date",
    "next_working_day",
]

#: docs/guidance.md, Working days: "Acknowledge every referral within 5 working days."
ACKNOWLEDGEMENT_WORKING_DAYS = 5

#: The LA's calendar: dates of receipt are Europe/London dates (docs/guidance.md, Working days).
LONDON = ZoneInfo("Europe/London")


@lru_cache(maxsize=64)
def bank_holidays(year: int) -> frozenset[date]:
    """England & Wales bank holidays in ``year`` (``holidays`` package, GB, ``subdiv="ENG"``).

    Includes substitute ("observed") days and one-off bank holidays. Cached per year.
    """
    return frozenset(holidays.country_holidays("GB", subdiv="ENG", years=year).keys())


def _as_date(value: date, name: str) -> date:
    if isinstance(value, datetime):
        raise TypeError(f"{name} must be a date, not a datetime")
    return value


def is_working_day(day: date) -> bool:
    """True iff ``day`` is Monday-Friday and not an England & Wales bank holiday.

    docs/guidance.md, Working days: "working day | Mon-Fri and not an England & Wales bank
    holiday (holidays, subdiv="ENG")".
    """
    day = _as_date(day, "day")
    return day.weekday() < 5 and day not in bank_holidays(day.year)


def next_working_day(day: date) -> date:
    """``day`` itself if it is a working day, else the first working day after it."""
    day = _as_date(day, "day")
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


def add_working_days(start: date, n: int) -> date:
    """Return the ``n``-th working day after ``start`` (``start`` itself is not counted).

    docs/guidance.md, Working days. ``n == 0`` returns ``start`` unchanged (even if it is
    not a working day); a negative ``n`` counts backwards to the ``|n|``-th working
    day before ``start``. Raises ``TypeError`` for a ``datetime`` (use
    :func:`acknowledgement_due` or :func:`london_date` to turn a timestamp into a date).
    """
    day = _as_date(start, "start")
    step = timedelta(days=1 if n >= 0 else -1)
    remaining = abs(n)
    while remaining:
        day += step
        if is_working_day(day):
            remaining -= 1
    return day


def london_date(moment: date | datetime) -> date:
    """The Europe/London calendar date of ``moment``.

    Aware datetimes are converted to Europe/London (so 23:30 UTC in British Summer Time is the
    next day); naive datetimes are taken to be London time already; dates are returned as is.
    """
    if isinstance(moment, datetime):
        if moment.tzinfo is not None and moment.utcoffset() is not None:
            return moment.astimezone(LONDON).date()
        return moment.date()
    return moment


def acknowledgement_due(received: date | datetime) -> date:
    """Return the date by which a referral received at ``received`` must be acknowledged.

    docs/guidance.md, Working days: "acknowledgement due | the 5th working day after the day
    received, the day itself not counted. Convention: the day received is the Europe/London
    calendar date; a referral received on a non-working day is treated as received on the
    next working day (received Sat 28 Nov 2026 -> as Mon 30 Nov -> due Mon 7 Dec)".
    """
    as_received = next_working_day(london_date(received))
    return add_working_days(as_received, ACKNOWLEDGEMENT_WORKING_DAYS)
