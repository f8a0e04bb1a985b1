"""Compulsory school age and year groups (docs/guidance.md, Compulsory school age)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from policy import compulsory_school_age, is_compulsory_school_age, year_group
from policy._age import _age_on


@pytest.mark.parametrize(
    ("dob", "start", "end"),
    [
        # 5th birthday falls on a prescribed day: starts that day.
        (date(2020, 12, 31), date(2025, 12, 31), date(2037, 6, 26)),
        (date(2021, 3, 31), date(2026, 3, 31), date(2037, 6, 26)),
        (date(2021, 8, 31), date(2026, 8, 31), date(2037, 6, 26)),
        # The day after a prescribed day: the next one.
        (date(2021, 1, 1), date(2026, 3, 31), date(2037, 6, 26)),
        (date(2021, 4, 1), date(2026, 8, 31), date(2037, 6, 26)),
        (date(2021, 9, 1), date(2026, 12, 31), date(2038, 6, 25)),
        # Turning 16 on 31 Aug vs 1 Sep: different school years, different last Fridays.
        (date(2010, 8, 31), date(2015, 8, 31), date(2026, 6, 26)),
        (date(2010, 9, 1), date(2015, 12, 31), date(2027, 6, 25)),
        # 30 June is itself the last Friday in 2028.
        (date(2012, 2, 29), date(2017, 3, 31), date(2028, 6, 30)),
        # Leap-day birthday, 5th and 16th birthdays in non-leap years (1 March).
        (date(2008, 2, 29), date(2013, 3, 31), date(2024, 6, 28)),
    ],
)
def test_compulsory_school_age_start_and_end(dob: date, start: date, end: date) -> None:
    assert compulsory_school_age(dob) == (start, end)


@pytest.mark.parametrize("dob", [date(2008, 2, 29), date(2010, 9, 1), date(2019, 6, 15)])
def test_compulsory_school_age_both_ends_inclusive(dob: date) -> None:
    start, end = compulsory_school_age(dob)
    assert end.weekday() == 4 and end.month == 6 and (end + timedelta(days=7)).month == 7
    assert not is_compulsory_school_age(dob, start - timedelta(days=1))
    assert is_compulsory_school_age(dob, start)
    assert is_compulsory_school_age(dob, end)
    assert not is_compulsory_school_age(dob, end + timedelta(days=1))


@pytest.mark.parametrize(
    ("dob", "on", "expected"),
    [
        (date(2021, 8, 31), date(2025, 9, 1), 0),  # 4 on 31 Aug 2025: Reception
        (date(2021, 9, 1), date(2025, 9, 1), -1),  # 3 on 31 Aug 2025: nursery age
        (date(2021, 9, 1), date(2026, 8, 31), -1),  # same school year, last day
        (date(2021, 9, 1), date(2026, 9, 1), 0),
        (date(2020, 9, 1), date(2026, 7, 1), 0),
        (date(2020, 9, 1), date(2026, 9, 1), 1),
        (date(2018, 5, 5), date(2026, 1, 15), 3),
        (date(2015, 3, 1), date(2026, 10, 1), 7),
        (date(2010, 9, 1), date(2026, 9, 1), 11),
        (date(2010, 8, 31), date(2026, 9, 1), 12),
        (date(2008, 2, 29), date(2026, 1, 1), 13),
        (date(2024, 1, 1), date(2025, 9, 1), -3),
    ],
)
def test_year_group(dob: date, on: date, expected: int) -> None:
    assert year_group(dob, on) == expected


@pytest.mark.parametrize(
    ("on", "age"),
    [
        (date(2021, 2, 28), 0),  # non-leap year: the birthday is 1 March
        (date(2021, 3, 1), 1),
        (date(2023, 2, 28), 2),
        (date(2023, 3, 1), 3),
        (date(2024, 2, 28), 3),
        (date(2024, 2, 29), 4),
    ],
)
def test_leap_day_birthday_falls_on_1_march_in_non_leap_years(on: date, age: int) -> None:
    assert _age_on(date(2020, 2, 29), on) == age
