"""The state_request table: clears and marks the active scheduler applies.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'state_request',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('dag_id', sa.String(length=250), nullable=False),
        sa.Column('run_id', sa.String(length=250), nullable=False),
        sa.Column('action', sa.String(length=20), nullable=False),
        sa.Column('task_keys', sa.JSON(), nullable=False),
        sa.Column('requested_at', sa.DateTime(), nullable=False),
        sa.Column('applied_at', sa.DateTime(), nullable=True),
        sa.Column('applied_by_job_id', sa.Integer(), nullable=True),
        sa.Column('outcome', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_state_request')),
    )
    op.create_index('ix_state_request_applied_at', 'state_request', ['applied_at'])


def downgrade() -> None:
    op.drop_index('ix_state_request_applied_at', table_name='state_request')
    op.drop_table('state_request')
