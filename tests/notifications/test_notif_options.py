"""Each channel's options are a typed, frozen model (issue 16, point 6): the flows build
them from the settings, the dispatch step unpacks them into the channel."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from flows._config import dispatch_config
from flows.settings import Settings
from notifications import (
    FileChannel,
    FileOptions,
    NotifyOptions,
    OptionError,
    SmtpChannel,
    SmtpOptions,
    channel_from_config,
    channel_options,
)
from tests import la_configs


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'cme.db'}",  # type: ignore[call-arg]
                    outbox_dir=tmp_path / "outbox", **values)


@pytest.mark.parametrize(("channel", "values", "typed"), [
    ("file", {}, FileOptions),
    ("smtp", {"smtp_host": "mail.example.org", "smtp_port": 587,
              "smtp_password": "pw-123"}, SmtpOptions),
    ("notify", {"notify_api_key": "k-123",
                "notify_template_ids": {"acknowledgement": "t-1"}}, NotifyOptions),
])
def test_the_dispatch_config_carries_the_channels_own_typed_options(
        tmp_path: Path, channel: str, values: dict[str, object], typed: type) -> None:
    cfg = dispatch_config(_settings(tmp_path, notification_channel=channel, **values))
    assert type(cfg.channel_options) is typed
    with pytest.raises(ValidationError):
        cfg.channel_options.mail_from = "x@example.org"  # type: ignore[misc,union-attr]


def test_the_options_unpack_into_the_channel(tmp_path: Path) -> None:
    smtp = dispatch_config(_settings(tmp_path, notification_channel="smtp",
                                     smtp_host="mail.example.org", smtp_port=587,
                                     smtp_username="cme", smtp_password="pw-123"))
    options = dict(**smtp.channel_options)
    assert options["port"] == 587 and isinstance(options["password"], SecretStr)
    channel = channel_from_config("smtp", **smtp.channel_options)
    assert isinstance(channel, SmtpChannel) and channel.port == 587
    file = dispatch_config(_settings(tmp_path))
    assert isinstance(channel_from_config("file", **file.channel_options), FileChannel)


def test_a_wrong_option_is_named_and_its_value_is_not() -> None:
    with pytest.raises(OptionError) as info:
        channel_options("smtp", host="mail.example.org", port=70000)
    assert info.value.option == "port" and "70000" not in str(info.value)
    with pytest.raises(OptionError) as unknown:
        channel_options("file", outbox_dir="outbox", host="mail.example.org")
    assert unknown.value.option == "host"
    with pytest.raises(OptionError) as secret:
        channel_options("notify", api_key="k-123", template_ids={"nope": "t"})
    assert secret.value.option == "template_ids" and "k-123" not in str(secret.value)


def test_options_for_another_channel_are_refused() -> None:
    with pytest.raises(TypeError, match="FileOptions given for the smtp channel"):
        la_configs.dispatch_config("sqlite://", "smtp", FileOptions(outbox_dir=Path("outbox")))
