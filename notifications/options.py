"""Each channel's options, typed and frozen: what ``CME_NOTIFICATION_CHANNEL`` and its
settings say once they are read (README, Configuration).

The flows build one of :class:`FileOptions`, :class:`SmtpOptions` or :class:`NotifyOptions`
from the settings when the settings are read, so a wrong option stops start-up with one line
naming the setting rather than the first dispatch of the night. An options object unpacks
like a mapping of the options that are set (``channel_from_config(kind, **options)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from models import NotificationChannel, Template

__all__ = [
    "ChannelOptions",
    "FileOptions",
    "NotifyOptions",
    "OptionError",
    "SmtpOptions",
    "channel_options",
]


class _Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[NotificationChannel]

    # A mapping of the options that are set: ``**options`` gives the channel its keywords
    # and leaves unset ones to the channel's defaults (channel_from_config drops None).
    def keys(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]

    def __getitem__(self, name: str) -> Any:
        if name not in type(self).model_fields:
            raise KeyError(name)
        return getattr(self, name)

    def as_dict(self) -> dict[str, Any]:
        """The options that are set, as keywords for :func:`channel_from_config`."""
        return {name: self[name] for name in self.keys()}


class FileOptions(_Options):
    """``file``: the folder .eml messages are written to, and the sender address."""

    kind: ClassVar[NotificationChannel] = NotificationChannel.file
    outbox_dir: Path
    mail_from: str | None = None


class SmtpOptions(_Options):
    """``smtp``: the server, its login (the password may name a Prefect Secret block), and
    the sender address."""

    kind: ClassVar[NotificationChannel] = NotificationChannel.smtp
    host: str = Field(min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    mail_from: str | None = None
    #: Seconds a send may take (None: the channel's default).
    timeout: float | None = Field(default=None, gt=0)


class NotifyOptions(_Options):
    """``notify``: GOV.UK Notify's API key (or a Prefect Secret block naming it), its base
    URL and the template ids, keyed by template name."""

    kind: ClassVar[NotificationChannel] = NotificationChannel.notify
    api_key: SecretStr
    base_url: str = "https://api.notifications.service.gov.uk"
    template_ids: Mapping[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0)

    @field_validator("base_url")
    @classmethod
    def _an_http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")) or len(value) < 9:
            raise ValueError("not an http(s) URL")
        return value

    @field_validator("template_ids")
    @classmethod
    def _known_templates(cls, value: Mapping[str, str]) -> Mapping[str, str]:
        known = {t.value for t in Template}
        for name, template_id in value.items():
            if name not in known:
                raise ValueError(f"{name!r} is not a template; templates: "
                                 + ", ".join(sorted(known)))
            if not str(template_id).strip():
                raise ValueError(f"template {name!r} has an empty id")
        return dict(value)


ChannelOptions = FileOptions | SmtpOptions | NotifyOptions

_BY_KIND: dict[NotificationChannel, type[FileOptions | SmtpOptions | NotifyOptions]] = {
    NotificationChannel.file: FileOptions,
    NotificationChannel.smtp: SmtpOptions,
    NotificationChannel.notify: NotifyOptions,
}


def channel_options(kind: NotificationChannel | str, **values: Any) -> ChannelOptions:
    """The options of channel ``kind`` from ``values`` (None: the option's default).

    Raises :class:`OptionError` naming the first wrong option (never its value: a secret
    may be among them).
    """
    try:
        model = _BY_KIND[NotificationChannel(kind)]
    except ValueError:
        raise OptionError("", f"unknown notification channel {str(kind)!r}; expected file, "
                          "smtp or notify") from None
    given = {k: v for k, v in values.items() if v is not None}
    try:
        return model(**given)
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        option = str(first["loc"][0]) if first["loc"] else ""
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise OptionError(option, msg) from None


class OptionError(ValueError):
    """A channel option is wrong: ``option`` names it (empty: the channel itself)."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(f"{option}: {message}" if option else message)
