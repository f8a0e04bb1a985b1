"""Engine and session helpers: one code path for SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

__all__ = ["get_engine", "session_scope", "is_sqlite"]


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _normalise(url: str) -> str:
    # Let people write postgresql:// and still get psycopg 3 (the driver we install).
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def _create_private(path: Path) -> None:
    """Create an empty file only its owner can read (0600 whatever the umask), if missing.

    The case database holds children's special-category data (docs/guidance.md, Data
    protection): SQLite would create it 0644 under the usual umask. SQLite gives its -wal and
    -shm files the database file's own mode, so they follow."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # e.g. a missing folder: SQLite then says so itself, in its own words
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _sqlite_file(url: str) -> Path | None:
    u = make_url(url)
    db = u.database
    if not db or db == ":memory:" or db.startswith("file:") or u.query.get("mode") == "memory":
        return None
    return Path(db)


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """Return a shared engine for ``url`` (cached per URL)."""
    url = _normalise(url)
    kwargs: dict[str, Any] = {}
    if is_sqlite(url):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if is_sqlite(url):
        db_file = _sqlite_file(url)

        @event.listens_for(engine, "do_connect")
        def _private_file(*_args: Any) -> None:
            # Before every connection, not once: a file deleted and re-created by SQLite
            # behind a cached engine would otherwise get the umask's mode.
            if db_file is not None:
                _create_private(db_file)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
