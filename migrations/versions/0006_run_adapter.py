"""the adapter a run started with: runs.adapter, so polls and cancels go back to it

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    # Nullable: runs from before the column keep being routed by the provider variables.
    with op.batch_alter_table('runs') as batch:
        batch.add_column(sa.Column('adapter', sa.String(length=40), nullable=True))


def downgrade():
    with op.batch_alter_table('runs') as batch:
        batch.drop_column('adapter')
