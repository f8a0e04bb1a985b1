"""The demo world of the flow tests (the Prefect harness is in tests/conftest.py)."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest
from flowkit import BUILTINS, DemoWorld


@pytest.fixture
def demo_world(prefect_harness: None, clean_db: str, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> DemoWorld:
    """A generated synthetic world wired in-process, an empty database, a file outbox."""
    from sandbox import clear_sandboxes, generate_world, write_generated

    today = date(2026, 11, 23)  # a Monday
    world, referrals = generate_world(60, 11, today=today)
    paths = write_generated(world, referrals, tmp_path / "world")
    for key in list(os.environ):
        if key.startswith("CME_") and key != "CME_TEST_DATABASE_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("CME_DATABASE_URL", clean_db)
    monkeypatch.setenv("CME_SANDBOX_WORLD", str(paths["world"]))
    monkeypatch.setenv("CME_CONNECTORS", BUILTINS)
    monkeypatch.setenv("CME_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("CME_NOTIFICATION_CHANNEL", "file")
    clear_sandboxes()
    return DemoWorld(tmp_path, paths["world"], paths["referrals"], today, world, referrals,
                     clean_db)
