"""Pupil missing out on education (PMOOE): detection from attendance register marks.

Encodes docs/guidance.md, *PMOOE*: the three conditions (leave not returned, continuous
absence, transition no-show), school days and sessions, and the attendance codes.

Conventions (the law is silent; chosen here and pinned by tests):

- A **school day** is a date with at least one mark other than ``#`` (planned closure). Days
  with no marks (weekends, holidays, half terms, days not yet recorded) are not school days.
- A session with no mark is treated like a day with no register: it is skipped. ``#``
  sessions are skipped too. So "every session of a school day" means every recorded, non-``#``
  session of it.
- Marks are validated before any rule runs; codes and sessions are stripped and upper-cased.
  Repeating a mark with the same code is harmless; the same (date, session) with two different
  codes is an error.
- When two triggers fall on the same day, the reported reason follows :data:`TIE_BREAK`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

__all__ = [
    "ABSENCE_CODES",
    "APPROVED_OFF_SITE_CODES",
    "ATTENDANCE_CODES",
    "CLOSURE_CODE",
    "CONTINUOUS_ABSENCE_SESSIONS",
    "LEAVE_OVERRUN_SCHOOL_DAYS",
    "Mark",
    "PmooeFinding",
    "PRESENT_CODES",
    "PmooeReason",
    "TIE_BREAK",
    "TRANSITION_YEARS",
    "assess_pmooe",
    "transition_start",
]

#: docs/guidance.md, PMOOE: attendance codes (from Aug 2024), by group.
PRESENT_CODES = frozenset({"/", "\\", "L"})
APPROVED_OFF_SITE_CODES = frozenset({"K", "V", "P", "W", "B", "D"})
AUTHORISED_ABSENCE_CODES = frozenset({"C", "C1", "C2", "E", "I", "J1", "M", "R", "S", "T", "X"})
UNAUTHORISED_ABSENCE_CODES = frozenset({"G", "N", "O", "U"})
ADMINISTRATIVE_CODES = frozenset({"Q", "Y1", "Y2", "Y3", "Y4", "Y5", "Y6", "Y7", "Z", "#"})
ATTENDANCE_CODES = (
    PRESENT_CODES
    | APPROVED_OFF_SITE_CODES
    | AUTHORISED_ABSENCE_CODES
    | UNAUTHORISED_ABSENCE_CODES
    | ADMINISTRATIVE_CODES
)
#: The codes every PMOOE rule counts as missing: "coded G, N or O" (docs/guidance.md, PMOOE).
ABSENCE_CODES = frozenset({"G", "N", "O"})
#: "``#`` (planned closure) sessions ... are skipped" (docs/guidance.md, PMOOE).
CLOSURE_CODE = "#"
#: "40 consecutive sessions" (docs/guidance.md, PMOOE, continuous-absence PMOOE).
CONTINUOUS_ABSENCE_SESSIONS = 40
#: "the first 10 school days after the leave's last day" (docs/guidance.md, PMOOE 1).
LEAVE_OVERRUN_SCHOOL_DAYS = 10
#: "a compulsory Key Stage transition (Year 3 or Year 7)" (docs/guidance.md, PMOOE, PMOOE 3).
TRANSITION_YEARS = frozenset({3, 7})
#: Convention: the first school day of the year is within a week of the day the caller
#: gives; a register with no mark in that week does not record it.
FIRST_DAY_WINDOW_DAYS = 7

_SESSION_ORDER = {"AM": 0, "PM": 1}

#: One register mark: (date, "AM" | "PM", attendance code).
Mark = tuple[date, str, str]


class PmooeReason(StrEnum):
    """Which PMOOE condition was met (docs/guidance.md, PMOOE 1-3)."""

    CONTINUOUS_ABSENCE = "continuous_absence"
    LEAVE_NOT_RETURNED = "leave_not_returned"
    TRANSITION_NO_SHOW = "transition_no_show"


#: Order used when two triggers fall on the same day (earlier in the tuple wins).
TIE_BREAK: tuple[PmooeReason, ...] = (
    PmooeReason.CONTINUOUS_ABSENCE,
    PmooeReason.LEAVE_NOT_RETURNED,
    PmooeReason.TRANSITION_NO_SHOW,
)


@dataclass(frozen=True, slots=True)
class PmooeFinding:
    """A PMOOE trigger: which condition was met and the school day on which it was met."""

    reason: PmooeReason
    triggered_on: date


_Session = tuple[date, int]


def _normalise(marks: Iterable[Mark]) -> dict[_Session, str]:
    """Validate marks and index them by (date, 0 for AM / 1 for PM)."""
    sessions: dict[_Session, str] = {}
    for mark in marks:
        if len(mark) != 3:
            raise ValueError("each mark must be a (date, session, code) triple")
        day, session, code = mark
        if isinstance(day, datetime) or not isinstance(day, date):
            raise ValueError("mark dates must be datetime.date values (not datetimes)")
        session_key = str(session).strip().upper()
        if session_key not in _SESSION_ORDER:
            raise ValueError(f"unknown register session {session!r}; expected 'AM' or 'PM'")
        code_key = str(code).strip().upper()
        if code_key not in ATTENDANCE_CODES:
            raise ValueError(f"unknown attendance code {code!r}")
        key = (day, _SESSION_ORDER[session_key])
        previous = sessions.setdefault(key, code_key)
        if previous != code_key:
            raise ValueError(
                f"conflicting attendance codes {previous!r} and {code_key!r} "
                f"for the same {session_key} session"
            )
    return sessions


def _continuous_absence(ordered: list[tuple[_Session, str]]) -> date | None:
    """docs/guidance.md, PMOOE: "continuous-absence PMOOE | 40 consecutive sessions coded
    G, N or O, in date then AM/PM order; # (planned closure) sessions and days with no register
    are skipped; any other code resets the run; triggered on the date of the 40th session".
    """
    run = 0
    for (day, _), code in ordered:
        if code == CLOSURE_CODE:
            continue
        if code in ABSENCE_CODES:
            run += 1
            if run == CONTINUOUS_ABSENCE_SESSIONS:
                return day
        else:
            run = 0
    return None


def _school_days(ordered: list[tuple[_Session, str]], after: date) -> dict[date, list[str]]:
    """The school days on or after ``after`` (dates with a non-``#`` mark), in date order,
    each with its recorded non-``#`` codes."""
    days: dict[date, list[str]] = {}
    for (day, _), code in ordered:
        if day >= after and code != CLOSURE_CODE:
            days.setdefault(day, []).append(code)
    return days


def _leave_not_returned(ordered: list[tuple[_Session, str]], leave_end: date) -> date | None:
    """docs/guidance.md, PMOOE: "leave overrun PMOOE | every session of the first 10 school
    days after the leave's last day is coded G, N or O (an explained absence, e.g. I, or any
    attendance means no trigger); triggered on the 10th of those school days".

    Fewer than 10 school days recorded after ``leave_end`` means no trigger yet.
    """
    days = list(_school_days(ordered, leave_end + timedelta(days=1)).items())
    first = days[:LEAVE_OVERRUN_SCHOOL_DAYS]
    if len(first) < LEAVE_OVERRUN_SCHOOL_DAYS:
        return None
    if all(code in ABSENCE_CODES for _, codes in first for code in codes):
        return first[-1][0]
    return None


def _transition_no_show(ordered: list[tuple[_Session, str]], transition_start: date) -> date | None:
    """docs/guidance.md, PMOOE: "transition no-show PMOOE | both sessions of the first
    school day of the academic year coded G, N or O, for a pupil entering Year 3 or Year 7".

    The first school day is the first on or after ``transition_start``; the caller decides
    whether the pupil is entering Year 3 or Year 7 and passes ``transition_start`` only then.
    Convention: it must fall within :data:`FIRST_DAY_WINDOW_DAYS` of ``transition_start``;
    a register that starts later (e.g. marks from October only) does not record the first
    day, so the rule cannot fire on it.
    """
    days = _school_days(ordered, transition_start)
    if not days:
        return None
    first_day, codes = next(iter(days.items()))
    if first_day >= transition_start + timedelta(days=FIRST_DAY_WINDOW_DAYS):
        return None
    if all(code in ABSENCE_CODES for code in codes):
        return first_day
    return None


def transition_start(dob: date, first_day: date) -> date | None:
    """``first_day`` (the first day of a school year) if a child born on ``dob`` enters a
    transition year group (Year 3 or Year 7) that school year, else None.

    docs/guidance.md, PMOOE 3: "not attending on the first day of a new academic year at a
    compulsory Key Stage transition (Year 3 or Year 7)". Pass the result to
    :func:`assess_pmooe` as ``transition_start``.
    """
    from policy._age import year_group

    return first_day if year_group(dob, first_day) in TRANSITION_YEARS else None


def assess_pmooe(
    marks: Iterable[Mark],
    *,
    leave_end: date | None = None,
    transition_start: date | None = None,
) -> PmooeFinding | None:
    """Return the earliest PMOOE trigger met by a pupil's register ``marks``, or None.

    docs/guidance.md, PMOOE 1-3, and its conventions: "continuous-absence PMOOE",
    "leave overrun PMOOE" and "transition no-show PMOOE".

    ``marks`` are ``(date, "AM" | "PM", code)`` in any order, codes from docs/guidance.md's list.
    ``leave_end`` is the last day of granted leave of absence (checks the leave rule);
    ``transition_start`` is the first day of the academic year for a pupil entering Year 3
    or Year 7 (checks the transition rule). Continuous absence is always checked.

    The finding with the earliest ``triggered_on`` wins; ties follow :data:`TIE_BREAK`
    (continuous absence, then leave not returned, then transition no-show).

    Raises ``ValueError`` for an unknown code or session, or one session given two different
    codes; the message names the code or session, never the pupil.
    """
    sessions = _normalise(marks)
    ordered = sorted(sessions.items())
    candidates: list[tuple[date, int, PmooeReason]] = []

    def consider(reason: PmooeReason, day: date | None) -> None:
        if day is not None:
            candidates.append((day, TIE_BREAK.index(reason), reason))

    consider(PmooeReason.CONTINUOUS_ABSENCE, _continuous_absence(ordered))
    if leave_end is not None:
        consider(PmooeReason.LEAVE_NOT_RETURNED, _leave_not_returned(ordered, leave_end))
    if transition_start is not None:
        consider(PmooeReason.TRANSITION_NO_SHOW, _transition_no_show(ordered, transition_start))
    if not candidates:
        return None
    day, _, reason = min(candidates)
    return PmooeFinding(reason=reason, triggered_on=day)
