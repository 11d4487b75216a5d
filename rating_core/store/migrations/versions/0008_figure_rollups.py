"""figure rollups

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

import rating_core.store.models

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('figure_rollup_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('refreshed_to', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_figure_rollup_state'))
    )
    op.create_table('figure_rollups',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('hotline', sa.String(length=32), nullable=False),
    sa.Column('unit', sa.String(length=256), nullable=False),
    sa.Column('queue', sa.String(length=128), nullable=False),
    sa.Column('agent', sa.String(length=64), nullable=False),
    sa.Column('A', sa.Integer(), nullable=False),
    sa.Column('M', sa.Integer(), nullable=False),
    sa.Column('P', sa.Integer(), nullable=False),
    sa.Column('I', sa.Integer(), nullable=False),
    sa.Column('D', sa.Integer(), nullable=False),
    sa.Column('T', sa.Integer(), nullable=False),
    sa.Column('B', sa.Integer(), nullable=False),
    sa.Column('N1', sa.Integer(), nullable=False),
    sa.Column('N2', sa.Integer(), nullable=False),
    sa.Column('N3', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'hotline', 'unit', 'queue', 'agent', name=op.f('pk_figure_rollups'))
    )
    with op.batch_alter_table('callback_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callback_tasks_updated_at'), ['updated_at'], unique=False)

    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ratings_updated_at'), ['updated_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ratings_updated_at'))

    with op.batch_alter_table('callback_tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_callback_tasks_updated_at'))

    op.drop_table('figure_rollups')
    op.drop_table('figure_rollup_state')
