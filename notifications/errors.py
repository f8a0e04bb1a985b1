"""Errors the notifications package raises.

    NotificationError
    ├── InvalidPersonalisationError   (also a ValueError) what a caller queued is wrong:
    │                                 a missing, unknown or malformed key (named, never its value)
    └── SendError                     a channel could not deliver a message
         ├── TransientSendError       nothing was delivered, or a lookup can tell later:
         │                            try again after a back-off (timeouts, 429, 5xx, 4xx SMTP)
         ├── PermanentSendError       retrying will not help (400/403, 5xx SMTP reply, bad config)
         └── OutcomeUnknownError      the message may or may not have gone, and the channel
                                      cannot be asked (SMTP cut off during DATA): a person
                                      must check before anything is resent

Messages name the channel, the status or reply code and the key at fault, never a recipient's
message content, a personalisation value or a secret: they end up in ``last_error`` and logs.
"""

from __future__ import annotations

__all__ = [
    "InvalidPersonalisationError",
    "NotificationError",
    "OutcomeUnknownError",
    "PermanentSendError",
    "SendError",
    "TransientSendError",
]


class NotificationError(Exception):
    """Base class of every error raised by :mod:`notifications`."""


class InvalidPersonalisationError(NotificationError, ValueError):
    """A template's personalisation is missing a key, has an unknown one, or a malformed value.

    ``key`` names the field at fault; the value is never part of the message.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


class SendError(NotificationError):
    """A channel could not deliver (or confirm) a message.

    ``status`` is the HTTP status or SMTP reply code, when there was one.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class TransientSendError(SendError):
    """Try again later; the dispatcher backs off exponentially."""


class PermanentSendError(SendError):
    """Do not retry: the row is marked failed for an officer to look at."""


class OutcomeUnknownError(SendError):
    """Whether the message was delivered cannot be known; never resend it automatically."""
