"""The tracing rulebook: from a referral's facts and the agencies' answers to a decision.

Encodes ``docs/guidance.md``, *The tracing rulebook*: investigate whereabouts, report back to
the school, "any safeguarding concern overrides everything", the deletion grounds 9(1)(a),
9(1)(g), 9(1)(h) and 9(1)(i), the Lost Pupil Database's destination codes, and "asked, answer
pending" as a normal state. The rules, in order, are listed in :data:`RULEBOOK`.

**What the rulebook decides alone, and what it hands to a person.** It never decides what
the guidance gives to a person:

- a safeguarding concern always goes to a person (rule 1), and one task goes per concern;
- the joint deletion decision (grounds 9(1)(h)/(i)) is only *proposed* (rule 9): the case
  waits for an officer, and the letter goes once an officer confirms it;
- a match an agency made on demographics only (names and date of birth, perhaps a
  postcode), or below the confidence threshold, is a *possible match* for an officer to
  confirm (rule 4), never a fact that tells a school it may delete a pupil or another LA that
  the child is theirs;
- of the outcomes a strong match supports, only those in ``automatic`` (default
  :data:`AUTOMATIC_OUTCOMES`: on roll elsewhere, resident in another LA, left the UK) are
  acted on alone; any other is proposed to an officer.

How evidence is read (conventions, pinned by tests):

- Only ``found`` results carry evidence; each result is one finding, and a connector may give
  several (all count). A found result is
  *on-roll evidence* if it names a school URN other than the referring school's;
  *departure evidence* if it has a ``departure_date``;
  *residence evidence* if it has none of those but an ``address_key``, ``postcode`` or
  ``la_code``; *registration evidence* if it is a registration with a service (``registered``:
  a GP practice, a health visiting team) in ``la_code``. A registration is a lead to where
  the child lives, never a home address: it is never compared with addresses, never
  conflicts with residence, and on its own it is only ever a possible match for an officer.
  A found result naming only the referring school, or carrying only an LPD destination
  (``XXX``/``MMM``), or nothing usable, gives **no whereabouts**: it counts like
  ``not_found`` for the whereabouts-unknown rule. A finding an officer rejected counts the
  same way.
- A finding is **strong** when the agency matched the child on an identifier, or answered from
  its own official records (``official``), with ``confidence`` at least the threshold — or when
  an officer confirmed it. Otherwise it is weak.
- LPD ``MMM``/``MMMM`` (abroad *or* outside the English/Welsh maintained system) is not a
  recorded departure from the UK: ``left_uk`` needs a departure date (e.g. Border Force).
- A residence result with no ``la_code`` is in an unstated LA; when no residence result states
  an LA the residence is taken to be in the home LA, so an officer reviews it.
- "Later UK evidence" is residence evidence seen after the latest departure, *or undated*
  (it may be later), or an arrival (``seen_on`` after the departure on a departure result).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from enum import StrEnum

__all__ = [
    "AUTOMATIC_OUTCOMES",
    "Action",
    "ActionKind",
    "CaseFacts",
    "CaseOutcome",
    "CaseStatus",
    "CheckOutcome",
    "CheckResult",
    "DEFAULT_MATCH_THRESHOLD",
    "DEFAULT_MIN_ROUNDS",
    "Decision",
    "LPD_LEFT_SYSTEM",
    "LPD_UNKNOWN",
    "MAY_BE_AUTOMATIC",
    "MatchBasis",
    "OFFICER_OUTCOMES",
    "RULEBOOK",
    "Rule",
    "SCHOOL_CONCERN",
    "decide",
    "finding_key",
    "next_check_due",
    "officer_decision",
]

#: Rounds of tracing before whereabouts may be proposed as unknown (a setting, default 3).
DEFAULT_MIN_ROUNDS = 3
#: A strong match needs at least this confidence (a setting, ``CME_MATCH_THRESHOLD``).
DEFAULT_MATCH_THRESHOLD = 0.9
#: The source of a safeguarding concern the referring school raised (others: an agency's name).
SCHOOL_CONCERN = "school"
#: docs/guidance.md, LPD destinations (CTF): "XXX/XXXX destination unknown".
LPD_UNKNOWN = "XXX"
#: docs/guidance.md, LPD destinations (CTF): "MMM/MMMM abroad or outside the English/Welsh
#: maintained system".
LPD_LEFT_SYSTEM = "MMM"


class CaseStatus(StrEnum):
    """Referral lifecycle: received -> acknowledged -> tracing <-> awaiting_response
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
    #: An agency's match is only demographic (or weak): a lead for an officer to confirm.
    POSSIBLE_MATCH = "possible_match"
    # Closure-only outcomes, set by an officer rather than by decide().
    RETURNED_TO_SCHOOL = "returned_to_school"
    NOT_CME = "not_cme"
    WITHDRAWN = "withdrawn"


class CheckOutcome(StrEnum):
    """A connector's answer: found / not found / pending / error."""

    FOUND = "found"
    NOT_FOUND = "not_found"
    PENDING = "pending"
    ERROR = "error"


class MatchBasis(StrEnum):
    """How an agency matched the child to its records (docs/guidance.md, Weighing evidence)."""

    #: On an identifier: the UPN or the NHS number.
    IDENTIFIER = "identifier"
    #: On demographics only: names and date of birth, perhaps a postcode.
    DEMOGRAPHIC = "demographic"


class Rule(StrEnum):
    """Stable rule names, written to the case timeline. Listed in order of precedence."""

    SAFEGUARDING = "safeguarding"
    ON_ROLL_ELSEWHERE = "on_roll_elsewhere"
    CONFLICTING_EVIDENCE = "conflicting_evidence"
    POSSIBLE_MATCH = "possible_match"
    LEFT_UK = "left_uk"
    TRANSFERRED = "transferred"
    LOCATED_IN_AREA = "located_in_area"
    OFFICER_DECISION = "officer_decision"
    AWAITING_RESPONSE = "awaiting_response"
    WHEREABOUTS_UNKNOWN = "whereabouts_unknown"
    KEEP_TRACING = "keep_tracing"


#: The rules in the order :func:`decide` tries them (first match wins).
RULEBOOK: tuple[Rule, ...] = tuple(Rule)

#: Outcomes a strong match may act on without a person by default (``CME_AUTOMATIC_OUTCOMES``).
AUTOMATIC_OUTCOMES: frozenset[CaseOutcome] = frozenset(
    {CaseOutcome.ON_ROLL_ELSEWHERE, CaseOutcome.RESIDENT_OTHER_LA, CaseOutcome.LEFT_UK}
)
#: The only outcomes that may ever be automatic. The joint deletion decision
#: (whereabouts unknown) is a person's: docs/guidance.md, The joint decision.
MAY_BE_AUTOMATIC: frozenset[CaseOutcome] = AUTOMATIC_OUTCOMES
#: Outcomes an officer may decide with :func:`officer_decision`.
OFFICER_OUTCOMES: frozenset[CaseOutcome] = frozenset({
    CaseOutcome.ON_ROLL_ELSEWHERE, CaseOutcome.RESIDENT_OTHER_LA, CaseOutcome.LEFT_UK,
    CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL, CaseOutcome.WHEREABOUTS_UNKNOWN,
})


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
    recommend_lpd_upload, ``connector`` for chase_deferred and for a safeguarding task an
    agency raised (None: the referring school raised it)."""

    kind: ActionKind
    school_urn: str | None = None
    la_code: str | None = None
    destination: str | None = None
    connector: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseFacts:
    """The referral's facts that the rules need (no personal data).

    ``rounds`` is the number of tracing rounds that count (:func:`policy.complete_rounds`,
    less any an officer set aside by rejecting a proposal); ``enabled_connectors`` the names
    of the connectors this deployment asks — all of them, whatever one trace asked.
    ``home_la`` is this LA's code (CME_HOME_LA, handed in by the caller: policy holds no LA
    of its own) and ``school_la`` the referring school's LA.
    ``safeguarding`` is a concern the school raised; ``concerns`` the sources (``school`` or
    an agency) of concerns already recorded, each of which already has its task: a recorded
    concern keeps the case escalated until a person closes it. ``confirmed_outcome`` is an
    officer decided; ``confirmed_findings`` and ``rejected_findings`` are :func:`finding_key`
    values of findings an officer confirmed or rejected.
    """

    reference: str
    school_urn: str
    received: date
    safeguarding: bool = False
    home_la: str
    school_la: str
    rounds: int = 0
    enabled_connectors: frozenset[str] = field(default_factory=frozenset)
    concerns: frozenset[str] = field(default_factory=frozenset)
    confirmed_outcome: CaseOutcome | None = None
    confirmed_findings: frozenset[str] = field(default_factory=frozenset)
    rejected_findings: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """One finding of one connector (or its outcome alone), reduced to what the rules compare.

    ``address_key`` is a normalised token for an address; ``la_code`` the LA of the school
    (with ``school_urn``) or of the address; ``school_urn`` the school the child is now on
    roll at; ``seen_on`` when the agency last saw the evidence; ``ctf_destination`` an LPD
    destination code; ``expected_by`` when a pending deferred enquiry should be answered;
    ``match_basis`` and ``confidence`` how the agency matched the child; ``official`` that
    the agency answered from its own statutory records; ``registered`` that the finding is
    a registration with a service in ``la_code`` (a GP practice, a health visiting team),
    not a home address. ``outcome`` may be given as a string.
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
    match_basis: MatchBasis = MatchBasis.DEMOGRAPHIC
    confidence: float = 1.0
    official: bool = False
    registered: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", CheckOutcome(self.outcome))
        object.__setattr__(self, "match_basis", MatchBasis(self.match_basis))


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The outcome of :func:`decide`.

    ``status`` and ``outcome`` (None while open) are written to the case, ``rule`` (the rule
    that fired) to its timeline, and ``actions`` are taken now. When the rulebook hands the
    decision to an officer, ``proposed`` is the outcome the evidence suggests, ``on_confirm``
    the actions to take once an officer confirms it, and ``findings`` the keys of the
    findings it rests on (for the officer's confirmation or rejection).
    """

    status: CaseStatus
    outcome: CaseOutcome | None
    rule: Rule
    actions: tuple[Action, ...] = ()
    proposed: CaseOutcome | None = None
    on_confirm: tuple[Action, ...] = ()
    findings: tuple[str, ...] = ()


def _norm(token: str | None) -> str | None:
    if token is None:
        return None
    cleaned = "".join(token.split()).upper()
    return cleaned or None


def finding_key(result: CheckResult) -> str:
    """A stable key for one finding, the same for the same evidence in any round, so an
    officer's confirmation or rejection of it holds. A hash: no address shows in it."""
    parts = (result.connector, result.school_urn, result.la_code, result.address_key,
             result.postcode, result.departure_date, result.ctf_destination)
    text = "|".join("" if p is None else (_norm(str(p)) or "") for p in parts)
    if result.registered:  # only then, so the keys of findings already stored stay the same
        text += "|registered"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class _Evidence:
    """The results sorted into the kinds of evidence the rules look at."""

    on_roll: tuple[CheckResult, ...]
    departures: tuple[CheckResult, ...]
    residence: tuple[CheckResult, ...]
    registrations: tuple[CheckResult, ...]
    no_whereabouts: frozenset[str]  # connectors that answered not_found or found-but-nothing

    @classmethod
    def sort(cls, case: CaseFacts, results: Sequence[CheckResult]) -> _Evidence:
        on_roll: list[CheckResult] = []
        departures: list[CheckResult] = []
        residence: list[CheckResult] = []
        registrations: list[CheckResult] = []
        no_whereabouts: set[str] = set()
        for r in results:
            if r.outcome is CheckOutcome.NOT_FOUND:
                no_whereabouts.add(r.connector)
            if r.outcome is not CheckOutcome.FOUND:
                continue
            if finding_key(r) in case.rejected_findings:
                no_whereabouts.add(r.connector)  # an officer said this is not the child
                continue
            urn = _norm(r.school_urn)
            if urn is not None and urn != _norm(case.school_urn):
                on_roll.append(r)
            elif urn is not None:
                no_whereabouts.add(r.connector)  # only the referring school: nothing new
            elif r.departure_date is not None:
                departures.append(r)
            elif r.registered and _norm(r.la_code):
                registrations.append(r)  # a service's LA, never a home address
            elif r.registered:
                no_whereabouts.add(r.connector)  # a registration in no stated LA
            elif _norm(r.address_key) or _norm(r.postcode) or _norm(r.la_code):
                residence.append(r)
            else:
                no_whereabouts.add(r.connector)  # e.g. LPD XXX / MMM only
        return cls(tuple(on_roll), tuple(departures), tuple(residence), tuple(registrations),
                   frozenset(no_whereabouts))


def _distinct_across_connectors(pairs: list[tuple[str, str]]) -> bool:
    """True iff two different connectors gave two different values."""
    return any(c1 != c2 and v1 != v2 for c1, v1 in pairs for c2, v2 in pairs)


def _residence_conflicts(residence: Sequence[CheckResult]) -> bool:
    """Two different LAs anywhere (one agency naming two LAs included), or two agencies
    giving different addresses or postcodes. One agency's several addresses (a current and a
    forwarding one) are its own account of a move, not a conflict, unless their LAs differ."""
    las = {la for r in residence if (la := _norm(r.la_code)) is not None}
    if len(las) > 1:
        return True
    for attribute in ("address_key", "postcode"):
        pairs = [
            (r.connector, value)
            for r in residence
            if (value := _norm(getattr(r, attribute))) is not None
        ]
        if _distinct_across_connectors(pairs):
            return True
    return False


def _latest_departures(evidence: _Evidence) -> tuple[CheckResult, ...]:
    """The departures on the latest departure date, if no later UK evidence undoes them."""
    if not evidence.departures:
        return ()
    latest = max(r.departure_date for r in evidence.departures if r.departure_date is not None)
    returned = any(r.seen_on is not None and r.seen_on > latest for r in evidence.departures)
    later_residence = any(r.seen_on is None or r.seen_on > latest for r in evidence.residence)
    if returned or later_residence:
        return ()
    return tuple(r for r in evidence.departures if r.departure_date == latest)


def _notify_school(case: CaseFacts) -> Action:
    return Action(kind=ActionKind.NOTIFY_SCHOOL, school_urn=case.school_urn)


_STATUS_OF: dict[CaseOutcome, CaseStatus] = {
    CaseOutcome.ON_ROLL_ELSEWHERE: CaseStatus.LOCATED,
    CaseOutcome.RESIDENT_OTHER_LA: CaseStatus.TRANSFERRED,
    CaseOutcome.LEFT_UK: CaseStatus.LEFT_UK,
    CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL: CaseStatus.NEEDS_REVIEW,
    CaseOutcome.WHEREABOUTS_UNKNOWN: CaseStatus.WHEREABOUTS_UNKNOWN,
}
_RULE_OF: dict[CaseOutcome, Rule] = {
    CaseOutcome.ON_ROLL_ELSEWHERE: Rule.ON_ROLL_ELSEWHERE,
    CaseOutcome.RESIDENT_OTHER_LA: Rule.TRANSFERRED,
    CaseOutcome.LEFT_UK: Rule.LEFT_UK,
    CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL: Rule.LOCATED_IN_AREA,
    CaseOutcome.WHEREABOUTS_UNKNOWN: Rule.WHEREABOUTS_UNKNOWN,
}


def _apply(outcome: CaseOutcome, case: CaseFacts, la_codes: Collection[str] = ()) -> Decision:
    """The decision that establishes ``outcome``: its status and the actions it takes.

    ``la_codes`` are the LAs the evidence names: the new school's LA (on roll elsewhere,
    told if not the home LA) or the LA the child lives in (resident in another LA).
    """
    home = _norm(case.home_la)
    others = sorted({la for raw in la_codes if (la := _norm(raw)) is not None and la != home})
    actions: tuple[Action, ...]
    if outcome is CaseOutcome.ON_ROLL_ELSEWHERE:
        actions = (_notify_school(case),
                   *(Action(kind=ActionKind.NOTIFY_OTHER_LA, la_code=la) for la in others))
    elif outcome is CaseOutcome.RESIDENT_OTHER_LA:
        if len(others) != 1:
            raise ValueError("resident in another LA needs exactly one LA code other than "
                             f"the home LA {case.home_la}")
        actions = (Action(kind=ActionKind.NOTIFY_OTHER_LA, la_code=others[0]),
                   _notify_school(case))
    elif outcome is CaseOutcome.LEFT_UK:
        actions = (_notify_school(case),
                   Action(kind=ActionKind.RECOMMEND_LPD_UPLOAD, destination=LPD_LEFT_SYSTEM))
    elif outcome is CaseOutcome.WHEREABOUTS_UNKNOWN:
        actions = (
            _notify_school(case),
            Action(kind=ActionKind.RECOMMEND_JOINT_DELETION, school_urn=case.school_urn),
            Action(kind=ActionKind.RECOMMEND_LPD_UPLOAD, destination=LPD_UNKNOWN),
        )
    elif outcome is CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL:
        actions = (Action(kind=ActionKind.OFFICER_REVIEW),)
    else:
        raise ValueError(f"{outcome.value} is not an outcome tracing establishes")
    return Decision(status=_STATUS_OF[outcome], outcome=outcome, rule=_RULE_OF[outcome],
                    actions=actions)


def _strong(r: CheckResult, case: CaseFacts, threshold: float) -> bool:
    if finding_key(r) in case.confirmed_findings:
        return True
    return (r.official or r.match_basis is MatchBasis.IDENTIFIER) and r.confidence >= threshold


def _for_an_officer(rule: Rule, outcome: CaseOutcome | None, proposed: CaseOutcome,
                    applied: Decision, findings: tuple[str, ...]) -> Decision:
    return Decision(status=CaseStatus.NEEDS_REVIEW, outcome=outcome, rule=rule,
                    actions=(Action(kind=ActionKind.OFFICER_REVIEW),), proposed=proposed,
                    on_confirm=applied.actions, findings=findings)


def _weigh(case: CaseFacts, candidate: CaseOutcome, deciding: Sequence[CheckResult],
           la_codes: Collection[str], automatic: frozenset[CaseOutcome],
           threshold: float) -> Decision:
    """What the evidence ``deciding`` for ``candidate`` allows: act, or ask an officer."""
    applied = _apply(candidate, case, la_codes)
    if case.confirmed_outcome is candidate:
        return applied
    keys = tuple(sorted({finding_key(r) for r in deciding}))
    if not any(_strong(r, case, threshold) for r in deciding):
        return _for_an_officer(Rule.POSSIBLE_MATCH, CaseOutcome.POSSIBLE_MATCH, candidate,
                               applied, keys)
    if candidate in automatic or candidate is CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL:
        return applied
    return _for_an_officer(_RULE_OF[candidate], None, candidate, applied, keys)


def _registered(case: CaseFacts, registrations: Sequence[CheckResult]) -> Decision:
    """Registered with a service, and nothing else says where the child is: a lead, never a
    home address, so never acted on alone (docs/guidance.md, Weighing the evidence). One LA:
    a possible match proposing the outcome a residence there would give; several: a
    conflict for an officer."""
    las = sorted({la for r in registrations if (la := _norm(r.la_code)) is not None})
    if len(las) > 1:
        return Decision(status=CaseStatus.NEEDS_REVIEW, outcome=CaseOutcome.CONFLICTING_EVIDENCE,
                        rule=Rule.CONFLICTING_EVIDENCE,
                        actions=(Action(kind=ActionKind.OFFICER_REVIEW),))
    candidate = (CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL if las[0] == _norm(case.home_la)
                 else CaseOutcome.RESIDENT_OTHER_LA)
    applied = _apply(candidate, case, las)
    if case.confirmed_outcome is candidate:
        return applied
    keys = tuple(sorted({finding_key(r) for r in registrations}))
    return _for_an_officer(Rule.POSSIBLE_MATCH, CaseOutcome.POSSIBLE_MATCH, candidate, applied,
                           keys)


def _safeguarding(case: CaseFacts, results: Sequence[CheckResult]) -> Decision | None:
    agencies = sorted({r.connector for r in results if r.safeguarding} - case.concerns)
    school = case.safeguarding and SCHOOL_CONCERN not in case.concerns
    if not (case.safeguarding or agencies or case.concerns):
        return None
    tasks = [Action(kind=ActionKind.SAFEGUARDING_TASK)] if school else []
    tasks += [Action(kind=ActionKind.SAFEGUARDING_TASK, connector=c) for c in agencies]
    return Decision(status=CaseStatus.ESCALATED, outcome=None, rule=Rule.SAFEGUARDING,
                    actions=tuple(tasks))


def _check_automatic(automatic: Collection[CaseOutcome]) -> frozenset[CaseOutcome]:
    chosen = frozenset(CaseOutcome(o) for o in automatic)
    refused = chosen - MAY_BE_AUTOMATIC
    if refused:
        raise ValueError(
            "these outcomes need a person and cannot be automatic: "
            + ", ".join(sorted(o.value for o in refused))
        )
    return chosen


def decide(
    case: CaseFacts,
    results: Sequence[CheckResult],
    today: date,
    *,
    min_rounds: int = DEFAULT_MIN_ROUNDS,
    automatic: Collection[CaseOutcome] = AUTOMATIC_OUTCOMES,
    match_threshold: float = DEFAULT_MATCH_THRESHOLD,
) -> Decision:
    """Apply the tracing rulebook to the latest answer of each connector; first match wins.

    docs/guidance.md, *The tracing rulebook*, *Weighing the evidence*, *Rounds* and *The
    joint decision*.

    ``results`` are every finding of each connector's latest answer (see
    :func:`policy.results_from_evidence`); all of them count.

    1. ``safeguarding`` - a concern on the referral, flagged by any agency or already
       recorded (``case.concerns``) -> ``escalated``, one safeguarding task per concern not
       yet recorded (the school's, and each flagging agency's) for a person. Tracing
       continues; nothing is closed or notified automatically.
    2. ``on_roll_elsewhere`` - the found results name exactly one school other than the
       referring school -> ``located`` / on_roll_elsewhere; notify the referring school (it
       may delete under 9(1)(a)); if that school's LA is not the home LA, notify that LA too.
    3. ``conflicting_evidence`` - found results name two or more schools (from one agency or
       several), two different LAs, or two agencies give different address keys or
       postcodes -> ``needs_review``, officer review.
    4. ``possible_match`` - the evidence that would fire rule 2, 5, 6 or 7 is weak (matched
       on demographics only, or below ``match_threshold``), or the only whereabouts is a
       registration with a service (weak however it matched) -> ``needs_review`` /
       possible_match, with the outcome an officer's confirmation would establish as
       ``proposed`` (for a registration: resident in its LA, or located in area); nothing
       is sent. Registrations in two LAs, and nothing else, are conflicting evidence.
    5. ``left_uk`` - a recorded departure from the UK and no later UK evidence -> ``left_uk``;
       notify the school and recommend its CTF goes to the LPD as ``MMM`` (ground 9(1)(g)).
    6. ``transferred`` - resident in another LA, not on roll -> ``transferred`` /
       resident_other_la; notify that LA's CME team and the referring school.
    7. ``located_in_area`` - resident in the home LA, not on roll -> ``needs_review`` /
       located_in_area_not_on_roll; officer review (contact the family / admissions).
    8. ``officer_decision`` - none of the above, and an officer decided the outcome -> it
       stands (status of that outcome, nothing sent again).
    9. ``awaiting_response`` - any enquiry pending (DWP and Border Force answer days later)
       -> ``awaiting_response``; chase each pending enquiry whose ``expected_by`` is before
       ``today``.
    10. ``whereabouts_unknown`` - every enabled connector (at least one) gave no whereabouts,
        none pending, and ``case.rounds >= min_rounds`` -> **proposed** to an officer
        (``needs_review``, ``proposed`` whereabouts_unknown): the joint deletion decision is
        a person's. ``on_confirm`` holds what an officer's confirmation does (through
        :func:`officer_decision`): notify the school, recommend the joint deletion decision
        (9(1)(h)/(i)) and the LPD upload as ``XXX``; :func:`next_check_due` then re-checks
        monthly.
    11. ``keep_tracing`` - otherwise (errors, missing answers, too few rounds) -> ``tracing``.

    An outcome of rules 2, 5 or 6 backed by a strong finding is acted on alone only when it
    is in ``automatic`` (default :data:`AUTOMATIC_OUTCOMES`); otherwise it is proposed to an
    officer like rule 10. ``automatic`` may hold only :data:`MAY_BE_AUTOMATIC`
    (``ValueError`` otherwise).
    """
    chosen = _check_automatic(automatic)
    current = list(results)

    escalated = _safeguarding(case, current)
    if escalated is not None:
        return escalated

    evidence = _Evidence.sort(case, current)
    schools = {_norm(r.school_urn) for r in evidence.on_roll}
    conflicts = _residence_conflicts(evidence.residence)
    # One school settles where the child is even if addresses differ, but only when the
    # school rests on a strong finding; a weak one beside conflicting addresses is a conflict.
    if len(schools) == 1 and (not conflicts or any(
            _strong(r, case, match_threshold) for r in evidence.on_roll)):
        school_las = {la for r in evidence.on_roll if (la := _norm(r.la_code)) is not None}
        return _weigh(case, CaseOutcome.ON_ROLL_ELSEWHERE, evidence.on_roll, school_las,
                      chosen, match_threshold)

    if schools or conflicts:
        return Decision(
            status=CaseStatus.NEEDS_REVIEW,
            outcome=CaseOutcome.CONFLICTING_EVIDENCE,
            rule=Rule.CONFLICTING_EVIDENCE,
            actions=(Action(kind=ActionKind.OFFICER_REVIEW),),
        )

    departed = _latest_departures(evidence)
    if departed:
        return _weigh(case, CaseOutcome.LEFT_UK, departed, (), chosen, match_threshold)

    if evidence.residence:
        # No conflict, so at most one LA is stated; unstated means the home LA (an officer
        # then reviews it, the safe path).
        stated = {la for r in evidence.residence if (la := _norm(r.la_code)) is not None}
        la = stated.pop() if stated else _norm(case.home_la)
        if la != _norm(case.home_la):
            deciding = [r for r in evidence.residence if _norm(r.la_code) == la]
            return _weigh(case, CaseOutcome.RESIDENT_OTHER_LA, deciding, {la or ""}, chosen,
                          match_threshold)
        return _weigh(case, CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL, evidence.residence, (),
                      chosen, match_threshold)

    if evidence.registrations:
        return _registered(case, evidence.registrations)

    if case.confirmed_outcome is not None:
        confirmed = case.confirmed_outcome
        return Decision(status=_STATUS_OF.get(confirmed, CaseStatus.NEEDS_REVIEW),
                        outcome=confirmed, rule=Rule.OFFICER_DECISION)

    pending = [r for r in current if r.outcome is CheckOutcome.PENDING]
    if pending:
        return Decision(
            status=CaseStatus.AWAITING_RESPONSE,
            outcome=None,
            rule=Rule.AWAITING_RESPONSE,
            actions=tuple(
                Action(kind=ActionKind.CHASE_DEFERRED, connector=c)
                for c in sorted({r.connector for r in pending
                                 if r.expected_by is not None and r.expected_by < today})
            ),
        )

    enabled = case.enabled_connectors
    if enabled and enabled <= evidence.no_whereabouts and case.rounds >= min_rounds:
        # Never automatic: the joint deletion decision is a person's.
        applied = _apply(CaseOutcome.WHEREABOUTS_UNKNOWN, case)
        return _for_an_officer(Rule.WHEREABOUTS_UNKNOWN, None, CaseOutcome.WHEREABOUTS_UNKNOWN,
                               applied, ())

    return Decision(status=CaseStatus.TRACING, outcome=None, rule=Rule.KEEP_TRACING)


def officer_decision(case: CaseFacts, outcome: CaseOutcome | str, *,
                     la_codes: Collection[str] = ()) -> Decision:
    """The decision an officer made: ``outcome`` (one of :data:`OFFICER_OUTCOMES`) with the
    actions it takes, as :func:`decide` would take them; ``rule`` is ``officer_decision``.

    ``la_codes``: for resident_other_la the one LA the child lives in (required); for
    on_roll_elsewhere the new school's LA, if known. ``ValueError`` for another outcome or a
    missing LA.
    """
    chosen = CaseOutcome(outcome)
    if chosen not in OFFICER_OUTCOMES:
        raise ValueError(f"{chosen.value} is not an outcome an officer decides here")
    return replace(_apply(chosen, case, la_codes), rule=Rule.OFFICER_DECISION)


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
