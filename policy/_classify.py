"""Classification of a referred child: CME, PMOOE or not CME, and where to signpost.

Encodes docs/guidance.md, *Who is missing education* and *Classification* (CME, what is
not CME, PMOOE, and the Inclusion Support Service teams the CME team signposts to).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from policy._age import is_compulsory_school_age
from policy._pmooe import PmooeFinding

__all__ = [
    "Category",
    "Classification",
    "ClassificationReason",
    "EDUCATION_OTHERWISE",
    "InclusionTeam",
    "classify",
    "signpost_for",
]


class Category(StrEnum):
    """The three categories (docs/guidance.md, Who is missing education)."""

    CME = "CME"
    PMOOE = "PMOOE"
    NOT_CME = "NOT_CME"


class ClassificationReason(StrEnum):
    """Short, stable codes for why :func:`classify` chose a category."""

    NOT_COMPULSORY_SCHOOL_AGE = "not_compulsory_school_age"
    REDUCED_HOURS_PROVISION = "reduced_hours_provision"
    PMOOE_CONTINUOUS_ABSENCE = "pmooe_continuous_absence"
    PMOOE_LEAVE_NOT_RETURNED = "pmooe_leave_not_returned"
    PMOOE_TRANSITION_NO_SHOW = "pmooe_transition_no_show"
    ON_ROLL = "on_roll"
    EHE_SUITABLE = "ehe_suitable"
    EHE_UNASSESSED = "ehe_unassessed"
    ALTERNATIVE_PROVISION = "alternative_provision"
    EHE_UNSUITABLE = "ehe_unsuitable"
    NOT_REGISTERED = "not_registered"


class InclusionTeam(StrEnum):
    """Inclusion Support Service teams (docs/guidance.md, Classification)."""

    ATTENDANCE_SUPPORT = "attendance_support"
    MEDICAL_REFERRALS = "medical_referrals"
    REDUCED_HOURS_PROVISION = "reduced_hours_provision"
    ELECTIVE_HOME_EDUCATION = "elective_home_education"
    LEGAL_INTERVENTION = "legal_intervention"


#: Accepted values of ``education_otherwise`` (besides None).
EDUCATION_OTHERWISE = frozenset(
    {"ehe_suitable", "ehe_unsuitable", "ehe_unassessed", "alternative_provision"}
)

# Convention: only NOT_CME outcomes that another team owns are signposted. A child on roll
# (e.g. persistently absent) belongs to attendance support; RHP to its own team; EHE, suitable
# or not yet assessed, to the EHE team. CME and PMOOE cases stay with the CME team.
_SIGNPOSTS: dict[ClassificationReason, InclusionTeam] = {
    ClassificationReason.ON_ROLL: InclusionTeam.ATTENDANCE_SUPPORT,
    ClassificationReason.REDUCED_HOURS_PROVISION: InclusionTeam.REDUCED_HOURS_PROVISION,
    ClassificationReason.EHE_SUITABLE: InclusionTeam.ELECTIVE_HOME_EDUCATION,
    ClassificationReason.EHE_UNASSESSED: InclusionTeam.ELECTIVE_HOME_EDUCATION,
}

_PMOOE_REASONS = {
    "continuous_absence": ClassificationReason.PMOOE_CONTINUOUS_ABSENCE,
    "leave_not_returned": ClassificationReason.PMOOE_LEAVE_NOT_RETURNED,
    "transition_no_show": ClassificationReason.PMOOE_TRANSITION_NO_SHOW,
}


def signpost_for(reason: str) -> InclusionTeam | None:
    """The Inclusion Support Service team to signpost a case to, given its classification
    ``reason``, or None when the case stays with the CME team (or with nobody).

    docs/guidance.md, Classification: the school is "signposted" to the team that owns it.
    Raises ``ValueError`` for a reason that is not a :class:`ClassificationReason`.
    """
    try:
        key = ClassificationReason(reason)
    except ValueError:
        raise ValueError(f"unknown classification reason {reason!r}") from None
    return _SIGNPOSTS.get(key)


@dataclass(frozen=True, slots=True)
class Classification:
    """The result of :func:`classify`. ``signpost`` is ``signpost_for(reason)``."""

    category: Category
    reason: ClassificationReason
    signpost: InclusionTeam | None = None


def _result(category: Category, reason: ClassificationReason) -> Classification:
    return Classification(category=category, reason=reason, signpost=_SIGNPOSTS.get(reason))


def classify(
    *,
    dob: date,
    on: date,
    on_roll: bool,
    education_otherwise: str | None = None,
    reduced_hours: bool = False,
    pmooe: PmooeFinding | None = None,
) -> Classification:
    """Classify a child on ``on`` as CME, PMOOE or NOT_CME. First matching rule wins:

    1. not of compulsory school age -> NOT_CME ``not_compulsory_school_age``
       (docs/guidance.md: CME are not "children not of compulsory school age");
    2. on roll with Reduced Hours Provision -> NOT_CME ``reduced_hours_provision``
       ("any education at all means not CME and not PMOOE");
    3. on roll with a PMOOE finding -> PMOOE ``pmooe_<finding reason>`` (Who is who, PMOOE);
    4. on roll otherwise -> NOT_CME ``on_roll`` ("children on a school roll (even if
       persistently absent)");
    5. not on roll, in suitable EHE, EHE not yet assessed, or alternative provision ->
       NOT_CME ``ehe_suitable`` / ``ehe_unassessed`` / ``alternative_provision``
       ("children receiving suitable education otherwise", "EHE children not yet assessed");
    6. otherwise CME: ``ehe_unsuitable`` ("EHE assessed as unsuitable") or ``not_registered``
       (s.436A: "not registered at a school and not receiving suitable education otherwise").

    ``education_otherwise`` is None or one of :data:`EDUCATION_OTHERWISE`; anything else
    raises ``ValueError``. ``reduced_hours`` and ``pmooe`` only matter for a child on roll.
    """
    if education_otherwise is not None and education_otherwise not in EDUCATION_OTHERWISE:
        raise ValueError(
            f"unknown education_otherwise value {education_otherwise!r}; expected one of "
            + ", ".join(sorted(EDUCATION_OTHERWISE))
        )
    if not is_compulsory_school_age(dob, on):
        return _result(Category.NOT_CME, ClassificationReason.NOT_COMPULSORY_SCHOOL_AGE)
    if on_roll:
        if reduced_hours:
            return _result(Category.NOT_CME, ClassificationReason.REDUCED_HOURS_PROVISION)
        if pmooe is not None:
            return _result(Category.PMOOE, _PMOOE_REASONS[str(pmooe.reason)])
        return _result(Category.NOT_CME, ClassificationReason.ON_ROLL)
    if education_otherwise is not None:
        reason = ClassificationReason(education_otherwise)
        if reason is ClassificationReason.EHE_UNSUITABLE:
            return _result(Category.CME, reason)
        return _result(Category.NOT_CME, reason)
    return _result(Category.CME, ClassificationReason.NOT_REGISTERED)
