"""quality listening

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

import rating_core.store.models

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('quality_samples',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('strata', sa.String(length=64), nullable=False),
    sa.Column('per_stratum', sa.Integer(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quality_samples'))
    )
    op.create_table('quality_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sample_id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('stratum', sa.String(length=256), nullable=False),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('scored_by', sa.String(length=64), nullable=True),
    sa.Column('scored_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_quality_items_call_id_calls'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sample_id'], ['quality_samples.id'], name=op.f('fk_quality_items_sample_id_quality_samples'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quality_items'))
    )
    with op.batch_alter_table('quality_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quality_items_sample_id'), ['sample_id'], unique=False)

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recording_file', sa.String(length=512), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('recording_file')

    with op.batch_alter_table('quality_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quality_items_sample_id'))

    op.drop_table('quality_items')
    op.drop_table('quality_samples')
