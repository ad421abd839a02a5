"""grids: batches (a grid of runs, its axes and its share link) and runs.batch_id with the
cell's row and column

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'batches',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=False),
        sa.Column('axes', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('share_token', sa.String(length=64), nullable=True),
        sa.Column('share_hide_prompt', sa.Boolean(), nullable=False),
        sa.Column('shared_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_batches_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_batches')),
        sa.UniqueConstraint('share_token', name=op.f('uq_batches_share_token')),
    )
    op.create_index('ix_batches_user_created', 'batches', ['user_id', 'created_at'])
    with op.batch_alter_table('runs') as batch:
        batch.add_column(sa.Column('batch_id', sa.String(length=40), nullable=True))
        batch.add_column(sa.Column('batch_row', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('batch_col', sa.Integer(), nullable=True))
        batch.create_foreign_key(batch.f('fk_runs_batch_id_batches'), 'batches', ['batch_id'], ['id'])
        batch.create_index(batch.f('ix_runs_batch_id'), ['batch_id'], unique=False)


def downgrade():
    with op.batch_alter_table('runs') as batch:
        batch.drop_index(batch.f('ix_runs_batch_id'))
        batch.drop_constraint(batch.f('fk_runs_batch_id_batches'), type_='foreignkey')
        batch.drop_column('batch_col')
        batch.drop_column('batch_row')
        batch.drop_column('batch_id')
    op.drop_index('ix_batches_user_created', table_name='batches')
    op.drop_table('batches')
