"""A case's life: its statuses, the named transitions between them, and which are legal.

The graph is drawn as a table in the README (*A case's life*), and a test checks the two
agree: received → acknowledged → tracing ⇄ awaiting_response → {located | transferred |
left_uk | whereabouts_unknown | needs_review | escalated} → closed, and closed → reopened.

Every status change of a case is one of these transitions; anything else is an
:class:`IllegalTransition`. Two rules of the guidance are kept here rather than in each
caller (docs/guidance.md, *Safeguarding*): a safeguarding concern is never decided away — the
rulebook and an officer's decision leave ``escalated`` alone and nothing closes it by rule,
only a person's ``close`` — and a closed case is traced again only by ``reopen`` (or a new
concern, which reopens it as ``escalated``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from policy._decide import CaseStatus

__all__ = ["CLOSED_STATUSES", "OPEN_STATUSES", "TRANSITIONS", "IllegalTransition",
           "Transition", "next_status", "reopened_status"]


class Transition(StrEnum):
    """The named ways a case's status may change."""

    #: The acknowledgement reached the school: a received case becomes acknowledged; a case
    #: already further on (or closed: not CME, a duplicate) keeps its status.
    ACKNOWLEDGE = "acknowledge"
    #: The rulebook's decision after a round of tracing (``policy.decide``).
    RECORD_DECISION = "record_decision"
    #: An officer's answer to what the rulebook left to a person (``decide-case``, a waiting
    #: ``await-decision`` run): confirm, reject and keep tracing, or another outcome.
    RECORD_OFFICER_ANSWER = "record_officer_answer"
    #: A safeguarding concern (the school's, on intake): a person must act now.
    RAISE_CONCERN = "raise_concern"
    #: An officer closes the case (``close-case``, settling a duplicate).
    CLOSE = "close"
    #: A rule closes the case with no person's decision: not CME, a duplicate of an open
    #: case, the register shows the pupil back in school. Never a case with a concern.
    CLOSE_BY_RULE = "close_by_rule"
    #: An officer reopens a closed case (``reopen-case``): tracing resumes.
    REOPEN = "reopen"
    #: Retention anonymises a closed case past its retention period; it stays closed.
    ANONYMISE = "anonymise"


OPEN_STATUSES: frozenset[CaseStatus] = frozenset(s for s in CaseStatus
                                                 if s is not CaseStatus.CLOSED)
CLOSED_STATUSES: frozenset[CaseStatus] = frozenset({CaseStatus.CLOSED})

#: What the rulebook's decision may set (``Decision.status``).
_DECIDED = frozenset({
    CaseStatus.TRACING, CaseStatus.AWAITING_RESPONSE, CaseStatus.LOCATED,
    CaseStatus.TRANSFERRED, CaseStatus.LEFT_UK, CaseStatus.WHEREABOUTS_UNKNOWN,
    CaseStatus.NEEDS_REVIEW, CaseStatus.ESCALATED,
})
#: What an officer's answer may set: an outcome's status, or back to tracing (a rejection).
_ANSWERED = frozenset({
    CaseStatus.TRACING, CaseStatus.LOCATED, CaseStatus.TRANSFERRED, CaseStatus.LEFT_UK,
    CaseStatus.WHEREABOUTS_UNKNOWN, CaseStatus.NEEDS_REVIEW,
})
_OPEN_NOT_ESCALATED = OPEN_STATUSES - {CaseStatus.ESCALATED}


def _from(sources: frozenset[CaseStatus], targets: frozenset[CaseStatus]
          ) -> dict[CaseStatus, frozenset[CaseStatus]]:
    return {s: targets for s in sources}


#: For each transition: the statuses it may start from, and for each the statuses it may
#: lead to. A (transition, from, to) not in here is illegal.
TRANSITIONS: Mapping[Transition, Mapping[CaseStatus, frozenset[CaseStatus]]] = {
    Transition.ACKNOWLEDGE: {
        s: frozenset({CaseStatus.ACKNOWLEDGED if s is CaseStatus.RECEIVED else s})
        for s in CaseStatus},
    Transition.RECORD_DECISION: {
        **_from(_OPEN_NOT_ESCALATED, _DECIDED),
        # A concern keeps the case escalated until a person closes it (rule 1).
        CaseStatus.ESCALATED: frozenset({CaseStatus.ESCALATED})},
    Transition.RECORD_OFFICER_ANSWER: _from(_OPEN_NOT_ESCALATED, _ANSWERED),
    Transition.RAISE_CONCERN: _from(frozenset(CaseStatus),
                                    frozenset({CaseStatus.ESCALATED})),
    Transition.CLOSE: _from(OPEN_STATUSES, CLOSED_STATUSES),
    Transition.CLOSE_BY_RULE: _from(_OPEN_NOT_ESCALATED, CLOSED_STATUSES),
    Transition.REOPEN: _from(CLOSED_STATUSES,
                             frozenset({CaseStatus.TRACING, CaseStatus.ESCALATED})),
    Transition.ANONYMISE: _from(CLOSED_STATUSES, CLOSED_STATUSES),
}


class IllegalTransition(ValueError):
    """A status change the case's life does not allow; the message names the transition and
    both statuses (codes only, never personal data)."""

    def __init__(self, transition: Transition, current: CaseStatus,
                 target: CaseStatus | None) -> None:
        self.transition, self.current, self.target = transition, current, target
        a = "an" if current.value[0] in "aeiou" else "a"
        if current not in TRANSITIONS[transition]:
            starts = ", ".join(sorted(TRANSITIONS[transition]))
            text = (f"{transition.value} is not allowed on {a} {current.value} case "
                    f"(only {starts})")
        else:
            shown = target.value if target is not None else "(none)"
            text = f"{transition.value} cannot take {a} {current.value} case to {shown}"
        super().__init__(text)


def next_status(current: CaseStatus | str, transition: Transition | str,
                target: CaseStatus | str | None = None) -> CaseStatus:
    """The status after ``transition`` from ``current``.

    ``target`` is needed where a transition has more than one end (a decision, an officer's
    answer, reopening); where it has one, ``target`` may be left out or must equal it.
    Raises :class:`IllegalTransition` for a change the graph does not allow, ``ValueError``
    for an unknown status or transition name.
    """
    cur, name = CaseStatus(current), Transition(transition)
    want = CaseStatus(target) if target is not None else None
    ends = TRANSITIONS[name].get(cur)
    if ends is None:
        raise IllegalTransition(name, cur, want)
    if want is None:
        if len(ends) != 1:
            raise IllegalTransition(name, cur, None)
        (only,) = ends
        return only
    if want not in ends:
        raise IllegalTransition(name, cur, want)
    return want


def reopened_status(*, concern_recorded: bool) -> CaseStatus:
    """Where a reopened case goes: ``escalated`` if a safeguarding concern was ever recorded
    on it — the rulebook escalates it on its next round anyway, and a person should see it at
    once — else ``tracing`` (docs/guidance.md, *Safeguarding*)."""
    return CaseStatus.ESCALATED if concern_recorded else CaseStatus.TRACING
