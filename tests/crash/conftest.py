"""Fixtures of the crash tests: one small world, its uninterrupted night, the receiving ends.

The nightly runs are child processes (``crash_child.py``) reporting to the session's Prefect
test server (``prefect_harness``, tests/conftest.py), so none of them starts a server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import prefect.settings
import pytest
from crashkit import (
    CHILDREN,
    Baseline,
    NotifyLog,
    SmtpInbox,
    Trial,
    World,
    import_referrals,
    make_world,
    notify_server,
    reset_db,
    smtp_server,
    snapshot,
    tail,
)

from models import NotificationStatus


@pytest.fixture(scope="session")
def prefect_api_url(prefect_harness: None) -> str:
    return str(prefect.settings.PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def crash_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("crash-world"))


@pytest.fixture(scope="session")
def crash_baseline(crash_world: World, db_url: str, prefect_api_url: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    """Intake, then one uninterrupted night on the file channel, in a child process."""
    workdir = tmp_path_factory.mktemp("crash-baseline")
    trial = Trial(crash_world, db_url, "file", workdir, prefect_api_url)
    reset_db(db_url)
    import_referrals(crash_world, db_url, "file")
    counts = workdir / "reached.json"
    started = time.monotonic()
    proc = trial.run_night(counts=counts, label="baseline")
    night_ms = int((time.monotonic() - started) * 1000)
    assert proc.returncode == 0, tail(proc)
    snap = snapshot(db_url)
    # A night that went wrong everywhere would make every comparison vacuous.
    outcomes = {c[3] for c in snap.checks}
    assert "error" not in outcomes and {"found", "not_found", "pending"} <= outcomes, outcomes
    statuses = set(snap.outbox_status.values())
    assert statuses == {NotificationStatus.sent.value}, statuses
    assert len(snap.referrals) >= CHILDREN
    assert len(list(trial.outbox.glob("*.eml"))) == len(snap.notifications)
    return Baseline(snap, json.loads(counts.read_text()), night_ms)


@pytest.fixture
def smtp_inbox() -> Iterator[SmtpInbox]:
    with smtp_server() as inbox:
        yield inbox


@pytest.fixture
def notify_log() -> Iterator[NotifyLog]:
    with notify_server() as log:
        yield log


@pytest.fixture
def crash_trial(crash_world: World, db_url: str, prefect_api_url: str, tmp_path: Path,
                request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """``crash_trial(channel)``: an emptied database with the world's referrals taken in,
    and the channel's receiving end running."""

    def make(channel: str) -> Trial:
        trial = Trial(crash_world, db_url, channel, tmp_path / f"trial-{channel}",
                      prefect_api_url)
        trial.workdir.mkdir(parents=True)
        if channel == "smtp":
            trial.smtp = request.getfixturevalue("smtp_inbox")
        elif channel == "notify":
            trial.notify = request.getfixturevalue("notify_log")
        reset_db(db_url)
        import_referrals(crash_world, db_url, channel)
        return trial

    return make
