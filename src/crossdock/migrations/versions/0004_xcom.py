"""The xcom table: values pushed by tasks.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 17:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'xcom',
        sa.Column('dag_id', sa.String(250), primary_key=True),
        sa.Column('run_id', sa.String(250), primary_key=True),
        sa.Column('task_id', sa.String(250), primary_key=True),
        sa.Column('map_index', sa.Integer(), primary_key=True),
        sa.Column('key', sa.String(512), primary_key=True),
        sa.Column('value', sa.Text(), nullable=False),
        sa.Column('timestamp', sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('xcom')
