"""The outbox: queue a notification with the decision, send it later, at most once.

Outbox states (``models.tables.Notification.status``)::

    queue_notification ──► pending ──claim──► sending ──► sent
                             ▲  │                 │  └──► failed   (permanent, gave up, or
                             │  └── bad row ──────┼─────► failed    outcome unknown: officer)
                             └──── transient ─────┘
                                   (attempts+1, next_attempt_at = now + back-off)
                 failed ──requeue_failed (an officer: ``cme outbox retry``)──► pending

Outages. A transient failure is retried with back-off (5 minutes doubling to an hour) for
``retry_for`` after the row's first attempt (``CME_NOTIFICATION_RETRY_DAYS``), however
often the dispatcher runs: elapsed time, not a count of dispatches, uses up the retries.
After :data:`OUTAGE_AFTER` transient failures in a row the run stops claiming rows (they
stay ``pending``, no attempt used): a channel that is down is not hammered, and a dispatch
every 15 minutes does not wait on hundreds of timeouts. :func:`delivery_trouble` says what
has kept failing, for the duty inbox (tasks/dispatch.py tells it by another path).

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
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, or_
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select, update

from models import UTCDateTime
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
from notifications.templates import TEMPLATE_FIELDS, render, validate_personalisation

__all__ = [
    "OUTCOME_UNKNOWN",
    "DispatchReport",
    "DeliveryTrouble",
    "OUTAGE_AFTER",
    "RETRY_FOR",
    "backoff",
    "delivery_trouble",
    "dispatch_pending",
    "queue_notification",
    "requeue_failed",
]

log = logging.getLogger(__name__)

#: ``last_error`` of a row whose delivery cannot be known: a person decides whether to resend.
OUTCOME_UNKNOWN = (
    "outcome unknown: the {channel} channel cannot tell whether this message was delivered; "
    "check with the recipient before resending"
)
_BACKOFF_BASE = timedelta(minutes=5)
# An hour at most between tries: when an outage ends, every waiting message goes within the
# hour (acknowledgements are due in 5 working days), and an hourly try costs little.
_BACKOFF_CAP = timedelta(hours=1)
#: Default time a transiently failing message is retried, from its first attempt.
RETRY_FOR = timedelta(days=5)
#: Transient failures in a row after which one dispatch run stops trying (the channel is down).
OUTAGE_AFTER = 5
_MAX_ERROR = 500


@dataclass
class DispatchReport:
    """What one dispatch did (counts only, no personal data).

    ``sent``: delivered now. ``recovered``: found already delivered by ``lookup`` (after a crash
    or before a retry) and marked sent without sending again. ``retried_later``: a transient
    failure, back to pending with a back-off. ``failed``: permanent failure, retried for
    longer than the retry period (or too many attempts), or an invalid row.
    ``outcome_unknown``: marked failed because delivery cannot be known (an officer must
    check). ``skipped``: another dispatcher had the row, or a lookup could not be made right
    now (tried again next dispatch). ``held``: not tried, the channel looks down.
    """

    sent: int = 0
    failed: int = 0
    retried_later: int = 0
    recovered: int = 0
    skipped: int = 0
    outcome_unknown: int = 0
    held: int = 0


def backoff(
    attempts: int, *, base: timedelta = _BACKOFF_BASE, cap: timedelta = _BACKOFF_CAP
) -> timedelta:
    """Delay before the next try after ``attempts`` tries: 5 min, 10 min, 20 min, … ≤ 1 h."""
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
    first_attempt_at: datetime | None = None

    @classmethod
    def of(cls, n: Notification) -> _Row:
        assert n.id is not None
        return cls(
            n.id, n.idempotency_key, n.template, n.recipient, dict(n.personalisation), n.attempts,
            n.first_attempt_at,
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
        max_attempts: int | None,
        sender_name: str | None,
        la_name: str | None = None,
        claim_timeout: timedelta,
        concurrency: int,
        retry_for: timedelta = RETRY_FOR,
    ) -> None:
        self.engine = engine
        self.channel = channel
        self.kind = NotificationChannel(channel.kind)
        self.now = now
        # The run's clock moves on from ``now`` at the wall clock's pace: a lease, a back-off
        # or a send time is taken when it happens, not when the batch started (README,
        # Guarantees: a batch longer than the lease is not sent twice).
        self._started = time.monotonic()
        self.max_attempts = max_attempts
        self.sender_name = sender_name
        self.la_name = la_name
        self.claim_timeout = claim_timeout
        self.concurrency = max(1, concurrency)
        self.retry_for = retry_for
        self.failures_in_a_row = 0
        self.report = DispatchReport()
        self.looked_up: set[int] = set()

    def clock(self) -> datetime:
        """This run's ``now`` plus the time the run has taken so far."""
        return self.now + timedelta(seconds=time.monotonic() - self._started)

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
        data = row.personalisation
        if (self.la_name and "la_name" in TEMPLATE_FIELDS.get(row.template, ())
                and isinstance(data, Mapping) and data.get("la_name") is None):
            # A row queued before letters carried the LA's name (an upgrade during an
            # outage's retries) is signed with the configured name, not failed: a queued
            # message is never lost to an upgrade.
            data = {**data, "la_name": self.la_name}
        values = validate_personalisation(row.template, data)
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
        if self.failures_in_a_row >= OUTAGE_AFTER:
            self.report.held += 1
            return
        claim_at = self.clock()
        claimed = self._update(
            row.id,
            pending,
            self._due(),
            col(Notification.attempts) == row.attempts,
            status=NotificationStatus.sending,
            attempts=row.attempts + 1,
            # The lease runs from the claim: rows claimed late in a long batch keep a full
            # lease, so another dispatcher cannot take them for crashed ones and resend them.
            next_attempt_at=claim_at + self.claim_timeout,
            # Typed, so SQLite stores it in the column's own format (compared as text there).
            first_attempt_at=func.coalesce(
                col(Notification.first_attempt_at), bindparam(None, claim_at, UTCDateTime())
            ),
        )
        if not claimed:
            self.report.skipped += 1
            return
        attempts = row.attempts + 1
        first_attempt = row.first_attempt_at or claim_at
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
            self._transient(row.id, attempts, first_attempt, _describe(exc))
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
                self._transient(row.id, attempts, first_attempt, _describe(exc))
            else:
                self._unknown(row.id, sending, _describe(exc))
        else:
            self.failures_in_a_row = 0
            if self._mark_sent(row.id, provider_id):
                self.report.sent += 1

    def _transient(self, row_id: int, attempts: int, first_attempt: datetime, error: str) -> None:
        self.failures_in_a_row += 1
        sending = NotificationStatus.sending
        now = self.clock()
        if self.max_attempts is not None and attempts >= self.max_attempts:
            if self._mark_failed(row_id, sending, f"gave up after {attempts} attempts; {error}"):
                self.report.failed += 1
            return
        if now - first_attempt >= self.retry_for:
            days = self.retry_for / timedelta(days=1)
            note = f"gave up after {attempts} attempts over {days:g} days; {error}"
            if self._mark_failed(row_id, sending, note):
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
    max_attempts: int | None = None,
    sender_name: str | None = None,
    la_name: str | None = None,
    claim_timeout: timedelta = timedelta(minutes=10),
    concurrency: int = 4,
    retry_for: timedelta = RETRY_FOR,
) -> DispatchReport:
    """Send the outbox rows for ``channel.kind`` that are due, and recover interrupted ones.

    - Rows left in ``sending`` whose claim is older than ``claim_timeout`` are recovered first
      (see the module docstring). Pass ``claim_timeout=timedelta(0)`` only when no other
      dispatcher can be running (e.g. straight after a crash, in a single-runner flow).
    - Then up to ``limit`` ``pending`` rows with ``next_attempt_at`` unset or ``<= now`` are
      claimed one by one (at most ``concurrency`` in flight) and sent; each claim's lease
      runs ``claim_timeout`` from that claim. A transient failure backs off
      (:func:`backoff`) until ``retry_for`` has passed since the row's first attempt (or,
      if given, the ``max_attempts``-th failure); then, or on a permanent failure or an
      invalid row, the row is ``failed``. After :data:`OUTAGE_AFTER` transient failures in
      a row the rest are left pending (``held``). ``last_error`` holds the error class and
      code, never content.

    ``now`` (aware) is the clock for this run: due times, back-off and ``sent_at``.
    ``sender_name`` is the name on the From line (the flows pass "<CME_LA_NAME> CME team");
    None sends from the bare address: this library holds no LA's name (README, Configuration).
    ``la_name`` (CME_LA_NAME) signs a row queued before messages carried the LA's name.
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
        la_name=la_name,
        claim_timeout=claim_timeout,
        concurrency=concurrency,
        retry_for=retry_for,
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


@dataclass(frozen=True)
class DeliveryTrouble:
    """Messages that keep failing (counts only): ``failing`` are still being retried and
    were first tried ``failing_for`` ago or earlier (``since``: the oldest first attempt);
    ``failed`` are marked failed and wait for an officer (``cme outbox retry``)."""

    failing: int
    since: datetime | None
    failed: int


def delivery_trouble(
    db_url: str, channel: NotificationChannel | str, *, now: datetime, failing_for: timedelta
) -> DeliveryTrouble:
    """How many ``channel`` messages have failed for at least ``failing_for`` and are still
    retried, and how many are ``failed`` for good."""
    kind = NotificationChannel(channel)
    with Session(get_engine(db_url)) as s:
        failing, since = s.exec(
            select(func.count(), func.min(col(Notification.first_attempt_at))).where(
                Notification.channel == kind,
                col(Notification.status).in_(
                    [NotificationStatus.pending, NotificationStatus.sending]
                ),
                col(Notification.first_attempt_at) <= now - failing_for,
                col(Notification.attempts) > 0,
            )
        ).one()
        failed = s.exec(
            select(func.count()).where(
                Notification.channel == kind, Notification.status == NotificationStatus.failed
            )
        ).one()
    return DeliveryTrouble(int(failing), since if failing else None, int(failed))


#: The key suffix of a message that could not be queued (tasks._common.NOT_QUEUED).
NOT_QUEUED_SUFFIX = "#not-queued"


def requeue_failed(
    db_url: str, *, notification_ids: list[int] | None = None,
    include_outcome_unknown: bool = False,
) -> list[int]:
    """Put ``failed`` rows back to ``pending`` (due now, with a fresh retry period); returns
    their ids. Rows whose outcome is unknown (they may have been delivered: SMTP cannot be
    asked) are left alone unless ``include_outcome_unknown`` — a person has checked with the
    recipient. ``notification_ids`` limits it to those rows. A channel that can look up asks
    before sending again (the row has attempts), so nothing it delivered is sent twice.
    """
    unknown_prefix = OUTCOME_UNKNOWN.split("{channel}")[0]
    done: list[int] = []
    with Session(get_engine(db_url)) as s:
        q = select(Notification.id, Notification.last_error).where(
            Notification.status == NotificationStatus.failed,
            # A message that could not even be queued holds no fields to send: it is queued
            # afresh at the case's next decision once its address is put right.
            ~col(Notification.idempotency_key).endswith(NOT_QUEUED_SUFFIX),
        )
        if notification_ids is not None:
            q = q.where(col(Notification.id).in_(notification_ids))
        for row_id, last_error in s.exec(q).all():
            assert row_id is not None
            if not include_outcome_unknown and (last_error or "").startswith(unknown_prefix):
                continue
            result = s.exec(
                update(Notification)
                .where(
                    col(Notification.id) == row_id,
                    col(Notification.status) == NotificationStatus.failed,
                )
                .values(
                    status=NotificationStatus.pending,
                    next_attempt_at=None,
                    first_attempt_at=None,
                    last_error=f"re-queued by an officer; was: {last_error or ''}"[:_MAX_ERROR],
                )
            )
            if result.rowcount == 1:
                done.append(row_id)
        s.commit()
    return sorted(done)
