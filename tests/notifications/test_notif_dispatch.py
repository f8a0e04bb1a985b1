"""The outbox: queue idempotently, send once, back off, recover after a crash."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import respx
import sqlalchemy as sa
from pydantic import SecretStr
from sqlmodel import Session, select

import notifications.dispatch as dispatch_module
from models.db import get_engine, session_scope
from models.enums import NotificationChannel, NotificationStatus, Template
from models.tables import Notification
from notifications import (
    OUTCOME_UNKNOWN,
    FileChannel,
    InvalidPersonalisationError,
    NotifyChannel,
    OutgoingMessage,
    PermanentSendError,
    SmtpChannel,
    TransientSendError,
    backoff,
    dispatch_pending,
    queue_notification,
)
from tests.la_configs import LA_NAME

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ACK = {"reference": "CME-2026-0042", "initials": "Z.Q.", "school_name": "Test School",
       "la_name": LA_NAME}
NOTIFY_BASE = "https://notify.test"
NOTIFY_KEY = "cme_live-26785a09-ab16-4eb0-8407-a37497a57506-3d844edf-8d35-48ac-975b-e847b4f122b0"


def queue(
    db_url: str,
    key: str = "ack:CME-2026-0042",
    *,
    channel: NotificationChannel = NotificationChannel.file,
    template: Template = Template.acknowledgement,
    personalisation: dict[str, Any] | None = None,
) -> bool:
    with session_scope(db_url) as s:
        return queue_notification(
            s,
            referral_id=None,
            template=template,
            recipient="office@school.example.org",
            personalisation=ACK if personalisation is None else personalisation,
            channel=channel,
            idempotency_key=key,
        )


def rows(db_url: str) -> list[Notification]:
    with Session(get_engine(db_url)) as s:
        return list(s.exec(select(Notification).order_by(Notification.id)).all())


def force(db_url: str, key: str, **values: Any) -> None:
    """Put a row in a given state, as a crash would have left it."""
    with session_scope(db_url) as s:
        s.exec(
            sa.update(Notification)
            .where(Notification.idempotency_key == key)  # type: ignore[call-overload]
            .values(**values)
        )


def crashed_mid_send(db_url: str, key: str = "ack:CME-2026-0042", *,
                     claimed_until: datetime | None = T0) -> None:
    """Leave message ``key`` as a dispatcher that died while sending it leaves it:
    ``sending``, one attempt made, its claim running until ``claimed_until``."""
    force(db_url, key, status=NotificationStatus.sending, attempts=1,
          next_attempt_at=claimed_until)


class ScriptedChannel:
    """A channel whose sends follow a script: an exception to raise, or a provider id."""

    kind: ClassVar[NotificationChannel] = NotificationChannel.file
    can_lookup: ClassVar[bool] = True

    def __init__(
        self, *script: Exception | str, delivered: dict[str, str] | None = None, delay: float = 0.0
    ) -> None:
        self.script = list(script)
        self.delivered = delivered if delivered is not None else {}
        self.sends: list[str] = []
        self.lookups: list[str] = []
        self.delay = delay

    async def send(self, msg: OutgoingMessage) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.sends.append(msg.idempotency_key)
        step = self.script.pop(0) if self.script else f"id-{len(self.sends)}"
        if isinstance(step, Exception):
            raise step
        self.delivered[msg.idempotency_key] = step
        return step

    async def lookup(self, msg: OutgoingMessage) -> str | None:
        self.lookups.append(msg.idempotency_key)
        return self.delivered.get(msg.idempotency_key)


# --- queue_notification ----------------------------------------------------------------------


def test_queue_notification_is_idempotent_per_key(clean_db: str) -> None:
    assert queue(clean_db) is True
    assert queue(clean_db) is False
    [row] = rows(clean_db)
    assert row.status is NotificationStatus.pending and row.attempts == 0
    assert row.personalisation == ACK


def test_queue_notification_joins_the_callers_transaction(clean_db: str) -> None:
    with Session(get_engine(clean_db)) as s:
        assert queue_notification(
            s,
            referral_id=None,
            template=Template.acknowledgement,
            recipient="office@school.example.org",
            personalisation=ACK,
            channel="file",
            idempotency_key="ack:rolled-back",
        )
        s.rollback()  # the decision failed: its notification must go too
    assert rows(clean_db) == []


def test_queue_notification_survives_a_race_on_the_unique_key(
    clean_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another transaction inserted the key after our SELECT looked: the insert must not raise.
    assert queue(clean_db)
    real_select = dispatch_module.select
    monkeypatch.setattr(dispatch_module, "select", lambda *a: real_select(*a).where(sa.false()))
    with Session(get_engine(clean_db)) as s:
        assert (
            queue_notification(
                s,
                referral_id=None,
                template=Template.acknowledgement,
                recipient="office@school.example.org",
                personalisation=ACK,
                channel="file",
                idempotency_key="ack:CME-2026-0042",
            )
            is False
        )
        s.commit()
    assert len(rows(clean_db)) == 1


def test_queue_notification_refuses_personal_fields_and_writes_nothing(clean_db: str) -> None:
    with pytest.raises(InvalidPersonalisationError, match="'surname'") as info:
        queue(clean_db, personalisation={**ACK, "surname": "Quixote-Canary"})
    assert "Quixote-Canary" not in str(info.value)
    with pytest.raises(InvalidPersonalisationError, match="'initials' is required"):
        queue(clean_db, personalisation={"reference": "CME-1", "school_name": "S"})
    assert rows(clean_db) == []


@pytest.mark.parametrize("recipient", ["", "no-at-sign", "a@b.org\nBcc: c@d.org"])
def test_queue_notification_refuses_a_bad_recipient(clean_db: str, recipient: str) -> None:
    with Session(get_engine(clean_db)) as s, pytest.raises(ValueError, match="recipient"):
        queue_notification(
            s,
            referral_id=None,
            template=Template.acknowledgement,
            recipient=recipient,
            personalisation=ACK,
            channel="file",
            idempotency_key="k",
        )


# --- sending ---------------------------------------------------------------------------------


async def test_pending_rows_are_sent_once_and_a_second_dispatch_sends_nothing(
    clean_db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue(clean_db, "ack:1")
    queue(clean_db, "ack:2")
    channel = FileChannel(tmp_path)

    caplog.set_level(logging.DEBUG)
    first = await dispatch_pending(clean_db, channel, now=T0)
    second = await dispatch_pending(clean_db, channel, now=T0 + timedelta(days=1))

    assert (first.sent, second.sent, second.skipped) == (2, 0, 0)
    assert len(list(tmp_path.glob("*.eml"))) == 2
    for row in rows(clean_db):
        assert row.status is NotificationStatus.sent
        assert row.sent_at == T0 and row.attempts == 1 and row.provider_id
        assert (tmp_path / row.provider_id).exists()
    assert "Z.Q." not in caplog.text and "office@school" not in caplog.text


async def test_a_transient_failure_backs_off_and_is_retried_later(clean_db: str) -> None:
    queue(clean_db)
    channel = ScriptedChannel(TransientSendError("file: disk full", status=None))

    report = await dispatch_pending(clean_db, channel, now=T0)
    [row] = rows(clean_db)
    assert report.retried_later == 1
    assert row.status is NotificationStatus.pending and row.attempts == 1
    assert row.next_attempt_at == T0 + timedelta(minutes=5)
    assert row.last_error == "TransientSendError: file: disk full"

    too_soon = await dispatch_pending(clean_db, channel, now=T0 + timedelta(minutes=4))
    assert too_soon.sent == 0 and channel.sends == ["ack:CME-2026-0042"]

    later = await dispatch_pending(clean_db, channel, now=T0 + timedelta(minutes=5))
    [row] = rows(clean_db)
    assert later.sent == 1 and row.status is NotificationStatus.sent and row.attempts == 2
    assert row.last_error is None
    # A retry asks first whether the earlier attempt got through.
    assert channel.lookups == ["ack:CME-2026-0042"]


async def test_a_retry_that_finds_the_message_delivered_does_not_resend(clean_db: str) -> None:
    queue(clean_db)
    # The send timed out after the provider took it.
    channel = ScriptedChannel(TransientSendError("notify: timed out"))
    await dispatch_pending(clean_db, channel, now=T0)
    channel.delivered["ack:CME-2026-0042"] = "provider-1"

    report = await dispatch_pending(clean_db, channel, now=T0 + timedelta(hours=1))

    [row] = rows(clean_db)
    assert report.recovered == 1 and report.sent == 0
    assert row.status is NotificationStatus.sent and row.provider_id == "provider-1"
    assert channel.sends == ["ack:CME-2026-0042"]


def test_backoff_doubles_from_five_minutes_up_to_an_hour() -> None:
    # An hour at most: when an outage ends, every waiting message goes within the hour.
    assert [backoff(n) for n in (1, 2, 3, 4)] == [timedelta(minutes=m) for m in (5, 10, 20, 40)]
    assert backoff(5) == backoff(50) == timedelta(hours=1)


async def test_max_attempts_turns_a_transient_failure_into_failed(clean_db: str) -> None:
    queue(clean_db)
    channel = ScriptedChannel(*[TransientSendError("x", status=503)] * 3)
    now = T0
    for _ in range(3):
        await dispatch_pending(clean_db, channel, now=now, max_attempts=3)
        now += timedelta(days=1)
    [row] = rows(clean_db)
    assert row.status is NotificationStatus.failed and row.attempts == 3
    assert row.last_error is not None and row.last_error.startswith("gave up after 3 attempts")


async def test_a_permanent_failure_is_failed_with_a_pii_free_error(clean_db: str) -> None:
    queue(clean_db)
    channel = ScriptedChannel(
        PermanentSendError("notify: POST returned 400 BadRequestError", status=400)
    )
    report = await dispatch_pending(clean_db, channel, now=T0)
    [row] = rows(clean_db)
    assert report.failed == 1 and row.status is NotificationStatus.failed
    assert row.last_error == "PermanentSendError: notify: POST returned 400 BadRequestError"
    assert (await dispatch_pending(clean_db, channel, now=T0 + timedelta(days=9))).sent == 0


async def test_an_unexpected_channel_error_keeps_only_its_class_name(
    clean_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    queue(clean_db)
    channel = ScriptedChannel(RuntimeError("Zebedee Quixote-Canary"))
    report = await dispatch_pending(clean_db, channel, now=T0)
    [row] = rows(clean_db)
    assert report.retried_later == 1
    assert row.last_error is not None and "Zebedee" not in row.last_error
    assert "RuntimeError" in row.last_error
    assert "RuntimeError" in caplog.text and "Zebedee" not in caplog.text


async def test_a_row_with_invalid_personalisation_fails_naming_the_key(clean_db: str) -> None:
    queue(clean_db)
    # Written around queue_notification (e.g. by hand): the dispatcher still refuses it.
    force(clean_db, "ack:CME-2026-0042", personalisation={**ACK, "surname": "Quixote-Canary"})
    channel = ScriptedChannel()
    report = await dispatch_pending(clean_db, channel, now=T0)
    [row] = rows(clean_db)
    assert report.failed == 1 and channel.sends == []
    assert row.last_error is not None and "'surname'" in row.last_error
    assert "Quixote" not in row.last_error


async def test_rows_for_another_channel_are_left_alone(clean_db: str, tmp_path: Path) -> None:
    queue(clean_db, "smtp:1", channel=NotificationChannel.smtp)
    report = await dispatch_pending(clean_db, FileChannel(tmp_path), now=T0)
    assert report.sent == 0 and rows(clean_db)[0].status is NotificationStatus.pending


async def test_two_dispatchers_at_once_send_each_row_once(clean_db: str) -> None:
    for i in range(6):
        queue(clean_db, f"ack:{i}")
    a = ScriptedChannel(delay=0.01)
    b = ScriptedChannel(delay=0.01)
    ra, rb = await asyncio.gather(
        dispatch_pending(clean_db, a, now=T0), dispatch_pending(clean_db, b, now=T0)
    )
    assert ra.sent + rb.sent == 6
    assert sorted(a.sends + b.sends) == sorted(f"ack:{i}" for i in range(6))


# --- crash recovery --------------------------------------------------------------------------


async def test_crash_after_file_written_is_recovered_without_rewriting(
    clean_db: str, tmp_path: Path
) -> None:
    queue(clean_db)
    channel = FileChannel(tmp_path)
    [row] = rows(clean_db)
    # The crash: the claim was committed, the file written, the "sent" update never made.
    from notifications.dispatch import _Dispatch, _Row  # the message exactly as dispatch builds it

    msg = _Dispatch(
        get_engine(clean_db),
        channel,
        T0,
        max_attempts=8,
        sender_name="x",
        claim_timeout=timedelta(0),
        concurrency=1,
    )._message(_Row.of(row))
    name = await channel.send(msg)
    before = (tmp_path / name).stat().st_mtime_ns
    crashed_mid_send(clean_db, row.idempotency_key)

    report = await dispatch_pending(clean_db, channel, now=T0 + timedelta(minutes=30))

    [row] = rows(clean_db)
    assert report.recovered == 1 and report.sent == 0
    assert row.status is NotificationStatus.sent and row.provider_id == name
    assert (tmp_path / name).stat().st_mtime_ns == before
    assert len(list(tmp_path.iterdir())) == 1


async def test_crash_before_file_written_is_sent_after_recovery(
    clean_db: str, tmp_path: Path
) -> None:
    queue(clean_db)
    crashed_mid_send(clean_db, claimed_until=None)
    report = await dispatch_pending(clean_db, FileChannel(tmp_path), now=T0)
    [row] = rows(clean_db)
    assert report.sent == 1 and row.status is NotificationStatus.sent and row.attempts == 2
    assert len(list(tmp_path.glob("*.eml"))) == 1


async def test_a_fresh_claim_of_another_dispatcher_is_not_recovered(clean_db: str) -> None:
    queue(clean_db)
    crashed_mid_send(clean_db, claimed_until=T0 + timedelta(minutes=10))
    channel = ScriptedChannel()
    report = await dispatch_pending(clean_db, channel, now=T0 + timedelta(minutes=2))
    assert channel.lookups == [] and channel.sends == []
    assert report == dispatch_module.DispatchReport()
    assert rows(clean_db)[0].status is NotificationStatus.sending


@respx.mock(base_url=NOTIFY_BASE, assert_all_called=False)
async def test_crash_with_notify_is_looked_up_by_reference_and_not_resent(
    clean_db: str, respx_mock: respx.MockRouter
) -> None:
    queue(clean_db, channel=NotificationChannel.notify)
    crashed_mid_send(clean_db)
    lookup = respx_mock.get("/v2/notifications", params={"reference": "ack:CME-2026-0042"})
    lookup.respond(200, json={"notifications": [{"id": "n-77", "reference": "ack:CME-2026-0042"}]})
    post = respx_mock.post("/v2/notifications/email").respond(201, json={"id": "n-dup"})
    channel = NotifyChannel(
        api_key=SecretStr(NOTIFY_KEY),
        base_url=NOTIFY_BASE,
        template_ids={Template.acknowledgement: "tpl-ack"},
    )

    report = await dispatch_pending(clean_db, channel, now=T0 + timedelta(minutes=11))

    [row] = rows(clean_db)
    assert report.recovered == 1 and lookup.call_count == 1
    assert not post.called
    assert row.status is NotificationStatus.sent and row.provider_id == "n-77"


@respx.mock(base_url=NOTIFY_BASE)
async def test_crash_with_notify_not_found_is_sent_once(
    clean_db: str, respx_mock: respx.MockRouter
) -> None:
    queue(clean_db, channel=NotificationChannel.notify)
    crashed_mid_send(clean_db)
    lookup = respx_mock.get("/v2/notifications").respond(200, json={"notifications": []})
    post = respx_mock.post("/v2/notifications/email").respond(201, json={"id": "n-1"})
    channel = NotifyChannel(
        api_key=NOTIFY_KEY, base_url=NOTIFY_BASE, template_ids={Template.acknowledgement: "tpl-ack"}
    )

    report = await dispatch_pending(clean_db, channel, now=T0 + timedelta(minutes=11))

    assert report.sent == 1 and post.call_count == 1 and lookup.call_count == 1
    assert rows(clean_db)[0].provider_id == "n-1"


@respx.mock(base_url=NOTIFY_BASE, assert_all_called=False)
async def test_crash_with_notify_lookup_down_waits_for_the_next_dispatch(
    clean_db: str, respx_mock: respx.MockRouter
) -> None:
    queue(clean_db, channel=NotificationChannel.notify)
    crashed_mid_send(clean_db)
    respx_mock.get("/v2/notifications").respond(503)
    post = respx_mock.post("/v2/notifications/email").respond(201, json={"id": "n-1"})
    channel = NotifyChannel(
        api_key=NOTIFY_KEY, base_url=NOTIFY_BASE, template_ids={Template.acknowledgement: "tpl-ack"}
    )

    report = await dispatch_pending(clean_db, channel, now=T0 + timedelta(minutes=11))

    [row] = rows(clean_db)
    assert report.skipped == 1 and not post.called
    assert row.status is NotificationStatus.sending
    assert row.last_error is not None and "503" in row.last_error


async def test_crash_with_smtp_is_failed_for_an_officer_and_not_resent(
    clean_db: str, smtp_server
) -> None:
    queue(clean_db, channel=NotificationChannel.smtp)
    crashed_mid_send(clean_db)
    channel = SmtpChannel(host=smtp_server.host, port=smtp_server.port)

    report = await dispatch_pending(clean_db, channel, now=T0 + timedelta(minutes=11))
    again = await dispatch_pending(clean_db, channel, now=T0 + timedelta(days=1))

    [row] = rows(clean_db)
    assert report.outcome_unknown == 1 and again == dispatch_module.DispatchReport()
    assert row.status is NotificationStatus.failed
    assert row.last_error is not None
    assert row.last_error.startswith(OUTCOME_UNKNOWN.format(channel="smtp"))
    assert smtp_server.handler.messages == []


async def test_smtp_dispatch_delivers_through_a_real_server(clean_db: str, smtp_server) -> None:
    queue(clean_db, "ack:1", channel=NotificationChannel.smtp)
    queue(clean_db, "ack:2", channel=NotificationChannel.smtp)
    channel = SmtpChannel(host=smtp_server.host, port=smtp_server.port)
    report = await dispatch_pending(clean_db, channel, now=T0)
    await dispatch_pending(clean_db, channel, now=T0 + timedelta(days=1))
    assert report.sent == 2 and len(smtp_server.handler.messages) == 2
    ids = {r.provider_id for r in rows(clean_db)}
    received = {
        e.original_content.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
        for e in smtp_server.handler.messages
    }
    assert ids == received


async def test_smtp_cut_during_data_is_never_resent(clean_db: str, smtp_server) -> None:
    queue(clean_db, channel=NotificationChannel.smtp)
    smtp_server.handler.data_delay = 1.0
    channel = SmtpChannel(host=smtp_server.host, port=smtp_server.port, timeout=0.3)
    report = await dispatch_pending(clean_db, channel, now=T0)
    [row] = rows(clean_db)
    assert report.outcome_unknown == 1 and row.status is NotificationStatus.failed


async def test_now_must_be_aware(clean_db: str) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await dispatch_pending(clean_db, ScriptedChannel(), now=datetime(2026, 1, 1))


def test_two_transactions_queueing_one_key_on_postgresql_make_one_row(
    clean_db: str, backend: str
) -> None:
    # Both SELECTs see nothing; the second INSERT waits for the first commit, then does nothing.
    if backend != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL (SQLite serialises whole transactions)")
    import threading

    engine = get_engine(clean_db)
    results: dict[str, bool] = {}

    def second() -> None:
        with Session(engine) as s:
            results["second"] = queue_notification(
                s,
                referral_id=None,
                template=Template.acknowledgement,
                recipient="office@school.example.org",
                personalisation=ACK,
                channel="file",
                idempotency_key="ack:race",
            )
            s.commit()

    with Session(engine) as first:
        results["first"] = queue_notification(
            first,
            referral_id=None,
            template=Template.acknowledgement,
            recipient="office@school.example.org",
            personalisation=ACK,
            channel="file",
            idempotency_key="ack:race",
        )
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # blocked on the first transaction's uncommitted row
        first.commit()
    thread.join(10)
    assert results == {"first": True, "second": False}
    assert len(rows(clean_db)) == 1
