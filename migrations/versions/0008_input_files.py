"""input files: images users upload to use as references in their own runs

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'input_files',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('content_type', sa.String(length=100), nullable=False),
        sa.Column('size_bytes', sa.BigInteger(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_input_files_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_input_files')),
        sa.UniqueConstraint('name', name=op.f('uq_input_files_name')),
    )
    op.create_index(op.f('ix_input_files_user_id'), 'input_files', ['user_id'])


def downgrade():
    op.drop_table('input_files')
