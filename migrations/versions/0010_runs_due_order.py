"""ix_runs_due also orders by creation: a claim reads the oldest new runs from the index
and stops at its limit, instead of sorting every queued run on each claim

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index('ix_runs_due', table_name='runs')
    op.create_index('ix_runs_due', 'runs', ['status', 'next_check_at', 'created_at', 'id'])


def downgrade():
    op.drop_index('ix_runs_due', table_name='runs')
    op.create_index('ix_runs_due', 'runs', ['status', 'next_check_at'])
