"""Issue 18, point 13: the files holding children's data are the team's only — the SQLite
case database (with its -wal and -shm files) 0600, the outbox folder 0700 and each message in
it 0600 — whatever the umask of the process that creates them."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from models.db import get_engine
from models.migrate import upgrade


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_case_database_is_created_0600(tmp_path: Path, umask: int) -> None:
    db = tmp_path / f"cme-{umask:o}.db"
    url = f"sqlite:///{db}"
    upgrade(url)
    with get_engine(url).connect() as conn:  # WAL and shared memory exist while connected
        conn.execute(sa.text("SELECT count(*) FROM referral"))
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}


def test_the_outbox_folder_is_0700_and_its_messages_0600(tmp_path: Path, umask: int) -> None:
    from models import Template
    from notifications import FileChannel, OutgoingMessage, render
    from tests.la_configs import LA_NAME

    values = {"reference": "CME-2026-000042", "due_date": "2026-12-07", "initials": "Z.Q.",
              "school_name": "Test Primary", "la_name": LA_NAME}
    out = render(Template.acknowledgement, values)
    msg = OutgoingMessage(idempotency_key="ack:CME-2026-000042",
                          template=Template.acknowledgement,
                          recipient="office@school.example.org", subject=out.subject,
                          body=out.body, personalisation=values, sender_name="CME team")
    outbox = tmp_path / "outbox"
    asyncio.run(FileChannel(outbox).send(msg))
    (eml,) = outbox.iterdir()
    assert (_mode(outbox), _mode(eml)) == (0o700, 0o600)
