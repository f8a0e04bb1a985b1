"""Working days deadline (docs/guidance.md, Working days)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from policy import (
    acknowledgement_due,
    add_working_days,
    is_working_day,
    london_date,
    next_working_day,
)
from policy._calendar import bank_holidays


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 4, 2), True),  # Maundy Thursday
        (date(2026, 4, 3), False),  # Good Friday
        (date(2026, 4, 4), False),  # Saturday
        (date(2026, 4, 6), False),  # Easter Monday
        (date(2026, 4, 7), True),
        (date(2026, 5, 4), False),  # Early May bank holiday
        (date(2026, 8, 31), False),  # Summer bank holiday (England, not Scotland's)
        (date(2026, 8, 3), True),  # Scotland's summer bank holiday is not England's
        (date(2026, 12, 24), True),
        (date(2026, 12, 25), False),  # Christmas Day, Friday
        (date(2026, 12, 28), False),  # Boxing Day (Saturday) substitute
        (date(2026, 12, 29), True),
        (date(2027, 1, 1), False),
        (date(2026, 3, 17), True),  # St Patrick's Day: Northern Ireland only
    ],
)
def test_is_working_day(day: date, working: bool) -> None:
    assert is_working_day(day) is working


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        (date(2026, 4, 2), 0, date(2026, 4, 2)),
        (date(2026, 4, 4), 0, date(2026, 4, 4)),  # n=0 returns start even on a weekend
        (date(2026, 4, 2), 1, date(2026, 4, 7)),  # over Good Friday and Easter Monday
        (date(2026, 4, 3), 1, date(2026, 4, 7)),
        (date(2026, 3, 30), 5, date(2026, 4, 8)),
        (date(2026, 12, 24), 1, date(2026, 12, 29)),
        (date(2026, 12, 24), 3, date(2026, 12, 31)),
        (date(2026, 12, 24), 4, date(2027, 1, 4)),  # across the year: New Year's Day
        (date(2026, 11, 27), 5, date(2026, 12, 4)),
        (date(2026, 4, 7), -1, date(2026, 4, 2)),
        (date(2027, 1, 4), -4, date(2026, 12, 24)),
    ],
)
def test_add_working_days(start: date, n: int, expected: date) -> None:
    assert add_working_days(start, n) == expected


def test_add_working_days_rejects_a_datetime() -> None:
    with pytest.raises(TypeError, match="date"):
        add_working_days(datetime(2026, 4, 2, 9, 0), 1)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 4, 2), date(2026, 4, 2)),
        (date(2026, 4, 3), date(2026, 4, 7)),
        (date(2026, 12, 25), date(2026, 12, 29)),
    ],
)
def test_next_working_day(day: date, expected: date) -> None:
    assert next_working_day(day) == expected


@pytest.mark.parametrize(
    ("received", "due"),
    [
        # docs/guidance.md's worked example: Sat 28 Nov 2026 -> as Mon 30 Nov -> Mon 7 Dec.
        (date(2026, 11, 28), date(2026, 12, 7)),
        (date(2026, 11, 29), date(2026, 12, 7)),
        (date(2026, 11, 30), date(2026, 12, 7)),
        (date(2026, 11, 27), date(2026, 12, 4)),
        # Easter 2026: Good Friday 3 Apr, Easter Monday 6 Apr.
        (date(2026, 4, 2), date(2026, 4, 13)),
        (date(2026, 4, 3), date(2026, 4, 14)),  # as Tue 7 Apr
        (date(2026, 4, 6), date(2026, 4, 14)),
        # Christmas 2026: Fri 25 Dec, Boxing Day substitute Mon 28 Dec, New Year Fri 1 Jan.
        (date(2026, 12, 24), date(2027, 1, 5)),
        (date(2026, 12, 25), date(2027, 1, 6)),  # as Tue 29 Dec
        (date(2026, 12, 28), date(2027, 1, 6)),
        # Naive datetimes are London time: 23:30 on Thursday is Thursday.
        (datetime(2026, 7, 30, 23, 30), date(2026, 8, 6)),
        # Aware: 23:30 UTC in summer time is 00:30 the next day in London.
        (datetime(2026, 7, 30, 23, 30, tzinfo=UTC), date(2026, 8, 7)),
        # The day before the clocks go back (Sun 25 Oct 2026): Sat 23:30 UTC is Sun 00:30 BST.
        (datetime(2026, 10, 23, 23, 30, tzinfo=UTC), date(2026, 11, 2)),  # Fri -> Sat -> Mon
        (datetime(2026, 10, 24, 23, 30, tzinfo=UTC), date(2026, 11, 2)),
        # In GMT, 23:30 UTC is the same London day.
        (datetime(2026, 11, 6, 23, 30, tzinfo=UTC), date(2026, 11, 13)),
        # The day before the clocks go forward (Sun 29 Mar 2026) is still GMT.
        (datetime(2026, 3, 27, 23, 30, tzinfo=UTC), date(2026, 4, 7)),  # Fri 27 Mar
        (datetime(2026, 3, 28, 23, 30, tzinfo=UTC), date(2026, 4, 8)),  # Sat -> Mon 30 Mar
        # Another offset: 00:30 at +02:00 is 23:30 BST the day before.
        (datetime(2026, 7, 31, 0, 30, tzinfo=timezone(timedelta(hours=2))), date(2026, 8, 6)),
    ],
)
def test_acknowledgement_due(received: date | datetime, due: date) -> None:
    assert acknowledgement_due(received) == due


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (date(2026, 10, 24), date(2026, 10, 24)),
        (datetime(2026, 10, 24, 23, 30), date(2026, 10, 24)),
        (datetime(2026, 10, 24, 23, 30, tzinfo=UTC), date(2026, 10, 25)),
        (datetime(2026, 10, 25, 23, 30, tzinfo=UTC), date(2026, 10, 25)),  # GMT again
        (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), date(2026, 3, 29)),
        (datetime(2026, 3, 29, 23, 0, tzinfo=UTC), date(2026, 3, 30)),  # BST from 01:00 UTC
    ],
)
def test_london_date(moment: date | datetime, expected: date) -> None:
    assert london_date(moment) == expected


def test_bank_holidays_are_cached_per_year() -> None:
    assert bank_holidays(2026) is bank_holidays(2026)
    assert date(2026, 12, 28) in bank_holidays(2026)
