"""Notifications: tell schools, other LAs and the CME team, minimised and at most once.

The rest of the project may use exactly what ``__all__`` lists:

- :func:`queue_notification` writes an outbox row in the caller's transaction (with the
  decision that caused it), idempotent on its key;
- :func:`dispatch_pending` sends due rows through a channel, crash-safely;
- :func:`channel_from_config` builds the ``file`` / ``smtp`` / ``notify`` channel;
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
    OUTCOME_UNKNOWN,
    DispatchReport,
    backoff,
    dispatch_pending,
    queue_notification,
)
from notifications.errors import (
    InvalidPersonalisationError,
    NotificationError,
    OutcomeUnknownError,
    PermanentSendError,
    SendError,
    TransientSendError,
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
    "OPTIONAL_FIELDS",
    "OUTCOME_UNKNOWN",
    "TEMPLATE_FIELDS",
    "Channel",
    "DispatchReport",
    "FileChannel",
    "InvalidPersonalisationError",
    "NotificationError",
    "NotifyChannel",
    "OutcomeUnknownError",
    "OutgoingMessage",
    "PermanentSendError",
    "Rendered",
    "SendError",
    "SmtpChannel",
    "TransientSendError",
    "backoff",
    "channel_from_config",
    "dispatch_pending",
    "message_id_for",
    "queue_notification",
    "render",
    "validate_personalisation",
]
