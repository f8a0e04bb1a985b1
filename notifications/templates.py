"""Message templates: minimised content, checked keys, plain text.

A notification may say who the child is only by the Mendix reference and initials
(``Z.Q.``); it names the school and the action the school (or team) must take. It never
carries a full name, date of birth, address or UPN (docs/guidance.md, Data protection). That is
enforced here, twice:

- every template declares its **required** and **optional** personalisation keys
  (:data:`TEMPLATE_FIELDS`, :data:`OPTIONAL_FIELDS`); any other key is refused, so a caller
  cannot smuggle a name into the outbox row, let alone the email;
- most values are **codes** (outcome, status, missing actions, reason, team) that the texts
  turn into words; the few free-text values (school name, contacts, period) are short single
  lines. Initials must look like ``Z.Q.``, references like a Mendix reference.

Errors are :class:`~notifications.errors.InvalidPersonalisationError` (a ``ValueError``) that
name the template and key, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import jinja2

from models.enums import CaseStatus, Template
from models.schemas import SchoolAction
from notifications._texts import TEXTS
from notifications.errors import InvalidPersonalisationError

__all__ = [
    "ALLOWED_FIELDS",
    "OPTIONAL_FIELDS",
    "TEMPLATE_FIELDS",
    "Rendered",
    "render",
    "validate_personalisation",
]

TEAM_NAME = "Children Missing Education (CME) team"

#: Keys each template must be given. ``la_name`` is the LA's name (CME_LA_NAME): this library
#: holds none of its own, so a message can only be signed by the LA the settings name.
TEMPLATE_FIELDS: dict[Template, frozenset[str]] = {
    Template.acknowledgement: frozenset({"reference", "initials", "school_name", "la_name"}),
    Template.acknowledgement_reminder: frozenset({"reference", "due_date"}),
    Template.missing_school_actions: frozenset(
        {"reference", "initials", "school_name", "missing_actions", "la_name"}
    ),
    Template.not_cme_signpost: frozenset(
        {"reference", "initials", "school_name", "reason", "la_name"}
    ),
    Template.resolution: frozenset(
        {"reference", "initials", "school_name", "outcome", "la_name"}
    ),
    Template.half_termly_update: frozenset({"school_name", "updates", "la_name"}),
    Template.inter_la: frozenset({"reference", "initials", "la_name"}),
    Template.safeguarding_task: frozenset({"reference"}),
    Template.pmooe_attendance: frozenset(
        {"reference", "school_name", "pmooe_reason", "met_on", "la_name"}
    ),
    # To the duty inbox by the file channel when the configured channel keeps failing.
    Template.delivery_failing: frozenset({"channel", "failing", "gave_up"}),
}

#: Keys each template may also be given (absent ones render as "not said").
OPTIONAL_FIELDS: dict[Template, frozenset[str]] = {
    Template.acknowledgement: frozenset({"team_contact", "due_date"}),
    Template.acknowledgement_reminder: frozenset({"school_name"}),
    Template.missing_school_actions: frozenset({"team_contact"}),
    Template.not_cme_signpost: frozenset(
        {"signpost_team", "signpost_contact", "team_contact"}
    ),
    # other_la_told: whether we hold that LA's CME contact (and so have written to it).
    Template.resolution: frozenset({"other_la_code", "other_la_told", "team_contact"}),
    Template.half_termly_update: frozenset({"period", "team_contact"}),
    # forward: no contact is held for that LA, so the message goes to our own duty inbox
    # saying what to forward and to whom.
    Template.inter_la: frozenset({"other_la_code", "team_contact", "forward"}),
    # "No detail": the duty officer opens the case to see why. raised_by is "school" or the
    # name of the agency (connector) that flagged the concern.
    Template.safeguarding_task: frozenset({"rule", "raised_by"}),
    # initials: only when the attendance data (or an earlier referral) gave the pupil's name.
    Template.pmooe_attendance: frozenset({"initials", "team_contact"}),
    Template.delivery_failing: frozenset({"failing_since", "retry_days"}),
}

#: Every key any template accepts.
ALLOWED_FIELDS: frozenset[str] = frozenset().union(
    *TEMPLATE_FIELDS.values(), *OPTIONAL_FIELDS.values()
)

# --- codes and their words -----------------------------------------------------------------

_ACTION_TEXT: dict[str, str] = {
    SchoolAction.phone_parents: "phone or text the parents or carers",
    SchoolAction.email_letter_or_visit: "email or write to the family, or make a home visit",
    SchoolAction.contact_other_schools: (
        "contact other schools where the pupil or their brothers and sisters may be"
    ),
    SchoolAction.ask_peers: "ask the pupil's friends whether the family has moved",
    SchoolAction.contact_agencies: (
        "contact any agency involved (for a service child, the armed forces family welfare officer)"
    ),
}

# NOT_CME classification reasons (policy.ClassificationReason) and medical absence.
_REASON_TEXT: dict[str, str] = {
    "not_compulsory_school_age": "the child is not of compulsory school age",
    "reduced_hours_provision": (
        "the pupil is on roll and attending part-time under Reduced Hours Provision"
    ),
    "on_roll": "the pupil is on roll at your school; a pupil on roll is not missing education, "
    "even when persistently absent",
    "ehe_suitable": "the child is receiving suitable elective home education",
    "ehe_unassessed": "the child is in elective home education that has not yet been assessed",
    "alternative_provision": "the child is receiving alternative provision",
    "medical_absence": "the pupil is on roll and absent for medical reasons",
}

# Inclusion Support Service teams (policy.InclusionTeam).
_TEAM_TEXT: dict[str, str] = {
    "attendance_support": "Attendance Support",
    "medical_referrals": "Medical Referrals",
    "reduced_hours_provision": "Reduced Hours Provision",
    "elective_home_education": "Elective Home Education",
    "legal_intervention": "Legal Intervention",
}

# PMOOE conditions (policy.PmooeReason), as the letter to the school says them.
_PMOOE_TEXT: dict[str, str] = {
    "continuous_absence": "has been absent without explanation for 40 consecutive sessions "
    "(20 school days)",
    "leave_not_returned": "has not returned within 10 school days of the end of a leave of "
    "absence",
    "transition_no_show": "did not attend on the first day of the school year on entering "
    "Year 3 or Year 7",
}

# Resolution outcomes: the case status name or the policy's CaseOutcome name.
_OUTCOMES: dict[str, str] = {
    "located": "located",
    "on_roll_elsewhere": "located",
    "transferred": "transferred",
    "resident_other_la": "transferred",
    "left_uk": "left_uk",
    "whereabouts_unknown": "whereabouts_unknown",
}
_OUTCOME_TITLE: dict[str, str] = {
    "located": "on roll at another school",
    "transferred": "living in another local authority area",
    "left_uk": "left the UK",
    "whereabouts_unknown": "whereabouts unknown",
}

# Plain-language status for the half-termly update. "escalated" deliberately reads like
# "needs_review": a school must not learn from an email that an agency raised a concern.
_STATUS_TEXT: dict[str, str] = {
    CaseStatus.RECEIVED: "received; we are checking the referral",
    CaseStatus.ACKNOWLEDGED: "acknowledged; our enquiries are starting",
    CaseStatus.TRACING: "we are making enquiries with other agencies",
    CaseStatus.AWAITING_RESPONSE: "we are waiting for replies from other agencies",
    CaseStatus.LOCATED: "found on roll at another school",
    CaseStatus.TRANSFERRED: "living in another local authority area; its team has been told",
    CaseStatus.LEFT_UK: "recorded as having left the UK",
    CaseStatus.WHEREABOUTS_UNKNOWN: "whereabouts still unknown; we check again each month",
    CaseStatus.NEEDS_REVIEW: "an officer is reviewing what we have found",
    CaseStatus.ESCALATED: "an officer is reviewing what we have found",
    CaseStatus.CLOSED: "closed",
}

# --- value checks ----------------------------------------------------------------------------

_REFERENCE = re.compile(r"[A-Za-z0-9_\-/]{3,40}")
# One letter (any alphabet: "É.Ł." is fine) and a dot, up to four times.
_INITIALS = re.compile(r"(?:[^\W\d_]\.){1,4}")
_LA_CODE = re.compile(r"\d{3}")
_RULE = re.compile(r"[a-z][a-z0-9_]{0,59}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_TEXT = 200
_MAX_UPDATES = 500
_UPDATE_KEYS = frozenset({"reference", "initials", "status"})


def _bad(template: Template, key: str, why: str) -> InvalidPersonalisationError:
    return InvalidPersonalisationError(
        f"template {template.value!r}: personalisation key {key!r} {why}", key=key
    )


def _pattern(rx: re.Pattern[str], what: str) -> Callable[[Template, str, Any], Any]:
    def check(template: Template, key: str, value: Any) -> Any:
        if not isinstance(value, str) or not rx.fullmatch(value.strip()):
            raise _bad(template, key, f"must be {what}")
        return value.strip()

    return check


def _code(codes: Mapping[str, str], what: str) -> Callable[[Template, str, Any], Any]:
    def check(template: Template, key: str, value: Any) -> Any:
        if not isinstance(value, str) or value not in codes:
            raise _bad(template, key, f"must be one of the {what} codes: {', '.join(codes)}")
        return str(value)

    return check


def _text(template: Template, key: str, value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise _bad(template, key, "must be a non-empty string")
    if len(value) > _MAX_TEXT or _CONTROL.search(value):
        raise _bad(template, key, f"must be one line of at most {_MAX_TEXT} characters")
    return value.strip()


def _date(template: Template, key: str, value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise _bad(template, key, "must be a date (YYYY-MM-DD)")


_check_reference = _pattern(_REFERENCE, "a Mendix reference (3-40 letters, digits, _ - /)")
_check_initials = _pattern(_INITIALS, "initials like 'Z.Q.' (single letters, each with a dot)")


def _flag(template: Template, key: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise _bad(template, key, "must be true or false")
    return value


def _count(template: Template, key: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000_000:
        raise _bad(template, key, "must be a whole number of messages")
    return value


_CHANNELS = {"file": "file", "smtp": "smtp", "notify": "notify"}


def _missing_actions(template: Template, key: str, value: Any) -> Any:
    if not isinstance(value, list | tuple) or not value:
        raise _bad(template, key, "must be a non-empty list of school action codes")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or item not in _ACTION_TEXT:
            raise _bad(template, key, f"must list school action codes: {', '.join(_ACTION_TEXT)}")
        if item not in out:
            out.append(str(item))
    return out


def _updates(template: Template, key: str, value: Any) -> Any:
    if not isinstance(value, list | tuple) or not value or len(value) > _MAX_UPDATES:
        raise _bad(template, key, f"must be a list of 1 to {_MAX_UPDATES} case updates")
    out: list[dict[str, str]] = []
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(item, Mapping):
            raise _bad(template, where, "must be a mapping of reference, initials, status")
        unknown = sorted(set(item) - _UPDATE_KEYS)
        if unknown:
            raise _bad(template, f"{where}.{unknown[0]}", "is not allowed in a case update")
        missing = sorted(_UPDATE_KEYS - set(item))
        if missing:
            raise _bad(template, f"{where}.{missing[0]}", "is missing from a case update")
        out.append(
            {
                "reference": _check_reference(template, f"{where}.reference", item["reference"]),
                "initials": _check_initials(template, f"{where}.initials", item["initials"]),
                "status": _code(_STATUS_TEXT, "case status")(
                    template, f"{where}.status", item["status"]
                ),
            }
        )
    return out


_CHECKS: dict[str, Callable[[Template, str, Any], Any]] = {
    "reference": _check_reference,
    "initials": _check_initials,
    "school_name": _text,
    "la_name": _text,
    "team_contact": _text,
    "signpost_contact": _text,
    "period": _text,
    "due_date": _date,
    "outcome": _code(_OUTCOMES, "resolution outcome"),
    "reason": _code(_REASON_TEXT, "not-CME reason"),
    "pmooe_reason": _code(_PMOOE_TEXT, "PMOOE condition"),
    "met_on": _date,
    "signpost_team": _code(_TEAM_TEXT, "Inclusion Support team"),
    "other_la_code": _pattern(_LA_CODE, "a 3-digit LA code"),
    "rule": _pattern(_RULE, "a rule name (lower-case letters, digits, _)"),
    "raised_by": _pattern(_RULE, "'school' or an agency's name (lower-case letters, digits, _)"),
    "other_la_told": _flag,
    "forward": _flag,
    "missing_actions": _missing_actions,
    "updates": _updates,
    "channel": _code(_CHANNELS, "channel"),
    "failing": _count,
    "gave_up": _count,
    "retry_days": _count,
    "failing_since": _date,
}
assert set(_CHECKS) == ALLOWED_FIELDS, "every allowed key needs a check"


def validate_personalisation(
    template: Template | str, personalisation: Mapping[str, Any]
) -> dict[str, Any]:
    """Check ``personalisation`` against ``template``'s keys and return a normalised,
    JSON-safe copy (dates as ISO strings, stripped text).

    Raises :class:`InvalidPersonalisationError` naming the first missing, unknown or malformed
    key (keys are reported in sorted order so the message is stable).
    """
    try:
        tpl = Template(template)
    except ValueError:
        raise InvalidPersonalisationError(f"unknown template {str(template)!r}") from None
    if not isinstance(personalisation, Mapping):
        raise InvalidPersonalisationError(
            f"template {tpl.value!r}: personalisation must be a mapping"
        )
    required = TEMPLATE_FIELDS[tpl]
    allowed = required | OPTIONAL_FIELDS[tpl]
    for key in sorted(personalisation, key=str):
        if key not in allowed:
            why = (
                "is not used by this template"
                if key in ALLOWED_FIELDS
                else "is not an allowed key (notifications carry only minimised fields)"
            )
            raise _bad(tpl, str(key), why)
    for key in sorted(required):
        if personalisation.get(key) is None:
            raise _bad(tpl, key, "is required")
    out: dict[str, Any] = {}
    for key in sorted(personalisation):
        value = personalisation[key]
        if value is None:
            continue  # an optional key given as None means "not said"
        out[key] = _CHECKS[key](tpl, key, value)
    return out


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered message: one-line subject, plain-text body."""

    subject: str = field(repr=False)
    body: str = field(repr=False)


def _long_date(value: str) -> str:
    d = date.fromisoformat(value)
    return f"{d:%A} {d.day} {d:%B %Y}"


def _lookup(table: Mapping[str, str]) -> Callable[[str], str]:
    return lambda code: table[code]


# Plain text, not HTML: escaping would corrupt "&" and quotes in school names.
_ENV = jinja2.Environment(
    loader=jinja2.DictLoader(TEXTS),
    autoescape=False,  # noqa: S701
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_ENV.filters.update(
    long_date=_long_date,
    agency_text=lambda code: "the referring school" if code == "school" else f"agency {code}",
    action_text=_lookup(_ACTION_TEXT),
    reason_text=_lookup(_REASON_TEXT),
    pmooe_text=_lookup(_PMOOE_TEXT),
    team_text=_lookup(_TEAM_TEXT),
    status_text=_lookup(_STATUS_TEXT),
    canonical_outcome=_lookup(_OUTCOMES),
    outcome_title=lambda code: _OUTCOME_TITLE[_OUTCOMES[code]],
)


def render(template: Template | str, personalisation: Mapping[str, Any]) -> Rendered:
    """Render ``template`` with ``personalisation`` (validated first, see module docstring).

    Raises :class:`InvalidPersonalisationError` (a ``ValueError``) for a missing, unknown or
    malformed key, naming the key and never its value.
    """
    values = validate_personalisation(template, personalisation)
    tpl = Template(template)
    context: dict[str, Any] = dict.fromkeys(OPTIONAL_FIELDS[tpl])
    context.update(values)
    context["team"] = TEAM_NAME
    subject = _ENV.get_template(f"{tpl.value}.subject").render(context)
    body = _ENV.get_template(f"{tpl.value}.body").render(context)
    # Collapse the blank lines optional blocks leave behind; end with exactly one newline.
    body = re.sub(r"\n{3,}", "\n\n", body).strip() + "\n"
    return Rendered(subject=" ".join(subject.split()), body=body)
