"""lineage, sharing, webhooks, Google sign-in and Stripe references

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('runs') as batch:
        batch.add_column(sa.Column('parent_id', sa.String(length=40), nullable=True))
        batch.add_column(sa.Column('webhook_url', sa.Text(), nullable=True))
        batch.add_column(sa.Column('share_token', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('share_hide_prompt', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column('shared_at', sa.DateTime(), nullable=True))
        batch.create_foreign_key(op.f('fk_runs_parent_id_runs'), 'runs', ['parent_id'], ['id'])
        batch.create_index(op.f('ix_runs_parent_id'), ['parent_id'])
        batch.create_unique_constraint(op.f('uq_runs_share_token'), ['share_token'])
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('webhook_secret', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('google_sub', sa.String(length=255), nullable=True))
        batch.create_unique_constraint(op.f('uq_users_google_sub'), ['google_sub'])
    with op.batch_alter_table('ledger_entries') as batch:
        batch.add_column(sa.Column('external_ref', sa.String(length=255), nullable=True))
        batch.create_unique_constraint(op.f('uq_ledger_entries_external_ref'), ['external_ref'])
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('run_id', sa.String(length=40), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
        sa.Column('lease_until', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('delivered_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_webhook_deliveries_run_id_runs')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_webhook_deliveries_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    )
    op.create_index(op.f('ix_webhook_deliveries_run_id'), 'webhook_deliveries', ['run_id'])
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries', ['status', 'next_attempt_at'])
    op.create_table(
        'webhook_attempts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('delivery_id', sa.String(length=40), nullable=False),
        sa.Column('attempted_at', sa.DateTime(), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('duration_ms', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['delivery_id'], ['webhook_deliveries.id'],
                                name=op.f('fk_webhook_attempts_delivery_id_webhook_deliveries')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempts')),
    )
    op.create_index(op.f('ix_webhook_attempts_delivery_id'), 'webhook_attempts', ['delivery_id'])


def downgrade():
    op.drop_table('webhook_attempts')
    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('ledger_entries') as batch:
        batch.drop_constraint(op.f('uq_ledger_entries_external_ref'), type_='unique')
        batch.drop_column('external_ref')
    with op.batch_alter_table('users') as batch:
        batch.drop_constraint(op.f('uq_users_google_sub'), type_='unique')
        batch.drop_column('google_sub')
        batch.drop_column('webhook_secret')
    with op.batch_alter_table('runs') as batch:
        batch.drop_constraint(op.f('uq_runs_share_token'), type_='unique')
        batch.drop_index(op.f('ix_runs_parent_id'))
        batch.drop_constraint(op.f('fk_runs_parent_id_runs'), type_='foreignkey')
        for column in ('shared_at', 'share_hide_prompt', 'share_token', 'webhook_url', 'parent_id'):
            batch.drop_column(column)
