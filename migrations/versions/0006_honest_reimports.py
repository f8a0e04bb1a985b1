"""honest re-imports, outbox retries by elapsed time (issue 18, points 4, 5, 11)

- ``quarantinedrecord.raw_sha256`` and ``record_key`` (unique): one quarantine row per line
  of a source. Existing rows are keyed here; of rows already duplicated by earlier
  re-imports, the oldest is keyed and the others keep no key (kept, never deleted).
- ``referral.record_digest``: what a referral's own form last said (digests only).
- ``notification.first_attempt_at``: retries run for a time from the first attempt.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 20:40:00.000000
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models._tz

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def _key(source: str, line_no: int | None, raw_sha256: str) -> str:
    # Must match tasks.intake.quarantine_key.
    text = f"{source}\x00{'' if line_no is None else line_no}\x00{raw_sha256}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table('quarantinedrecord', schema=None) as batch_op:
        batch_op.add_column(sa.Column('raw_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('record_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_quarantinedrecord_record_key'), ['record_key'])

    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.add_column(sa.Column('record_digest', sa.JSON(), nullable=True))

    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_attempt_at', models._tz.UTCDateTime(timezone=True), nullable=True))

    bind = op.get_bind()
    q = sa.table('quarantinedrecord', sa.column('id', sa.Integer), sa.column('source', sa.String),
                 sa.column('line_no', sa.Integer), sa.column('raw', sa.Text),
                 sa.column('raw_sha256', sa.String), sa.column('record_key', sa.String))
    seen: set[str] = set()
    last = 0
    while True:
        rows = bind.execute(sa.select(q.c.id, q.c.source, q.c.line_no, q.c.raw)
                            .where(q.c.id > last).order_by(q.c.id).limit(500)).all()
        if not rows:
            break
        for rid, source, line_no, raw in rows:
            digest = hashlib.sha256(raw.encode("utf-8", errors="replace")).hexdigest()
            key = _key(source, line_no, digest)
            values = {"raw_sha256": digest}
            if key not in seen:
                seen.add(key)
                values["record_key"] = key
            bind.execute(sa.update(q).where(q.c.id == rid).values(**values))
            last = rid


def downgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_column('first_attempt_at')

    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.drop_column('record_digest')

    with op.batch_alter_table('quarantinedrecord', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_quarantinedrecord_record_key'), type_='unique')
        batch_op.drop_column('record_key')
        batch_op.drop_column('raw_sha256')
