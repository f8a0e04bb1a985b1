"""Outages and long batches (issue 18, points 5 and 6).

- An SMTP outage of 12 hours, with the intake dispatching every 15 minutes, uses up no
  message: retries run for CME_NOTIFICATION_RETRY_DAYS from the first attempt; when messages
  keep failing the duty inbox is told another way; ``cme outbox retry`` re-queues.
- The send lease runs from each claim: a batch that outlasts the lease, with a second
  dispatcher running, sends nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from conftest import CollectingHandler, SmtpServer, free_port
from sqlmodel import Session, select
from typer.testing import CliRunner

from cme.cli import app
from models import Notification, NotificationChannel, NotificationStatus, Template, get_engine
from models.db import session_scope
from notifications import (
    OUTAGE_AFTER,
    OUTCOME_UNKNOWN,
    FileChannel,
    OutgoingMessage,
    SmtpChannel,
    dispatch_pending,
    queue_notification,
)
from tasks.dispatch import dispatch_outbox
from tasks.intake import ingest_records
from tasks.worklist import Why, build_worklist
from tests.la_configs import LA_NAME, dispatch_config, intake_config
from tests.referral_records import referral_record

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ACK = {"reference": "CME-2026-0042", "initials": "Z.Q.", "school_name": "Test School",
       "la_name": LA_NAME}


def queue(db: str, n: int, channel: NotificationChannel = NotificationChannel.smtp,
          referral_id: int | None = None) -> list[str]:
    keys = [f"ack:CME-2026-{i:04d}" for i in range(n)]
    with session_scope(db) as s:
        for key in keys:
            queue_notification(s, referral_id=referral_id, template=Template.acknowledgement,
                               recipient="office@school.example.org", personalisation=ACK,
                               channel=channel, idempotency_key=key)
    return keys


def rows(db: str) -> list[Notification]:
    with Session(get_engine(db)) as s:
        return list(s.exec(select(Notification).order_by(Notification.id)).all())  # type: ignore[arg-type]


def start_smtp(port: int, handler: CollectingHandler) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller


# --- point 5: outages --------------------------------------------------------------------


async def test_a_twelve_hour_smtp_outage_uses_up_no_message(clean_db: str) -> None:
    keys = queue(clean_db, 3)
    port = free_port()  # the mail server is down: nothing listens here
    channel = SmtpChannel(host="127.0.0.1", port=port, timeout=5)
    now = T0
    while now < T0 + timedelta(hours=12):  # the intake flow dispatches every 15 minutes
        await dispatch_pending(clean_db, channel, now=now)
        now += timedelta(minutes=15)
    assert {r.status for r in rows(clean_db)} == {NotificationStatus.pending}
    for r in rows(clean_db):
        assert r.attempts > 1 and r.first_attempt_at is not None
        assert r.first_attempt_at - T0 < timedelta(minutes=1)

    handler = CollectingHandler()
    server = start_smtp(port, handler)  # the outage ends
    try:
        for _ in range(5):  # within the hour, at most
            await dispatch_pending(clean_db, channel, now=now)
            now += timedelta(minutes=15)
    finally:
        server.stop()
    assert {r.status for r in rows(clean_db)} == {NotificationStatus.sent}
    got = Counter(message_from_bytes(e.original_content)["Message-ID"] for e in handler.messages)
    assert len(handler.messages) == len(keys) and set(got.values()) == {1}


async def test_a_message_is_given_up_only_when_the_retry_period_has_passed(
    clean_db: str,
) -> None:
    queue(clean_db, 1)
    channel = SmtpChannel(host="127.0.0.1", port=free_port(), timeout=5)
    now = T0
    while now <= T0 + timedelta(days=2, hours=1):
        await dispatch_pending(clean_db, channel, now=now, retry_for=timedelta(days=2))
        [row] = rows(clean_db)
        if now - T0 < timedelta(days=2) - timedelta(hours=1):
            assert row.status is NotificationStatus.pending, now - T0
        now += timedelta(hours=1)
    [row] = rows(clean_db)
    assert row.status is NotificationStatus.failed
    assert row.last_error is not None and "over 2 days" in row.last_error


async def test_a_channel_that_is_down_is_not_tried_for_every_row(clean_db: str) -> None:
    queue(clean_db, 20)
    channel = SmtpChannel(host="127.0.0.1", port=free_port(), timeout=5)
    report = await dispatch_pending(clean_db, channel, now=T0, concurrency=1)
    assert report.retried_later == OUTAGE_AFTER and report.held == 20 - OUTAGE_AFTER
    assert sorted(r.attempts for r in rows(clean_db)) == [0] * 15 + [1] * 5


def force(db: str, **values: Any) -> None:
    with session_scope(db) as s:
        s.exec(sa.update(Notification).values(**values))  # type: ignore[call-overload]


async def test_the_duty_inbox_is_told_through_the_outbox_folder_once_a_day(
    clean_db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue(clean_db, 4)
    cfg = dispatch_config(db_url=clean_db, channel="smtp",
                          channel_options={"host": "127.0.0.1", "port": free_port(),
                                          "timeout": 5},
                          duty_inbox="cme-duty@la.example.org", outbox_dir=str(tmp_path / "out"))
    first = await dispatch_outbox(cfg)
    assert first["retried_later"] == 4 and first["duty_alerted"] == 0  # not yet "keeps failing"
    # Two hours later (as if the dispatches between had failed too):
    force(clean_db, first_attempt_at=datetime.now(UTC) - timedelta(hours=2), next_attempt_at=None)
    caplog.set_level(logging.ERROR)
    second = await dispatch_outbox(cfg)
    third = await dispatch_outbox(cfg)
    assert (second["duty_alerted"], third["duty_alerted"]) == (1, 0)
    [alert] = list((tmp_path / "out").glob("*.eml"))
    mail = message_from_bytes(alert.read_bytes())
    assert mail["To"] == "cme-duty@la.example.org"
    assert "not going out through smtp: 4 waiting" in mail["Subject"]
    assert "keep failing on the smtp channel: 4 still retried" in caplog.text
    alerts = [r for r in rows(clean_db) if r.template is Template.delivery_failing]
    assert [(a.channel, a.status) for a in alerts] == [(NotificationChannel.file,
                                                        NotificationStatus.sent)]


REFERRAL = referral_record("CME-2026-920001")


async def test_cme_outbox_retry_requeues_failed_messages_and_the_worklist_shows_them(
    clean_db: str, smtp_server: SmtpServer, workdir: Path
) -> None:
    ingest_records([(1, json.dumps(REFERRAL))], source="t.jsonl",
                   cfg=intake_config(db_url=clean_db, channel="smtp"))
    [ack] = rows(clean_db)
    queue(clean_db, 1, referral_id=ack.referral_id)  # a second message for the same case
    with session_scope(clean_db) as s:
        s.exec(sa.update(Notification).where(Notification.id == ack.id).values(  # type: ignore[call-overload]
            status=NotificationStatus.failed, attempts=40,
            last_error="gave up after 40 attempts over 5 days; TransientSendError: smtp"))
        s.exec(sa.update(Notification).where(Notification.id != ack.id).values(  # type: ignore[call-overload]
            status=NotificationStatus.failed, attempts=1,
            last_error=OUTCOME_UNKNOWN.format(channel="smtp")))
    ref = REFERRAL["mendix_reference"]
    [item] = [i for i in build_worklist(clean_db, T0.date()) if i.why is Why.message_failed]
    assert item.reference == ref and f"cme outbox retry --ref {ref}" in item.next_step
    from flows.worklist import worklist_markdown

    page = worklist_markdown([item], T0.date(), {"Case report": "dep-1"})
    assert "Message not sent" in page and "Case report" in page

    runner = CliRunner()
    env = {"CME_DATABASE_URL": clean_db, "COLUMNS": "200"}
    out = runner.invoke(app, ["outbox", "retry", "--ref", ref], env=env)
    assert out.exit_code == 0, out.output
    assert "Re-queued 1 failed message for" in out.output and "1 left failed" in out.output
    assert [r.status for r in rows(clean_db)] == [NotificationStatus.pending,
                                                  NotificationStatus.failed]
    out = runner.invoke(app, ["outbox", "retry", "--include-unknown"], env=env)
    assert out.exit_code == 0 and "Re-queued 1 failed message;" in out.output
    assert not [i for i in build_worklist(clean_db, T0.date()) if i.why is Why.message_failed]
    missing = runner.invoke(app, ["outbox", "retry", "--ref", "CME-NOPE"], env=env)
    assert missing.exit_code != 0
    listing = runner.invoke(app, ["outbox", "--status", "pending"], env=env)
    assert listing.exit_code == 0 and "pending 2" in listing.output

    channel = SmtpChannel(host=smtp_server.host, port=smtp_server.port)
    report = await dispatch_pending(clean_db, channel, now=datetime.now(UTC))
    assert report.sent == 2 and len(smtp_server.handler.messages) == 2


def test_a_message_that_could_not_be_queued_is_not_requeued_and_is_listed_once(
    clean_db: str,
) -> None:
    # Issue 18 points 2 and 5 together: a "not queued" row holds no fields to send (it is
    # queued afresh at the case's next decision), so `cme outbox retry` leaves it alone and
    # the worklist shows it once, as not queued, not also as "not sent".
    from notifications import requeue_failed
    from tasks._common import queue_message

    ingest_records([(1, json.dumps(REFERRAL))], source="t.jsonl",
                   cfg=intake_config(db_url=clean_db, channel="smtp"))
    [ack] = rows(clean_db)
    with session_scope(clean_db) as s:
        assert queue_message(s, referral_id=ack.referral_id, template=Template.acknowledgement,
                             recipient="not an address", personalisation=ACK,
                             channel=NotificationChannel.smtp,
                             idempotency_key="ack:again") == 0
    [bad] = [r for r in rows(clean_db) if r.idempotency_key.endswith("#not-queued")]
    assert bad.status is NotificationStatus.failed
    assert requeue_failed(clean_db, include_outcome_unknown=True) == []
    whys = [i.why for i in build_worklist(clean_db, T0.date())
            if i.reference == REFERRAL["mendix_reference"]]
    assert Why.message_not_queued in whys and Why.message_failed not in whys


# --- point 6: the lease runs from the claim ----------------------------------------------


class SlowFileChannel(FileChannel):
    """The file channel on a slow disk: each write takes ``delay`` seconds."""

    def __init__(self, outbox: Path, delay: float) -> None:
        super().__init__(outbox)
        self.delay = delay
        self.writes: list[str] = []
        self._lock = threading.Lock()

    def _write(self, msg: OutgoingMessage) -> str:
        import time

        time.sleep(self.delay)
        with self._lock:
            self.writes.append(msg.idempotency_key)
        return super()._write(msg)


async def test_a_batch_longer_than_the_lease_is_not_sent_twice_by_a_second_dispatcher(
    clean_db: str, tmp_path: Path
) -> None:
    keys = queue(clean_db, 6, channel=NotificationChannel.file)
    first = SlowFileChannel(tmp_path, delay=0.3)
    second = SlowFileChannel(tmp_path, delay=0.3)
    lease = timedelta(seconds=0.5)  # the batch (6 × 0.3 s, one at a time) lasts 1.8 s

    async def later() -> Any:
        await asyncio.sleep(1.0)
        return await dispatch_pending(clean_db, second, now=datetime.now(UTC),
                                      claim_timeout=lease, concurrency=1)

    ra, rb = await asyncio.gather(
        dispatch_pending(clean_db, first, now=datetime.now(UTC), claim_timeout=lease,
                         concurrency=1),
        later(),
    )
    written = Counter(first.writes + second.writes)
    assert sorted(written) == sorted(keys) and set(written.values()) == {1}
    assert ra.sent + rb.sent == 6 and ra.outcome_unknown == rb.outcome_unknown == 0
    assert {r.status for r in rows(clean_db)} == {NotificationStatus.sent}


async def test_a_slow_smtp_batch_is_neither_resent_nor_marked_unknown(
    clean_db: str, smtp_server: SmtpServer
) -> None:
    queue(clean_db, 5)
    smtp_server.handler.data_delay = 0.3
    lease = timedelta(seconds=0.5)

    def channel() -> SmtpChannel:
        return SmtpChannel(host=smtp_server.host, port=smtp_server.port)

    async def later() -> Any:
        await asyncio.sleep(1.0)
        return await dispatch_pending(clean_db, channel(), now=datetime.now(UTC),
                                      claim_timeout=lease, concurrency=1)

    await asyncio.gather(
        dispatch_pending(clean_db, channel(), now=datetime.now(UTC), claim_timeout=lease,
                         concurrency=1),
        later(),
    )
    ids = Counter(message_from_bytes(e.original_content)["Message-ID"]
                  for e in smtp_server.handler.messages)
    assert len(ids) == 5 and set(ids.values()) == {1}
    assert {r.status for r in rows(clean_db)} == {NotificationStatus.sent}
