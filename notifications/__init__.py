"""Notifications: tell schools, other LAs and the CME team, minimised and at most once.

The rest of the project may use exactly what ``__all__`` lists:

- :func:`queue_notification` writes an outbox row in the caller's transaction (with the
  decision that caused it), idempotent on its key;
- :func:`dispatch_pending` sends due rows through a channel, crash-safely;
  :func:`delivery_trouble` says what keeps failing; :func:`requeue_failed` re-queues;
- :func:`channel_from_config` builds the ``file`` / ``smtp`` / ``notify`` channel, from the
  typed options :func:`channel_options` checks (:class:`FileOptions`, :class:`SmtpOptions`,
  :class:`NotifyOptions`);
- :func:`render` and the field tables say what each template needs and may carry.

Prefect-free: ``tasks/`` wraps the dispatcher in a task.
"""

from notifications.channels import (
    Channel,
    FileChannel,
    NotifyChannel,
    OutgoingMessage,
    SmtpChannel,
    channel_from_config,
    message_id_for,
)
from notifications.dispatch import (
    NOT_QUEUED_SUFFIX,
    OUTAGE_AFTER,
    OUTCOME_UNKNOWN,
    RETRY_FOR,
    DeliveryTrouble,
    DispatchReport,
    backoff,
    delivery_trouble,
    dispatch_pending,
    queue_notification,
    requeue_failed,
)
from notifications.errors import (
    InvalidPersonalisationError,
    NotificationError,
    OutcomeUnknownError,
    PermanentSendError,
    SendError,
    TransientSendError,
)
from notifications.options import (
    ChannelOptions,
    FileOptions,
    NotifyOptions,
    OptionError,
    SmtpOptions,
    channel_options,
)
from notifications.templates import (
    ALLOWED_FIELDS,
    OPTIONAL_FIELDS,
    TEMPLATE_FIELDS,
    Rendered,
    render,
    validate_personalisation,
)

__all__ = [
    "ALLOWED_FIELDS",
    "NOT_QUEUED_SUFFIX",
    "OPTIONAL_FIELDS",
    "OUTAGE_AFTER",
    "OUTCOME_UNKNOWN",
    "RETRY_FOR",
    "TEMPLATE_FIELDS",
    "Channel",
    "ChannelOptions",
    "DeliveryTrouble",
    "DispatchReport",
    "FileChannel",
    "FileOptions",
    "InvalidPersonalisationError",
    "NotificationError",
    "NotifyChannel",
    "NotifyOptions",
    "OptionError",
    "OutcomeUnknownError",
    "OutgoingMessage",
    "PermanentSendError",
    "Rendered",
    "SendError",
    "SmtpChannel",
    "SmtpOptions",
    "TransientSendError",
    "backoff",
    "channel_from_config",
    "channel_options",
    "delivery_trouble",
    "dispatch_pending",
    "message_id_for",
    "queue_notification",
    "render",
    "requeue_failed",
    "validate_personalisation",
]
