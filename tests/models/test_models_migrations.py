"""The migrations and the models agree, on whichever database the suite runs against."""

from __future__ import annotations

import sqlalchemy as sa

from models.db import get_engine
from models.migrate import current_revision, head_revision, schema_drift, upgrade


def test_migrations_reach_head(db_url: str) -> None:
    assert head_revision() is not None
    assert current_revision(db_url) == head_revision()


def test_autogenerate_finds_no_difference(db_url: str) -> None:
    assert schema_drift(db_url) == []


def test_upgrade_is_idempotent(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()


def test_expected_tables_exist(db_url: str) -> None:
    names = set(sa.inspect(get_engine(db_url)).get_table_names())
    assert {
        "school",
        "child",
        "referral",
        "check",
        "caseevent",
        "notification",
        "quarantinedrecord",
        "alembic_version",
    } <= names
