"""The flow's dispatch step sends the whole outbox, however many batches that takes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select

import tasks.dispatch as dispatch_module
from models.db import get_engine, session_scope
from models.enums import NotificationStatus, Template
from models.tables import Notification
from notifications import queue_notification
from tasks.dispatch import dispatch_outbox
from tests.la_configs import LA_NAME, dispatch_config

ACK = {"reference": "CME-2026-0042", "initials": "Z.Q.", "school_name": "Test School",
       "la_name": LA_NAME}


def _queue(db_url: str, n: int) -> None:
    with session_scope(db_url) as s:
        for i in range(n):
            queue_notification(
                s,
                referral_id=None,
                template=Template.acknowledgement,
                recipient="office@school.example.org",
                personalisation=ACK,
                channel="file",
                idempotency_key=f"ack:batch-{i}",
            )


async def test_more_rows_than_one_batch_are_all_sent(
    clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch_module, "BATCH", 3)
    _queue(clean_db, 8)
    cfg = dispatch_config(clean_db, "file", {"outbox_dir": str(tmp_path / "outbox")})

    counts = await dispatch_outbox(cfg)

    assert counts["sent"] == 8
    with Session(get_engine(clean_db)) as s:
        statuses = {n.status for n in s.exec(select(Notification)).all()}
    assert statuses == {NotificationStatus.sent}
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == 8
    again = await dispatch_outbox(cfg)
    assert again["sent"] == 0
