"""Half-termly updates to referring schools, and reminders of overdue acknowledgements."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any

from sqlmodel import col, select

from models import Child, NotificationChannel, Referral, School, Template, session_scope
from notifications import keys
from tasks._common import initials, queue_message
from tasks.tracing import TRACEABLE

__all__ = ["HalfTerm", "current_half_term", "half_terms", "queue_school_updates",
           "school_year_first_day"]


@dataclass(frozen=True)
class HalfTerm:
    id: str
    start: date
    end: date


def half_terms() -> list[HalfTerm]:
    raw = json.loads(resources.files("flows.data").joinpath("hampshire_terms.json").read_text())
    return [HalfTerm(h["id"], date.fromisoformat(h["start"]), date.fromisoformat(h["end"]))
            for h in raw["half_terms"]]


def current_half_term(today: date, terms: list[HalfTerm] | None = None) -> HalfTerm | None:
    """The half-term ``today`` falls in (None in a holiday)."""
    for h in terms or half_terms():
        if h.start <= today <= h.end:
            return h
    return None


def school_year_first_day(on: date, terms: list[HalfTerm] | None = None) -> date:
    """The first day of the school year (1 Sep - 31 Aug) that ``on`` falls in: the start of
    its first half-term in the term dates, or 1 September when the term dates do not cover
    that year (the transition rule then takes the first school day on the register)."""
    year = on.year if on.month >= 9 else on.year - 1
    first, last = date(year, 9, 1), date(year + 1, 8, 31)
    starts = [h.start for h in (terms or half_terms()) if first <= h.start <= last]
    return min(starts) if starts else first


def queue_school_updates(db_url: str, today: date, *, channel: str, duty_inbox: str,
                         la_name: str) -> dict[str, Any]:
    """Queue one update per school with open cases for the current half-term (idempotent
    per school and half-term), and a reminder for each overdue acknowledgement."""
    term = current_half_term(today)
    out: dict[str, Any] = {"half_term": term.id if term else None, "school_updates": 0,
                           "ack_reminders": 0}
    ch = NotificationChannel(channel)
    with session_scope(db_url) as s:
        if term is not None:
            rows = s.exec(
                select(Referral, Child, School)
                .join(Child, col(Child.id) == Referral.child_id)
                .join(School, col(School.id) == Referral.school_id)
                .where(col(Referral.status).in_(TRACEABLE),
                       col(Referral.duplicate_of_id).is_(None))
                .order_by(col(Referral.id))
            ).all()
            per_school: dict[int, list[tuple[Referral, Child, School]]] = defaultdict(list)
            for row in rows:
                per_school[row[2].id or 0].append(row)
            for school_rows in per_school.values():
                school = school_rows[0][2]
                updates = [{"reference": r.mendix_reference, "initials": initials(c),
                            "status": r.status.value} for r, c, _ in school_rows]
                out["school_updates"] += queue_message(
                    s, referral_id=None, template=Template.half_termly_update,
                    recipient=school.email,
                    personalisation={"school_name": school.name, "updates": updates,
                                     "la_name": la_name},
                    channel=ch, idempotency_key=keys.half_termly_update(school.urn, term.id),
                )
        overdue = s.exec(
            select(Referral).where(col(Referral.acknowledged_at).is_(None),
                                   Referral.acknowledgement_due < today,
                                   Referral.classification != "NOT_CME")
        ).all()
        for r in overdue:
            out["ack_reminders"] += queue_message(
                s, referral_id=r.id, template=Template.acknowledgement_reminder,
                recipient=duty_inbox,
                personalisation={"reference": r.mendix_reference,
                                 "due_date": r.acknowledgement_due.isoformat()},
                channel=ch, idempotency_key=keys.acknowledgement_reminder(r.mendix_reference),
            )
    return out
