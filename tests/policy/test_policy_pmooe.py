"""PMOOE detection from register marks (docs/guidance.md, PMOOE)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import date, datetime, timedelta

import pytest

from policy import ATTENDANCE_CODES, Mark, PmooeFinding, PmooeReason, assess_pmooe

MON = date(2025, 9, 1)  # Monday, first day of the 2025/26 academic year


def school_days(start: date, count: int, *, gap_after: int | None = None) -> list[date]:
    """``count`` weekdays from ``start``; a one-week half term after ``gap_after`` days."""
    days: list[date] = []
    day = start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
            if gap_after is not None and len(days) == gap_after:
                day += timedelta(days=7)
        day += timedelta(days=1)
    return days


def both(days: Iterable[date], code: str) -> list[Mark]:
    return [(d, s, code) for d in days for s in ("AM", "PM")]


def finding(reason: str, day: date) -> PmooeFinding:
    return PmooeFinding(reason=PmooeReason(reason), triggered_on=day)


# --- continuous absence ---------------------------------------------------------------


def test_forty_sessions_g_n_o_trigger_on_the_day_of_the_40th() -> None:
    days = school_days(MON, 20)
    marks = both(days[:7], "G") + both(days[7:14], "N") + both(days[14:], "O")
    assert assess_pmooe(marks) == finding("continuous_absence", days[19])


def test_thirty_nine_sessions_do_not_trigger() -> None:
    days = school_days(MON, 20)
    marks = both(days[:19], "G") + [(days[19], "AM", "G"), (days[19], "PM", "/")]
    assert assess_pmooe(marks) is None


def test_fortieth_session_in_the_morning_triggers_that_day() -> None:
    days = school_days(MON, 21)
    marks = [(days[0], "AM", "/"), (days[0], "PM", "G")] + both(days[1:20], "G")
    marks += [(days[20], "AM", "G")]
    assert assess_pmooe(marks) == finding("continuous_absence", days[20])


@pytest.mark.parametrize("breaker", ["/", "\\", "L", "I", "M", "C", "U", "B", "Q", "Y1", "Z"])
def test_any_other_code_resets_the_run(breaker: str) -> None:
    days = school_days(MON, 31)
    # 10 days absent, then the 11th day's AM breaks the run; the PM restarts it at 1,
    # so 39 more sessions are needed: days 12-30 (38) and day 31's AM.
    marks = both(days[:10], "G") + [(days[10], "AM", breaker), (days[10], "PM", "G")]
    marks += both(days[11:], "N")
    assert assess_pmooe(marks) == finding("continuous_absence", days[30])


def test_closure_sessions_are_skipped_not_counted() -> None:
    days = school_days(MON, 22)
    marks = both(days[:10], "G") + both(days[10:12], "#") + both(days[12:], "G")
    assert assess_pmooe(marks) == finding("continuous_absence", days[21])


def test_a_half_closed_day_counts_its_open_session_only() -> None:
    days = school_days(MON, 21)
    marks = both(days[:10], "G") + [(days[10], "AM", "#"), (days[10], "PM", "G")]
    marks += both(days[11:], "O")
    # 20 + 1 + 18 = 39 after day 20; the 40th is day 21's AM.
    assert assess_pmooe(marks) == finding("continuous_absence", days[20])


def test_half_term_with_no_register_is_skipped() -> None:
    days = school_days(date(2025, 10, 13), 20, gap_after=10)
    assert days[10] - days[9] > timedelta(days=7)  # the half term is in the data
    assert assess_pmooe(both(days, "G")) == finding("continuous_absence", days[19])


def test_order_of_marks_does_not_matter() -> None:
    days = school_days(MON, 20)
    marks = both(days, "G")
    random.Random(7).shuffle(marks)
    assert assess_pmooe(marks) == finding("continuous_absence", days[19])


def test_the_first_run_to_reach_forty_wins() -> None:
    days = school_days(MON, 45)
    marks = both(days[:20], "G") + both(days[20:25], "/") + both(days[25:], "G")
    assert assess_pmooe(marks) == finding("continuous_absence", days[19])


def test_no_marks_no_finding() -> None:
    assert assess_pmooe([]) is None


# --- leave not returned ---------------------------------------------------------------

LEAVE_END = date(2025, 10, 3)  # Friday, last day of leave
AFTER_LEAVE = school_days(date(2025, 10, 6), 10)


def test_ten_school_days_absent_after_leave_trigger_on_the_tenth() -> None:
    marks = both(school_days(date(2025, 9, 22), 10), "C") + both(AFTER_LEAVE, "G")
    assert assess_pmooe(marks, leave_end=LEAVE_END) == finding("leave_not_returned", AFTER_LEAVE[9])


def test_fewer_than_ten_school_days_recorded_is_no_trigger_yet() -> None:
    assert assess_pmooe(both(AFTER_LEAVE[:9], "G"), leave_end=LEAVE_END) is None


@pytest.mark.parametrize("code", ["I", "M", "/", "L", "B", "U", "C"])
def test_an_explained_absence_or_attendance_means_no_leave_trigger(code: str) -> None:
    marks = both(AFTER_LEAVE, "N")
    marks[7] = (marks[7][0], marks[7][1], code)
    assert assess_pmooe(marks, leave_end=LEAVE_END) is None


def test_only_the_first_ten_school_days_matter() -> None:
    later = school_days(AFTER_LEAVE[-1] + timedelta(days=1), 3)
    marks = both(AFTER_LEAVE, "G") + both(later, "/")
    assert assess_pmooe(marks, leave_end=LEAVE_END) == finding("leave_not_returned", AFTER_LEAVE[9])


def test_leave_days_are_counted_from_the_day_after_leave_end() -> None:
    # A G on the leave's last day itself is not one of the 10 school days.
    marks = both([LEAVE_END], "G") + both(AFTER_LEAVE[:9], "G")
    assert assess_pmooe(marks, leave_end=LEAVE_END) is None


def test_closure_days_and_half_term_are_not_school_days_for_leave() -> None:
    days = school_days(date(2025, 10, 20), 12, gap_after=5)  # half term 27-31 Oct 2025
    marks = both(days[:5], "G") + both(days[5:7], "#") + both(days[7:], "O")
    assert assess_pmooe(marks, leave_end=date(2025, 10, 17)) == finding(
        "leave_not_returned", days[11]
    )


def test_a_half_closed_day_is_a_school_day_for_leave() -> None:
    marks = both(AFTER_LEAVE[:9], "G") + [(AFTER_LEAVE[9], "AM", "G"), (AFTER_LEAVE[9], "PM", "#")]
    assert assess_pmooe(marks, leave_end=LEAVE_END) == finding("leave_not_returned", AFTER_LEAVE[9])


def test_leave_rule_is_not_checked_without_leave_end() -> None:
    assert assess_pmooe(both(AFTER_LEAVE, "G")) is None


# --- transition no-show ---------------------------------------------------------------


def test_both_sessions_absent_on_the_first_day_of_year_3_or_7() -> None:
    marks = both(school_days(MON, 3), "G")
    assert assess_pmooe(marks, transition_start=MON) == finding("transition_no_show", MON)


@pytest.mark.parametrize(("am", "pm"), [("G", "/"), ("/", "N"), ("I", "G"), ("L", "L")])
def test_attending_or_explained_on_the_first_day_is_no_transition_trigger(am: str, pm: str) -> None:
    marks: list[Mark] = [(MON, "AM", am), (MON, "PM", pm)]
    marks += both(school_days(MON + timedelta(days=1), 2), "G")
    assert assess_pmooe(marks, transition_start=MON) is None


def test_an_inset_day_is_not_the_first_school_day() -> None:
    tuesday = MON + timedelta(days=1)
    marks = both([MON], "#") + both([tuesday], "O")
    assert assess_pmooe(marks, transition_start=MON) == finding("transition_no_show", tuesday)


def test_transition_start_before_term_uses_the_first_day_with_a_register() -> None:
    marks = both([date(2025, 9, 3)], "N")
    assert assess_pmooe(marks, transition_start=date(2025, 8, 30)) == finding(
        "transition_no_show", date(2025, 9, 3)
    )


def test_marks_before_transition_start_are_ignored_for_the_transition_rule() -> None:
    marks = both([date(2025, 7, 18)], "/") + both([MON], "G")
    assert assess_pmooe(marks, transition_start=MON) == finding("transition_no_show", MON)


def test_a_register_that_starts_weeks_after_the_first_day_is_no_transition_trigger() -> None:
    # Issue 14, point 2: intake passes the school year's real first day; marks from October
    # only do not record it, so absence in October is not a first-day no-show.
    october = [date(2025, 10, d) for d in (1, 2, 3)]
    assert assess_pmooe(both(october, "O"), transition_start=date(2025, 9, 3)) is None


def test_transition_rule_is_not_checked_without_transition_start() -> None:
    assert assess_pmooe(both([MON], "G")) is None


def test_no_register_yet_after_transition_start_is_no_trigger() -> None:
    assert assess_pmooe(both([date(2025, 7, 18)], "G"), transition_start=MON) is None


# --- the earliest trigger, and ties ---------------------------------------------------


def test_earliest_trigger_wins() -> None:
    days = school_days(MON, 20)
    marks = both(days, "G")
    # transition on day 1, leave on day 10 (leave ended the Friday before), absence on day 20
    assert assess_pmooe(marks, leave_end=date(2025, 8, 29), transition_start=MON) == finding(
        "transition_no_show", MON
    )
    assert assess_pmooe(marks, leave_end=date(2025, 8, 29)) == finding(
        "leave_not_returned", days[9]
    )


def test_tie_between_continuous_absence_and_leave_goes_to_continuous_absence() -> None:
    days = school_days(MON, 20)
    # Absent (unauthorised) through the leave as well: day 20 is the 40th session and
    # also the 10th school day after the leave's last day (day 10).
    marks = both(days, "G")
    assert assess_pmooe(marks, leave_end=days[9]) == finding("continuous_absence", days[19])


def test_tie_between_leave_and_transition_goes_to_leave() -> None:
    days = school_days(MON, 10)
    marks = both(days, "O")
    assert assess_pmooe(marks, leave_end=date(2025, 8, 29), transition_start=days[9]) == finding(
        "leave_not_returned", days[9]
    )


def test_tie_between_continuous_absence_and_transition_goes_to_continuous_absence() -> None:
    days = school_days(MON, 20)
    marks = both(days, "G")
    assert assess_pmooe(marks, transition_start=days[19]) == finding("continuous_absence", days[19])


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(ATTENDANCE_CODES))
def test_every_domain_code_is_accepted(code: str) -> None:
    assert assess_pmooe([(MON, "AM", code)]) is None


def test_domain_code_list_is_complete() -> None:
    expected = set("/\\LKVPWBDCEIMRSTXGNOUQZ#") | {"C1", "C2", "J1"}
    expected |= {f"Y{i}" for i in range(1, 8)}
    assert expected == ATTENDANCE_CODES


def test_codes_and_sessions_are_normalised() -> None:
    days = school_days(MON, 20)
    marks = [(d, s, c) for d in days for s, c in (("am", " g"), ("Pm", "n "))]
    assert assess_pmooe(marks) == finding("continuous_absence", days[19])


@pytest.mark.parametrize("code", ["ZZ", "A", "J", "Y8", "", "1"])
def test_unknown_code_is_rejected_naming_the_code(code: str) -> None:
    with pytest.raises(ValueError, match="unknown attendance code") as info:
        assess_pmooe([(MON, "AM", "G"), (MON, "PM", code)])
    assert repr(code) in str(info.value)
    assert MON.isoformat() not in str(info.value)


@pytest.mark.parametrize("session", ["EVE", "", "A.M."])
def test_unknown_session_is_rejected(session: str) -> None:
    with pytest.raises(ValueError, match="unknown register session"):
        assess_pmooe([(MON, session, "G")])


def test_duplicate_session_with_the_same_code_is_harmless() -> None:
    days = school_days(MON, 20)
    assert assess_pmooe(both(days, "G") + both(days, "G")) == finding(
        "continuous_absence", days[19]
    )


def test_duplicate_session_with_different_codes_is_rejected() -> None:
    with pytest.raises(ValueError, match="conflicting attendance codes 'G' and '/'"):
        assess_pmooe([(MON, "AM", "G"), (MON, "am", "/")])


def test_datetimes_are_rejected_as_mark_dates() -> None:
    with pytest.raises(ValueError, match="date"):
        assess_pmooe([(datetime(2025, 9, 1, 9, 0), "AM", "G")])


def test_finding_is_frozen_and_compares_with_plain_strings() -> None:
    result = assess_pmooe(both(school_days(MON, 20), "G"))
    assert result is not None
    assert result.reason == "continuous_absence"
    with pytest.raises(AttributeError):
        result.reason = PmooeReason.TRANSITION_NO_SHOW  # type: ignore[misc]
