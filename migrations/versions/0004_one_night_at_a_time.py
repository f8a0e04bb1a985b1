"""one night at a time, one question per child: the night's lock and referrals' round claims
(issue 18, point 7)

Two new tables; nothing existing changes, so the migration runs on a database that already
holds cases. Both start empty: the first night inserts its lock row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 20:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models._tz

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('runlock',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('host', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('acquired_at', models._tz.UTCDateTime(timezone=True), nullable=True),
    sa.Column('lease_until', models._tz.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_runlock'))
    )
    op.create_table('roundclaim',
    sa.Column('referral_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('host', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('claimed_at', models._tz.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_until', models._tz.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['referral_id'], ['referral.id'], name=op.f('fk_roundclaim_referral_id_referral')),
    sa.PrimaryKeyConstraint('referral_id', name=op.f('pk_roundclaim'))
    )


def downgrade() -> None:
    op.drop_table('roundclaim')
    op.drop_table('runlock')
