"""Task instances record why they went to their executor.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 14:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('task_instance') as batch_op:
        batch_op.add_column(sa.Column('routing_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('task_instance') as batch_op:
        batch_op.drop_column('routing_reason')
