"""callback tasks, attempts, history, calendar overrides, blocked numbers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

import rating_core.store.models

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blocked_numbers',
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=256), nullable=False),
    sa.Column('added_by', sa.String(length=64), nullable=False),
    sa.Column('added_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('number', name=op.f('pk_blocked_numbers'))
    )
    op.create_table('calendar_overrides',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('is_working_day', sa.Boolean(), nullable=False),
    sa.Column('note', sa.String(length=256), nullable=True),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_calendar_overrides'))
    )
    op.create_table('callback_tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rating_id', sa.Integer(), nullable=False),
    sa.Column('hotline', sa.String(length=32), nullable=False),
    sa.Column('number', sa.String(length=64), nullable=True),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('state_reason', sa.String(length=256), nullable=True),
    sa.Column('assigned_agent', sa.String(length=64), nullable=True),
    sa.Column('created_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('verify_by', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('escalate_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('appeal_file_by', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('rectify_by', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('appeal_review_by', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('deadline_note', sa.String(length=256), nullable=True),
    sa.Column('policy_version', sa.String(length=32), nullable=False),
    sa.Column('next_attempt_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('attempts_made', sa.Integer(), nullable=False),
    sa.Column('escalated_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('escalation_reason', sa.String(length=256), nullable=True),
    sa.ForeignKeyConstraint(['rating_id'], ['ratings.id'], name=op.f('fk_callback_tasks_rating_id_ratings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_callback_tasks')),
    sa.UniqueConstraint('rating_id', name=op.f('uq_callback_tasks_rating_id'))
    )
    with op.batch_alter_table('callback_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callback_tasks_assigned_agent'), ['assigned_agent'], unique=False)
        batch_op.create_index(batch_op.f('ix_callback_tasks_state'), ['state'], unique=False)
        batch_op.create_index('ix_callback_tasks_state_next_attempt_at', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_callback_tasks_verify_by'), ['verify_by'], unique=False)

    op.create_table('callback_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('requested_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('originated_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('answered_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('dial_string', sa.String(length=256), nullable=True),
    sa.Column('channel_id', sa.String(length=64), nullable=False),
    sa.Column('action_id', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('originate_reason', sa.Integer(), nullable=True),
    sa.Column('hangup_cause', sa.Integer(), nullable=True),
    sa.Column('hangup_cause_text', sa.String(length=128), nullable=True),
    sa.Column('detail', sa.String(length=512), nullable=True),
    sa.Column('recording_file', sa.String(length=512), nullable=True),
    sa.ForeignKeyConstraint(['task_id'], ['callback_tasks.id'], name=op.f('fk_callback_attempts_task_id_callback_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_callback_attempts')),
    sa.UniqueConstraint('action_id', name=op.f('uq_callback_attempts_action_id')),
    sa.UniqueConstraint('channel_id', name=op.f('uq_callback_attempts_channel_id'))
    )
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_callback_attempts_status_id', ['status', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_callback_attempts_task_id'), ['task_id'], unique=False)

    op.create_table('callback_task_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=True),
    sa.Column('to_state', sa.String(length=16), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['callback_tasks.id'], name=op.f('fk_callback_task_events_task_id_callback_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_callback_task_events'))
    )
    with op.batch_alter_table('callback_task_events', schema=None) as batch_op:
        batch_op.create_index('ix_callback_task_events_task_id_id', ['task_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('callback_task_events', schema=None) as batch_op:
        batch_op.drop_index('ix_callback_task_events_task_id_id')

    op.drop_table('callback_task_events')
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_callback_attempts_task_id'))
        batch_op.drop_index('ix_callback_attempts_status_id')

    op.drop_table('callback_attempts')
    with op.batch_alter_table('callback_tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_callback_tasks_verify_by'))
        batch_op.drop_index('ix_callback_tasks_state_next_attempt_at')
        batch_op.drop_index(batch_op.f('ix_callback_tasks_state'))
        batch_op.drop_index(batch_op.f('ix_callback_tasks_assigned_agent'))

    op.drop_table('callback_tasks')
    op.drop_table('calendar_overrides')
    op.drop_table('blocked_numbers')
