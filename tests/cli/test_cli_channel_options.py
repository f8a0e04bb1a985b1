"""Issue 16, point 6: each notification channel's options are typed, and checked when the
settings are read: a wrong option is one line naming its setting and a non-zero exit at
start-up, not a failure at the night's first dispatch (README, Configuration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_foundation import run

BAD = [
    ({"CME_NOTIFICATION_CHANNEL": "smtp", "CME_SMTP_PORT": "70000"}, "CME_SMTP_PORT"),
    ({"CME_NOTIFICATION_CHANNEL": "smtp", "CME_SMTP_HOST": ""}, "CME_SMTP_HOST"),
    ({"CME_NOTIFICATION_CHANNEL": "notify"}, "CME_NOTIFY_API_KEY"),           # no key
    ({"CME_NOTIFICATION_CHANNEL": "notify", "CME_NOTIFY_API_KEY": "k-123",
      "CME_NOTIFY_BASE_URL": "api.notifications.service.gov.uk"}, "CME_NOTIFY_BASE_URL"),
    ({"CME_NOTIFICATION_CHANNEL": "notify", "CME_NOTIFY_API_KEY": "k-123",
      "CME_NOTIFY_TEMPLATE_IDS": json.dumps({"acknowledgment": "t-1"})},        # misspelt
     "CME_NOTIFY_TEMPLATE_IDS"),
]


@pytest.mark.parametrize(("bad", "setting"), BAD, ids=[s for _, s in BAD])
def test_a_wrong_channel_option_stops_start_up_in_one_line_naming_it(
        tmp_path: Path, bad: dict[str, str], setting: str) -> None:
    env = {"CME_DATABASE_URL": f"sqlite:///{tmp_path / 'cme.db'}",
           "CME_OUTBOX_DIR": str(tmp_path / "outbox"), **bad}
    from models.migrate import upgrade

    upgrade(env["CME_DATABASE_URL"])  # an empty database: nothing would reach the channel
    out = run(["run", "nightly"], tmp_path, env)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: setting {setting} is invalid: "), \
        out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert "k-123" not in out.stderr  # never the key
