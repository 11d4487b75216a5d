"""calls, ratings and rating history

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

import rating_core.store.models

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('calls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uniqueid', sa.String(length=64), nullable=False),
    sa.Column('linkedid', sa.String(length=64), nullable=True),
    sa.Column('hotline', sa.String(length=32), nullable=False),
    sa.Column('caller_number', sa.String(length=64), nullable=True),
    sa.Column('agent_id', sa.String(length=64), nullable=True),
    sa.Column('queue', sa.String(length=128), nullable=True),
    sa.Column('case_number', sa.String(length=128), nullable=True),
    sa.Column('unit', sa.String(length=256), nullable=True),
    sa.Column('channel', sa.String(length=256), nullable=True),
    sa.Column('started_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('progress', sa.String(length=32), nullable=False),
    sa.Column('end_reason', sa.String(length=64), nullable=True),
    sa.Column('menu_plays', sa.Integer(), nullable=False),
    sa.Column('variables', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calls')),
    sa.UniqueConstraint('uniqueid', name=op.f('uq_calls_uniqueid'))
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calls_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_caller_number'), ['caller_number'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_case_number'), ['case_number'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_hotline'), ['hotline'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_linkedid'), ['linkedid'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_started_at'), ['started_at'], unique=False)

    op.create_table('ratings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('level', sa.String(length=32), nullable=False),
    sa.Column('stars', sa.Integer(), nullable=False),
    sa.Column('is_negative', sa.Boolean(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('reason_tags', sa.JSON(), nullable=False),
    sa.Column('reason_text', sa.Text(), nullable=True),
    sa.Column('voice_message_file', sa.String(length=512), nullable=True),
    sa.Column('voice_message_seconds', sa.Float(), nullable=True),
    sa.Column('is_adopted', sa.Boolean(), nullable=False),
    sa.Column('not_adopted_reason', sa.String(length=256), nullable=True),
    sa.Column('rated_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_ratings_call_id_calls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ratings')),
    sa.UniqueConstraint('call_id', name=op.f('uq_ratings_call_id'))
    )
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ratings_is_negative'), ['is_negative'], unique=False)
        batch_op.create_index(batch_op.f('ix_ratings_level'), ['level'], unique=False)
        batch_op.create_index(batch_op.f('ix_ratings_rated_at'), ['rated_at'], unique=False)

    op.create_table('rating_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rating_id', sa.Integer(), nullable=False),
    sa.Column('changed_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('changes', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['rating_id'], ['ratings.id'], name=op.f('fk_rating_changes_rating_id_ratings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rating_changes'))
    )
    with op.batch_alter_table('rating_changes', schema=None) as batch_op:
        batch_op.create_index('ix_rating_changes_rating_id_id', ['rating_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('rating_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_rating_changes_rating_id_id')

    op.drop_table('rating_changes')
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ratings_rated_at'))
        batch_op.drop_index(batch_op.f('ix_ratings_level'))
        batch_op.drop_index(batch_op.f('ix_ratings_is_negative'))

    op.drop_table('ratings')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calls_started_at'))
        batch_op.drop_index(batch_op.f('ix_calls_linkedid'))
        batch_op.drop_index(batch_op.f('ix_calls_hotline'))
        batch_op.drop_index(batch_op.f('ix_calls_case_number'))
        batch_op.drop_index(batch_op.f('ix_calls_caller_number'))
        batch_op.drop_index(batch_op.f('ix_calls_agent_id'))

    op.drop_table('calls')
