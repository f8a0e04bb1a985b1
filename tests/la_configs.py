"""The tasks' configs for tests, with this LA's code, name and duty inbox filled in.

The configs have no defaults for these (in production they come from the settings only,
through ``flows/_config.py``); tests that build a config by hand take them from here, and
here takes them from the settings' own defaults, so there is still one place they are
written. Imported by name: ``from tests.la_configs import intake_config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import notifications
from flows.settings import Settings
from notifications import ChannelOptions
from policy import CaseFacts
from tasks.attendance import AttendanceConfig
from tasks.dispatch import DispatchConfig
from tasks.intake import IntakeConfig
from tasks.tracing import TraceConfig


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


#: The LA the tests run as: the settings' defaults (CME_HOME_LA, CME_LA_NAME, CME_DUTY_INBOX).
HOME_LA: str = _default("home_la")
LA_NAME: str = _default("la_name")
DUTY_INBOX: str = _default("duty_inbox")
SENDER_NAME = f"{LA_NAME} CME team"


def intake_config(db_url: str, **overrides: Any) -> IntakeConfig:
    values: dict[str, Any] = {"duty_inbox": DUTY_INBOX, "la_name": LA_NAME}
    return IntakeConfig(db_url=db_url, **(values | overrides))


def trace_config(db_url: str, connectors: tuple[str, ...], today: date, run_id: str,
                 **overrides: Any) -> TraceConfig:
    values: dict[str, Any] = {"home_la": HOME_LA, "duty_inbox": DUTY_INBOX, "la_name": LA_NAME}
    return TraceConfig(db_url=db_url, connectors=connectors, today=today, run_id=run_id,
                       **(values | overrides))


def attendance_config(db_url: str, **overrides: Any) -> AttendanceConfig:
    return AttendanceConfig(db_url=db_url, **({"la_name": LA_NAME} | overrides))


def dispatch_config(db_url: str, channel: str,
                    channel_options: Mapping[str, Any] | ChannelOptions,
                    **overrides: Any) -> DispatchConfig:
    """``channel_options`` may be a plain mapping: it is checked into the channel's typed
    options as the settings' are (notifications.channel_options)."""
    if isinstance(channel_options, Mapping):
        channel_options = notifications.channel_options(channel, **channel_options)
    values: dict[str, Any] = {"duty_inbox": DUTY_INBOX, "sender_name": SENDER_NAME,
                              "la_name": LA_NAME}
    return DispatchConfig(db_url=db_url, channel=channel, channel_options=channel_options,
                          **(values | overrides))


def case_facts(**values: Any) -> CaseFacts:
    """``policy.CaseFacts`` of a referral from a school in this LA (both LA codes HOME_LA)."""
    return CaseFacts(**({"home_la": HOME_LA, "school_la": HOME_LA} | values))
