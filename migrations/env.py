"""Alembic environment: one set of migrations for SQLite and PostgreSQL."""

from __future__ import annotations

import os

from alembic import context
from sqlmodel import SQLModel

import models.tables  # noqa: F401  (registers the tables)
from models.db import get_engine

config = context.config
target_metadata = SQLModel.metadata


def _url() -> str:
    return (
        config.attributes.get("database_url")
        or os.environ.get("CME_DATABASE_URL")
        or "sqlite:///cme.db"
    )


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite needs batch mode for ALTERs
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        _run(conn)
        return
    with get_engine(_url()).begin() as connection:
        _run(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
