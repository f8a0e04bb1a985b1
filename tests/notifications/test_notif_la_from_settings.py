"""The LA's name and sender address come from the settings (CME_LA_NAME, CME_MAIL_FROM), not
from defaults written into the code: a pipeline run for another LA signs its messages as that
LA (README, "Configuration")."""

from __future__ import annotations

import asyncio
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

from flows._config import dispatch_config
from flows.settings import Settings
from models import NotificationChannel, Template, session_scope
from notifications import queue_notification
from tasks.dispatch import dispatch_outbox


def test_messages_are_signed_by_the_configured_la(clean_db: str, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    settings = Settings(database_url=clean_db, notification_channel="file", outbox_dir=outbox,
                        la_name="Testshire Council", home_la="999",
                        mail_from="cme-team@testshire.example.org")
    with session_scope(clean_db) as s:
        queue_notification(
            s, referral_id=None, template=Template.acknowledgement,
            recipient="office@school.example.org",
            personalisation={"reference": "CME-2026-000001", "initials": "Z.Q.",
                             "school_name": "Test School", "la_name": settings.la_name},
            channel=NotificationChannel.file, idempotency_key="ack:la-settings:1")
    counts = asyncio.run(dispatch_outbox(dispatch_config(settings)))
    assert counts.get("sent") == 1, counts
    [eml] = sorted(outbox.glob("*.eml"))
    message = message_from_bytes(eml.read_bytes(), policy=default_policy)
    sender = str(message["From"])
    assert "Testshire Council CME team" in sender, sender
    assert "cme-team@testshire.example.org" in sender, sender
    assert "Hampshire" not in sender, sender


def test_a_message_queued_before_letters_carried_the_la_name_is_signed_not_failed(
        clean_db: str, tmp_path: Path) -> None:
    """An upgrade in the middle of an outage's retries: the acknowledgement queued by the
    earlier release (no ``la_name`` in its data) is still sent, signed with CME_LA_NAME,
    instead of failing as bad message data — a queued message is never lost to an upgrade."""
    from models import Notification, NotificationStatus

    outbox = tmp_path / "outbox"
    settings = Settings(database_url=clean_db, notification_channel="file", outbox_dir=outbox,
                        la_name="Testshire Council", home_la="999")
    with session_scope(clean_db) as s:
        s.add(Notification(
            template=Template.acknowledgement, channel=NotificationChannel.file,
            recipient="office@school.example.org", idempotency_key="ack:la-settings:old",
            personalisation={"reference": "CME-2026-000002", "initials": "Z.Q.",
                             "school_name": "Test School"}))
    counts = asyncio.run(dispatch_outbox(dispatch_config(settings)))
    assert counts.get("sent") == 1, counts
    with session_scope(clean_db) as s:
        from sqlmodel import select

        row = s.exec(select(Notification)).one()
        assert row.status is NotificationStatus.sent and row.last_error is None
    [eml] = sorted(outbox.glob("*.eml"))
    body = message_from_bytes(eml.read_bytes(), policy=default_policy)
    text = body.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "Testshire Council" in text
