"""Dispatch the notifications outbox, then mark referrals acknowledged once the school has
been sent its acknowledgement."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from sqlmodel import col, select

from cme.secrets import SecretBlockError
from models import CaseStatus, Notification, NotificationStatus, Referral, Template, session_scope
from notifications import channel_from_config, dispatch_pending
from tasks._common import event

__all__ = ["DispatchConfig", "dispatch_outbox", "dispatch_task", "mark_acknowledged"]


BATCH = 500
MAX_BATCHES = 1000  # 500,000 notifications in one run: far beyond any night


@dataclass(frozen=True)
class DispatchConfig:
    db_url: str
    channel: str
    channel_options: dict[str, Any]


def mark_acknowledged(db_url: str) -> int:
    """Referrals whose acknowledgement has been sent: set ``acknowledged_at`` (the sent time)."""
    n = 0
    with session_scope(db_url) as s:
        rows = s.exec(
            select(Referral, Notification)
            .join(Notification, col(Notification.referral_id) == Referral.id)
            .where(Notification.template == Template.acknowledgement,
                   Notification.status == NotificationStatus.sent,
                   col(Referral.acknowledged_at).is_(None))
        ).all()
        for r, note in rows:
            r.acknowledged_at = note.sent_at or datetime.now(UTC)
            if r.status is CaseStatus.RECEIVED:
                r.status = CaseStatus.ACKNOWLEDGED
            event(s, r.id or 0, "acknowledged", "Acknowledgement sent to the school")
            n += 1
    return n


async def dispatch_outbox(cfg: DispatchConfig) -> dict[str, int]:
    """Send everything due, in batches of ``BATCH`` rows, until a batch makes no progress.

    A batch that only skips rows (held by another dispatcher, lookup unavailable) ends the
    loop; rows retried later are not due again in this run, so the loop always ends.
    """
    try:
        # In a thread: a Notify key or SMTP password held in a Prefect Secret block is read
        # over the network, with blocking retries.
        channel = await asyncio.to_thread(channel_from_config, cfg.channel,
                                          **cfg.channel_options)
    except SecretBlockError as exc:
        # Nothing can be sent: every row stays pending for the next dispatch, the rest of the
        # flow goes on, and the run's log says why (the message names setting and block).
        _logger().error("notifications not sent: %s", exc)
        return {"channel_unavailable": 1, "acknowledged": mark_acknowledged(cfg.db_url)}
    counts: dict[str, int] = {}
    for _ in range(MAX_BATCHES):
        report = await dispatch_pending(cfg.db_url, channel, limit=BATCH)
        got = {k: int(v) for k, v in vars(report).items() if isinstance(v, int)}
        for k, v in got.items():
            counts[k] = counts.get(k, 0) + v
        if got.get("skipped", 0) == sum(got.values()):
            break
    counts["acknowledged"] = mark_acknowledged(cfg.db_url)
    return counts


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run's logger (shown in the Prefect UI) inside a flow or task, else the module's."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@task(name="dispatch-notifications", cache_policy=NO_CACHE, persist_result=False)
async def dispatch_task(cfg: DispatchConfig) -> dict[str, int]:
    """Prefect task: send pending outbox rows through the configured channel."""
    return await dispatch_outbox(cfg)
