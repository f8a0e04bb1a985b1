"""What an officer decides on a case the rulebook left to a person (docs/guidance.md, *The
joint decision* and *Weighing the evidence*).

Shared by the ``decide-case`` flow and the waiting ``await-decision`` run: both end here, so a
decision made either way does the same things — the timeline line with the officer's reason
code, the case's new status, and only then the letters. Refusals an officer can act on are
:class:`CaseRefused` with a one-line message (no personal data in it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlmodel import Session, select

import policy
from models import (
    CaseOutcome,
    CaseStatus,
    Check,
    Child,
    NotificationChannel,
    Referral,
    SafeguardingConcern,
    School,
    session_scope,
)
from tasks._common import event
from tasks.lifecycle import Transition
from tasks.tracing import TraceConfig, case_facts, latest_results, record_decision

__all__ = ["CaseRefused", "Choice", "Outcome", "apply_officer_decision", "proposal_of",
           "refuse_unless_open"]


class CaseRefused(ValueError):
    """An officer's request that cannot be done as asked; the message says why, in words,
    and what to do instead (references only)."""


class Choice(StrEnum):
    """The officer's decision, as a code (the forms show it in words)."""

    confirm = "confirm"
    reject = "reject"
    on_roll_elsewhere = "on_roll_elsewhere"
    resident_other_la = "resident_other_la"
    left_uk = "left_uk"
    whereabouts_unknown = "whereabouts_unknown"
    located_in_area = "located_in_area"


_OUTCOME_OF: dict[Choice, CaseOutcome] = {
    Choice.on_roll_elsewhere: CaseOutcome.ON_ROLL_ELSEWHERE,
    Choice.resident_other_la: CaseOutcome.RESIDENT_OTHER_LA,
    Choice.left_uk: CaseOutcome.LEFT_UK,
    Choice.whereabouts_unknown: CaseOutcome.WHEREABOUTS_UNKNOWN,
    Choice.located_in_area: CaseOutcome.LOCATED_IN_AREA_NOT_ON_ROLL,
}


@dataclass(frozen=True)
class Outcome:
    """What the decision did: the case's status afterwards and the letters queued."""

    reference: str
    status: str
    queued: int


def refuse_unless_open(r: Referral | None, reference: str) -> Referral:
    """The case, or :class:`CaseRefused` if there is none."""
    if r is None:
        raise CaseRefused(f"No case with reference {reference} — check the reference on the "
                          "worklist (Artifacts → worklist)")
    return r


def proposal_of(s: Session, r: Referral, cfg: TraceConfig) -> policy.Decision:
    """What the rulebook says about the case now, on the evidence held (no agency asked)."""
    checks = s.exec(select(Check).where(Check.referral_id == r.id)).all()
    school = s.get(School, r.school_id)
    assert school is not None
    concerns = set(s.exec(select(SafeguardingConcern.source)
                          .where(SafeguardingConcern.referral_id == r.id)))
    facts = case_facts(r, school, checks, cfg, concerns)
    return policy.decide(facts, latest_results(checks, cfg), cfg.today,
                         min_rounds=cfg.min_rounds, automatic=cfg.automatic_outcomes,
                         match_threshold=cfg.match_threshold)


def apply_officer_decision(cfg: TraceConfig, reference: str, choice: Choice, reason: str, *,
                           la_code: str | None = None, note: str = "",
                           expect_proposal: CaseOutcome | None = None) -> Outcome:
    """Apply an officer's decision on the case ``reference`` (one transaction).

    ``confirm`` establishes what the rulebook proposed (refused if the evidence changed since,
    or if ``expect_proposal`` — what the officer was shown — is no longer proposed);
    ``reject`` returns the case to tracing, disregarding the findings the proposal rested on
    (or, for whereabouts unknown, setting the counted rounds aside); any other choice
    establishes that outcome (``la_code`` for another LA). ``reason`` is a code written to the
    timeline with ``note``. A case with a safeguarding concern is refused: a person deals
    with the concern and closes it.
    """
    channel = NotificationChannel(cfg.channel)
    with session_scope(cfg.db_url) as s:
        r = refuse_unless_open(
            s.exec(select(Referral).where(Referral.mendix_reference == reference)).first(),
            reference)
        child, school = s.get(Child, r.child_id), s.get(School, r.school_id)
        assert child is not None and school is not None
        if r.status is CaseStatus.CLOSED:
            raise CaseRefused(f"Case {reference} is closed: there is nothing to decide")
        concerns = set(s.exec(select(SafeguardingConcern.source)
                              .where(SafeguardingConcern.referral_id == r.id)))
        if r.status is CaseStatus.ESCALATED or concerns or r.safeguarding_concern:
            raise CaseRefused(f"Case {reference} has a safeguarding concern: deal with the "
                              "concern first, then close the case with Close case")
        proposed = r.proposed_outcome
        if choice in (Choice.confirm, Choice.reject) and proposed is None:
            raise CaseRefused(f"Nothing is proposed on case {reference}: choose an outcome "
                              "instead of confirm or reject")
        if expect_proposal is not None and proposed is not expect_proposal:
            raise CaseRefused(f"Case {reference} no longer proposes {expect_proposal.value}: it "
                              "was decided or changed since; read the case report")
        checks = s.exec(select(Check).where(Check.referral_id == r.id)).all()
        facts = case_facts(r, school, checks, cfg, concerns)
        d: policy.Decision
        if choice is Choice.reject:
            if r.decision_rule == policy.Rule.WHEREABOUTS_UNKNOWN.value:
                # The rounds so far are set aside: whereabouts unknown is proposed again only
                # after min_rounds more rounds with no whereabouts.
                r.rounds_set_aside += facts.rounds
            else:
                r.rejected_findings = sorted({*r.rejected_findings, *r.proposal_findings})
            d = policy.Decision(status=policy.CaseStatus.TRACING, outcome=None,
                                rule=policy.Rule.OFFICER_DECISION)
        else:
            now = proposal_of(s, r, cfg)
            outcome = proposed if choice is Choice.confirm else _OUTCOME_OF[choice]
            assert outcome is not None
            if choice is Choice.confirm and now.proposed is not proposed:
                raise CaseRefused(f"The evidence on case {reference} has changed since the "
                                  f"rulebook proposed {outcome.value}: read the case report "
                                  "and decide again")
            las = [la_code] if la_code else [
                a.la_code for a in now.on_confirm
                if a.kind is policy.ActionKind.NOTIFY_OTHER_LA and a.la_code]
            try:
                d = policy.officer_decision(facts, outcome, la_codes=las)
            except ValueError:
                raise CaseRefused(f"Case {reference}: 'living in another local authority's "
                                  "area' needs that LA's 3-digit code (LA code)") from None
            r.confirmed_outcome = CaseOutcome(outcome.value)
            if outcome is proposed:
                r.confirmed_findings = sorted({*r.confirmed_findings, *now.findings})
        event(s, r.id or 0, "officer_decision",
              f"Officer's decision: {choice.value} (reason: {reason})"
              + (f". Note: {note}" if note else ""), rule="officer_decision", actor="officer")
        queued = record_decision(s, r, child, school, d, cfg, channel,
                                 heading="Officer's decision", actor="officer",
                                 transition=Transition.RECORD_OFFICER_ANSWER)
        return Outcome(reference, r.status.value, queued)
