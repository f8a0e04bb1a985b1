"""An officer settles a possible duplicate: the same child (link) or different children.

Intake links two referrals automatically only on the same UPN; a same-surname-and-birthday
match is left to a person (:mod:`tasks.intake`), with both cases traced meanwhile.
"""

from __future__ import annotations

from sqlmodel import select

from models import CaseStatus, ClosureReason, Referral, session_scope
from tasks._common import event
from tasks.lifecycle import StatusChangeRefused, Transition, change_status

__all__ = ["DuplicateDecisionError", "settle_possible_duplicate"]


class DuplicateDecisionError(ValueError):
    """The decision cannot be made on this case; the message says why (references only)."""


def settle_possible_duplicate(db_url: str, reference: str, *, same_child: bool) -> str:
    """Settle referral ``reference``'s possible duplicate; returns the other reference.

    ``same_child``: this referral is linked to the other case and closed as a duplicate
    (its details stay stored). Otherwise both go on as different children. Refused when
    nothing is waiting, or (for the same child) when this case has a safeguarding concern —
    a person closes that with ``close-case`` — or the other case is closed.
    """
    with session_scope(db_url) as s:
        r = s.exec(select(Referral).where(Referral.mendix_reference == reference)).first()
        if r is None or r.possible_duplicate_of_id is None:
            raise DuplicateDecisionError(f"{reference}: no possible duplicate waiting")
        other = s.get(Referral, r.possible_duplicate_of_id)
        assert other is not None and r.id is not None and other.id is not None
        if not same_child:
            r.possible_duplicate_of_id = None
            for rid, ref in ((r.id, other.mendix_reference), (other.id, reference)):
                event(s, rid, "not_duplicate",
                      f"An officer decided this is not the same child as {ref}",
                      actor="officer")
            return other.mendix_reference
        if r.status is CaseStatus.ESCALATED or r.safeguarding_concern:
            raise DuplicateDecisionError(
                f"{reference} has a safeguarding concern: act on it, then Close case")
        if other.status is CaseStatus.CLOSED or other.duplicate_of_id is not None:
            raise DuplicateDecisionError(
                f"{other.mendix_reference} is closed: close {reference} with Close case "
                "if it should not be traced")
        r.possible_duplicate_of_id = None
        r.duplicate_of_id = other.id
        try:
            change_status(s, r, Transition.CLOSE, closure_reason=ClosureReason.duplicate,
                          actor="officer",
                          line=("duplicate", f"An officer decided this is the same child as "
                                f"open case {other.mendix_reference}; linked to it and closed"))
        except StatusChangeRefused as exc:
            raise DuplicateDecisionError(str(exc)) from None
        event(s, other.id, "duplicate_linked",
              f"An officer linked referral {reference} to this case (the same child)",
              actor="officer")
        return other.mendix_reference
