"""Issue 18, point 12: a wrong setting is one line naming it and a non-zero exit, for every
`cme` command that reads the settings and for a flow run's start — never a traceback, and
never exit 0 on a quiet night (nothing due, so nothing touched the wrong setting)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from test_cli_foundation import run

BAD = [
    ("CME_OTHER_LA_CONTACTS", "{'116': 'cme@la116.example.org'}"),   # not JSON
    ("CME_SIGNPOST_CONTACTS", "[unclosed"),
    ("CME_NOTIFY_TEMPLATE_IDS", "{"),
    ("CME_DATABASE_URL", "cme.db"),                                  # not a URL
    ("CME_DATABASE_URL", "mysql://cme:pw@localhost/cme"),            # not supported
    ("CME_DATABASE_URL", "postgresql+pg8000://cme:pw@localhost/cme"),  # no such driver
    ("CME_DATABASE_URL", "postgresql+asyncpg://cme:pw@localhost/cme"),  # an async driver
    ("CME_CONNECTORS", "other_la,housing,lpd,dwp,bordre_force"),     # misspelt
    ("CME_DUTY_INBOX", "CME Duty <cme-duty@la.example.org"),
    ("CME_HTTP_TRANSPORT", "curl"),                                  # not a transport
]


@pytest.mark.parametrize(("name", "value"), BAD, ids=[f"{n}={v}" for n, v in BAD])
def test_a_quiet_night_with_a_wrong_setting_fails_in_one_line_naming_it(
        tmp_path: Path, name: str, value: str) -> None:
    good = {"CME_DATABASE_URL": f"sqlite:///{tmp_path / 'cme.db'}",
            "CME_CONNECTORS": "other_la,housing,lpd,dwp,border_force",
            "CME_OUTBOX_DIR": str(tmp_path / "outbox")}
    from models.migrate import upgrade

    upgrade(good["CME_DATABASE_URL"])  # an empty database: a quiet night
    out = run(["run", "nightly"], tmp_path, {**good, name: value})
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: setting {name} is invalid: "), \
        out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert "pw" not in lines[0].replace("pwd", "")  # never the database password


@pytest.mark.parametrize("command", [["cases"], ["db", "upgrade"],
                                     ["schools", "set-contact", "116000", "--keep"]])
def test_every_command_reading_settings_names_the_wrong_one(tmp_path: Path,
                                                            command: list[str]) -> None:
    out = run(command, tmp_path, {"CME_OTHER_LA_CONTACTS": "not json"})
    assert out.returncode == 1
    assert out.stderr.strip() == ("Error: setting CME_OTHER_LA_CONTACTS is invalid: not valid "
                                  "JSON (write a JSON object, e.g. {\"850\": "
                                  "\"cme@la.example.org\"})")


def test_a_flow_run_with_a_wrong_setting_fails_at_its_start_with_that_line(
        prefect_harness: None, clean_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.nightly import nightly_tracing

    for key in list(os.environ):
        if key.startswith("CME_") and key != "CME_TEST_DATABASE_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("CME_DATABASE_URL", clean_db)
    monkeypatch.setenv("CME_CONNECTORS", "other_la,ghost")
    state = asyncio.run(nightly_tracing(return_state=True))  # type: ignore[call-overload]
    assert state.is_failed()
    assert "setting CME_CONNECTORS is invalid: ghost not installed" in (state.message or "")
    assert "\n" not in (state.message or "")
