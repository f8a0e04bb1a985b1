"""The guidance as code: pure functions of plain values, no I/O.

Each rule cites the line of ``DOMAIN.md`` it encodes. Everything the rest of the project may
use is listed in ``__all__``; the ``_``-prefixed modules are internal. The tracing rulebook is
summarised in ``policy/RULEBOOK.md``.
"""

from policy._age import compulsory_school_age, is_compulsory_school_age, year_group
from policy._calendar import (
    acknowledgement_due,
    add_working_days,
    is_working_day,
    london_date,
    next_working_day,
)
from policy._classify import (
    Category,
    Classification,
    ClassificationReason,
    InclusionTeam,
    classify,
    signpost_for,
)
from policy._decide import (
    DEFAULT_MIN_ROUNDS,
    HOME_LA,
    RULEBOOK,
    Action,
    ActionKind,
    CaseFacts,
    CaseOutcome,
    CaseStatus,
    CheckOutcome,
    CheckResult,
    Decision,
    Rule,
    decide,
    next_check_due,
)
from policy._pmooe import ATTENDANCE_CODES, Mark, PmooeFinding, PmooeReason, assess_pmooe
from policy._upn import UPN_ALPHABET, is_valid_upn, upn_check_letter, upn_problem

__all__ = [
    "ATTENDANCE_CODES",
    "DEFAULT_MIN_ROUNDS",
    "HOME_LA",
    "RULEBOOK",
    "UPN_ALPHABET",
    "Action",
    "ActionKind",
    "CaseFacts",
    "CaseOutcome",
    "CaseStatus",
    "Category",
    "CheckOutcome",
    "CheckResult",
    "Classification",
    "ClassificationReason",
    "Decision",
    "InclusionTeam",
    "Mark",
    "PmooeFinding",
    "PmooeReason",
    "Rule",
    "acknowledgement_due",
    "add_working_days",
    "assess_pmooe",
    "classify",
    "compulsory_school_age",
    "decide",
    "is_compulsory_school_age",
    "is_valid_upn",
    "is_working_day",
    "london_date",
    "next_check_due",
    "next_working_day",
    "signpost_for",
    "upn_check_letter",
    "upn_problem",
    "year_group",
]
