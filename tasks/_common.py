"""Helpers shared by the tasks: bulk inserts that ignore duplicates, case events, names,
queueing a message without risking the decision it goes with."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from models import CaseEvent, Child, Notification, NotificationChannel, NotificationStatus, Template
from notifications import NOT_QUEUED_SUFFIX, queue_notification

log = logging.getLogger(__name__)

#: Appended to a message's idempotency key for the outbox row that records it could not be
#: queued: the real key stays free, so the message is queued once the cause is fixed.
NOT_QUEUED = NOT_QUEUED_SUFFIX


def insert_ignoring_duplicates(session: Session, table: Table, rows: Sequence[dict[str, Any]]
                               ) -> int:
    """Insert ``rows``; rows that break a unique key are skipped. Returns how many were new.

    This is what makes a re-run batch harmless: the unique keys decide, not the caller.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    ins = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    result = session.execute(ins.values(list(rows)).on_conflict_do_nothing())
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def event(session: Session, referral_id: int, kind: str, text: str, *,
          rule: str | None = None, actor: str = "system") -> None:
    """Add a timeline line. ``text`` must never hold personal data (ids and codes only)."""
    session.add(CaseEvent(referral_id=referral_id, kind=kind, text=text, rule=rule, actor=actor))


def _initial(name: str) -> str:
    # The first letter, not the first character: "'t Hooft" is "T", and a name's first
    # character may be an apostrophe, a hyphen or a combining mark.
    for ch in name:
        if ch.isalpha():
            up = ch.upper()
            return up if len(up) == 1 and up.isalpha() else ch  # "ß".upper() is "SS"
    return ""


def initials(child: Child) -> str:
    """``Z.Q.`` — the most a notification may say about who the child is."""
    return "".join(f"{i}." for i in (_initial(child.forename), _initial(child.surname)) if i)


def match_key(surname: str, dob: date) -> str:
    """Key for linking a second referral of the same child when there is no UPN."""
    return f"{' '.join(surname.lower().split())}|{dob.isoformat()}"


def queue_message(session: Session, *, referral_id: int | None, template: Template | str,
                  recipient: str, personalisation: Mapping[str, Any],
                  channel: NotificationChannel | str, idempotency_key: str) -> int:
    """Queue a message like :func:`notifications.queue_notification`; returns 1 if queued.

    A message that cannot be queued (an unusable address or field) costs only itself, never
    the referral or the decision it goes with (README, Guarantees): it is recorded as a
    ``failed`` outbox row whose key ends in :data:`NOT_QUEUED`, with the reason, and a
    timeline line on its case, and it is on the officer's worklist (``message_not_queued``)
    until the same message is queued. Returns 0 then.
    """
    try:
        return int(queue_notification(
            session, referral_id=referral_id, template=template, recipient=recipient,
            personalisation=personalisation, channel=channel, idempotency_key=idempotency_key))
    except ValueError as exc:
        # queue_notification's messages name the field at fault, never its value.
        reason = str(exc)[:400]
    tpl = Template(template)
    shown = "".join(ch for ch in str(recipient) if ch.isprintable())[:254] or "(none)"
    key = idempotency_key[: 200 - len(NOT_QUEUED)] + NOT_QUEUED
    new = insert_ignoring_duplicates(session, Notification.__table__,  # type: ignore[attr-defined]
                                     [{"referral_id": referral_id, "idempotency_key": key,
                                       "template": tpl, "channel": NotificationChannel(channel),
                                       "recipient": shown, "personalisation": {},
                                       "status": NotificationStatus.failed, "attempts": 0,
                                       "last_error": f"not queued: {reason}",
                                       "created_at": datetime.now(UTC)}])
    if new:
        log.warning("a %s message could not be queued: %s", tpl.value, reason)
        if referral_id is not None:
            event(session, referral_id, "message_not_queued",
                  f"The {tpl.value} message could not be queued ({reason}); the case goes on. "
                  "Fix the address or setting: the message is queued when the case is next "
                  "decided, or send it by hand")
    return 0
