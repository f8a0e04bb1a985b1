"""Dispatch the notifications outbox, then mark referrals acknowledged once the school has
been sent its acknowledgement.

When messages keep failing (an outage of the configured channel: :data:`ALERT_AFTER` since
their first attempt, or any given up in this run) the duty inbox is told by another path
(README, "When messages keep failing"): an ERROR line in the run's log (the Prefect UI), a
``delivery_failing`` message written by the file channel to the outbox folder (at most one
a day), and the failed messages' cases on the worklist.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger
from pydantic import SecretStr
from sqlmodel import col, select

from connectors import SecretBlockError, reveal
from models import (
    Notification,
    NotificationChannel,
    NotificationStatus,
    Referral,
    Template,
    session_scope,
)
from notifications import (
    Channel,
    ChannelOptions,
    FileChannel,
    delivery_trouble,
    dispatch_pending,
    keys,
    queue_notification,
)
from notifications import channel_from_config as _channel_with_secrets_read
from policy import london_date
from tasks.lifecycle import Transition, change_status

__all__ = [
    "DispatchConfig",
    "channel_from_config",
    "dispatch_outbox",
    "dispatch_task",
    "mark_acknowledged",
]


BATCH = 500
MAX_BATCHES = 1000  # 500,000 notifications in one run: far beyond any night
#: How long messages fail before the duty inbox is told (four 15-minute intake dispatches).
ALERT_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class DispatchConfig:
    db_url: str
    channel: str
    #: The channel's typed options (notifications.channel_options; the flows build them from
    #: the settings when the settings are read). They unpack as keywords.
    channel_options: ChannelOptions
    #: CME_NOTIFICATION_RETRY_DAYS: how long a failing message is retried.
    retry_days: int = 5
    #: Where the duty inbox is (CME_DUTY_INBOX: no default, the settings are the one place
    #: it is written), and the file channel's folder, for the delivery alert.
    duty_inbox: str = field(kw_only=True)
    outbox_dir: str = "outbox"
    #: The sender's name on every message (from CME_LA_NAME: "<LA name> CME team") and the
    #: file channel's sender address (CME_MAIL_FROM; None: the channel's default).
    sender_name: str = field(kw_only=True)
    mail_from: str | None = None
    #: CME_LA_NAME, to sign a message queued before messages carried the LA's name.
    la_name: str = field(kw_only=True)

    def __post_init__(self) -> None:
        if self.channel_options.kind.value != self.channel:
            raise TypeError(f"DispatchConfig: {type(self.channel_options).__name__} given for "
                            f"the {self.channel} channel")


#: A channel option that is a secret → the setting it comes from (named in errors).
_SECRET_OPTIONS = {"password": "CME_SMTP_PASSWORD", "api_key": "CME_NOTIFY_API_KEY"}


def channel_from_config(kind: NotificationChannel | str, **config: Any) -> Channel:
    """The channel :func:`notifications.channel_from_config` builds, its secrets read first.

    The SMTP password and the Notify API key may name a Prefect Secret block
    (``prefect-secret:<block>``): it is read here, in the process that sends, and the
    channel gets the text (channels never read settings or blocks: docs/architecture.md).
    Raises :class:`connectors.SecretBlockError` naming the setting and the block when a block
    cannot be read, and ``ValueError`` as ``notifications.channel_from_config`` does.
    """
    for option, setting in _SECRET_OPTIONS.items():
        value = config.get(option)
        if value is not None:
            secret = value if isinstance(value, SecretStr) else SecretStr(str(value))
            config[option] = SecretStr(reveal(secret, setting=setting) or "")
    return _channel_with_secrets_read(kind, **config)


def _sender(cfg: DispatchConfig) -> str:
    return cfg.sender_name


def _alert_channel(cfg: DispatchConfig) -> FileChannel:
    if cfg.mail_from:
        return FileChannel(Path(cfg.outbox_dir), mail_from=cfg.mail_from)
    return FileChannel(Path(cfg.outbox_dir))


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
            change_status(s, r, Transition.ACKNOWLEDGE,
                          line=("acknowledged", "Acknowledgement sent to the school"))
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
    retry_for = timedelta(days=cfg.retry_days)
    for _ in range(MAX_BATCHES):
        report = await dispatch_pending(cfg.db_url, channel, limit=BATCH, retry_for=retry_for,
                                        sender_name=_sender(cfg), la_name=cfg.la_name)
        got = {k: int(v) for k, v in vars(report).items() if isinstance(v, int)}
        for k, v in got.items():
            counts[k] = counts.get(k, 0) + v
        # ``held``: the channel looks down; the next dispatch tries again.
        if got.get("held", 0) or got.get("skipped", 0) == sum(got.values()):
            break
    counts["acknowledged"] = mark_acknowledged(cfg.db_url)
    gave_up = counts.get("failed", 0) + counts.get("outcome_unknown", 0)
    counts["duty_alerted"] = await alert_if_failing(cfg, gave_up=gave_up)
    return counts


async def alert_if_failing(cfg: DispatchConfig, *, gave_up: int,
                           now: datetime | None = None) -> int:
    """Tell the duty inbox, by a path other than the failing channel, that messages keep
    failing; returns 1 if a delivery alert was written now, else 0.

    Says so when ``cfg.channel``'s messages have failed for :data:`ALERT_AFTER` or more, or
    ``gave_up`` messages were given up in this run. The log line always; the ``.eml`` in the
    outbox folder through the file channel once a London day (its key carries the date), and
    only when the failing channel is not the file channel itself.
    """
    now = now or datetime.now(UTC)
    trouble = delivery_trouble(cfg.db_url, cfg.channel, now=now, failing_for=ALERT_AFTER)
    if not trouble.failing and not gave_up:
        return 0
    since = f" since {trouble.since:%Y-%m-%d %H:%M} UTC" if trouble.since else ""
    _logger().error(
        "notifications keep failing on the %s channel: %d still retried%s, %d given up now, "
        "%d failed in all; see `cme outbox --status failed`, then `cme outbox retry`",
        cfg.channel, trouble.failing, since, gave_up, trouble.failed)
    if cfg.channel == NotificationChannel.file.value:
        return 0  # the folder itself is failing: the log line is what is left
    key = keys.delivery_failing(cfg.channel, london_date(now))
    with session_scope(cfg.db_url) as s:
        added = queue_notification(
            s, referral_id=None, template=Template.delivery_failing, recipient=cfg.duty_inbox,
            personalisation={
                "channel": cfg.channel, "failing": trouble.failing, "gave_up": trouble.failed,
                "failing_since": london_date(trouble.since) if trouble.since else None,
                "retry_days": cfg.retry_days,
            },
            channel=NotificationChannel.file, idempotency_key=key)
    # The file channel sends only its own rows (the alert, and any written for it earlier).
    await dispatch_pending(cfg.db_url, _alert_channel(cfg), now=now, sender_name=_sender(cfg),
                           la_name=cfg.la_name)
    return 1 if added else 0


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
