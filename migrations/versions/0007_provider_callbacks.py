"""provider callbacks: runs.callback_body (a verified callback the worker has not read) and
provider_callbacks (message ids acted on, so replays are refused)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('runs') as batch:
        batch.add_column(sa.Column('callback_body', sa.JSON(), nullable=True))
    op.create_table(
        'provider_callbacks',
        sa.Column('id', sa.String(length=300), nullable=False),
        sa.Column('received_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_callbacks')),
    )
    op.create_index(op.f('ix_provider_callbacks_received_at'), 'provider_callbacks',
                    ['received_at'])


def downgrade():
    op.drop_table('provider_callbacks')
    with op.batch_alter_table('runs') as batch:
        batch.drop_column('callback_body')
