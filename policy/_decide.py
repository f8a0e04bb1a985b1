"""The tracing rulebook: from a referral's facts and the agencies' answers to a decision.

Encodes DOMAIN.md, *What the LA must do* (investigate whereabouts, report back to the school,
"any safeguarding concern overrides everything"), *What a school must have done* (deletion
grounds 9(1)(a), 9(1)(h), 9(1)(i), CTF to the Lost Pupil Database), *Rules as numbers* "LPD
destinations (CTF)", and *Agencies and how they answer* ("asked, answer pending" is a normal
state). The rules, in order, are listed in :data:`RULEBOOK` and in ``policy/RULEBOOK.md``.

How evidence is read (conventions, pinned by tests):

- Only ``found`` results carry evidence. A found result is
  *on-roll evidence* if it names a school URN other than the referring school's;
  *departure evidence* if it has a ``departure_date``;
  *residence evidence* if it has none of those but an ``address_key``, ``postcode`` or
  ``la_code``. A found result naming only the referring school, or carrying only an LPD
  destination (``XXX``/``MMM``), or nothing usable, gives **no whereabouts**: it counts like
  ``not_found`` for the whereabouts-unknown rule.
- LPD ``MMM``/``MMMM`` (abroad *or* outside the English/Welsh maintained system) is not a
  recorded departure from the UK: ``left_uk`` needs a departure date (e.g. Border Force).
- A residence result with no ``la_code`` is in an unstated LA; when no residence result states
  an LA the residence is taken to be in the home LA, so an officer reviews it.
- "Later UK evidence" is residence evidence seen after the latest departure, *or undated*
  (it may be later), or an arrival (``seen_on`` after the departure on a departure result).
- ``results`` holds the latest result per connector; if a connector appears twice, the later
  entry in the sequence wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

__all__ = [
    "Action",
    "ActionKind",
    "CaseFacts",
    "CaseOutcome",
    "CaseStatus",
    "CheckOutcome",
    "CheckResult",
    "DEFAULT_MIN_ROUNDS",
    "Decision",
    "HOME_LA",
    "LPD_LEFT_SYSTEM",
    "LPD_UNKNOWN",
    "RULEBOOK",
    "Rule",
    "decide",
    "next_check_due",
]

#: Hampshire's LA number (DOMAIN.md, Identifiers, "LA number (3 digits; Hampshire is 850)").
HOME_LA = "850"
#: Rounds of tracing before whereabouts may be declared unknown (issue 3: setting, default 3).
DEFAULT_MIN_ROUNDS = 3
#: DOMAIN.md, LPD destinations (CTF): "XXX/XXXX destination unknown".
LPD_UNKNOWN = "XXX"
#: DOMAIN.md, LPD destinations (CTF): "MMM/MMMM abroad or outside the English/Welsh
#: maintained system".
LPD_LEFT_SYSTEM = "MMM"


class CaseStatus(StrEnum):
    """Referral lifecycle (DESIGN.md): received -> acknowledged -> tracing <-> awaiting_response
    -> {located | transferred | left_uk | whereabouts_unknown | needs_review | escalated}
    -> closed."""

    RECEIVED = "received"
    ACKNOWLEDGED = "acknowledged"
    TRACING = "tracing"
    AWAITING_RESPONSE = "awaiting_response"
    LOCATED = "located"
    TRANSFERRED = "transferred"
    LEFT_UK = "left_uk"
    WHEREABOUTS_UNKNOWN = "whereabouts_unknown"
    NEEDS_REVIEW = "needs_review"
    ESCALATED = "escalated"
    CLOSED = "closed"


class CaseOutcome(StrEnum):
    """What tracing established (and, for closure, why a case was closed)."""

    ON_ROLL_ELSEWHERE = "on_roll_elsewhere"
    RESIDENT_OTHER_LA = "resident_other_la"
    LEFT_UK = "left_uk"
    LOCATED_IN_AREA_NOT_ON_ROLL = "located_in_area_not_on_roll"
    WHEREABOUTS_UNKNOWN = "whereabouts_unknown"
    CONFLICTING_EVIDENCE = "conflicting_evidence"
    # Closure-only outcomes, set by an officer rather than by decide().
    RETURNED_TO_SCHOOL = "returned_to_school"
    NOT_CME = "not_cme"
    WITHDRAWN = "withdrawn"


class CheckOutcome(StrEnum):
    """A connector's answer (DESIGN.md, Connectors: found / not found / pending / error)."""

    FOUND = "found"
    NOT_FOUND = "not_found"
    PENDING = "pending"
    ERROR = "error"


class Rule(StrEnum):
    """Stable rule names, written to the case timeline. Listed in order of precedence."""

    SAFEGUARDING = "safeguarding"
    ON_ROLL_ELSEWHERE = "on_roll_elsewhere"
    CONFLICTING_EVIDENCE = "conflicting_evidence"
    LEFT_UK = "left_uk"
    TRANSFERRED = "transferred"
    LOCATED_IN_AREA = "located_in_area"
    AWAITING_RESPONSE = "awaiting_response"
    WHEREABOUTS_UNKNOWN = "whereabouts_unknown"
    KEEP_TRACING = "keep_tracing"


#: The rules in the order :func:`decide` tries them (first match wins).
RULEBOOK: tuple[Rule, ...] = tuple(Rule)


class ActionKind(StrEnum):
    """What someone (or the notifications outbox) should do next."""

    NOTIFY_SCHOOL = "notify_school"
    NOTIFY_OTHER_LA = "notify_other_la"
    SAFEGUARDING_TASK = "safeguarding_task"
    RECOMMEND_LPD_UPLOAD = "recommend_lpd_upload"
    OFFICER_REVIEW = "officer_review"
    RECOMMEND_JOINT_DELETION = "recommend_joint_deletion"
    CHASE_DEFERRED = "chase_deferred"


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """One action. ``school_urn`` is set for notify_school (the referring school),
    ``la_code`` for notify_other_la, ``destination`` (``XXX``/``MMM``) for
    recommend_lpd_upload, ``connector`` for chase_deferred."""

    kind: ActionKind
    school_urn: str | None = None
    la_code: str | None = None
    destination: str | None = None
    connector: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseFacts:
    """The referral's facts that the rules need (no personal data).

    ``rounds`` is the number of tracing rounds completed so far; ``enabled_connectors`` the
    names of the connectors this deployment asks.
    """

    reference: str
    school_urn: str
    received: date
    safeguarding: bool = False
    home_la: str = HOME_LA
    school_la: str = HOME_LA
    rounds: int = 0
    enabled_connectors: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """The latest answer from one connector, reduced to what the rules compare.

    ``address_key`` is a normalised token for an address (not the address itself);
    ``la_code`` the LA of the school (with ``school_urn``) or of the address;
    ``school_urn`` the school the child is now on roll at; ``seen_on`` when the agency last
    saw the evidence; ``ctf_destination`` an LPD destination code; ``expected_by`` when a
    pending deferred enquiry should be answered. ``outcome`` may be given as a string.
    """

    connector: str
    outcome: CheckOutcome
    la_code: str | None = None
    school_urn: str | None = None
    address_key: str | None = None
    postcode: str | None = None
    departure_date: date | None = None
    departure_country: str | None = None
    seen_on: date | None = None
    ctf_destination: str | None = None
    safeguarding: bool = False
    expected_by: date | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", CheckOutcome(self.outcome))


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The outcome of :func:`decide`: new status, outcome (None while open), the rule that
    fired (its name goes to the case timeline) and the actions to take."""

    status: CaseStatus
    outcome: CaseOutcome | None
    rule: Rule
    actions: tuple[Action, ...] = ()


def _norm(token: str | None) -> str | None:
    if token is None:
        return None
    cleaned = "".join(token.split()).upper()
    return cleaned or None


@dataclass(frozen=True, slots=True)
class _Evidence:
    """The results sorted into the kinds of evidence the rules look at."""

    on_roll: tuple[CheckResult, ...]
    departures: tuple[CheckResult, ...]
    residence: tuple[CheckResult, ...]
    no_whereabouts: frozenset[str]  # connectors that answered not_found or found-but-nothing

    @classmethod
    def sort(cls, case: CaseFacts, results: Sequence[CheckResult]) -> _Evidence:
        on_roll: list[CheckResult] = []
        departures: list[CheckResult] = []
        residence: list[CheckResult] = []
        no_whereabouts: set[str] = set()
        for r in results:
            if r.outcome is CheckOutcome.NOT_FOUND:
                no_whereabouts.add(r.connector)
            if r.outcome is not CheckOutcome.FOUND:
                continue
            urn = _norm(r.school_urn)
            if urn is not None and urn != _norm(case.school_urn):
                on_roll.append(r)
            elif urn is not None:
                no_whereabouts.add(r.connector)  # only the referring school: nothing new
            elif r.departure_date is not None:
                departures.append(r)
            elif _norm(r.address_key) or _norm(r.postcode) or _norm(r.la_code):
                residence.append(r)
            else:
                no_whereabouts.add(r.connector)  # e.g. LPD XXX / MMM only
        return cls(tuple(on_roll), tuple(departures), tuple(residence), frozenset(no_whereabouts))


def _distinct_across_connectors(pairs: list[tuple[str, str]]) -> bool:
    """True iff two different connectors gave two different values."""
    return any(c1 != c2 and v1 != v2 for c1, v1 in pairs for c2, v2 in pairs)


def _residence_conflicts(residence: Sequence[CheckResult]) -> bool:
    for attribute in ("la_code", "address_key", "postcode"):
        pairs = [
            (r.connector, value)
            for r in residence
            if (value := _norm(getattr(r, attribute))) is not None
        ]
        if _distinct_across_connectors(pairs):
            return True
    return False


def _left_uk(evidence: _Evidence) -> bool:
    if not evidence.departures:
        return False
    latest = max(r.departure_date for r in evidence.departures if r.departure_date is not None)
    returned = any(r.seen_on is not None and r.seen_on > latest for r in evidence.departures)
    later_residence = any(r.seen_on is None or r.seen_on > latest for r in evidence.residence)
    return not (returned or later_residence)


def _notify_school(case: CaseFacts) -> Action:
    return Action(kind=ActionKind.NOTIFY_SCHOOL, school_urn=case.school_urn)


def decide(
    case: CaseFacts,
    results: Sequence[CheckResult],
    today: date,
    *,
    min_rounds: int = DEFAULT_MIN_ROUNDS,
) -> Decision:
    """Apply the tracing rulebook to the latest result per connector; first match wins.

    1. ``safeguarding`` - a concern on the referral or flagged by any agency -> ``escalated``,
       a safeguarding task for a person. DOMAIN.md: "Any safeguarding concern overrides
       everything ... surface this as an urgent task for a person; it never decides it away."
       Tracing continues; nothing is closed or notified automatically.
    2. ``on_roll_elsewhere`` - found results name exactly one school other than the referring
       school -> ``located`` / on_roll_elsewhere; notify the referring school (it may delete
       under 9(1)(a)); if that school's LA differs from the home LA, notify that LA too.
    3. ``conflicting_evidence`` - found results name two or more schools, or two agencies give
       different LAs, address keys or postcodes -> ``needs_review``, officer review.
    4. ``left_uk`` - a recorded departure from the UK and no later UK evidence -> ``left_uk``;
       notify the school and recommend its CTF goes to the LPD as ``MMM`` (DOMAIN.md, LPD
       destinations; deletion ground 9(1)(g)).
    5. ``transferred`` - resident in another LA, not on roll -> ``transferred`` /
       resident_other_la; notify that LA's CME team and the referring school.
    6. ``located_in_area`` - resident in the home LA, not on roll -> ``needs_review`` /
       located_in_area_not_on_roll; officer review (contact the family / admissions).
    7. ``awaiting_response`` - any enquiry pending (DOMAIN.md: DWP and Border Force answer
       "deferred, days later") -> ``awaiting_response``; chase each pending enquiry whose
       ``expected_by`` is before ``today``.
    8. ``whereabouts_unknown`` - every enabled connector (at least one) gave no whereabouts,
       none pending, and ``case.rounds >= min_rounds`` -> ``whereabouts_unknown``; notify the
       school, recommend the joint deletion decision (9(1)(h)/(i)) and the LPD upload as
       ``XXX``; :func:`next_check_due` re-checks monthly.
    9. ``keep_tracing`` - otherwise (errors, missing answers, too few rounds) -> ``tracing``.
    """
    latest: dict[str, CheckResult] = {}
    for result in results:
        latest[result.connector] = result
    current = list(latest.values())

    if case.safeguarding or any(r.safeguarding for r in current):
        return Decision(
            status=CaseStatus.ESCALATED,
            outcome=None,
            rule=Rule.SAFEGUARDING,
            actions=(Action(kind=ActionKind.SAFEGUARDING_TASK),),
        )

    evidence = _Evidence.sort(case, current)
    schools = {_norm(r.school_urn) for r in evidence.on_roll}
    if len(schools) == 1:
        school_las = {la for r in evidence.on_roll if (la := _norm(r.la_code)) is not None}
        actions = [_notify_school(case)]
        actions += [
            Action(kind=ActionKind.NOTIFY_OTHER_LA, la_code=la)
            for la in sorted(school_las)
            if la != _norm(case.home_la)
        ]
        return Decision(
            status=CaseStatus.LOCATED,
            outcome=CaseOutcome.ON_ROLL_ELSEWHERE,
            rule=Rule.ON_ROLL_ELSEWHERE,
            actions=tuple(actions),
        )

    if len(schools) > 1 or _residence_conflicts(evidence.residence):
        return Decision(
            status=CaseStatus.NEEDS_REVIEW,
            outcome=CaseOutcome.CONFLICTING_EVIDENCE,
            rule=Rule.CONFLICTING_EVIDENCE,
            actions=(Action(kind=ActionKind.OFFICER_REVIEW),),
        )

    if _left_uk(evidence):
        return Decision(
            status=CaseStatus.LEFT_UK,
            outcome=CaseOutcome.LEFT_UK,
            rule=Rule.LEFT_UK,
            actions=(
                _notify_school(case),
                Action(kind=ActionKind.RECOMMEND_LPD_UPLOAD, destination=LPD_LEFT_SYSTEM),
            ),
        )

    if evidence.residence:
        # No conflict, so at most one LA is stated; unstated means the home LA (an officer
        # then reviews it, the safe path).
        stated = {la for r in evidence.residence if (la := _norm(r.la_code)) is not None}
        la = stated.pop() if stated else _norm(case.home_la)
        if la != _norm(case.home_la):
            return Decision(
                status=CaseStatus.TRANSFERRED,
                outcome=CaseOutcome.RESIDENT_OTHER_LA,
                rule=Rule.TRANSFERRED,
                actions=(
                    Action(kind=ActionKind.NOTIFY_OTHER_LA, la_code=la),
                    _notify_school(case),
                ),
            )
        return Decision(
            status=CaseStatus.NEEDS_REVIEW,
            outcome=CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL,
            rule=Rule.LOCATED_IN_AREA,
            actions=(Action(kind=ActionKind.OFFICER_REVIEW),),
        )

    pending = [r for r in current if r.outcome is CheckOutcome.PENDING]
    if pending:
        return Decision(
            status=CaseStatus.AWAITING_RESPONSE,
            outcome=None,
            rule=Rule.AWAITING_RESPONSE,
            actions=tuple(
                Action(kind=ActionKind.CHASE_DEFERRED, connector=r.connector)
                for r in sorted(pending, key=lambda r: r.connector)
                if r.expected_by is not None and r.expected_by < today
            ),
        )

    enabled = case.enabled_connectors
    if enabled and enabled <= evidence.no_whereabouts and case.rounds >= min_rounds:
        return Decision(
            status=CaseStatus.WHEREABOUTS_UNKNOWN,
            outcome=CaseOutcome.WHEREABOUTS_UNKNOWN,
            rule=Rule.WHEREABOUTS_UNKNOWN,
            actions=(
                _notify_school(case),
                Action(kind=ActionKind.RECOMMEND_JOINT_DELETION, school_urn=case.school_urn),
                Action(kind=ActionKind.RECOMMEND_LPD_UPLOAD, destination=LPD_UNKNOWN),
            ),
        )

    return Decision(status=CaseStatus.TRACING, outcome=None, rule=Rule.KEEP_TRACING)


_DAILY = frozenset(
    {
        CaseStatus.RECEIVED,
        CaseStatus.ACKNOWLEDGED,
        CaseStatus.TRACING,
        CaseStatus.AWAITING_RESPONSE,
        CaseStatus.ESCALATED,
    }
)
_WEEKLY = frozenset({CaseStatus.NEEDS_REVIEW, CaseStatus.LOCATED, CaseStatus.TRANSFERRED})
_MONTHLY = frozenset({CaseStatus.LEFT_UK, CaseStatus.WHEREABOUTS_UNKNOWN})


def next_check_due(status: str, today: date, *, recheck_days: int = 30) -> date | None:
    """When the nightly flow should next look at a case in ``status`` (None: never again).

    Open tracing states (received, acknowledged, tracing, awaiting_response, escalated) are
    looked at the next day; cases waiting for an officer (needs_review, located, transferred)
    after 7 days; left_uk and whereabouts_unknown after ``recheck_days`` (default 30; issue 3:
    "keep re-checking monthly"); closed cases never. Raises ``ValueError`` for an unknown
    status.
    """
    key = CaseStatus(status)
    if key in _DAILY:
        return today + timedelta(days=1)
    if key in _WEEKLY:
        return today + timedelta(days=7)
    if key in _MONTHLY:
        return today + timedelta(days=recheck_days)
    return None
