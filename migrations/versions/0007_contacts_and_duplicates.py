"""trusted school contacts and possible duplicates (issue 18, points 1 and 3)

Schools already in the database got their contact from a referral, so they start as
``referral`` (unverified: on the worklist until the schools list or an officer confirms it).
Existing referrals are not re-examined for possible duplicates: those linked before stay
linked, and the officer can see them in ``cme case``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 20:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('school', schema=None) as batch_op:
        batch_op.add_column(sa.Column('contact_source', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False, server_default='referral'))
        batch_op.add_column(sa.Column('quoted_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column('quoted_email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True))
        batch_op.add_column(sa.Column('quoted_by_id', sa.Integer(), nullable=True))

    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.add_column(sa.Column('possible_duplicate_of_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_referral_possible_duplicate_of_id_referral'), 'referral', ['possible_duplicate_of_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_referral_possible_duplicate_of_id_referral'), type_='foreignkey')
        batch_op.drop_column('possible_duplicate_of_id')

    with op.batch_alter_table('school', schema=None) as batch_op:
        batch_op.drop_column('quoted_by_id')
        batch_op.drop_column('quoted_email')
        batch_op.drop_column('quoted_name')
        batch_op.drop_column('contact_source')
