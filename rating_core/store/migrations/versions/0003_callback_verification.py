"""callback verification: verdicts, answers, attempt purpose

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

import rating_core.store.models

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('callback_answers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('attempt_id', sa.Integer(), nullable=False),
    sa.Column('question', sa.String(length=16), nullable=False),
    sa.Column('answer', sa.Boolean(), nullable=False),
    sa.Column('key', sa.String(length=4), nullable=False),
    sa.Column('uniqueid', sa.String(length=64), nullable=False),
    sa.Column('at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['attempt_id'], ['callback_attempts.id'], name=op.f('fk_callback_answers_attempt_id_callback_attempts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['callback_tasks.id'], name=op.f('fk_callback_answers_task_id_callback_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_callback_answers')),
    sa.UniqueConstraint('attempt_id', 'question', name=op.f('uq_callback_answers_attempt_id'))
    )
    with op.batch_alter_table('callback_answers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callback_answers_task_id'), ['task_id'], unique=False)

    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('purpose', sa.String(length=16), server_default='verify', nullable=False))

    with op.batch_alter_table('callback_tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verdict', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('verdict_note', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('verified_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('rectified_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('citizen_resolved', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('citizen_satisfied', sa.Boolean(), nullable=True))
        batch_op.create_index('ix_callback_tasks_state_escalated_at_escalate_at', ['state', 'escalated_at', 'escalate_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('callback_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_callback_tasks_state_escalated_at_escalate_at')
        batch_op.drop_column('citizen_satisfied')
        batch_op.drop_column('citizen_resolved')
        batch_op.drop_column('rectified_at')
        batch_op.drop_column('verified_at')
        batch_op.drop_column('verdict_note')
        batch_op.drop_column('verdict')

    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.drop_column('purpose')

    with op.batch_alter_table('callback_answers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_callback_answers_task_id'))

    op.drop_table('callback_answers')
