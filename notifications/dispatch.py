"""The outbox: queue a notification with the decision, send it later, at most once.

Outbox states (``models.tables.Notification.status``)::

    queue_notification ──► pending ──claim──► sending ──► sent
                             ▲  │                 │  └──► failed   (permanent, gave up, or
                             │  └── bad row ──────┼─────► failed    outcome unknown: officer)
                             └──── transient ─────┘
                                   (attempts+1, next_attempt_at = now + back-off)

Crash safety. A row is claimed (``pending → sending``, committed) *before* the channel is
called, and updated after it answers. A crash in between leaves the row in ``sending`` with
an unknown outcome. The next dispatch recovers such rows once their claim has expired
(``next_attempt_at``, set to ``now + claim_timeout`` by the claim, doubles as the claim's
lease): it asks the channel (``lookup``) — a file that exists or a GOV.UK Notify notification
with that ``reference`` means delivered (``sent``, counted as ``recovered``); a certain "not
delivered" puts the row back to ``pending``. SMTP cannot be asked, so such a row is marked
``failed`` with :data:`OUTCOME_UNKNOWN` for an officer: **at most once** beats "twice".

The same rule covers retries: before re-sending a row that was attempted before, a channel
that can look up does so, so a send that timed out after Notify accepted it is not repeated.

Concurrency. Every state change is an ``UPDATE … WHERE id = ? AND status = ?`` (and, for a
claim, still due and with the attempts seen), so two dispatchers can never both claim a row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select, update

from models.db import get_engine
from models.enums import NotificationChannel, NotificationStatus, Template
from models.tables import Notification
from notifications.channels import Channel, OutgoingMessage
from notifications.errors import (
    InvalidPersonalisationError,
    OutcomeUnknownError,
    PermanentSendError,
    SendError,
    TransientSendError,
)
from notifications.templates import render, validate_personalisation

__all__ = [
    "DEFAULT_SENDER_NAME",
    "OUTCOME_UNKNOWN",
    "DispatchReport",
    "backoff",
    "dispatch_pending",
    "queue_notification",
]

log = logging.getLogger(__name__)

DEFAULT_SENDER_NAME = "Hampshire County Council CME team"
#: ``last_error`` of a row whose delivery cannot be known: a person decides whether to resend.
OUTCOME_UNKNOWN = (
    "outcome unknown: the {channel} channel cannot tell whether this message was delivered; "
    "check with the recipient before resending"
)
_BACKOFF_BASE = timedelta(minutes=5)
_BACKOFF_CAP = timedelta(hours=24)
_MAX_ERROR = 500


@dataclass
class DispatchReport:
    """What one dispatch did (counts only, no personal data).

    ``sent``: delivered now. ``recovered``: found already delivered by ``lookup`` (after a crash
    or before a retry) and marked sent without sending again. ``retried_later``: a transient
    failure, back to pending with a back-off. ``failed``: permanent failure, too many attempts
    or an invalid row. ``outcome_unknown``: marked failed because delivery cannot be known (an
    officer must check). ``skipped``: another dispatcher had the row, or a lookup could not be
    made right now (tried again next dispatch).
    """

    sent: int = 0
    failed: int = 0
    retried_later: int = 0
    recovered: int = 0
    skipped: int = 0
    outcome_unknown: int = 0


def backoff(
    attempts: int, *, base: timedelta = _BACKOFF_BASE, cap: timedelta = _BACKOFF_CAP
) -> timedelta:
    """Delay before the next try after ``attempts`` tries: 5 min, 10 min, 20 min, … ≤ 24 h."""
    if attempts < 1:
        return timedelta(0)
    return min(cap, base * (1 << min(attempts - 1, 20)))


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    key: str
    template: Template
    recipient: str
    personalisation: Mapping[str, Any]
    attempts: int

    @classmethod
    def of(cls, n: Notification) -> _Row:
        assert n.id is not None
        return cls(
            n.id, n.idempotency_key, n.template, n.recipient, dict(n.personalisation), n.attempts
        )


def _describe(exc: BaseException) -> str:
    # Our own errors carry PII-free messages; anything else is reduced to its class name.
    text = (
        f"{type(exc).__name__}: {exc}"
        if isinstance(exc, SendError | InvalidPersonalisationError)
        else f"{type(exc).__name__} (unexpected error in the channel)"
    )
    return text[:_MAX_ERROR]


class _Dispatch:
    def __init__(
        self,
        engine: Engine,
        channel: Channel,
        now: datetime,
        *,
        max_attempts: int,
        sender_name: str,
        claim_timeout: timedelta,
        concurrency: int,
    ) -> None:
        self.engine = engine
        self.channel = channel
        self.kind = NotificationChannel(channel.kind)
        self.now = now
        self.max_attempts = max_attempts
        self.sender_name = sender_name
        self.claim_timeout = claim_timeout
        self.concurrency = max(1, concurrency)
        self.report = DispatchReport()
        self.looked_up: set[int] = set()

    # -- database -------------------------------------------------------------------------

    def _due(self) -> ColumnElement[bool]:
        nxt = col(Notification.next_attempt_at)
        return or_(nxt.is_(None), nxt <= self.now)

    def _rows(self, status: NotificationStatus, limit: int) -> list[_Row]:
        with Session(self.engine) as s:
            found = s.exec(
                select(Notification)
                .where(
                    Notification.channel == self.kind, Notification.status == status, self._due()
                )
                .order_by(col(Notification.created_at), col(Notification.id))
                .limit(limit)
            ).all()
            return [_Row.of(n) for n in found]

    def _update(
        self, row_id: int, expected: NotificationStatus, *where: ColumnElement[bool], **values: Any
    ) -> bool:
        with Session(self.engine) as s:
            result = s.exec(
                update(Notification)
                .where(col(Notification.id) == row_id, col(Notification.status) == expected, *where)
                .values(**values)
            )
            s.commit()
            return result.rowcount == 1

    def _mark_sent(self, row_id: int, provider_id: str) -> bool:
        return self._update(
            row_id,
            NotificationStatus.sending,
            status=NotificationStatus.sent,
            provider_id=provider_id[:120],
            sent_at=self.now,
            next_attempt_at=None,
            last_error=None,
        )

    def _mark_failed(
        self, row_id: int, expected: NotificationStatus, error: str, *where: ColumnElement[bool]
    ) -> bool:
        return self._update(
            row_id,
            expected,
            *where,
            status=NotificationStatus.failed,
            next_attempt_at=None,
            last_error=error[:_MAX_ERROR],
        )

    def _message(self, row: _Row) -> OutgoingMessage:
        values = validate_personalisation(row.template, row.personalisation)
        rendered = render(row.template, values)
        return OutgoingMessage(
            idempotency_key=row.key,
            template=row.template,
            recipient=row.recipient,
            subject=rendered.subject,
            body=rendered.body,
            personalisation=values,
            sender_name=self.sender_name,
        )

    def _unknown(
        self, row_id: int, expected: NotificationStatus, cause: str, *where: ColumnElement[bool]
    ) -> None:
        note = f"{OUTCOME_UNKNOWN.format(channel=self.kind.value)} ({cause})"
        if self._mark_failed(row_id, expected, note, *where):
            self.report.outcome_unknown += 1
            log.warning("notification %s: outcome unknown, marked failed for an officer", row_id)

    # -- (a) recovery of rows a crash left in `sending` ------------------------------------

    async def recover(self, limit: int) -> None:
        for row in self._rows(NotificationStatus.sending, limit):
            stale = self._due()
            if not self.channel.can_lookup:
                self._unknown(
                    row.id, NotificationStatus.sending, "interrupted while sending", stale
                )
                continue
            try:
                msg = self._message(row)
                provider_id = await self.channel.lookup(msg)
            except TransientSendError as exc:
                self._update(
                    row.id,
                    NotificationStatus.sending,
                    stale,
                    last_error=f"recovery lookup failed: {_describe(exc)}"[:_MAX_ERROR],
                )
                self.report.skipped += 1
                continue
            except Exception as exc:  # noqa: BLE001 - any other answer means "cannot tell"
                self._unknown(row.id, NotificationStatus.sending, _describe(exc), stale)
                continue
            if provider_id:
                if self._mark_sent(row.id, provider_id):
                    self.report.recovered += 1
                    log.info("notification %s: already delivered, marked sent", row.id)
            elif self._update(
                row.id,
                NotificationStatus.sending,
                stale,
                status=NotificationStatus.pending,
                next_attempt_at=None,
            ):
                self.looked_up.add(row.id)
                log.info(
                    "notification %s: not delivered before the interruption; resending", row.id
                )

    # -- (b) send what is due ---------------------------------------------------------------

    async def send_due(self, limit: int) -> None:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(row: _Row) -> None:
            async with gate:
                await self._deliver(row)

        await asyncio.gather(*(one(r) for r in self._rows(NotificationStatus.pending, limit)))

    async def _deliver(self, row: _Row) -> None:
        pending = NotificationStatus.pending
        try:
            msg = self._message(row)
        except InvalidPersonalisationError as exc:
            if self._mark_failed(row.id, pending, _describe(exc)):
                self.report.failed += 1
            return
        claimed = self._update(
            row.id,
            pending,
            self._due(),
            col(Notification.attempts) == row.attempts,
            status=NotificationStatus.sending,
            attempts=row.attempts + 1,
            next_attempt_at=self.now + self.claim_timeout,
        )
        if not claimed:
            self.report.skipped += 1
            return
        attempts = row.attempts + 1
        sending = NotificationStatus.sending
        try:
            if row.attempts > 0 and self.channel.can_lookup and row.id not in self.looked_up:
                provider_id = await self.channel.lookup(msg)
                if provider_id:
                    if self._mark_sent(row.id, provider_id):
                        self.report.recovered += 1
                    return
            provider_id = await self.channel.send(msg)
        except TransientSendError as exc:
            self._transient(row.id, attempts, _describe(exc))
        except PermanentSendError as exc:
            if self._mark_failed(row.id, sending, _describe(exc)):
                self.report.failed += 1
        except OutcomeUnknownError as exc:
            self._unknown(row.id, sending, _describe(exc))
        except Exception as exc:  # noqa: BLE001 - a channel bug must not stop the batch
            # The class name only: an unknown exception's text may quote the message.
            log.warning(
                "notification %s: unexpected %s from the channel", row.id, type(exc).__name__
            )
            if self.channel.can_lookup:
                self._transient(row.id, attempts, _describe(exc))
            else:
                self._unknown(row.id, sending, _describe(exc))
        else:
            if self._mark_sent(row.id, provider_id):
                self.report.sent += 1

    def _transient(self, row_id: int, attempts: int, error: str) -> None:
        sending = NotificationStatus.sending
        if attempts >= self.max_attempts:
            if self._mark_failed(row_id, sending, f"gave up after {attempts} attempts; {error}"):
                self.report.failed += 1
            return
        if self._update(
            row_id,
            sending,
            status=NotificationStatus.pending,
            next_attempt_at=self.now + backoff(attempts),
            last_error=error[:_MAX_ERROR],
        ):
            self.report.retried_later += 1


async def dispatch_pending(
    db_url: str,
    channel: Channel,
    *,
    now: datetime | None = None,
    limit: int = 500,
    max_attempts: int = 8,
    sender_name: str = DEFAULT_SENDER_NAME,
    claim_timeout: timedelta = timedelta(minutes=10),
    concurrency: int = 4,
) -> DispatchReport:
    """Send the outbox rows for ``channel.kind`` that are due, and recover interrupted ones.

    - Rows left in ``sending`` whose claim is older than ``claim_timeout`` are recovered first
      (see the module docstring). Pass ``claim_timeout=timedelta(0)`` only when no other
      dispatcher can be running (e.g. straight after a crash, in a single-runner flow).
    - Then up to ``limit`` ``pending`` rows with ``next_attempt_at`` unset or ``<= now`` are
      claimed one by one (at most ``concurrency`` in flight) and sent. A transient failure
      backs off (:func:`backoff`); the ``max_attempts``-th failure, a permanent failure or an
      invalid row is ``failed``. ``last_error`` holds the error class and code, never content.

    ``now`` (aware) is the clock for this run: due times, back-off and ``sent_at``.
    Rows for other channels are left alone: they must be looked up by the channel that sent
    them. Returns a :class:`DispatchReport`.
    """
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("dispatch_pending: 'now' must be timezone-aware")
    run = _Dispatch(
        get_engine(db_url),
        channel,
        now,
        max_attempts=max_attempts,
        sender_name=sender_name,
        claim_timeout=claim_timeout,
        concurrency=concurrency,
    )
    await run.recover(limit)
    await run.send_due(limit)
    log.info("dispatch (%s): %s", run.kind.value, run.report)
    return run.report


def queue_notification(
    session: Session,
    *,
    referral_id: int | None,
    template: Template | str,
    recipient: str,
    personalisation: Mapping[str, Any],
    channel: NotificationChannel | str,
    idempotency_key: str,
) -> bool:
    """Add an outbox row in the caller's session and transaction (no commit here).

    Returns True if a row was added, False if ``idempotency_key`` is already in the outbox
    (the earlier row wins; nothing is changed). Safe when two transactions race for the same
    key: the insert is ``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL.

    Raises :class:`InvalidPersonalisationError` (a ``ValueError``) if ``personalisation`` does
    not fit ``template`` (see :data:`notifications.templates.TEMPLATE_FIELDS`), and
    ``ValueError`` for an unusable key, recipient or channel; nothing is written then.
    """
    tpl = Template(template)
    values = validate_personalisation(tpl, personalisation)
    kind = NotificationChannel(channel)
    if (
        not isinstance(idempotency_key, str)
        or not 1 <= len(idempotency_key) <= 200
        or not idempotency_key.isprintable()
    ):
        raise ValueError("idempotency_key must be 1-200 printable characters")
    if (
        not isinstance(recipient, str)
        or not 3 <= len(recipient) <= 254
        or "@" not in recipient
        or not recipient.isprintable()
        or " " in recipient.strip()
    ):
        raise ValueError("recipient must be a single email address")
    key_col = col(Notification.idempotency_key)
    if session.exec(select(Notification.id).where(key_col == idempotency_key)).first() is not None:
        return False
    row = {
        "referral_id": referral_id,
        "idempotency_key": idempotency_key,
        "template": tpl,
        "channel": kind,
        "recipient": recipient.strip(),
        "personalisation": values,
        "status": NotificationStatus.pending,
        "attempts": 0,
        "created_at": datetime.now(UTC),
    }
    table = Notification.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = (
            insert(table)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(table.c.id)
        )
        # RETURNING, not rowcount: PostgreSQL reports -1 rows for a statement that returns rows.
        return session.exec(stmt).first() is not None
    # Other databases: a savepoint keeps the caller's transaction usable after a conflict.
    try:
        with session.begin_nested():
            session.exec(sa_insert(table).values(**row))
    except IntegrityError:
        return False
    return True
