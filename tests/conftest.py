"""Shared fixtures.

The database under test is SQLite in a temp folder by default; set
``CME_TEST_DATABASE_URL`` (as ``.ci/run`` does) to run the same tests on PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, SQLModel

from models.db import get_engine
from models.migrate import upgrade


def _reset_postgres(url: str) -> None:
    engine = get_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))


@pytest.fixture(scope="session")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty database for this test session."""
    url = os.environ.get("CME_TEST_DATABASE_URL")
    if url:
        _reset_postgres(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'cme-test.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def backend(db_url: str) -> str:
    return get_engine(db_url).dialect.name


@pytest.fixture
def clean_db(db_url: str) -> Iterator[str]:
    """The session database, emptied before each test that asks for it."""
    import models.tables  # noqa: F401

    engine = get_engine(db_url)
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())
    yield db_url


@pytest.fixture
def session(clean_db: str) -> Iterator[Session]:
    with Session(get_engine(clean_db), expire_on_commit=False) as s:
        yield s


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory with no CME_* settings leaking in from the shell."""
    for key in list(os.environ):
        if key.startswith("CME_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# One Prefect test harness (a temporary local server) for every test in the session that
# needs one: starting it costs seconds, so never one per test.
@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
