"""cancel as a record: runs.upstream_cancel, worked off by the worker

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('runs') as batch:
        batch.add_column(sa.Column('upstream_cancel', sa.String(length=20), nullable=True))
        batch.create_index(batch.f('ix_runs_upstream_cancel'), ['upstream_cancel'], unique=False)


def downgrade():
    with op.batch_alter_table('runs') as batch:
        batch.drop_index(batch.f('ix_runs_upstream_cancel'))
        batch.drop_column('upstream_cancel')
