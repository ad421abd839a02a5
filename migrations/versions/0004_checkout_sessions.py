"""checkout sessions: the Stripe top-ups this server created, the only ones it credits

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'checkout_sessions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('stripe_session_id', sa.String(length=255), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('amount_cents', sa.Integer(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('mode', sa.String(length=20), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('ledger_entry_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_checkout_sessions_user_id_users')),
        sa.ForeignKeyConstraint(['ledger_entry_id'], ['ledger_entries.id'],
                                name=op.f('fk_checkout_sessions_ledger_entry_id_ledger_entries')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_checkout_sessions')),
        sa.UniqueConstraint('stripe_session_id', name=op.f('uq_checkout_sessions_stripe_session_id')),
    )
    op.create_index(op.f('ix_checkout_sessions_user_id'), 'checkout_sessions', ['user_id'])


def downgrade():
    op.drop_table('checkout_sessions')
