"""The one place a case's status is written (README, *A case's life*).

:func:`change_status` applies a named transition of ``policy.TRANSITIONS`` to a referral row,
keeps the fields that go with it (a closure's reason and time, a reopened case's next check)
and writes the case's timeline line, in the caller's session and transaction. A change the
graph does not allow is a :class:`StatusChangeRefused` naming the case and both statuses —
references and codes only, so an officer's flow can show it as its one-line state message.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlmodel import Session

import policy
from models import CaseEvent, CaseStatus, ClosureReason, Referral
from policy import Transition

__all__ = ["StatusChangeRefused", "Transition", "change_status"]

_CLOSING = (Transition.CLOSE, Transition.CLOSE_BY_RULE)


class StatusChangeRefused(ValueError):
    """An illegal status change of one case; the message is one line: the case's reference,
    the transition and the statuses (never personal data)."""

    def __init__(self, reference: str, error: policy.IllegalTransition) -> None:
        self.reference = reference
        self.transition, self.current, self.target = error.transition, error.current, error.target
        super().__init__(f"Case {reference}: {error}")


def change_status(s: Session, r: Referral, transition: Transition, *,
                  to: CaseStatus | str | None = None,
                  line: tuple[str, str] | None = None, rule: str | None = None,
                  actor: str = "system", closure_reason: ClosureReason | None = None,
                  today: date | None = None, at: datetime | None = None) -> CaseStatus:
    """Apply ``transition`` to case ``r``; returns its status before the change.

    ``to`` names the end where the transition has several (a decision's status, an officer's
    answer, reopening). ``line`` is the timeline line ``(kind, text)`` written with ``rule``
    and ``actor`` at ``at`` (default now); leave it out only where the caller's own line says
    what happened (a concern's ``safeguarding`` line). Closing needs ``closure_reason`` and
    sets ``closed_at``, ends tracing (``next_check_due``) and withdraws any proposal.
    Reopening (and a concern on a closed case) clears the closure; reopening also clears the
    outcome and the officer's confirmed outcome — the case is traced afresh from ``today``.

    Raises :class:`StatusChangeRefused` (nothing changed) if the graph does not allow it.
    """
    before = r.status
    try:
        after = policy.next_status(before, transition, to)
    except policy.IllegalTransition as exc:
        raise StatusChangeRefused(r.mendix_reference, exc) from None
    now = at or datetime.now(UTC)
    if transition in _CLOSING:
        if closure_reason is None:
            raise ValueError(f"{transition.value} needs a closure reason")
        r.closure_reason = closure_reason
        r.closed_at = now
        r.next_check_due = None
        r.proposed_outcome, r.proposed_at, r.proposal_findings = None, None, []
    elif before is CaseStatus.CLOSED and after is not CaseStatus.CLOSED:
        r.closed_at = None
        r.closure_reason = None
        if transition is Transition.REOPEN:
            r.outcome = None
            r.confirmed_outcome = None
            r.proposed_outcome, r.proposed_at, r.proposal_findings = None, None, []
            r.next_check_due = today or policy.london_date(now)
    r.status = after
    r.updated_at = now
    if line is not None:
        kind, text = line
        s.add(CaseEvent(referral_id=r.id or 0, kind=kind, text=text, rule=rule, actor=actor,
                        at=now))
    return before
