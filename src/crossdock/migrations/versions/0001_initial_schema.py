"""Initial schema: dags, serialized dags, dag runs, task instances, jobs, pools, import errors.

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 08:29:02.614567
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('dag',
    sa.Column('dag_id', sa.String(length=250), nullable=False),
    sa.Column('fileloc', sa.Text(), nullable=False),
    sa.Column('is_paused', sa.Boolean(), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('schedule', sa.String(length=250), nullable=True),
    sa.Column('catchup', sa.Boolean(), nullable=False),
    sa.Column('start_date', sa.DateTime(), nullable=True),
    sa.Column('max_active_runs', sa.Integer(), nullable=False),
    sa.Column('max_active_tasks', sa.Integer(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=True),
    sa.Column('next_dagrun', sa.DateTime(), nullable=True),
    sa.Column('last_parsed', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('dag_id', name=op.f('pk_dag'))
    )
    op.create_table('dag_run',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('dag_id', sa.String(length=250), nullable=False),
    sa.Column('run_id', sa.String(length=250), nullable=False),
    sa.Column('run_type', sa.String(length=50), nullable=False),
    sa.Column('logical_date', sa.DateTime(), nullable=False),
    sa.Column('data_interval_start', sa.DateTime(), nullable=True),
    sa.Column('data_interval_end', sa.DateTime(), nullable=True),
    sa.Column('state', sa.String(length=50), nullable=False),
    sa.Column('queued_at', sa.DateTime(), nullable=True),
    sa.Column('start_date', sa.DateTime(), nullable=True),
    sa.Column('end_date', sa.DateTime(), nullable=True),
    sa.Column('conf', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dag_run')),
    sa.UniqueConstraint('dag_id', 'run_id', name=op.f('uq_dag_run_dag_id_run_id'))
    )
    with op.batch_alter_table('dag_run', schema=None) as batch_op:
        batch_op.create_index('ix_dag_run_state', ['state'], unique=False)

    op.create_table('import_error',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('filename', sa.Text(), nullable=False),
    sa.Column('stacktrace', sa.Text(), nullable=False),
    sa.Column('timestamp', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_error')),
    sa.UniqueConstraint('filename', name=op.f('uq_import_error_filename'))
    )
    op.create_table('job',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_type', sa.String(length=30), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('hostname', sa.String(length=500), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('executor_class', sa.String(length=500), nullable=True),
    sa.Column('start_date', sa.DateTime(), nullable=False),
    sa.Column('end_date', sa.DateTime(), nullable=True),
    sa.Column('latest_heartbeat', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job'))
    )
    op.create_table('serialized_dag',
    sa.Column('dag_id', sa.String(length=250), nullable=False),
    sa.Column('fileloc', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('dag_hash', sa.String(length=64), nullable=False),
    sa.Column('last_updated', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('dag_id', name=op.f('pk_serialized_dag'))
    )
    op.create_table('slot_pool',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('pool', sa.String(length=256), nullable=False),
    sa.Column('slots', sa.Integer(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slot_pool')),
    sa.UniqueConstraint('pool', name=op.f('uq_slot_pool_pool'))
    )
    op.create_table('task_instance',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('dag_id', sa.String(length=250), nullable=False),
    sa.Column('task_id', sa.String(length=250), nullable=False),
    sa.Column('run_id', sa.String(length=250), nullable=False),
    sa.Column('map_index', sa.Integer(), nullable=False),
    sa.Column('try_number', sa.Integer(), nullable=False),
    sa.Column('max_tries', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=True),
    sa.Column('queue', sa.String(length=256), nullable=False),
    sa.Column('pool', sa.String(length=256), nullable=False),
    sa.Column('pool_slots', sa.Integer(), nullable=False),
    sa.Column('priority_weight', sa.Integer(), nullable=False),
    sa.Column('executor', sa.String(length=1000), nullable=True),
    sa.Column('external_executor_id', sa.String(length=250), nullable=True),
    sa.Column('queued_by_job_id', sa.Integer(), nullable=True),
    sa.Column('executor_config', sa.JSON(), nullable=True),
    sa.Column('hostname', sa.String(length=1000), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('queued_dttm', sa.DateTime(), nullable=True),
    sa.Column('start_date', sa.DateTime(), nullable=True),
    sa.Column('end_date', sa.DateTime(), nullable=True),
    sa.Column('duration', sa.Float(), nullable=True),
    sa.Column('next_retry_at', sa.DateTime(), nullable=True),
    sa.Column('stuck_in_queued_count', sa.Integer(), nullable=False),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_instance')),
    sa.UniqueConstraint('dag_id', 'task_id', 'run_id', 'map_index', name=op.f('uq_task_instance_dag_id_task_id_run_id_map_index'))
    )
    with op.batch_alter_table('task_instance', schema=None) as batch_op:
        batch_op.create_index('ix_task_instance_dag_run', ['dag_id', 'run_id'], unique=False)
        batch_op.create_index('ix_task_instance_state', ['state'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('task_instance', schema=None) as batch_op:
        batch_op.drop_index('ix_task_instance_state')
        batch_op.drop_index('ix_task_instance_dag_run')

    op.drop_table('task_instance')
    op.drop_table('slot_pool')
    op.drop_table('serialized_dag')
    op.drop_table('job')
    op.drop_table('import_error')
    with op.batch_alter_table('dag_run', schema=None) as batch_op:
        batch_op.drop_index('ix_dag_run_state')

    op.drop_table('dag_run')
    op.drop_table('dag')
    
